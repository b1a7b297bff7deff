"""Writing files so that no reader ever sees half of one: :mod:`spec.outputs`'s one
writer (a temporary file in the same folder, then a rename), under the name the TACOS
code and the Chakra writer use."""

import os
from pathlib import Path

from spec.outputs import write_bytes, write_text

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text or bytes) to ``path`` whole; return the path."""
    return write_text(path, data) if isinstance(data, str) else write_bytes(path, data)
