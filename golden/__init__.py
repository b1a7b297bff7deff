"""Golden (reference) models: plain numpy/PyTorch functions that define exactly what the
hardware computes. This package never imports ``hw``.

Errors a caller can cause (a tensor that is not N:M, a bad group size, out-of-range
integers) raise :class:`GoldenError`, a :class:`ValueError`, naming the offending value.
"""


class GoldenError(ValueError):
    """Invalid input to a golden model; the message names the offending value."""


__all__ = ["GoldenError"]
