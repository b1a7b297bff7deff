"""Numeric rules that the hardware, the golden models and the compiler share.

Each rule is written here once; the generators build logic that implements it, the
golden models compute with it, and the compiler prices and packs with it.

Integers
--------
* :func:`wrap`: two's-complement wrap-around to ``bits`` bits (what an accumulator or a
  product window of that width does on overflow).
* :func:`saturate`: clip to the signed (or unsigned) range of ``bits`` bits.
* :func:`shift_round_half_up`: ``floor(x / 2^s + 1/2)`` for integers, i.e. an arithmetic
  right shift by ``s`` that adds bit ``s - 1`` back (ties go towards +infinity); ``s = 0``
  returns ``x``. :func:`round_half_up` is the same rule for floats.

Logarithmic posits
------------------
* :func:`lp_frac_bits`: F, the fraction bits of the fixed-point log of LP<n, es, rs>.
* :func:`lp_exp2_table`: the ``2^frac`` table of the LP datapath, entry ``j`` =
  ``round(2^(j / 2^F) * 2^table_bits)`` to nearest, computed with exact integer tests.

FP8 (OCP E4M3, the "fn" variant)
--------------------------------
:data:`FP8_E4M3` is the code layout (LSB first: 3 mantissa bits, 4 exponent bits with
bias :data:`FP8_EXP_BIAS`, the sign). Exponent 0 is subnormal, ``S.1111.111`` is NaN
(:data:`FP8_NAN`), there are no infinities and :data:`FP8_MAX` is 448. Arithmetic on codes
uses the integer significand ``mant = (E != 0) * 8 + M`` and ``E' = max(E, 1)``, so a
code's value is ``mant * 2^(E' - FP8_EXP_OFFSET)`` (:func:`fp8_fields`).

TASD series
-----------
A series is written ``"2:4+1:4"`` (terms ``n:m`` joined by ``+``, spaces allowed around
either sign) or given as pairs ``[(2, 4), (1, 4)]``; every term needs ``1 <= n <= m``.
:func:`parse_series` returns the pairs, :func:`format_series` the canonical text.
"""

import functools
import math
import numbers

import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data

from .config import SpecError

__all__ = ["int_range", "wrap", "saturate", "shift_round_half_up", "round_half_up",
           "lp_frac_bits", "lp_exp2_table", "LP_MAX_TABLE_FRAC", "LP_MAX_TABLE_BITS",
           "FP8_E4M3", "FP8_EXP_BIAS", "FP8_EXP_OFFSET", "FP8_MAX", "FP8_NAN", "fp8_fields",
           "parse_series", "format_series", "requantize"]


# ----------------------------------------------------------------------------- integers

def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """``(lo, hi)``, inclusive, of a ``bits``-bit two's-complement (or unsigned) integer."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def wrap(x, bits: int):
    """Two's-complement wrap of integers to ``bits`` (1..64) bits.

    ``x`` is a Python int (returned as an int) or an integer numpy array of any integer
    dtype, taken modulo 2^64 (returned as int64). This is what an adder or accumulator of
    ``bits`` bits does on overflow.
    """
    if isinstance(x, numbers.Integral) and not isinstance(x, np.generic):
        half = 1 << (bits - 1)
        return ((int(x) + half) & ((1 << bits) - 1)) - half
    u = np.asarray(x).astype(np.uint64)
    if bits < 64:
        low = np.uint64((1 << bits) - 1)
        u = u & low
        u = np.where(u >> np.uint64(bits - 1) == 1, u | ~low, u)      # sign-extend
    return u.astype(np.int64)


def saturate(x, bits: int, signed: bool = True):
    """Clip integers to the range of ``bits`` bits (:func:`int_range`)."""
    lo, hi = int_range(bits, signed)
    if isinstance(x, numbers.Integral) and not isinstance(x, np.generic):
        return min(max(int(x), lo), hi)
    return np.clip(np.asarray(x).astype(np.int64), lo, hi)


def shift_round_half_up(x, shift: int):
    """``floor(x / 2^shift + 1/2)`` of integers: a right shift that rounds to nearest,
    ties towards +infinity (adds bit ``shift - 1`` of ``x``). ``shift = 0`` is identity."""
    if shift < 0:
        raise SpecError(f"shift must be >= 0, not {shift!r}")
    if isinstance(x, numbers.Integral) and not isinstance(x, np.generic):
        return (int(x) + (1 << (shift - 1) if shift else 0)) >> shift
    a = np.asarray(x).astype(np.int64)
    return (a + ((1 << (shift - 1)) if shift else 0)) >> shift


def round_half_up(x) -> np.ndarray:
    """``floor(x + 1/2)`` of floats as int64 (the float twin of :func:`shift_round_half_up`)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


# --------------------------------------------------------------------------------- LP

#: Largest F and table_bits the exact table builder accepts.
LP_MAX_TABLE_FRAC, LP_MAX_TABLE_BITS = 14, 24


def lp_frac_bits(n: int, es: int, rs: int) -> int:
    """F: the widest fraction any LP<n, es, rs> code has, and the fraction bits of the
    fixed-point log. The shortest regime is 1 bit when ``rs == 1`` (a run of rs bits has
    no terminator), else 2 (one run bit and its terminator)."""
    shortest_regime = 1 if rs == 1 else 2
    return max(n - 1 - shortest_regime - es, 0)


def _round_exp2(j: int, frac_bits: int, table_bits: int) -> int:
    """``round(2^(j / 2^F) * 2^tb)`` exactly: m is right when
    ``(2m-1)^(2^F) <= 2^(j + (tb+1) 2^F) < (2m+1)^(2^F)``; ties happen only at j = 0."""
    steps = 1 << frac_bits
    target = 1 << (j + (table_bits + 1) * steps)
    m = int(math.floor(2.0 ** (j / steps + table_bits) + 0.5))
    while (2 * m - 1) ** steps > target:
        m -= 1
    while (2 * m + 1) ** steps <= target:
        m += 1
    return m


@functools.lru_cache(maxsize=None)
def lp_exp2_table(frac_bits: int, table_bits: int) -> tuple[int, ...]:
    """The LP datapath's ``2^frac`` table: ``2^frac_bits`` entries of ``table_bits + 1``
    bits, entry j = ``round(2^(j / 2^frac_bits) * 2^table_bits)`` (to nearest; exact)."""
    for name, value, hi in (("frac_bits", frac_bits, LP_MAX_TABLE_FRAC),
                            ("table_bits", table_bits, LP_MAX_TABLE_BITS)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise SpecError(f"{name} must be an integer, not {value!r}")
    if not 0 <= frac_bits <= LP_MAX_TABLE_FRAC:
        raise SpecError(f"frac_bits must be in 0..{LP_MAX_TABLE_FRAC}, not frac_bits={frac_bits}")
    if not 1 <= table_bits <= LP_MAX_TABLE_BITS:
        raise SpecError(f"table_bits must be in 1..{LP_MAX_TABLE_BITS}, not table_bits={table_bits}")
    return tuple(_round_exp2(j, int(frac_bits), int(table_bits)) for j in range(1 << frac_bits))


# -------------------------------------------------------------------------------- FP8

#: An E4M3 code, LSB first: 3 mantissa bits, 4 exponent bits (bias 7), the sign.
FP8_E4M3 = data.StructLayout({"mant": unsigned(3), "exp": unsigned(4), "sign": unsigned(1)})
FP8_EXP_BIAS = 7
#: A code's value is ``mant * 2^(E' - FP8_EXP_OFFSET)``: the bias plus 3 mantissa bits.
FP8_EXP_OFFSET = FP8_EXP_BIAS + 3
FP8_MAX = 448.0
FP8_NAN = 0x7F


def fp8_fields(codes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sign, mant, exp, nan)`` of E4M3 codes (int64 arrays): ``mant = (E != 0) * 8 + M``
    and ``exp = max(E, 1)``, so the value is ``(-1)^sign * mant * 2^(exp - 10)``."""
    c = np.asarray(codes).astype(np.int64)
    e, m = (c >> 3) & 15, c & 7
    return c >> 7, np.where(e != 0, 8 + m, m), np.maximum(e, 1), (c & 0x7F) == FP8_NAN


# ----------------------------------------------------------------------------- series

def parse_series(series) -> tuple[tuple[int, int], ...]:
    """``"2:4+2:8"`` or ``[(2, 4), (2, 8)]`` -> ``((2, 4), (2, 8))``, validated.

    Raises
    ------
    SpecError
        For an empty series, a term that is not ``n:m``, or a term with ``n > m``,
        ``n < 1`` or ``m < 1``; the message names the term.
    """
    if isinstance(series, str):
        text = series.strip()
        if not text:
            raise SpecError("empty series: give terms such as '2:4' or '2:4+1:4'")
        terms = []
        for part in text.split("+"):
            pieces = part.strip().split(":")
            try:
                n, m = (int(p) for p in pieces)
            except ValueError:
                raise SpecError(f"series term {part.strip()!r} in {series!r} is not of the form n:m") from None
            terms.append((n, m))
    else:
        try:
            terms = [(int(n), int(m)) for n, m in series]
        except (TypeError, ValueError):
            raise SpecError(f"series {series!r} is not a list of (n, m) pairs") from None
        if not terms:
            raise SpecError("empty series: give terms such as [(2, 4)]")
    for n, m in terms:
        if m < 1 or not 1 <= n <= m:
            raise SpecError(f"series term {n}:{m} is invalid: need 1 <= n <= m")
    return tuple(terms)


def format_series(series) -> str:
    """The canonical text of a series: ``"2:4+1:4"`` (no spaces)."""
    return "+".join(f"{n}:{m}" for n, m in parse_series(series))


# ----------------------------------------------------------------------------- POST

def requantize(acc, bias, mult, shift, relu: bool) -> np.ndarray:
    """The accelerator's POST rule (docs/isa.md), elementwise on broadcastable integer arrays:
    ``saturate8(relu?(shift_round_half_up(wrap32(acc + bias) * mult, shift)))``, exact in
    int64 (``|wrap32(.) * mult| < 2^47``; the rounding term is at most ``2^62``)."""
    s = wrap(np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64), 32)
    prod = s * np.asarray(mult, dtype=np.int64)
    sh = np.asarray(shift, dtype=np.int64)
    y = (prod + np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)) >> sh
    if relu:
        y = np.maximum(y, 0)
    return saturate(y, 8)
