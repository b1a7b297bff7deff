"""The N:M structured-sparse format and the exact integer product the tensor core computes.

Conventions (shared by the hardware, the compiler and every other golden model):

* Groups are ``m`` consecutive elements along the **last** axis (the reduction axis K of
  a weight matrix ``W[rows, K]``). K must be a multiple of ``m``: callers pad explicitly
  (with zeros) before calling; nothing here pads silently.
* A tensor is *n:m* when every group holds at most ``n`` non-zeros.
* Compressed form: ``values[..., K // m, n]`` and ``indices[..., K // m, n]`` (int64).
  Slot ``j`` of a group holds ``values[..., g, j]`` at position ``indices[..., g, j]``
  (0 <= index < m) of that group. The slots of a group name distinct positions, in
  ascending order; a group with fewer than ``n`` non-zeros fills its spare slots with
  value 0 at the lowest positions its non-zeros leave free.
* Pruning keeps the ``n`` largest magnitudes per group; ties go to the lower index.

numpy arrays and torch tensors are both accepted; results come back as the same kind as
the main input (torch in, torch out), computed in numpy.
"""

import numpy as np

from spec.numerics import wrap

from . import GoldenError
from .arrays import like, real_array, to_numpy

__all__ = ["prune", "mask", "is_nm", "compress", "decompress", "matmul", "cycles"]


def _check_nm(n: int, m: int) -> None:
    for name, value in (("n", n), ("m", m)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise GoldenError(f"{name} must be an integer, not {value!r}")
    if m < 1:
        raise GoldenError(f"m must be >= 1, not m={m!r}")
    if not 1 <= n <= m:
        raise GoldenError(f"n must satisfy 1 <= n <= m, not n={n!r}, m={m!r}")


def _groups(w: np.ndarray, m: int) -> np.ndarray:
    """View ``w[..., K]`` as ``[..., K // m, m]``; K must be a multiple of m."""
    if w.ndim == 0:
        raise GoldenError("expected a tensor with a reduction (last) axis, got a scalar")
    k = w.shape[-1]
    if k % m:
        raise GoldenError(f"the reduction axis has {k} elements, not a multiple of m={m}; "
                          f"pad it with zeros to {-(-k // m) * m} first")
    return w.reshape(*w.shape[:-1], k // m, m)


def _magnitude(w: np.ndarray) -> np.ndarray:
    """|w| without integer overflow (|-128| fits), as float64 or int64."""
    if np.issubdtype(w.dtype, np.integer):
        return np.abs(w.astype(np.int64))
    if np.issubdtype(w.dtype, np.bool_):
        return w.astype(np.int64)
    return np.abs(w.astype(np.float64))


def _keep_order(key: np.ndarray) -> np.ndarray:
    """Positions within each group sorted by descending ``key``, ties to the lower index."""
    return np.argsort(-key, axis=-1, kind="stable")


def mask(w, n: int, m: int):
    """Boolean mask of the ``n`` largest magnitudes per group of ``m`` (ties: lower index)."""
    _check_nm(n, m)
    a = real_array(w, "w")
    groups = _groups(_magnitude(a), m)
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, _keep_order(groups)[..., :n], True, axis=-1)
    return like(keep.reshape(a.shape), w)


def prune(w, n: int, m: int):
    """Return ``w`` with all but the ``n`` largest magnitudes of every m-group zeroed.

    Ties go to the lower index, so the result is deterministic. Dtype and shape are kept.
    """
    a = to_numpy(w)
    keep = to_numpy(mask(a, n, m))
    return like(np.where(keep, a, np.zeros_like(a)), w)


def is_nm(w, n: int, m: int) -> bool:
    """True when every m-group of ``w`` (along the last axis) has at most ``n`` non-zeros."""
    _check_nm(n, m)
    return bool(np.all(np.count_nonzero(_groups(to_numpy(w), m), axis=-1) <= n))


def compress(w, n: int, m: int):
    """Compress an n:m tensor ``w[..., K]`` into ``(values[..., K//m, n], indices[..., K//m, n])``.

    Raises
    ------
    GoldenError
        If some group holds more than ``n`` non-zeros (the first such group is named),
        K is not a multiple of ``m``, or ``w`` holds NaN, infinities, complex or
        non-numeric values (the first non-finite one is named).
    """
    _check_nm(n, m)
    a = real_array(w, "w")
    groups = _groups(a, m)
    nonzero = groups != 0
    counts = nonzero.sum(axis=-1)
    if np.any(counts > n):
        where = tuple(int(v) for v in np.argwhere(counts > n)[0])
        g = where[-1]
        raise GoldenError(f"tensor is not {n}:{m}: group {where} (elements {g * m}..{g * m + m - 1} "
                          f"along the last axis) holds {int(counts[where])} non-zeros, more than n={n}")
    # Non-zeros first, then the lowest free positions; slots in ascending position order.
    chosen = np.sort(_keep_order(nonzero.astype(np.int8))[..., :n], axis=-1)
    values = np.take_along_axis(groups, chosen, axis=-1)
    return like(values, w), like(chosen.astype(np.int64), w)


def decompress(values, indices, n: int, m: int):
    """Inverse of :func:`compress`: the dense tensor ``[..., K]`` with K = groups * m.

    Raises
    ------
    GoldenError
        If shapes disagree, an index is outside ``[0, m)``, or a group names the same
        position twice (the first such group is named).
    """
    _check_nm(n, m)
    v, idx = to_numpy(values), to_numpy(indices)
    if v.shape != idx.shape or v.ndim < 1 or v.shape[-1] != n:
        raise GoldenError(f"values and indices must both have shape [..., groups, n={n}], "
                          f"got {v.shape} and {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise GoldenError(f"indices must be integers, not {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= m):
        bad = tuple(int(x) for x in np.argwhere((idx < 0) | (idx >= m))[0])
        raise GoldenError(f"index {int(idx[bad])} at {bad} is outside [0, m={m})")
    ordered = np.sort(idx, axis=-1)
    repeated = np.any(ordered[..., 1:] == ordered[..., :-1], axis=-1)
    if np.any(repeated):
        where = tuple(int(x) for x in np.argwhere(repeated)[0])
        raise GoldenError(f"group {where} repeats a position: indices {idx[where].tolist()}")
    dense = np.zeros((*v.shape[:-1], m), dtype=v.dtype)
    np.put_along_axis(dense, idx.astype(np.int64), v, axis=-1)
    return like(dense.reshape(*v.shape[:-2], v.shape[-2] * m), values)


def _check_int_range(name: str, a: np.ndarray, width: int) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise GoldenError(f"{name} must be integers (int{width}), not {a.dtype}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a.min() if a.min() < lo else a.max()
        raise GoldenError(f"{name} value {int(bad)} does not fit in int{width} [{lo}, {hi}]")


def matmul(values, indices, x, n: int, m: int, *, width: int = 8, acc_width: int = 32):
    """The tensor core's product: compressed ``W[rows, K]`` times ``x[K]`` or ``x[K, cols]``.

    Weights and activations are ``width``-bit signed integers; products and sums are
    exact, and the result wraps to ``acc_width``-bit two's complement exactly as the
    hardware accumulator does (returned as int64 holding int``acc_width`` values; int32
    for the default width). Leading batch axes of ``values`` broadcast as in ``np.matmul``.
    """
    w = to_numpy(decompress(values, indices, n, m))
    a = to_numpy(x)
    _check_int_range("weight", w, width)
    _check_int_range("activation", a, width)
    if a.ndim not in (1, 2) or a.shape[0] != w.shape[-1]:
        raise GoldenError(f"activations must have shape [K={w.shape[-1]}] or [K, cols], got {a.shape}")
    result = wrap(w.astype(np.int64) @ a.astype(np.int64), acc_width)
    if acc_width <= 32:
        result = result.astype(np.int32)
    return like(result, values)


def cycles(config, out_rows: int, k: int, cols: int = 1, n_active: int | None = None) -> int:
    """Cycles the tensor core takes for ``W[out_rows, K] @ X[K, cols]``, streamed back to back.

    ``config`` is any object with ``rows``, ``m`` and ``latency`` attributes (the core's
    :class:`spec.nm_core.NMCoreConfig`). The core takes one M-group per row block and column
    per cycle, so it needs ``ceil(out_rows / (rows * P)) * cols * ceil(K / m)`` beats, where
    P is the logical rows per physical row at ``n_active`` (``config.pack_factor``: n / N'
    on a packing core when N' divides n, else 1; default n_active: the core's n). Counting
    from the cycle the first beat is accepted to the cycle the last result is taken,
    inclusive, it adds ``latency`` cycles of pipeline drain.
    """
    if min(out_rows, k, cols) < 1:
        raise GoldenError(f"matrix sizes must be >= 1, got out_rows={out_rows}, k={k}, cols={cols}")
    pack = 1
    if n_active is not None and hasattr(config, "pack_factor"):
        n = getattr(config, "n", None)
        if not isinstance(n_active, (int, np.integer)) or isinstance(n_active, bool) \
                or not 1 <= n_active <= n:
            raise GoldenError(f"n_active must be an integer in 1..{n}, not {n_active!r}")
        pack = config.pack_factor(int(n_active))
    beats = -(-out_rows // (config.rows * pack)) * cols * -(-k // config.m)
    return beats + config.latency
