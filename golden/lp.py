"""Logarithmic posits LP<n, es, rs, sf>: the format, its rounding, and the exact
fixed-point arithmetic of the LP processing element (``hw/lp_pe.py``).

The format
----------
An n-bit word ``c`` (an unsigned integer in ``[0, 2**n)``):

* ``c == 0`` is zero; ``c == 2**(n-1)`` (1 followed by zeros) is NaR (not a real).
* Otherwise the sign is the top bit; a negative word is the two's complement of the
  word of its magnitude, so ``decode((2**n - c) % 2**n) == -decode(c)``.
* The n-1 bits below the sign of the magnitude word (the *body*) hold, from the top:
  the regime, a run of ``m`` identical bits ended by the opposite bit (the terminator).
  The run is capped at ``rs`` bits: a run of ``rs`` bits has no terminator. ``k = m-1``
  for a run of ones, ``k = -m`` for a run of zeros.
* Then ``es`` exponent bits ``e`` (bits cut off by the end of the word are 0), then the
  fraction bits: what is left, ``fw`` bits read as the binary fraction ``f = 0.b1b2...``
  of a **log2** value.
* value = (-1)^s * 2^(k * 2^es + e + f - sf).

So 1 + f of a standard posit becomes 2^f. With ``rs = n - 1`` and ``sf = 0`` the
sign/regime/exponent/fraction fields are exactly those of a standard posit<n, es>
(``tests/test_golden_lp.py`` checks this against ``softposit``).

The fixed-point log of a non-zero code is ``T = (k * 2^es + e) * 2^F + frac``: an
integer with ``F = max(n - 1 - lmin - es, 0)`` fraction bits, where ``lmin`` is the
shortest regime (1 bit when ``rs == 1``, else 2: one run bit and its terminator) so
``F`` is the widest fraction any code has; each code's ``fw`` fraction bits are
left-aligned into those ``F`` bits (``frac = f * 2^F``). Positive codes are strictly
increasing in value (and in ``T``), and the value table is symmetric.

Rounding (``LPFormat.encode``), every open choice
-------------------------------------------------
* Non-zero finite ``x`` rounds to the code whose value is nearest **in the log
  domain**: ``log2|x| + sf`` (computed in float64) against the codes' ``T / 2^F``.
  The decision points are the midpoints of adjacent codes' logs.
* Ties (exactly on a midpoint, which happens where adjacent codes are more than one
  fraction step apart, e.g. ``x = 2^5`` between ``2^4`` and ``2^6``) go to the **even
  code** (lowest bit 0), as posits do.
* Saturation: ``|x|`` above maxpos becomes ±maxpos; a non-zero finite value never
  becomes NaR.
* Underflow: between 0 and minpos the log distance to zero is infinite, so this gap is
  rounded in the **linear** domain: ``|x| < minpos / 2`` becomes 0, ``|x| > minpos / 2``
  becomes ±minpos, and ``|x| == minpos / 2`` becomes 0 (the even code). This departs
  from the posit standard (which never rounds to zero) because zero weights and
  activations must stay representable for DNNs.
* ``+0.0`` and ``-0.0`` encode as 0. NaN, +inf and -inf encode as NaR (the posit
  mapping), or raise :class:`GoldenError` with ``nonfinite="error"``.
* ``decode`` returns float64; NaR decodes to NaN. Codes must be integers in
  ``[0, 2**n)``: anything wider raises :class:`GoldenError`.

The PE's fixed-point arithmetic (:func:`fixed_products`, :func:`fixed_dot`)
----------------------------------------------------------------------------
Both operands are LP codes of the same ``(n, es, rs)``; the PE takes one runtime
scale ``sf = sf_w + sf_a`` (the sum of the two layers' scales). Per product:

1. ``P = T_w + T_a - sf * 2^F`` (exact integer add; ``F`` fraction bits).
2. ``I = P >> F`` (floor), ``j = P mod 2^F``.
3. ``mant = exp2_table(F, table_bits)[j]``: ``round(2^(j / 2^F) * 2^table_bits)``,
   rounded to nearest (no ties are possible except j = 0, which is exact), a
   ``table_bits + 1``-bit integer in ``[2^tb, 2^(tb+1)]``.
4. ``sh = I + acc_frac - table_bits``; ``mag = floor(mant * 2^sh) mod 2^prod_width``:
   a left shift for ``sh >= 0``, a right shift that truncates (towards zero: it is a
   magnitude) for ``sh < 0``, keeping the low ``prod_width`` bits (default
   ``acc_width``). A product window narrower than the accumulator is a hardware
   saving; the layer's ``sf`` must then keep its products below ``2^prod_width``
   (larger ones wrap, they are not saturated).
5. ``product = -mag`` if the signs differ, else ``mag``; 0 when either code is zero;
   0 **and the NaR flag set** when either code is NaR.
6. The accumulator adds products in ``acc_width``-bit two's complement (wraps on
   overflow); its value is ``acc / 2^acc_frac``.

The lanes of the PE are summed in the same wrap-around arithmetic, so
:func:`fixed_dot` is simply the wrapped sum of a dot product's products.
"""

from __future__ import annotations

import functools

import numpy as np

from spec import SpecError
from spec.numerics import lp_exp2_table, lp_frac_bits, wrap

from . import GoldenError
from .arrays import real_array

__all__ = ["LPFormat", "exp2_table", "fixed_products", "fixed_dot",
           "MIN_N", "MAX_N", "MAX_ES", "MAX_SF"]

MIN_N, MAX_N, MAX_ES = 3, 16, 3
#: Bound on |sf| (the scale is a small signed integer in hardware).
MAX_SF = 64


def _check_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise GoldenError(f"{name} must be an integer, not {value!r}")
    return int(value)


@functools.lru_cache(maxsize=None)
def _field_table(n: int, es: int, rs: int):
    """Per code: (sign, zero, nar, k, e, frac, fw) as int64 arrays of length 2**n."""
    nb = n - 1
    size = 1 << n
    F = lp_frac_bits(n, es, rs)
    sign = np.zeros(size, np.int64)
    zero = np.zeros(size, bool)
    nar = np.zeros(size, bool)
    k = np.zeros(size, np.int64)
    e = np.zeros(size, np.int64)
    frac = np.zeros(size, np.int64)
    fw = np.zeros(size, np.int64)
    body_mask = (1 << nb) - 1
    for c in range(size):
        s = c >> nb
        sign[c] = s
        if c == 0:
            zero[c] = True
            continue
        if c == 1 << nb:
            nar[c] = True
            continue
        body = ((-c) % size if s else c) & body_mask
        r0 = (body >> (nb - 1)) & 1
        run = 0
        while run < rs and ((body >> (nb - 1 - run)) & 1) == r0:
            run += 1
        length = run + (1 if run < rs else 0)
        k[c] = run - 1 if r0 else -run
        rest = (body << length) & body_mask               # the bits after the regime, left-aligned
        e[c] = (rest << es) >> nb if es else 0              # the top es bits, zeros past the end
        frac[c] = (rest >> (nb - es - F)) & ((1 << F) - 1) if F else 0
        fw[c] = max(nb - length - es, 0)
    return sign, zero, nar, k, e, frac, fw


class LPFormat:
    """LP<n, es, rs, sf>: a logarithmic posit (see the module docstring).

    Parameters
    ----------
    n : int
        Word width, ``3 <= n <= 16``.
    es : int
        Exponent bits, ``0 <= es <= 3``.
    rs : int
        Regime cap, ``1 <= rs <= n - 1`` (``n - 1`` is the standard posit's regime).
    sf : int
        Scale factor, ``|sf| <= 64``: values are divided by ``2^sf``.

    Raises
    ------
    GoldenError
        If a parameter is out of range (the message names it).
    """

    def __init__(self, n: int, es: int, rs: int | None = None, sf: int = 0):
        n = _check_int("n", n)
        es = _check_int("es", es)
        rs = n - 1 if rs is None else _check_int("rs", rs)
        sf = _check_int("sf", sf)
        if not MIN_N <= n <= MAX_N:
            raise GoldenError(f"n must be in {MIN_N}..{MAX_N}, not n={n}")
        if not 0 <= es <= MAX_ES:
            raise GoldenError(f"es must be in 0..{MAX_ES}, not es={es}")
        if not 1 <= rs <= n - 1:
            raise GoldenError(f"rs must be in 1..n-1={n - 1}, not rs={rs}")
        if abs(sf) > MAX_SF:
            raise GoldenError(f"sf must be in -{MAX_SF}..{MAX_SF}, not sf={sf}")
        self.n, self.es, self.rs, self.sf = n, es, rs, sf

    # --- identity -------------------------------------------------------------------
    def __repr__(self):
        return f"LPFormat(n={self.n}, es={self.es}, rs={self.rs}, sf={self.sf})"

    def __eq__(self, other):
        return isinstance(other, LPFormat) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.n, self.es, self.rs, self.sf)

    def with_sf(self, sf: int) -> "LPFormat":
        return LPFormat(self.n, self.es, self.rs, sf)

    # --- fields ---------------------------------------------------------------------
    @property
    def frac_bits(self) -> int:
        """F, the fraction bits of the fixed-point log (see the module docstring)."""
        return lp_frac_bits(self.n, self.es, self.rs)

    @property
    def nar_code(self) -> int:
        return 1 << (self.n - 1)

    @property
    def maxpos_code(self) -> int:
        return (1 << (self.n - 1)) - 1

    @property
    def minpos_code(self) -> int:
        return 1

    def check_codes(self, codes) -> np.ndarray:
        """``codes`` as an int64 array; :class:`GoldenError` unless all are in ``[0, 2**n)``."""
        a = np.asarray(codes)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise GoldenError(f"LP codes must be integers, not {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= 1 << self.n):
            bad = int(a.min()) if a.min() < 0 else int(a.max())
            raise GoldenError(f"code {bad} does not fit in n={self.n} bits (codes are 0..{(1 << self.n) - 1})")
        return a

    def fields(self, codes) -> dict[str, np.ndarray]:
        """Decoded fields per code: ``sign, zero, nar, k, e, frac`` (F-bit aligned) and
        ``fw`` (the code's own fraction width)."""
        c = self.check_codes(codes)
        names = ("sign", "zero", "nar", "k", "e", "frac", "fw")
        return {name: t[c] for name, t in zip(names, _field_table(self.n, self.es, self.rs))}

    def log_fixed(self, codes) -> np.ndarray:
        """``T = (k * 2^es + e) * 2^F + frac`` per code (0 for zero and NaR); excludes sf."""
        f = self.fields(codes)
        return ((f["k"] << self.es) + f["e"] << self.frac_bits) + f["frac"]

    @functools.cached_property
    def _positive_logs(self) -> np.ndarray:
        """log2 |value| * 1 (without sf) of codes 1 .. 2**(n-1) - 1, strictly increasing."""
        logs = self.log_fixed(np.arange(1, 1 << (self.n - 1))) / float(1 << self.frac_bits)
        assert np.all(np.diff(logs) > 0), "LP codes must be monotonic"
        return logs

    def table(self) -> np.ndarray:
        """The full value table: ``table()[c]`` is the value of code ``c`` (NaN for NaR)."""
        return self.decode(np.arange(1 << self.n))

    @property
    def maxpos(self) -> float:
        return float(2.0 ** (self._positive_logs[-1] - self.sf))

    @property
    def minpos(self) -> float:
        return float(2.0 ** (self._positive_logs[0] - self.sf))

    # --- conversion -----------------------------------------------------------------
    def decode(self, codes) -> np.ndarray:
        """Values of ``codes`` (float64; NaR -> NaN, zero -> 0.0)."""
        f = self.fields(codes)
        logs = self.log_fixed(codes) / float(1 << self.frac_bits) - self.sf
        mag = np.exp2(logs)
        value = np.where(f["sign"] == 1, -mag, mag)
        value = np.where(f["zero"], 0.0, value)
        return np.where(f["nar"], np.nan, value)

    def encode(self, x, nonfinite: str = "nar") -> np.ndarray:
        """Codes (int64, in ``[0, 2**n)``) of ``x``, rounded as the module docstring says.

        ``nonfinite``: ``"nar"`` maps NaN and ±inf to NaR; ``"error"`` raises
        :class:`GoldenError` instead. Anything but real numbers (a string, ``None``,
        complex values) raises :class:`GoldenError`.
        """
        if nonfinite not in ("nar", "error"):
            raise GoldenError(f"nonfinite must be 'nar' or 'error', not {nonfinite!r}")
        a = real_array(x, "the values to encode", finite=False).astype(np.float64)
        finite = np.isfinite(a)
        if nonfinite == "error" and not finite.all():
            bad = a[~finite].ravel()[0]
            raise GoldenError(f"cannot encode non-finite value {float(bad)!r} (nonfinite='error')")
        mag = np.where(finite, np.abs(a), 1.0)
        logs = self._positive_logs
        mids = (logs[1:] + logs[:-1]) / 2
        with np.errstate(divide="ignore"):
            t = np.log2(np.where(mag > 0, mag, 1.0)) + self.sf
        j = np.searchsorted(mids, t, side="left")
        tie = (j < len(mids)) & (mids[np.minimum(j, len(mids) - 1)] == t)
        code = j + 1
        code = np.where(tie & (code % 2 == 1), code + 1, code)
        # The gap between 0 and minpos rounds in the linear domain; its tie goes to 0.
        code = np.where(mag <= self.minpos / 2, 0, code)
        neg = np.signbit(a) & (code != 0)
        code = np.where(neg, (1 << self.n) - code, code)
        code = np.where(finite, code, self.nar_code)
        return code.astype(np.int64)

    @functools.cached_property
    def _values(self) -> np.ndarray:
        return self.decode(np.arange(1 << self.n))

    def quantize(self, x, nonfinite: str = "nar") -> np.ndarray:
        """``decode(encode(x))``: the LP value nearest to ``x`` (float64)."""
        return self._values[self.encode(x, nonfinite)]


def exp2_table(frac_bits: int, table_bits: int) -> np.ndarray:
    """The PE's 2^frac table (:func:`spec.numerics.lp_exp2_table`) as an int64 array:
    entry j is ``round(2^(j / 2^frac_bits) * 2^table_bits)`` (to nearest; exact)."""
    try:
        return np.array(lp_exp2_table(_check_int("frac_bits", frac_bits),
                                      _check_int("table_bits", table_bits)), dtype=np.int64)
    except SpecError as exc:
        raise GoldenError(str(exc)) from None


def _check_pair(fmt_w: LPFormat, fmt_a: LPFormat, table_bits, acc_width, acc_frac, prod_width):
    if (fmt_w.n, fmt_w.es, fmt_w.rs) != (fmt_a.n, fmt_a.es, fmt_a.rs):
        raise GoldenError(f"the PE multiplies codes of one (n, es, rs); got {fmt_w} and {fmt_a}")
    tb = _check_int("table_bits", table_bits)
    aw = _check_int("acc_width", acc_width)
    af = _check_int("acc_frac", acc_frac)
    pw = aw if prod_width is None else _check_int("prod_width", prod_width)
    if not 2 <= aw <= 64:
        raise GoldenError(f"acc_width must be in 2..64, not acc_width={aw}")
    if not 0 <= af < aw:
        raise GoldenError(f"acc_frac must be in 0..acc_width-1, not acc_frac={af}")
    if not 1 <= pw <= aw:
        raise GoldenError(f"prod_width must be in 1..acc_width={aw}, not prod_width={pw}")
    return tb, aw, af, pw


def fixed_products(fmt_w: LPFormat, w, fmt_a: LPFormat, a, *, table_bits: int,
                   acc_width: int, acc_frac: int,
                   prod_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The PE's products of LP codes ``w`` and ``a`` (broadcast), bit-exact.

    Returns ``(products, nar)``: int64 products in ``acc_width``-bit two's complement
    (units of ``2^-acc_frac``) and a boolean array, True where either code is NaR (the
    product is then 0). The scale is ``fmt_w.sf + fmt_a.sf``. See the module docstring.
    """
    tb, aw, af, pw = _check_pair(fmt_w, fmt_a, table_bits, acc_width, acc_frac, prod_width)
    w = fmt_w.check_codes(w)
    a = fmt_a.check_codes(a)
    w, a = np.broadcast_arrays(w, a)
    fw, fa = fmt_w.fields(w), fmt_a.fields(a)
    F = fmt_w.frac_bits
    sf = fmt_w.sf + fmt_a.sf
    P = fmt_w.log_fixed(w) + fmt_a.log_fixed(a) - (sf << F)
    I = P >> F
    j = P & ((1 << F) - 1)
    mant = exp2_table(F, tb)[j].astype(np.uint64)
    sh = I + af - tb
    left = np.clip(sh, 0, 63).astype(np.uint64)
    right = np.clip(-sh, 0, 63).astype(np.uint64)
    mag = np.where(sh >= 0, mant << left, mant >> right)
    mag = np.where(sh >= 64, np.uint64(0), mag)              # every low bit shifted out
    if pw < 64:
        mag = mag & np.uint64((1 << pw) - 1)
    mag = mag.astype(np.int64)                                # bit 63 only when pw = 64: wraps alike
    prod = np.where((fw["sign"] ^ fa["sign"]) == 1, -mag, mag)
    nar = fw["nar"] | fa["nar"]
    prod = np.where(fw["zero"] | fa["zero"] | nar, 0, prod)
    return wrap(prod, aw), nar


def fixed_dot(fmt_w: LPFormat, w, fmt_a: LPFormat, a, *, table_bits: int, acc_width: int,
              acc_frac: int, prod_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dot products along the last axis, exactly as the PE accumulates them.

    Returns ``(acc, nar)``: the wrapped ``acc_width``-bit sums (int64, units of
    ``2^-acc_frac``) and whether any product of the dot product had a NaR operand.
    """
    prods, nar = fixed_products(fmt_w, w, fmt_a, a, table_bits=table_bits, acc_width=acc_width,
                                acc_frac=acc_frac, prod_width=prod_width)
    if prods.ndim == 0:
        raise GoldenError("fixed_dot needs arrays with a reduction (last) axis")
    total = prods.astype(np.uint64).sum(axis=-1, dtype=np.uint64)  # wraps mod 2^64
    return wrap(total, acc_width), nar.any(axis=-1)
