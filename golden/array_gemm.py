"""A whole layer's GEMM on a dot-product array (``lp-array``, ``int8-array``,
``fp8-array``), vectorised and bit-exact: what the array computes, at matrix speed.

:func:`array_gemm` takes a layer's weight codes ``w[O, K]`` and the activation codes
``a[T, K]`` of ``T`` tokens and returns, for every token and output,

    ``acc[t, o] = wrap_acc(sum_k product(w[o, k], a[t, k]))``

where ``product`` is the array's own (:func:`golden.pe_array.array_products`, bit for
bit: the LP table, truncating shift and product window; the exact int8 product; the
FP8 product truncated to ``acc_frac``) and ``wrap_acc`` is ``acc_width``-bit two's
complement. That is what the array gives when the layer is tiled onto it
(``config.check_layer``: ``rows`` outputs x ``cols`` inputs per weight tile, each token
one beat with ``last`` set, :func:`golden.pe_array.array_outputs`) and the ``K / cols``
partial sums of an output are added in ``acc_width``-bit two's complement: wrapping is
modular, so the order of the additions does not change the result.

How it stays exact at matrix speed (products as integers, sums as float GEMMs whose
every partial sum is an integer below 2^24 in float32 or 2^53 in float64, hence exact
in any summation order; K is cut into chunks where a bound would be exceeded):

* ``lp-array``: a product depends only on the two codes, so the layer is a table GEMM
  (:func:`table_matmul`) of the array's product table over all code pairs
  (:func:`golden.pe_array.array_products`: the window, truncation and 2^frac table are
  the golden model's own): one sparse-times-dense product per activation magnitude.
* ``int8-array``: one GEMM of the signed codes.
* ``fp8-array``: with ``W = (-1)^s mant 2^E'`` (integers) the product is
  ``sign * floor(|W A| / 2^q)``, ``q = 20 - acc_frac``; so ``2^q * acc`` is the GEMM of
  ``W`` and ``A`` minus the GEMM-sum of ``sign * (|W A| mod 2^q)``, and the latter splits
  over the residues ``u = |W|/2 mod 2^(q-2)`` present (|W| and |A| are even; one small
  GEMM each: three at the default ``acc_frac``); the division by ``2^q`` is checked to
  be exact.

NaR (LP) and NaN (FP8) operands give a zero product and set the output's flag, as the
array does.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from spec import ConfigError
from spec.numerics import FP8_EXP_OFFSET, fp8_fields, wrap
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig

from . import GoldenError
from .pe_array import _codes, array_products

__all__ = ["Gemm", "array_gemm", "exact_matmul", "table_matmul"]

_F32_EXACT, _F64_EXACT = 1 << 24, 1 << 53


@dataclasses.dataclass(frozen=True)
class Gemm:
    """What :func:`array_gemm` returns, all ``[T, O]``.

    Members
    -------
    acc : np.ndarray of int64
        The array's accumulators (wrapped ``acc_width``-bit two's complement; LP and FP8
        in units of ``2^-acc_frac``).
    nar : np.ndarray of bool
        An operand of the dot product was NaR (LP) or NaN (FP8).
    wrapped : np.ndarray of bool
        The exact sum of the products lay outside the accumulator's range, so ``acc``
        wrapped (a layer scale that overflows the array).
    """

    acc: np.ndarray
    nar: np.ndarray
    wrapped: np.ndarray


def _float_plan(bound: int, k: int):
    """(torch dtype, K chunk) for exact sums of ``k`` terms each at most ``bound``: every
    partial sum of a chunk below 2^24 (float32) or, for wide terms, 2^53 (float64)."""
    import torch

    bound = max(int(bound), 1)
    if bound * min(k, 256) < _F32_EXACT:
        return torch.float32, (_F32_EXACT - 1) // bound
    if bound < _F64_EXACT:
        return torch.float64, (_F64_EXACT - 1) // bound
    raise GoldenError(f"terms up to {bound} are too wide for an exact float sum")


def exact_matmul(x: np.ndarray, y: np.ndarray, bound: int) -> np.ndarray:
    """``x @ y.T`` of integer matrices (``x[T, K]``, ``y[O, K]``), exactly, as int64.

    ``bound`` must be at least ``max |x[t, k] * y[o, k]|``; K is cut into chunks whose
    sums are exact (:func:`_float_plan`). Uses torch's GEMM (and its thread setting)."""
    import torch

    dtype, chunk = _float_plan(bound, x.shape[1])
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
    yt = torch.from_numpy(np.ascontiguousarray(y)).to(dtype)
    out = np.zeros((x.shape[0], y.shape[0]), np.int64)
    for k0 in range(0, x.shape[1], chunk):
        out += (xt[:, k0:k0 + chunk] @ yt[:, k0:k0 + chunk].T).to(torch.int64).numpy()
    return out


def table_matmul(table: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_k table[w[o, k], a[t, k]]`` for every ``t, o``, exactly, as int64 ``[T, O]``:
    a product table over pairs of n-bit sign-magnitude-symmetric codes applied as a GEMM.

    ``table[:, c']`` of a negative activation code ``c' = 2^n - c`` must be the negated
    ``table[:, c]`` and the columns of codes 0 and ``2^(n-1)`` zero (LP: checked by the
    caller). Then, per activation magnitude ``c`` present, the tokens' ``+-1`` indicator
    of ``c`` (a sparse ``[T, K]`` matrix: every activation belongs to one magnitude) times
    the weights' column ``table[w, c]`` (dense ``[K, O]``) adds that magnitude's products:
    the sparse products together touch each (token, input, output) once. Sums are exact in
    float by :func:`_float_plan` (K cut into chunks where needed)."""
    import torch

    (T, K), O, codes = a.shape, w.shape[0], table.shape[1]
    half = codes // 2
    dtype, kchunk = _float_plan(int(np.abs(table).max(initial=0)), K)
    out = np.zeros((T, O), np.int64)
    for k0 in range(0, K, kchunk):
        ak, wk = a[:, k0:k0 + kchunk], w[:, k0:k0 + kchunk]
        kk = ak.shape[1]
        flat = ak.ravel()
        mag = np.where(flat < half, flat, codes - flat)
        mag[flat == half] = 0                                    # NaR: a zero product
        order = np.argsort(mag.astype(np.uint16), kind="stable")  # by magnitude, then row-major
        bounds = np.searchsorted(mag[order], np.arange(half + 1))
        rows = order // kk
        cols = torch.from_numpy(order - rows * kk)
        signs = torch.from_numpy(np.where(flat[order] < half, 1.0, -1.0)).to(dtype)
        lookup = np.ascontiguousarray(wk.T)                       # [K, O] weight codes
        acc = torch.zeros((T, O), dtype=dtype)
        for c in range(1, half):
            lo, hi = bounds[c], bounds[c + 1]
            if lo == hi:
                continue
            crow = torch.from_numpy(np.searchsorted(rows[lo:hi], np.arange(T + 1)).astype(np.int64))
            with warnings.catch_warnings():                       # "CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                ind = torch.sparse_csr_tensor(crow, cols[lo:hi], signs[lo:hi], size=(T, kk),
                                              check_invariants=False)
            acc += torch.sparse.mm(ind, torch.from_numpy(table[:, c][lookup]).to(dtype))
        out += acc.to(torch.int64).numpy()
    return out


def _wrap_result(config, exact, nar, shift: int = 0):
    """The Gemm of exact sums ``exact * 2^shift`` (``exact`` int64)."""
    half = 1 << (config.acc_width - 1)
    wrapped = (exact < -(half >> shift)) | (exact >= -(-half >> shift))
    if shift:
        exact = exact.astype(np.uint64) << np.uint64(shift) if shift < 64 else np.zeros_like(exact)
    return Gemm(wrap(exact, config.acc_width), nar, wrapped)


def _lp(config, w, a, sf):
    n = config.n
    size, half = 1 << n, 1 << (n - 1)
    codes = np.arange(size)
    table, _ = array_products(config, codes[:, None], codes[None, :], sf)     # [w code, a code]
    pos = np.arange(1, half)
    if not np.array_equal(table[:, size - pos], wrap(-table[:, pos], config.acc_width)):
        raise AssertionError("LP products of a negative activation code are not the negated ones")
    exact = table_matmul(table, w, a)
    nar = (a == half).any(axis=1)[:, None] | (w == half).any(axis=1)[None, :]
    return _wrap_result(config, exact, nar)


def _int8(config, w, a):
    ws = w.astype(np.int8).astype(np.int64)
    as_ = a.astype(np.int8).astype(np.int64)
    exact = exact_matmul(as_, ws, 128 * 128)
    return _wrap_result(config, exact, np.zeros((a.shape[0], w.shape[0]), bool))


def _fp8_ints(codes):
    """``(-1)^s mant 2^E'`` per E4M3 code (0 for NaN) and the NaN flags."""
    sign, mant, exp, nan = fp8_fields(codes)
    value = np.where(sign == 1, -mant, mant) << exp
    return np.where(nan, 0, value), nan


def _fp8(config, w, a):
    W, wnan = _fp8_ints(w)
    A, anan = _fp8_ints(a)
    nar = anan.any(axis=1)[:, None] | wnan.any(axis=1)[None, :]
    bound = int(np.abs(W).max(initial=0)) * int(np.abs(A).max(initial=0))
    total = exact_matmul(A, W, bound)                           # sum of W * A, exact
    q = 2 * FP8_EXP_OFFSET - config.acc_frac                    # product = sign floor(|WA| / 2^q)
    if q <= 0:                                                  # every product is exact
        return _wrap_result(config, total, nar, -q)
    # |W| and |A| are even (E' >= 1), so |WA| mod 2^q = 4 * ((|W|/2)(|A|/2) mod 2^(q-2)).
    low = (1 << max(q - 2, 0)) - 1
    wres, ares = (np.abs(W) >> 1) & low, (np.abs(A) >> 1) & low
    corr = np.zeros_like(total)
    for u in np.unique(wres[wres != 0]):
        corr += 4 * exact_matmul(np.sign(A) * ((u * ares) & low), np.where(wres == u, np.sign(W), 0), low)
    if ((total - corr) & ((1 << q) - 1)).any():
        raise AssertionError("FP8 truncation correction left a remainder")
    return _wrap_result(config, (total - corr) >> q, nar)


def array_gemm(config, w, a, sf: int = 0) -> Gemm:
    """The layer GEMM of weight codes ``w[O, K]`` and activation codes ``a[T, K]`` on the
    array of ``config`` (see the module docstring); ``sf`` is the ``lp-array``'s runtime
    scale for the whole layer (``sf_w + sf_a``, or less to place the products higher in
    the window: every product is then ``2^-sf`` times larger).

    Raises
    ------
    GoldenError
        Codes wider than the array's, shapes that do not match or do not tile onto the
        array, an ``sf`` outside the array's range, or ``sf`` given to an INT8/FP8 array.
    """
    if not isinstance(config, (LPArrayConfig, Int8ArrayConfig, FP8ArrayConfig)):
        raise GoldenError(f"not an array config: {config!r}")
    w, a = _codes("weights", w, config.width), _codes("activations", a, config.width)
    if w.ndim != 2 or a.ndim != 2 or w.shape[1] != a.shape[1]:
        raise GoldenError(f"need weights [O, K] and activations [T, K], not {w.shape} and {a.shape}")
    try:
        config.check_layer(*w.shape)
    except ConfigError as exc:
        raise GoldenError(str(exc)) from None
    if isinstance(config, LPArrayConfig):
        if int(sf) not in config.pe().sf_range:
            raise GoldenError(f"sf={sf} is outside the array's sf range {config.pe().sf_range}")
        return _lp(config, w, a, int(sf))
    if sf:
        raise GoldenError(f"sf={sf}: only the lp-array has a runtime scale")
    return _int8(config, w, a) if isinstance(config, Int8ArrayConfig) else _fp8(config, w, a)
