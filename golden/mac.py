"""The baseline processing elements' exact arithmetic: INT8 and FP8 (E4M3) dot products,
and the cycle model every dot-product PE (LP, INT8, FP8) shares.

INT8 (``hw/mac_pe.py``, ``int8-pe``): int8 x int8 products, exact, summed in an
``acc_width``-bit two's-complement accumulator that wraps on overflow.

FP8 E4M3 (``fp8-pe``), the OCP "fn" variant: 1 sign, 4 exponent (bias 7), 3 mantissa
bits; exponent field 0 is subnormal (``0.mmm * 2^-6``); no infinities; ``S.1111.111`` is
NaN (codes 0x7F, 0xFF); the largest value is 448.

* :func:`fp8_encode` rounds to the nearest value (ties to the even code), saturates
  ``|x| > 448`` to ±448, and maps NaN and ±inf to NaN (0x7F); -0.0 keeps its sign
  (code 0x80, which decodes to -0.0).
* The PE's products: ``mant = (E != 0) * 8 + M``, ``E' = max(E, 1)``, so a value is
  ``mant * 2^(E' - 10)``; the exact product ``mant_w * mant_a * 2^(E'_w + E'_a - 20)``
  is placed in the accumulator's fixed point (``acc_frac`` fraction bits) by a shift
  ``sh = E'_w + E'_a - 20 + acc_frac`` that truncates the magnitude when ``sh < 0``
  (as the LP PE does), negated when the signs differ, 0 and the NaN flag set when an
  operand is NaN, and accumulated with wrap-around in ``acc_width`` bits.
"""

from __future__ import annotations

import functools

import numpy as np

from spec.numerics import FP8_EXP_OFFSET, FP8_MAX, FP8_NAN, fp8_fields, wrap

from . import GoldenError
from .arrays import real_array

__all__ = ["int8_dot", "fp8_decode", "fp8_encode", "fp8_products", "fp8_dot", "pe_cycles",
           "FP8_MAX", "FP8_NAN"]



def _ints(name, x, lo, hi) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise GoldenError(f"{name} must be integers, not {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        bad = int(a.min()) if a.min() < lo else int(a.max())
        raise GoldenError(f"{name} value {bad} is outside [{lo}, {hi}]")
    return a


def _check_acc(acc_width, acc_frac=0):
    if not 2 <= acc_width <= 64:
        raise GoldenError(f"acc_width must be in 2..64, not acc_width={acc_width}")
    if not 0 <= acc_frac < acc_width:
        raise GoldenError(f"acc_frac must be in 0..acc_width-1, not acc_frac={acc_frac}")


def int8_dot(w, a, *, acc_width: int = 32) -> np.ndarray:
    """Wrapped ``acc_width``-bit dot products of int8 ``w`` and ``a`` along the last axis."""
    _check_acc(acc_width)
    w = _ints("weight", w, -128, 127)
    a = _ints("activation", a, -128, 127)
    return wrap((w * a).astype(np.uint64).sum(axis=-1, dtype=np.uint64), acc_width)


@functools.lru_cache(maxsize=None)
def _fp8_table() -> np.ndarray:
    """Value of every E4M3 code: ``mant * 2^(E' - 10)`` (:func:`spec.numerics.fp8_fields`)."""
    sign, mant, exp, nan = fp8_fields(np.arange(256))
    mag = mant * 2.0 ** (exp - FP8_EXP_OFFSET)
    return np.where(nan, np.nan, np.where(sign == 1, -mag, mag))


def fp8_decode(codes) -> np.ndarray:
    """Values (float64) of E4M3 codes ``0..255``; NaN codes give NaN."""
    return _fp8_table()[_ints("FP8 code", codes, 0, 255)]


def fp8_encode(x) -> np.ndarray:
    """E4M3 codes of ``x``: nearest, ties to even, saturating to ±448, NaN/inf -> 0x7F."""
    a = real_array(x, "the values to encode", finite=False).astype(np.float64)
    pos = _fp8_table()[:FP8_NAN]                   # codes 0..126, increasing
    mids = (pos[1:] + pos[:-1]) / 2
    mag = np.abs(np.where(np.isfinite(a), a, 0.0))
    j = np.searchsorted(mids, mag, side="left")
    tie = (j < len(mids)) & (mids[np.minimum(j, len(mids) - 1)] == mag)
    code = np.where(tie & (j % 2 == 1), j + 1, j)
    code = np.where(np.signbit(a), code | 0x80, code)
    return np.where(np.isfinite(a), code, FP8_NAN).astype(np.int64)


def fp8_products(w, a, *, acc_width: int = 32, acc_frac: int = 16):
    """The FP8 PE's products of E4M3 codes (broadcast): ``(products, nan)``, see above."""
    _check_acc(acc_width, acc_frac)
    w, a = np.broadcast_arrays(_ints("FP8 code", w, 0, 255), _ints("FP8 code", a, 0, 255))

    sw, mw, ew, nw = fp8_fields(w)
    sa, ma, ea, na = fp8_fields(a)
    pm = (mw * ma).astype(np.uint64)
    sh = ew + ea - 2 * FP8_EXP_OFFSET + acc_frac
    mag = np.where(sh >= 0, pm << np.clip(sh, 0, 63).astype(np.uint64),
                   pm >> np.clip(-sh, 0, 63).astype(np.uint64))
    mag = wrap(np.where(sh >= 64, np.uint64(0), mag), acc_width)
    prod = np.where((sw ^ sa) == 1, -mag, mag)
    nan = nw | na
    return wrap(np.where(nan, 0, prod), acc_width), nan


def fp8_dot(w, a, *, acc_width: int = 32, acc_frac: int = 16):
    """Wrapped dot products along the last axis and whether any operand was NaN."""
    prods, nan = fp8_products(w, a, acc_width=acc_width, acc_frac=acc_frac)
    total = prods.astype(np.uint64).sum(axis=-1, dtype=np.uint64)
    return wrap(total, acc_width), nan.any(axis=-1)


def pe_cycles(config, k: int, dots: int = 1) -> int:
    """Cycles a dot-product PE takes for ``dots`` dot products of length ``k``, back to back.

    ``config`` is any object with ``lanes`` and ``latency`` (the PE configs in
    ``hw.lp_pe`` and ``hw.mac_pe``). Each dot product is ``ceil(k / lanes)`` beats at one
    beat per cycle; counting from the first accepted beat to the last output transfer,
    inclusive, the pipeline adds ``latency`` cycles.
    """
    if k < 1 or dots < 1:
        raise GoldenError(f"k and dots must be >= 1, got k={k}, dots={dots}")
    return dots * -(-k // config.lanes) + config.latency
