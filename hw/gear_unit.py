"""GEAR KV reconstruction unit: rebuilds one K or V row (``head_dim`` values) per cycle.

A GEAR-compressed cache tile (``golden/gear.py``) is ``codes`` (2 or 4 bits), a scale and a
zero per quantization group, a few sparse outliers and rank-``r`` factors ``A`` (one row of
``r`` values per token) and ``B`` (``r x head_dim`` per tile). The unit takes the tile in
the fixed-point formats of :func:`golden.gear.to_fixed` and outputs every row in the tensor
core's activation format, ``out_width``-bit two's complement (int8 by default), scaled per
channel (the scale folds into the query for ``Q @ K.T`` and onto the output columns of
``P @ V``, so the consumer pays nothing for it). All fixed-point values are integers in
units of ``2**-frac_bits`` of the output LSB, except the factor products, which have
``factor_frac`` fractional bits (the sum aligns them with a free shift). Per output
element ``d`` of row ``t``::

    acc = (code & (2**bits - 1)) * S[d] + Z[d]
          + (sum_k a[k] * b[k][d]) << (frac_bits - factor_frac)      (exact: never wraps)
    out = saturate((acc >> frac_bits) + acc[frac_bits - 1])          (round half up)
    out = outlier value instead, if an outlier names (t, d)

Streams (payload layouts below; a transfer happens when ``valid`` and ``ready`` are high):

``factors`` (rank > 0)
    ``B`` of one tile: ``b[k][d]``. Loaded into a register before the tile's first row
    and used until its last; it is accepted while no tile is waiting for its first row
    and no tile is running, or in the same cycle as the running tile's last row (also
    when that row is its first), so back-to-back tiles lose no cycle.
``i``, row beats
    ``codes[d]`` (``max_bits`` each, only the low ``bits`` used); ``a[k]`` (this token's
    row of ``A``); ``outlier_slots`` outlier slots ``(col, value, valid)``; ``scale[g]``
    and ``zero[g]`` for each group of ``group_size`` lanes (lane ``d`` uses pair
    ``d // group_size``); and the flags

    * ``load``: the pairs in this beat replace the held ones *after* this beat, i.e.
      for the following rows (a register loaded at this transfer). Pairs travel only
      when they change: every ``group_size`` tokens for a K tile, every row for a V
      tile, ahead of the row that needs them. Without ``load`` the pair fields are
      ignored.
    * ``more``: this beat yields no row; only its outlier slots (which accumulate into
      the next row) and its pairs (with ``load``) count. A row with more outliers than
      slots is sent as several beats, all but the last with ``more``; a program's first
      row gets its pairs from such a beat.
    * ``first``/``last`` (rank > 0): the tile's first and last row; a beat with
      ``first`` waits until the tile's factors are loaded.
``o``, one row per transfer
    ``head_dim`` values, ``out_width`` bits each. Valid ``latency = 3`` cycles after the
    row's last beat was accepted; held (and the unit stalled) until ``o.ready``.
``bits`` (control input)
    Code width in use, sampled with every beat: 2 or 4 for GEAR (any ``0..max_bits``
    works; code bits at and above ``bits`` are ignored). Codes travel one row per beat
    in either case; packing 2-bit rows two to a memory word is the memory side's job.

K tiles have per-channel groups along tokens: they run on a unit with ``group_size=1``
(a K group's pairs differ per channel). V tiles (groups of channels in a row) run on any
unit whose ``group_size`` divides their group, when the output scale is shared by the
same lanes (``golden.gear.to_fixed(..., out_group=group_size)``); with a per-channel
output scale their pairs differ per lane too.

Datapath (three register stages; everything advances together when ``~o.valid |
o.ready``)::

    i.payload --> mask codes, decode outlier slots --> multiply (code*S, a_k*b_kd)
    (S, Z from the pair registers, B from the factor register)
              --[R1: products, Z or outlier]--> adder tree --[R2: acc]-->
              --> round, saturate --[R3: o.payload]

An outlier zeroes the lane's products in R1 (flip-flop synchronous resets, free on iCE40)
and loads ``value << frac_bits`` in place of ``Z``, so the round and saturate stages
return it unchanged.
"""

import dataclasses

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .arith import tree_sum
from .config import BlockConfig, ConfigError, param

__all__ = ["GearUnitConfig", "GearUnit", "row_layout", "outlier_layout", "factor_layout",
           "out_layout"]


@dataclasses.dataclass(frozen=True)
class GearUnitConfig(BlockConfig):
    """Parameters of a GEAR KV reconstruction unit (frozen; validated on construction).

    Parameters
    ----------
    head_dim : int
        Values per row (lanes), >= 1.
    group_size : int
        Lanes that share one (scale, zero) pair in a row beat; divides ``head_dim``.
        1 runs K and V tiles; a V-only unit can share pairs across a V group.
    rank : int
        Low-rank factors per row, 0..head_dim (0: no ``factors`` stream).
    max_bits : int
        Width of a code field, 2..8; the runtime ``bits`` input selects 2 or 4.
    frac_bits : int
        Fractional bits (below the output LSB) of S, Z and the factor products, 1..16.
    scale_width, zero_width, factor_width : int
        Widths of S (unsigned), Z (signed) and of each factor value (signed).
    out_width : int
        Output width (two's complement), 2..32; 8 matches the tensor core's activations.
    outlier_slots : int
        Outlier slots per row beat, 0..head_dim.

    Raises
    ------
    ConfigError
        If any parameter is out of range.
    """

    block = "gear-unit"

    head_dim: int = param(32, "values per reconstructed row (lanes), >= 1")
    group_size: int = param(1, "lanes sharing one scale/zero pair per row beat; divides head_dim")
    rank: int = param(4, "low-rank factors per row, 0..head_dim")
    max_bits: int = param(4, "code field width, 2..8 (runtime bits input selects 2 or 4)")
    frac_bits: int = param(4, "fractional bits of S and Z below the output LSB, 1..16")
    scale_width: int = param(12, "width of the unsigned per-group scale S, 2..24")
    zero_width: int = param(16, "width of the signed per-group zero Z, 2..32")
    factor_width: int = param(5, "width of each signed low-rank factor value, 2..16")
    factor_frac: int = param(3, "fractional bits of the factor products, 0..frac_bits")
    out_width: int = param(8, "output width (two's complement), 2..32")
    outlier_slots: int = param(2, "outlier (position, value) slots per row beat, 0..head_dim")

    def validate(self):
        if self.head_dim < 1:
            raise ConfigError(f"head_dim must be >= 1, not head_dim={self.head_dim!r}")
        if self.group_size < 1 or self.head_dim % self.group_size:
            raise ConfigError(f"group_size must divide head_dim={self.head_dim}, "
                              f"not group_size={self.group_size!r}")
        if not 0 <= self.rank <= self.head_dim:
            raise ConfigError(f"rank must be in 0..head_dim={self.head_dim}, not rank={self.rank!r}")
        if not 2 <= self.max_bits <= 8:
            raise ConfigError(f"max_bits must be in 2..8, not max_bits={self.max_bits!r}")
        if not 1 <= self.frac_bits <= 16:
            raise ConfigError(f"frac_bits must be in 1..16, not frac_bits={self.frac_bits!r}")
        for name, lo, hi in (("scale_width", 2, 24), ("zero_width", 2, 32),
                             ("factor_width", 2, 16), ("out_width", 2, 32)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(f"{name} must be in {lo}..{hi}, not {name}={value!r}")
        if not 0 <= self.factor_frac <= self.frac_bits:
            raise ConfigError(f"factor_frac must be in 0..frac_bits={self.frac_bits}, "
                              f"not factor_frac={self.factor_frac!r}")
        if not 0 <= self.outlier_slots <= self.head_dim:
            raise ConfigError(f"outlier_slots must be in 0..head_dim={self.head_dim}, "
                              f"not outlier_slots={self.outlier_slots!r}")

    @property
    def pairs(self) -> int:
        """(scale, zero) pairs per row beat: ``head_dim // group_size``."""
        return self.head_dim // self.group_size

    @property
    def col_width(self) -> int:
        """Bits of an outlier's column: ``ceil(log2(head_dim))`` (at least 1)."""
        return max(1, ceil_log2(self.head_dim))

    @property
    def acc_width(self) -> int:
        """Width of the per-lane sum: wide enough that no input can make it wrap."""
        dequant = self.max_bits + self.scale_width + 1
        low_rank = (2 * self.factor_width + ceil_log2(max(self.rank, 1))
                    + self.frac_bits - self.factor_frac)
        return max(dequant, self.zero_width, self.out_width + self.frac_bits, low_rank) + 2

    @property
    def factor_shift(self) -> int:
        """Left shift aligning the factor products (``factor_frac``) with S and Z."""
        return self.frac_bits - self.factor_frac

    @property
    def latency(self) -> int:
        """Cycles from accepting a row's last beat to ``o.valid`` (no back-pressure)."""
        return 3

    @property
    def values_per_cycle(self) -> int:
        return self.head_dim


def outlier_layout(config: GearUnitConfig) -> data.StructLayout:
    """One outlier slot: ``col`` (lane), ``value`` (output format), ``valid``."""
    return data.StructLayout({
        "col": unsigned(config.col_width),
        "value": signed(config.out_width),
        "valid": 1,
    })


def row_layout(config: GearUnitConfig) -> data.StructLayout:
    """Payload of the row stream ``i`` (fields in this order, LSB first)."""
    fields = {
        "codes": data.ArrayLayout(unsigned(config.max_bits), config.head_dim),
        "scale": data.ArrayLayout(unsigned(config.scale_width), config.pairs),
        "zero": data.ArrayLayout(signed(config.zero_width), config.pairs),
    }
    if config.rank:
        fields["a"] = data.ArrayLayout(signed(config.factor_width), config.rank)
    if config.outlier_slots:
        fields["outliers"] = data.ArrayLayout(outlier_layout(config), config.outlier_slots)
    fields["load"] = 1
    fields["more"] = 1
    if config.rank:
        fields["first"] = 1
        fields["last"] = 1
    return data.StructLayout(fields)


def factor_layout(config: GearUnitConfig) -> data.StructLayout:
    """Payload of the ``factors`` stream: ``b[k][d]``, one tile's B (rank > 0 only)."""
    return data.StructLayout({
        "b": data.ArrayLayout(data.ArrayLayout(signed(config.factor_width), config.head_dim),
                              max(config.rank, 1)),
    })


def out_layout(config: GearUnitConfig) -> data.ArrayLayout:
    """Payload of the output stream ``o``: one reconstructed row."""
    return data.ArrayLayout(signed(config.out_width), config.head_dim)


class GearUnit(wiring.Component):
    """GEAR KV reconstruction unit (see the module docstring for formats and timing).

    Parameters
    ----------
    config : GearUnitConfig

    Members
    -------
    i : In(stream.Signature(row_layout(config)))
        Row beats. ``i.ready`` is ``~o.valid | o.ready``, and also needs the factors to
        be loaded when the beat has ``first`` set.
    factors : In(stream.Signature(factor_layout(config))), rank > 0 only
        One beat per tile, before (or with the last row of the previous tile) its first row.
    o : Out(stream.Signature(out_layout(config)))
        Reconstructed rows, ``config.latency`` cycles after each row's last beat.
    bits : In(range(max_bits + 1))
        Code width in use (2 or 4); sampled with every beat.
    """

    def __init__(self, config: GearUnitConfig):
        if not isinstance(config, GearUnitConfig):
            raise ConfigError(f"GearUnit needs a GearUnitConfig, not {config!r}")
        self.config = config
        members = {
            "i": In(stream.Signature(row_layout(config))),
            "o": Out(stream.Signature(out_layout(config))),
            "bits": In(range(config.max_bits + 1), init=min(4, config.max_bits)),
        }
        if config.rank:
            members["factors"] = In(stream.Signature(factor_layout(config)))
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        beat = self.i.payload
        frac, width = cfg.frac_bits, cfg.out_width

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        accept = Signal()
        final = Signal()          # the accepted beat completes a row
        m.d.comb += [accept.eq(self.i.valid & self.i.ready), final.eq(accept & ~beat.more)]

        # Scale/zero pairs: loaded by a beat with `load`, used by the rows after it.
        scale_reg = [Signal(unsigned(cfg.scale_width), name=f"scale_reg_{g}", reset_less=True)
                     for g in range(cfg.pairs)]
        zero_reg = [Signal(signed(cfg.zero_width), name=f"zero_reg_{g}", reset_less=True)
                    for g in range(cfg.pairs)]
        with m.If(accept & beat.load):
            m.d.sync += [r.eq(beat.scale[g]) for g, r in enumerate(scale_reg)]
            m.d.sync += [r.eq(beat.zero[g]) for g, r in enumerate(zero_reg)]

        # Tile sequencing and the B register.
        if cfg.rank:
            b_reg = Signal(factor_layout(cfg), name="b_reg", reset_less=True)
            b_pending = Signal()      # B holds a tile whose first row has not come yet
            tile_active = Signal()    # a tile's first row came and its last has not
            m.d.comb += self.i.ready.eq(advance & (~beat.first | b_pending))
            # Accept B when, after this cycle, no tile needs the current one: none waits
            # for its first row and none runs (a tile's last row may go in this cycle).
            starts = final & beat.first
            ends = final & beat.last
            busy = ((b_pending & ~starts) | (tile_active & ~ends) | (starts & ~beat.last))
            m.d.comb += self.factors.ready.eq(~busy)
            with m.If(final):
                m.d.sync += tile_active.eq(~beat.last)
                with m.If(beat.first):
                    m.d.sync += b_pending.eq(0)
            # After the block above: a load in the cycle of a one-row tile wins.
            with m.If(self.factors.valid & self.factors.ready):
                m.d.sync += [b_reg.eq(self.factors.payload), b_pending.eq(1)]
        else:
            m.d.comb += self.i.ready.eq(advance)

        # Codes: keep the low `bits` bits.
        keep = Signal(cfg.max_bits, name="code_keep")
        m.d.comb += [keep[j].eq(self.bits > j) for j in range(cfg.max_bits)]

        # Outlier slots: per lane, hit this beat, or accumulated from earlier `more` beats.
        ov_now = ov_val_now = None
        if cfg.outlier_slots:
            ov_now = [Signal(name=f"ov_{d}") for d in range(cfg.head_dim)]
            ov_val_now = [Signal(signed(width), name=f"ov_val_{d}") for d in range(cfg.head_dim)]
            for d in range(cfg.head_dim):
                ov_reg = Signal(name=f"ov_reg_{d}")
                ov_val_reg = Signal(signed(width), name=f"ov_val_reg_{d}", reset_less=True)
                hit = Signal(name=f"ov_hit_{d}")
                value = ov_val_reg
                hits = []
                for j in range(cfg.outlier_slots):
                    slot = beat.outliers[j]
                    h = Signal(name=f"ov_hit_{d}_s{j}")
                    m.d.comb += h.eq(slot.valid & (slot.col == d))
                    hits.append(h)
                    value = Mux(h, slot.value, value)      # the highest slot wins
                m.d.comb += [
                    hit.eq(Cat(*hits).any()),
                    ov_now[d].eq(ov_reg | hit),
                    ov_val_now[d].eq(value),
                ]
                with m.If(accept):
                    m.d.sync += ov_reg.eq(Mux(beat.more, ov_now[d], 0))
                    m.d.sync += ov_val_reg.eq(ov_val_now[d])

        # R1: products, and Z or the outlier.
        valid1 = Signal(name="valid1")
        valid2 = Signal(name="valid2")
        with m.If(advance):
            m.d.sync += [valid1.eq(final), valid2.eq(valid1), self.o.valid.eq(valid2)]
        lanes = []
        for d in range(cfg.head_dim):
            g = d // cfg.group_size
            code = Signal(cfg.max_bits, name=f"code_{d}")
            m.d.comb += code.eq(beat.codes[d] & keep)
            prod = Signal(unsigned(cfg.max_bits + cfg.scale_width), name=f"deq_{d}")
            m.d.comb += prod.eq(code * scale_reg[g])
            prod_q = Signal.like(prod, name=f"deq_q_{d}")
            zero_q = Signal(signed(max(cfg.zero_width, width + frac)), name=f"zero_q_{d}",
                            reset_less=True)
            terms = [prod_q, zero_q]
            lr_q = []
            lr_terms = []
            for k in range(cfg.rank):
                p = Signal(signed(2 * cfg.factor_width), name=f"lr_{d}_k{k}")
                m.d.comb += p.eq(beat.a[k] * b_reg.b[k][d])
                q = Signal.like(p, name=f"lr_q_{d}_k{k}")
                lr_q.append((p, q))
                lr_terms.append(q)
            if lr_terms:
                # Sum the products first (narrow), then align them with S and Z.
                lr_width = 2 * cfg.factor_width + ceil_log2(cfg.rank)
                lr_sum = tree_sum(m, lr_terms, f"lr_tree_{d}", root_shape=signed(lr_width)) \
                    if len(lr_terms) > 1 else lr_terms[0]
                terms.append(lr_sum << cfg.factor_shift if cfg.factor_shift else lr_sum)
            normal = [prod_q.eq(prod), *(q.eq(p) for p, q in lr_q), zero_q.eq(zero_reg[g])]
            with m.If(advance):
                if ov_now is None:
                    m.d.sync += normal
                else:
                    # Zeroing on an outlier is the registers' synchronous reset.
                    with m.If(ov_now[d]):
                        m.d.sync += [prod_q.eq(0), *(q.eq(0) for _, q in lr_q),
                                     zero_q.eq(ov_val_now[d] << frac)]
                    with m.Else():
                        m.d.sync += normal
            lanes.append(terms)

        # R2: the exact sum; R3: round half up, saturate.
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        for d, terms in enumerate(lanes):
            acc = Signal(signed(cfg.acc_width), name=f"acc_{d}", reset_less=True)
            with m.If(advance):
                m.d.sync += acc.eq(tree_sum(m, terms, f"tree_{d}", root_shape=signed(cfg.acc_width)))
            rounded = Signal(signed(cfg.acc_width - frac + 1), name=f"rounded_{d}")
            m.d.comb += rounded.eq((acc >> frac) + acc[frac - 1])
            with m.If(advance):
                m.d.sync += self.o.payload[d].eq(
                    Mux(rounded > hi, hi, Mux(rounded < lo, lo, rounded)))
        return m
