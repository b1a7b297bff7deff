"""The folder where trained models are cached, importable without PyTorch (so a cocotb
bench can load cached results without paying for a torch import in the simulator).

Cache files are written whole (:func:`spec.outputs.atomic_path`). A file that cannot be
read all the same (truncated by a full disk, damaged, written by another version) is not
an error for the caller: :func:`load_or_rebuild` says which file it was on stderr,
removes it and builds the model again.
"""

import logging
import os
from pathlib import Path
from typing import Callable, TypeVar

from spec.outputs import atomic_path

from . import GoldenError

__all__ = ["cache_dir", "load_or_rebuild"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_dir() -> Path:
    """``TESSERA_CACHE``, default ``~/.cache/tessera`` (created on first use)."""
    path = Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera"))
    if path.exists() and not path.is_dir():
        raise GoldenError(f"the model cache TESSERA_CACHE={str(path)!r} is a file, not a folder: "
                          "point TESSERA_CACHE at a folder (or unset it for ~/.cache/tessera)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GoldenError(f"cannot create the model cache {str(path)!r} ({exc.strerror}): "
                          "point TESSERA_CACHE at a writable folder") from None
    return path


def load_or_rebuild(path: Path, load: Callable[[Path], T], build: Callable[[Path], None],
                    what: str = "model") -> T:
    """``load(path)``; when ``path`` is missing, ``build(tmp)`` writes it first (through a
    temporary file, renamed on success). When the file exists but ``load`` fails, the
    file is named in a warning, removed and rebuilt once."""
    if path.exists():
        try:
            return load(path)
        except Exception as exc:        # any reader's error: torch, zipfile, numpy, pickle
            log.warning("tessera: warning: the cached %s %s is unreadable (%s: %s); removed it, "
                        "training again", what, path, type(exc).__name__, str(exc).splitlines()[0]
                        if str(exc) else "")
            path.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        build(tmp)
    return load(path)
