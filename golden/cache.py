"""The folder where trained models are cached, importable without PyTorch (so a cocotb
bench can load cached results without paying for a torch import in the simulator)."""

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``TESSERA_CACHE``, default ``~/.cache/tessera`` (created on first use)."""
    path = Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera"))
    path.mkdir(parents=True, exist_ok=True)
    return path
