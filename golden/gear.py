"""GEAR: KV-cache compression as quantized dense part + low-rank residual + sparse outliers.

A K or V cache ``x[batch, heads, tokens, head_dim]`` is approximated per (batch, head)
*tile* (``tokens x head_dim``) as ``X ~= D + L`` with the sparse outliers ``S`` put back
exactly where they were:

S, sparse outliers
    Per tile, the ``k = floor(outlier_ratio / 2 * tokens * head_dim)`` largest and the
    ``k`` smallest entries (signed values; ties broken by the lower flat index, so the
    choice is deterministic). Chosen per (batch, head) tile by default rather than per
    quantization group: at s = 2 % a 32-channel V group would round to zero outliers
    per side, while a tile of 128 x 32 keeps 40 + 40. ``outlier_scope="row"`` counts them
    per row of the grouping instead (per channel for K, per token for V, ``floor(s/2 *
    row length)`` each side). Outlier values are stored as fp16 (the cache's own
    precision) and reproduce exactly what they replace when the input is fp16. An input
    beyond fp16's range (|x| > 65504) is refused with :class:`GoldenError`, not clipped.
D, dense
    Asymmetric min/max quantization to ``bits`` bits, over groups of ``group_size``
    entries: ``axis="channel"`` (K-style) groups ``group_size`` consecutive tokens of one
    channel, ``axis="token"`` (V-style) groups ``group_size`` consecutive channels of one
    token. Min and max skip the group's outliers (a group of outliers only gets min =
    max = 0). ``scale = (max - min) / (2**bits - 1)`` and ``zero = min`` are rounded to
    fp16 first; then ``code = clip(floor((x - zero) / scale + 1/2), 0, 2**bits - 1)``
    (round half up; code 0 when scale is 0) and ``D = code * scale + zero``.
    ``group_size`` must divide the grouped axis: partial groups are not padded, they
    raise :class:`GoldenError` (pad the tokens, or pick a divisor).
L, low rank
    A rank-``rank`` approximation of the residual ``R = X - D`` (0 at the outlier
    positions) per tile: a seeded Gaussian start ``R @ Omega``, then ``power_iters``
    rounds of ``Q = qr(R @ qr(R.T @ Q))`` (QR re-orthogonalisation at every half step);
    ``A = Q`` (tokens x rank) and ``B = Q.T @ R`` (rank x head_dim) are stored as fp16 and
    ``L = A @ B``.

Reconstruction: ``D + L`` everywhere, then the outliers overwrite their positions.
KIVI is ``outlier_ratio=0, rank=0``; GEAR-L is ``outlier_ratio=0``.

Bits per element (:meth:`GearCompressed.bits_per_element`) count everything at the
precisions above: ``bits`` per code (dense: outlier positions keep a code too), 16 + 16
per group (fp16 scale and zero), 16 + ``ceil(log2(tokens * head_dim))`` per outlier (fp16
value, flat position inside its tile) and ``16 * rank * (tokens + head_dim)`` per tile
(fp16 factors).

Fixed-point path (:func:`to_fixed`): what the hardware reconstruction unit
(``hw/gear_unit.py``) computes, bit for bit, with the widths of a
:class:`spec.gear_unit.GearFixedFormat`. Values are integers in units of ``2**-F`` of the
*output* LSB
(``F = frac_bits``); the output is ``out_width``-bit two's complement (int8 by default,
the tensor core's activation format) with one float scale
``s_out = max(|x_hat|, |D|) / (2**(out_width - 1) - 1)`` per (batch, head, channel), the
peak taken over the tile's tokens so that the outliers and the zeros fit
(``to_fixed(..., out_group=g)`` shares it across groups of ``g`` channels). A
per-channel output scale costs the consumer nothing: it folds into the query for
``Q @ K.T`` and onto the output columns of ``P @ V``.

* ``S = round(scale / s_out * 2**F)``, unsigned ``scale_width`` bits (saturated);
* ``Z = round(zero / s_out * 2**F)``, signed ``zero_width`` bits (saturated);
* low-rank factors: per rank component ``k``, ``a[t, k] = round(A[t, k] * c_k)`` and
  ``b[k, d] = round(B[k, d] * 2**Fl / (s_out[d] * c_k))`` (``Fl = factor_frac``), signed
  ``factor_width`` bits (saturated), with ``c_k`` chosen so that both use the same
  fraction of their range; ``sum_k a * b`` is then in ``2**-Fl`` output LSBs, and a
  constant shift by ``F - Fl`` (wiring, in hardware) aligns it with S and Z. When the
  balanced factors do not fit, A takes its full range and B saturates;
* outliers: ``round(x / s_out)``, the output format itself.

Rounding is half up (``floor(v + 1/2)``) everywhere; :attr:`GearFixed.saturated` counts
the values each conversion clipped. Per element the hardware forms
``acc = code * S + Z + (sum_k a[t, k] * b[k, d]) << (F - Fl)`` exactly (its adders are
wide enough never to wrap), rounds half up with an arithmetic shift,
``y = (acc + 2**(F-1)) >> F``, saturates ``y`` to ``out_width`` bits, and outputs the
outlier's value instead where there is one. :meth:`GearFixed.reconstruct_int` is that
integer output; :meth:`GearFixed.reconstruct` is ``s_out`` times it. Its error against
the float reconstruction (``relative_error(comp.reconstruct(), fixed.reconstruct())``)
is about 0.006 to 0.02 of the input's norm on MiniLM K/V (``tessera bench gear``
prints it), well below the method's own error.

numpy arrays and torch tensors are accepted; everything is computed in float64 numpy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from spec.gear_unit import GearFixedFormat
from spec.numerics import round_half_up, saturate, shift_round_half_up

from . import GoldenError
from .arrays import real_array, to_numpy

__all__ = ["SUPPORTED_BITS", "AXES", "OUTLIER_SCOPES", "GearCompressed", "compress", "kivi",
           "relative_error", "GearFixed", "to_fixed", "random_fixed", "GearCache",
           "cycles"]

#: Code widths the golden model accepts (the hardware unit runs 2 and 4 at run time).
SUPPORTED_BITS = (2, 3, 4, 8)
#: ``"channel"``: K-style groups along tokens; ``"token"``: V-style groups along channels.
AXES = ("channel", "token")
#: Where outliers are counted: per (batch, head) tile, or per row of the grouping.
OUTLIER_SCOPES = ("tile", "row")
#: Bits of every stored float (scales, zeros, outlier values, low-rank factors).
FLOAT_BITS = 16
#: The largest finite fp16 value: inputs beyond it are refused, not clipped.
FP16_MAX = 65504.0


def _fp16(a: np.ndarray) -> np.ndarray:
    """Round to the nearest fp16 and return as float64 (overflow saturates to +-65504)."""
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float64)


def relative_error(x, x_hat) -> float:
    """Relative Frobenius error ``||x_hat - x|| / ||x||`` (0 for an all-zero ``x`` that
    is reproduced exactly)."""
    a, b = to_numpy(x).astype(np.float64), to_numpy(x_hat).astype(np.float64)
    norm = np.linalg.norm(a)
    diff = np.linalg.norm(b - a)
    if norm == 0:
        return 0.0 if diff == 0 else math.inf
    return float(diff / norm)


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise GoldenError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise GoldenError(f"{name} must be {bound}, not {name}={value!r}")


def _check_tensor(x) -> np.ndarray:
    a = real_array(x, "x")
    if a.ndim != 4:
        raise GoldenError(f"expected x of shape (batch, heads, tokens, head_dim), got shape {a.shape}")
    if min(a.shape) < 1:
        raise GoldenError(f"x must not be empty, got shape {a.shape}")
    a = a.astype(np.float64)
    big = np.abs(a) > FP16_MAX
    if big.any():
        where = tuple(int(i) for i in np.argwhere(big)[0])
        raise GoldenError(f"x holds {float(a[where])!r} at {where}, beyond fp16's range +-{FP16_MAX:g}: a "
                          "KV cache is fp16 and GEAR stores its outliers, scales and factors as fp16; "
                          "scale the cache into range first")
    return a


def _check_args(shape, bits, group_size, outlier_ratio, rank, power_iters, axis):
    _, _, tokens, head_dim = shape
    if bits not in SUPPORTED_BITS or isinstance(bits, bool):
        raise GoldenError(f"bits must be one of {SUPPORTED_BITS}, not bits={bits!r}")
    if axis not in AXES:
        raise GoldenError(f"axis must be 'channel' (K-style) or 'token' (V-style), not axis={axis!r}")
    _check_int("group_size", group_size, 1)
    along, name = (tokens, "tokens") if axis == "channel" else (head_dim, "head_dim")
    if along % group_size:
        raise GoldenError(f"group_size={group_size} does not divide the grouped axis "
                          f"({name}={along}, axis={axis!r}); partial groups are not supported: "
                          f"pad {name} to a multiple of {group_size} or choose a divisor")
    try:
        ratio = float(outlier_ratio)
    except (TypeError, ValueError):
        raise GoldenError(f"outlier_ratio must be a number, not {outlier_ratio!r}") from None
    if not 0 <= ratio < 0.5:
        raise GoldenError(f"outlier_ratio must be in [0, 0.5), not outlier_ratio={outlier_ratio!r}")
    _check_int("rank", rank, 0)
    if rank > min(tokens, head_dim):
        raise GoldenError(f"rank must be <= min(tokens, head_dim) = {min(tokens, head_dim)}, "
                          f"not rank={rank!r}")
    _check_int("power_iters", power_iters, 0)
    return ratio


@dataclass(frozen=True, eq=False)
class GearCompressed:
    """A compressed cache (all arrays are numpy; floats hold fp16-representable values).

    Members
    -------
    shape : (batch, heads, tokens, head_dim)
    bits, group_size, axis, rank, outlier_ratio : the compression settings
    codes : uint8 [batch, heads, tokens, head_dim]
        Quantization codes, ``0 .. 2**bits - 1``.
    scale, zero : float64, one per group
        ``[batch, heads, tokens // group_size, head_dim]`` for ``axis="channel"``,
        ``[batch, heads, tokens, head_dim // group_size]`` for ``axis="token"``.
    outlier_pos : int64 [batch, heads, n_outliers]
        Flat positions ``t * head_dim + d`` inside the tile, ascending.
    outlier_val : float64 [batch, heads, n_outliers] (fp16 values)
    factor_a : float64 [batch, heads, tokens, rank] (fp16 values)
    factor_b : float64 [batch, heads, rank, head_dim] (fp16 values)
    """

    shape: tuple
    bits: int
    group_size: int
    axis: str
    rank: int
    outlier_ratio: float
    codes: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    outlier_pos: np.ndarray
    outlier_val: np.ndarray
    factor_a: np.ndarray
    factor_b: np.ndarray

    @property
    def n_outliers(self) -> int:
        """Outliers per (batch, head) tile (both signs)."""
        return self.outlier_pos.shape[-1]

    def _expand(self, per_group: np.ndarray) -> np.ndarray:
        """A per-group array broadcast to one value per element."""
        if self.axis == "channel":
            return np.repeat(per_group, self.group_size, axis=2)
        return np.repeat(per_group, self.group_size, axis=3)

    def dense(self) -> np.ndarray:
        """``D``: the dequantized codes, ``code * scale + zero``."""
        return self.codes * self._expand(self.scale) + self._expand(self.zero)

    def low_rank(self) -> np.ndarray:
        """``L = A @ B`` per tile."""
        return self.factor_a @ self.factor_b

    def outlier_mask(self) -> np.ndarray:
        b, h, t, d = self.shape
        mask = np.zeros((b, h, t * d), dtype=bool)
        np.put_along_axis(mask, self.outlier_pos, True, axis=-1)
        return mask.reshape(self.shape)

    def reconstruct(self) -> np.ndarray:
        """``D + L``, with every outlier written back at its position (float64)."""
        b, h, t, d = self.shape
        x = (self.dense() + self.low_rank()).reshape(b, h, t * d)
        np.put_along_axis(x, self.outlier_pos, self.outlier_val, axis=-1)
        return x.reshape(self.shape)

    def bit_counts(self) -> dict[str, int]:
        """Stored bits by kind: codes, scales_zeros, outliers, low_rank."""
        b, h, t, d = self.shape
        position_bits = max(1, math.ceil(math.log2(t * d)))
        return {
            "codes": self.codes.size * self.bits,
            "scales_zeros": 2 * FLOAT_BITS * self.scale.size,
            "outliers": b * h * self.n_outliers * (FLOAT_BITS + position_bits),
            "low_rank": b * h * self.rank * (t + d) * FLOAT_BITS,
        }

    def bits_per_element(self) -> float:
        """All stored bits (see :meth:`bit_counts`) per cache element."""
        return sum(self.bit_counts().values()) / self.codes.size

    def compression_ratio(self) -> float:
        """fp16 bits per element over :meth:`bits_per_element`."""
        return FLOAT_BITS / self.bits_per_element()


def _quantize(x, mask, bits, group_size, axis):
    """Group-wise asymmetric min/max quantization skipping masked entries."""
    b, h, t, d = x.shape
    if axis == "channel":
        grouped = x.reshape(b, h, t // group_size, group_size, d)
        gmask = mask.reshape(grouped.shape)
        reduce = 3
    else:
        grouped = x.reshape(b, h, t, d // group_size, group_size)
        gmask = mask.reshape(grouped.shape)
        reduce = 4
    lo = np.where(gmask, np.inf, grouped).min(axis=reduce)
    hi = np.where(gmask, -np.inf, grouped).max(axis=reduce)
    empty = ~np.isfinite(lo)
    lo = np.where(empty, 0.0, lo)
    hi = np.where(empty, 0.0, hi)
    levels = (1 << bits) - 1
    scale = _fp16((hi - lo) / levels)
    zero = _fp16(lo)
    s = np.expand_dims(scale, reduce)
    z = np.expand_dims(zero, reduce)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.floor((grouped - z) / np.where(s > 0, s, 1.0) + 0.5)
    codes = np.where(s > 0, np.clip(q, 0, levels), 0).astype(np.uint8).reshape(x.shape)
    return codes, scale, zero


def _low_rank(r, rank, power_iters, rng):
    """Rank-``rank`` factors (A, B) of every tile of ``r`` by seeded power iteration."""
    b, h, t, d = r.shape
    if rank == 0:
        return np.zeros((b, h, t, 0)), np.zeros((b, h, 0, d))
    omega = rng.standard_normal((b, h, d, rank))
    q, _ = np.linalg.qr(r @ omega)
    rt = np.swapaxes(r, -1, -2)
    for _ in range(power_iters):
        w, _ = np.linalg.qr(rt @ q)
        q, _ = np.linalg.qr(r @ w)
    return _fp16(q), _fp16(np.swapaxes(q, -1, -2) @ r)


def compress(x, bits: int, group_size: int, outlier_ratio: float, rank: int,
             power_iters: int = 3, axis: str = "channel", seed: int = 0,
             outlier_scope: str = "tile") -> GearCompressed:
    """Compress a K or V cache ``x[batch, heads, tokens, head_dim]`` with GEAR.

    See the module docstring for the exact method. ``outlier_ratio=0`` gives GEAR-L,
    ``outlier_ratio=0, rank=0`` gives KIVI. ``seed`` seeds the power iteration's start.

    Raises
    ------
    GoldenError
        ``bits`` not in :data:`SUPPORTED_BITS`; ``group_size`` not dividing the grouped
        axis; ``rank`` > min(tokens, head_dim); ``outlier_ratio`` outside [0, 0.5);
        a bad ``axis``; a non-finite or non-4-D ``x``, or one with a value beyond fp16's
        range (+-65504), which would otherwise be clipped.
    """
    a = _check_tensor(x)
    ratio = _check_args(a.shape, bits, group_size, outlier_ratio, rank, power_iters, axis)
    if outlier_scope not in OUTLIER_SCOPES:
        raise GoldenError(f"outlier_scope must be one of {OUTLIER_SCOPES}, not {outlier_scope!r}")
    b, h, t, d = a.shape
    flat = a.reshape(b, h, t * d)

    # Outlier selection along "lines": the whole tile, or each row of the grouping
    # (a channel for axis="channel", a token for axis="token").
    if outlier_scope == "tile":
        lines = flat[:, :, None, :]
    elif axis == "channel":
        lines = np.swapaxes(a, 2, 3)
    else:
        lines = a
    n = lines.shape[-1]
    k = int(math.floor(ratio / 2 * n + 1e-9))
    line_mask = np.zeros(lines.shape, dtype=bool)
    if k:
        order = np.argsort(lines, axis=-1, kind="stable")
        np.put_along_axis(line_mask, order[..., :k], True, axis=-1)
        np.put_along_axis(line_mask, order[..., n - k:], True, axis=-1)
    if outlier_scope == "tile":
        mask = line_mask.reshape(a.shape)
    elif axis == "channel":
        mask = np.swapaxes(line_mask, 2, 3)
    else:
        mask = line_mask
    count = int(mask[0, 0].sum())
    pos = np.nonzero(mask.reshape(b, h, t * d))[2].reshape(b, h, count).astype(np.int64)
    values = _fp16(np.take_along_axis(flat, pos, axis=-1))

    codes, scale, zero = _quantize(a, mask, bits, group_size, axis)
    comp = GearCompressed(a.shape, bits, group_size, axis, rank, ratio, codes, scale, zero,
                          pos.astype(np.int64), values, np.zeros((b, h, t, 0)), np.zeros((b, h, 0, d)))
    residual = np.where(mask, 0.0, a - comp.dense())
    fa, fb = _low_rank(residual, rank, power_iters, np.random.default_rng(seed))
    return dataclasses.replace(comp, factor_a=fa, factor_b=fb)


def kivi(x, bits: int, group_size: int, axis: str = "channel") -> GearCompressed:
    """KIVI: group-wise quantization only (``compress`` with no outliers and rank 0)."""
    return compress(x, bits, group_size, 0.0, 0, axis=axis)


# --------------------------------------------------------------------------------------
# Fixed-point path: the arithmetic of the hardware reconstruction unit.

def _saturate(a: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    clipped = np.clip(a, lo, hi)
    return clipped, int(np.count_nonzero(clipped != a))


@dataclass(frozen=True, eq=False)
class GearFixed:
    """A compressed cache in the hardware unit's integer formats.

    Members
    -------
    source : GearCompressed, or None for synthetic integer tiles (:func:`random_fixed`)
    fmt : the format object (frac_bits, scale_width, zero_width, factor_width, out_width)
    out_scale : float64 [batch, heads, head_dim]: the output LSB of each channel
    codes, scale, zero : int64 [batch, heads, tokens, head_dim]: ``code``, ``S`` and
        ``Z`` of every element
    a : int64 [batch, heads, tokens, rank]; b : int64 [batch, heads, rank, head_dim]
    outlier_pos : int64 [batch, heads, n]; outlier_val : int64 [batch, heads, n]
    saturated : dict of how many values each conversion clipped to its width
    """

    source: GearCompressed
    fmt: object
    out_scale: np.ndarray
    codes: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    a: np.ndarray
    b: np.ndarray
    outlier_pos: np.ndarray
    outlier_val: np.ndarray
    saturated: dict = field(default_factory=dict)

    def accumulate(self) -> np.ndarray:
        """``code * S + Z + sum_k a * b`` per element (exact int64)."""
        shift = self.fmt.frac_bits - self.fmt.factor_frac
        return self.codes * self.scale + self.zero + ((self.a @ self.b) << shift)

    def reconstruct_int(self) -> np.ndarray:
        """The hardware's output integers [batch, heads, tokens, head_dim]."""
        f, w = self.fmt.frac_bits, self.fmt.out_width
        acc = self.accumulate()
        y = saturate(shift_round_half_up(acc, f), w)
        bsz, h, t, d = y.shape
        y = y.reshape(bsz, h, t * d)
        np.put_along_axis(y, self.outlier_pos, self.outlier_val, axis=-1)
        return y.reshape(bsz, h, t, d)

    def reconstruct(self) -> np.ndarray:
        """``out_scale * reconstruct_int()`` (float64)."""
        return self.reconstruct_int() * self.out_scale[:, :, None, :]

    def bit_counts(self, bits: int) -> dict[str, int]:
        """Stored bits by kind in the unit's own formats (``bits``-bit codes).

        Pairs: ``scale_width + zero_width`` bits per group when S and Z are shared by
        the group's elements (K groups with a per-channel output scale, V groups with
        ``out_group`` covering them), else per element. Outliers: ``out_width`` bits plus
        the flat position. Factors: ``factor_width`` bits each. Output scales: fp16 per
        channel and tile.
        """
        bsz, h, t, d = self.codes.shape
        pairs = self.codes.size
        src = self.source
        if src is not None:
            g = src.group_size
            if src.axis == "channel":
                rep = np.repeat(self.scale[:, :, ::g], g, axis=2), np.repeat(self.zero[:, :, ::g], g, axis=2)
            else:
                rep = np.repeat(self.scale[..., ::g], g, axis=3), np.repeat(self.zero[..., ::g], g, axis=3)
            if np.array_equal(rep[0], self.scale) and np.array_equal(rep[1], self.zero):
                pairs = src.scale.size
        position_bits = max(1, math.ceil(math.log2(t * d)))
        fmt = self.fmt
        return {
            "codes": self.codes.size * bits,
            "scales_zeros": pairs * (fmt.scale_width + fmt.zero_width),
            "outliers": self.outlier_pos.size * (fmt.out_width + position_bits),
            "low_rank": (self.a.size + self.b.size) * fmt.factor_width,
            "out_scales": bsz * h * d * FLOAT_BITS,
        }

    def bits_per_element(self, bits: int) -> float:
        """:meth:`bit_counts` per cache element."""
        return sum(self.bit_counts(bits).values()) / self.codes.size

    def outliers_per_row(self) -> np.ndarray:
        """Outliers in each row (token) of each tile: int64 [batch, heads, tokens]."""
        bsz, h, t, d = self.codes.shape
        counts = np.zeros((bsz, h, t), dtype=np.int64)
        rows = self.outlier_pos // d
        for i in range(bsz):
            for j in range(h):
                np.add.at(counts[i, j], rows[i, j], 1)
        return counts


def _check_format(fmt):
    for name in ("frac_bits", "scale_width", "zero_width", "factor_width", "out_width"):
        if not hasattr(fmt, name):
            raise GoldenError(f"the fixed-point format has no {name!r}: {fmt!r}")
    _check_int("frac_bits", fmt.frac_bits, 0, 24)
    _check_int("out_width", fmt.out_width, 2, 32)
    for name in ("scale_width", "zero_width", "factor_width"):
        _check_int(name, getattr(fmt, name), 2, 32)
    if not hasattr(fmt, "factor_frac"):
        raise GoldenError(f"the fixed-point format has no 'factor_frac': {fmt!r}")
    _check_int("factor_frac", fmt.factor_frac, 0, fmt.frac_bits)


def to_fixed(comp: GearCompressed, fmt=GearFixedFormat(), out_group: int = 1) -> GearFixed:
    """Convert ``comp`` to the hardware unit's integer formats (module docstring).

    The output LSB ``s_out`` is chosen per (batch, head) and per group of ``out_group``
    consecutive channels: ``max |x_hat|`` over the tile's rows and those channels,
    divided by ``2**(out_width - 1) - 1``. A per-channel scale (``out_group=1``, the
    default) folds into the consumer for free: into the query for ``Q @ K.T``, onto the
    output columns for ``P @ V``. ``S`` and ``Z`` are therefore per element (they divide
    a group's scale and zero by its channel's ``s_out``).
    """
    if not isinstance(comp, GearCompressed):
        raise GoldenError(f"to_fixed needs a GearCompressed (from compress), not {type(comp).__name__}")
    _check_format(fmt)
    bsz, h, t, d = comp.shape
    _check_int("out_group", out_group, 1)
    if d % out_group:
        raise GoldenError(f"out_group={out_group} does not divide head_dim={d}")
    f, w = fmt.frac_bits, fmt.out_width
    qmax = (1 << (w - 1)) - 1
    # The peak covers the reconstruction (so outliers fit) and the dense part (so every
    # zero fits: a group's minimum has code 0, i.e. D == zero there).
    peak = np.maximum(np.abs(comp.reconstruct()), np.abs(comp.dense())).max(axis=2)
    peak = peak.reshape(bsz, h, d // out_group, out_group).max(axis=-1)
    out_scale = np.repeat(np.where(peak > 0, peak / qmax, 1.0), out_group, axis=-1)   # [b, h, d]
    lane = out_scale[:, :, None, :]
    unit = 1 << f
    saturated = {}

    s = round_half_up(comp._expand(comp.scale) / lane * unit)
    s, saturated["scale"] = _saturate(s, 0, (1 << fmt.scale_width) - 1)
    z = round_half_up(comp._expand(comp.zero) / lane * unit)
    zlim = 1 << (fmt.zero_width - 1)
    z, saturated["zero"] = _saturate(z, -zlim, zlim - 1)

    flim = (1 << (fmt.factor_width - 1)) - 1
    if comp.rank:
        b_units = comp.factor_b * (1 << fmt.factor_frac) / lane        # B in 2**-Fl LSBs
        amax = np.abs(comp.factor_a).max(axis=2)                       # [b, h, r]
        bmax = np.abs(b_units).max(axis=3)                             # [b, h, r]
        with np.errstate(divide="ignore", invalid="ignore"):
            # c_k balances the two ranges: amax * c_k == bmax / c_k.
            c = np.sqrt(bmax / amax)
            c = np.where((amax > 0) & (bmax > 0), c, 1.0)
            # If the product does not fit even when balanced, A uses its full range and
            # B saturates (counted in `saturated`).
            c = np.where(amax * c > flim, flim / np.where(amax > 0, amax, 1.0), c)
        a = round_half_up(comp.factor_a * c[:, :, None, :])
        bq = round_half_up(b_units / c[:, :, :, None])
        a, saturated["factor_a"] = _saturate(a, -flim, flim)
        bq, saturated["factor_b"] = _saturate(bq, -flim, flim)
    else:
        a = np.zeros((bsz, h, t, 0), dtype=np.int64)
        bq = np.zeros((bsz, h, 0, d), dtype=np.int64)

    channel = comp.outlier_pos % d
    ov = round_half_up(comp.outlier_val / np.take_along_axis(out_scale, channel, axis=-1))
    ov, saturated["outliers"] = _saturate(ov, -qmax - 1, qmax)
    return GearFixed(comp, fmt, out_scale, comp.codes.astype(np.int64), s, z, a, bq,
                     comp.outlier_pos.copy(), ov, saturated)


def random_fixed(rng: np.random.Generator, shape, rank: int, fmt=GearFixedFormat(), bits: int = 4,
                 max_outliers: int = 8, extreme: bool = False) -> GearFixed:
    """Random integer tiles in ``fmt`` (no float source), for exercising the hardware.

    ``extreme=False`` draws S, Z and the factors so that most outputs land inside the
    output range (a few saturate); ``extreme=True`` draws every field over its whole
    width (most outputs saturate, and the sums reach their largest magnitudes). Each tile
    gets 0..``max_outliers`` outliers at distinct random positions, half of them crowded
    into one row so that rows with more outliers than a unit has slots occur.
    """
    bsz, h, t, d = shape
    _check_format(fmt)
    f, w = fmt.frac_bits, fmt.out_width
    codes = rng.integers(0, 1 << bits, shape)
    if extreme:
        scale = rng.choice([0, 1, (1 << fmt.scale_width) - 1], shape)
        scale = np.where(rng.random(shape) < 0.5, scale, rng.integers(0, 1 << fmt.scale_width, shape))
        zlim = 1 << (fmt.zero_width - 1)
        zero = rng.choice([-zlim, zlim - 1, 0], shape)
        zero = np.where(rng.random(shape) < 0.5, zero, rng.integers(-zlim, zlim, shape))
        flim = 1 << (fmt.factor_width - 1)
        a = rng.choice([-flim, flim - 1], (bsz, h, t, rank))
        b = rng.choice([-flim, flim - 1], (bsz, h, rank, d))
    else:
        span = 1 << (w - 1 + f)                     # the output range in 2**-f units
        scale = rng.integers(0, max(1, min(2 * span // max(1, (1 << bits) - 1), 1 << fmt.scale_width)), shape)
        zlim = min(span, 1 << (fmt.zero_width - 1))
        zero = rng.integers(-zlim, zlim, shape)
        flim = 1 << (fmt.factor_width - 1)
        a = rng.integers(-flim, flim, (bsz, h, t, rank))
        b = rng.integers(-flim, flim, (bsz, h, rank, d)) // max(1, rank)
    n = int(rng.integers(0, max_outliers + 1)) if max_outliers else 0
    n = min(n, t * d)
    pos = np.zeros((bsz, h, n), dtype=np.int64)
    for i in range(bsz):
        for j in range(h):
            crowded = rng.permutation(d)[: n // 2] + int(rng.integers(0, t)) * d
            rest = rng.permutation(np.setdiff1d(np.arange(t * d), crowded))[: n - len(crowded)]
            pos[i, j] = np.sort(np.concatenate([crowded, rest]))
    qlim = 1 << (w - 1)
    val = rng.integers(-qlim, qlim, (bsz, h, n))
    return GearFixed(None, fmt, np.ones((bsz, h, d)), codes.astype(np.int64), scale.astype(np.int64),
                     zero.astype(np.int64), a.astype(np.int64), b.astype(np.int64), pos, val)


# --------------------------------------------------------------------------------------
# Streaming cache.

class GearCache:
    """A streaming GEAR cache: the newest tokens stay in a full-precision buffer, and
    every time ``buffer`` tokens have accumulated they are compressed as one chunk
    (``compress`` with this cache's settings), as in the paper's streaming buffer.

    After :meth:`append` the buffer holds ``0 .. buffer - 1`` tokens. ``group_size``
    must divide ``buffer`` for K-style caches (``axis="channel"``) and ``head_dim`` for
    V-style ones; ``rank`` must be <= min(buffer, head_dim). Each chunk's power
    iteration is seeded with ``seed + chunk index``.

    Buffered tokens count 16 bits per element (fp16) in :meth:`bits_per_element`.
    """

    def __init__(self, bits: int, group_size: int, outlier_ratio: float, rank: int,
                 buffer: int = 64, axis: str = "channel", power_iters: int = 3, seed: int = 0):
        _check_int("buffer", buffer, 1)
        # Everything but head_dim is known now: check against a chunk with head_dim
        # large enough not to matter; append() checks again with the real head_dim.
        _check_args((1, 1, buffer, buffer * max(group_size, 1)), bits, group_size,
                    outlier_ratio, rank, power_iters, axis)
        self.settings = dict(bits=bits, group_size=group_size, outlier_ratio=outlier_ratio,
                             rank=rank, axis=axis, power_iters=power_iters)
        self.buffer_size = buffer
        self.seed = seed
        self.chunks: list[GearCompressed] = []
        self._buffer: np.ndarray | None = None

    @property
    def buffered(self) -> np.ndarray | None:
        """The full-precision tokens not yet compressed [batch, heads, n, head_dim]."""
        return self._buffer

    @property
    def tokens(self) -> int:
        held = 0 if self._buffer is None else self._buffer.shape[2]
        return held + sum(c.shape[2] for c in self.chunks)

    def append(self, x) -> None:
        """Append tokens ``x[batch, heads, n, head_dim]`` (n >= 1)."""
        a = _check_tensor(x)
        if self._buffer is None:
            s = self.settings
            _check_args((1, 1, self.buffer_size, a.shape[3]), s["bits"], s["group_size"],
                        s["outlier_ratio"], s["rank"], s["power_iters"], s["axis"])
            self._buffer = a
        else:
            if a.shape[:2] != self._buffer.shape[:2] or a.shape[3] != self._buffer.shape[3]:
                raise GoldenError(f"appended tokens have shape {a.shape}; the cache holds "
                                  f"(batch, heads, *, head_dim) = {self._buffer.shape}")
            self._buffer = np.concatenate([self._buffer, a], axis=2)
        n = self.buffer_size
        while self._buffer.shape[2] >= n:
            chunk, self._buffer = self._buffer[:, :, :n], self._buffer[:, :, n:]
            self.chunks.append(compress(chunk, seed=self.seed + len(self.chunks), **self.settings))

    def reconstruct(self) -> np.ndarray:
        """Every token so far: the chunks reconstructed, then the buffer as it is."""
        parts = [c.reconstruct() for c in self.chunks]
        if self._buffer is not None:
            parts.append(self._buffer)
        if not parts:
            raise GoldenError("the cache is empty: append tokens first")
        return np.concatenate(parts, axis=2)

    def bits_per_element(self) -> float:
        bits = sum(sum(c.bit_counts().values()) for c in self.chunks)
        elements = sum(c.codes.size for c in self.chunks)
        if self._buffer is not None:
            bits += self._buffer.size * FLOAT_BITS
            elements += self._buffer.size
        if not elements:
            raise GoldenError("the cache is empty: append tokens first")
        return bits / elements


# --------------------------------------------------------------------------------------
# Cycle model of the hardware unit.

def cycles(config, outliers_per_row) -> int:
    """Cycles the reconstruction unit takes for one tile, at full rate.

    ``config`` is any object with ``outlier_slots`` and ``latency`` (the unit's
    :class:`spec.gear_unit.GearUnitConfig`); ``outliers_per_row`` lists the rows of the
    program (one tile or several back to back) in stream order. A row with ``k``
    outliers takes ``max(1, ceil(k / outlier_slots))`` input beats, and the first row
    needs one more beat to load its scale/zero pairs unless it already has several
    (``compiler.gear_stream`` streams it so). Counting from the cycle the first beat is
    accepted to the cycle the last row is taken, inclusive, the pipeline adds
    ``latency`` cycles.
    """
    counts = np.asarray(outliers_per_row, dtype=np.int64).ravel()
    if counts.size == 0:
        raise GoldenError("a tile needs at least one row")
    if counts.min() < 0:
        raise GoldenError(f"outlier counts must be >= 0, got {int(counts.min())}")
    slots = config.outlier_slots
    if slots == 0:
        if counts.max() > 0:
            raise GoldenError(f"a unit without outlier slots cannot take a row with "
                              f"{int(counts.max())} outliers")
        per_row = np.ones_like(counts)
    else:
        per_row = np.maximum(1, -(-counts // slots))
    # The first row's scale/zero pairs must be loaded by an earlier beat: one extra beat
    # unless that row already takes several.
    beats = int(per_row.sum()) + int(per_row[0] == 1)
    return beats + config.latency
