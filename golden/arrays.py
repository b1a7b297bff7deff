"""numpy in, numpy out -- or torch in, torch out: the array conventions of the golden
models. Every model computes in numpy; these helpers take torch tensors in and give the
result back as the caller's kind."""

import numpy as np

from . import GoldenError

__all__ = ["is_torch", "to_numpy", "like", "real_array"]


def is_torch(x) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and moved to the CPU)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def like(result: np.ndarray, reference):
    """``result`` as a torch tensor if ``reference`` is one, else as it is."""
    if is_torch(reference):
        import torch
        return torch.from_numpy(np.ascontiguousarray(result))
    return result


def real_array(x, what: str = "x", *, finite: bool = True) -> np.ndarray:
    """``x`` as a numpy array of real numbers (bool, integer or floating dtype), else
    :class:`GoldenError` naming ``what``: strings, ``None``, objects and complex values are
    refused rather than converted. With ``finite`` (the default) NaN and infinities are
    refused too, naming the first one's position."""
    if x is None:
        raise GoldenError(f"{what} must be an array of real numbers, not None")
    try:
        a = to_numpy(x)
    except (TypeError, ValueError) as exc:
        raise GoldenError(f"{what} must be an array of real numbers ({exc})") from None
    if not (np.issubdtype(a.dtype, np.bool_) or np.issubdtype(a.dtype, np.integer)
            or np.issubdtype(a.dtype, np.floating)):
        kind = {"U": "strings", "S": "bytes", "O": "Python objects", "c": f"complex ({a.dtype})"}.get(
            a.dtype.kind, str(a.dtype))
        item = a.ravel()[0] if a.size else None
        first = f" such as {getattr(item, 'item', lambda: item)()!r}" if a.size else ""
        raise GoldenError(f"{what} must hold real numbers, not {kind}{first}")
    if finite and np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise GoldenError(f"{what} holds a non-finite value {float(a[where])} at {where}")
    return a
