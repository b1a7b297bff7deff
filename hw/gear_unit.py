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

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spec import ConfigError
from spec.gear_unit import GearUnitConfig, factor_layout, out_layout, row_layout

from .arith import tree_sum

__all__ = ["GearUnit"]


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
