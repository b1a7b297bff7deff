"""Dot-product arrays: ``lp-array`` (LP x LP), and its baselines ``int8-array`` and
``fp8-array``, all ``rows`` x ``cols`` with the same streams (:mod:`spec.pe_array`).

Dataflow: weight-stationary
---------------------------
Each row holds ``cols`` weights in registers; an activation beat (``cols`` codes) is
broadcast to every row, so the array forms ``rows * cols`` products per cycle and one
dot product per row over the beats up to ``last``. Weight-stationary is chosen over
streaming weights with reuse because a layer's weight tile is reused for every
activation column (every pixel of a convolution, every token of a GEMM): the load costs
one transfer per row per tile and is amortised over all of them, while streaming would
need ``rows * cols`` weight codes per beat of bandwidth.

Decode is paid where it is amortised:

* LP weights are **decoded at load** (``cols`` decoders shared by all rows) and stored
  pre-decoded: sign, kill (zero or NaR), NaR and the fixed-point log ``T``
  (:func:`spec.pe_array.stored_weight_bits`: 8 bits for LP<6,1,2>, 11 for LP<8,1,4>,
  against 6 and 8 bits of codes). Decoding in the compiler instead would move the same
  bits into SRAM; decoding at load keeps the SRAM at n bits per weight.
* LP activations are decoded once per column and broadcast to the rows; the layer
  scale is folded into the broadcast log (``T_a - sf * 2^F``), so a product pays only
  the log add, the 2^frac lookup, the shift and its share of the row's adder tree and
  accumulator.
* FP8 weights are likewise stored decoded (sign, 4-bit significand, exponent, NaN);
  INT8 weights are stored Booth-recoded (12 bits: the multiplier's half that depends
  only on the weight).

Arithmetic: each row computes exactly what the PE with ``lanes = cols`` computes
(``hw.lp_pe``, ``hw.mac_pe``; golden: ``golden.lp.fixed_products``,
``golden.mac``), so ``golden.lpq.pe_accuracy`` at the array's table and window is
the array's accuracy.

Ports (every array)
-------------------
i : In(stream.Signature(array_beat_layout(config)))
    ``a[cols]`` activation codes and ``last``. ``i.ready = advance & ~(wl.valid & idle)``:
    a pending weight load goes first when the array is idle.
wl : In(stream.Signature(array_load_layout(config)))
    Loads ``w[cols]`` into row ``row``. ``wl.ready = idle``: no beat in the pipeline
    and no dot product half accumulated, so a load never changes the weights under a
    dot product. Takes effect for the next beat accepted.
o : Out(stream.Signature(array_out_layout(config)))
    ``acc[rows]`` (wrapped two's complement; LP and FP8 in units of ``2^-acc_frac``) and
    ``nar[rows]``. Valid ``config.latency`` cycles after the ``last`` beat was accepted
    (no back-pressure); held, stalling the pipeline, until ``o.ready``.
sf : In(signed(sf_width)) (``lp-array`` only)
    The layer's scale ``sf_w + sf_a``, sampled with each accepted beat.

Latency (``product_stages + 2``): ``lp-array`` 5, ``int8-array`` 3, ``fp8-array`` 4;
one beat per cycle at full rate (``golden.mac.pe_cycles`` with ``lanes = cols``).
``units=True`` (any array) puts each decoder, product stage and multiplier in a module
of its own, for ``synth.flow.unit_breakdown``; the default is one flat module.
All pipeline registers are reset-less; ``o.valid``, the beat counter state and the
accumulators restart from their reset values on ``rst``.
"""

from amaranth import C, Array, Cat, Const, Elaboratable, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from spec import ConfigError
from spec.numerics import FP8_E4M3, FP8_EXP_OFFSET, lp_exp2_table
from spec.pe_array import (FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig, array_beat_layout,
                           array_load_layout, array_out_layout)

from .arith import booth_product, booth_recode, tree_sum
from .lp_pe import lp_decode
from .pe import shift_floor

__all__ = ["LPArray", "Int8Array", "FP8Array"]


class _Unit(Elaboratable):
    """A combinational unit kept as its own module (so ``synth.flow.unit_breakdown`` can
    price it): ``build(m, unit)`` adds the logic and returns nothing; the unit's ports
    are plain signals created by the caller with :meth:`port`."""

    def __init__(self, build):
        self._build = build
        self._ports = {}

    def port(self, name, shape):
        s = Signal(shape, name=name)
        self._ports[name] = s
        return s

    def elaborate(self, platform):
        m = Module()
        self._build(m)
        return m


def unit(parent: Module, name: str, inputs: dict, outputs: dict, logic, separate: bool = False):
    """Add ``logic(m, ins) -> {name: value}`` to ``parent``: ``inputs`` are values of the
    parent, ``outputs`` the shapes of the results; returns the output signals (named
    ``{name}__{output}``). With ``separate`` the logic goes in a module of its own named
    ``name`` (so ``synth.flow.unit_breakdown`` prices it; the arrays' ``units=True``)."""
    if not separate:                    # ``ins["_"]``: a prefix that keeps names unique
        values = logic(parent, {**inputs, "_": f"{name}_"})
        outs = {k: Signal(shape, name=f"{name}__{k}") for k, shape in outputs.items()}
        parent.d.comb += [outs[k].eq(values[k]) for k in outs]
        return outs
    u = _Unit(None)
    ins = {k: u.port(k, v.shape()) for k, v in inputs.items()}
    outs = {k: u.port(f"{k}_o", shape) for k, shape in outputs.items()}

    def build(m):
        values = logic(m, {**ins, "_": ""})
        m.d.comb += [outs[k].eq(values[k]) for k in outs]
    u._build = build
    parent.submodules[name] = u
    parent.d.comb += [ins[k].eq(v) for k, v in inputs.items()]
    return outs


class _DotArray(wiring.Component):
    """Common skeleton (see the module docstring): load control, the valid/last pipeline,
    the per-row adder trees and accumulators. Subclasses give :meth:`_decode_weight`
    (fields stored per weight) and :meth:`_products`."""

    def __init__(self, config, extra=None, *, units: bool = False):
        self.config = config
        self.units = units
        super().__init__({
            "i": In(stream.Signature(array_beat_layout(config))),
            "wl": In(stream.Signature(array_load_layout(config))),
            "o": Out(stream.Signature(array_out_layout(config))),
            **(extra or {}),
        })

    def _decode_weight(self, m, code, name) -> dict:
        raise NotImplementedError

    def _products(self, m, reg, weights) -> tuple[list[list], list]:
        """``(products[rows][cols], nar[rows])`` after ``product_stages`` calls of ``reg``."""
        raise NotImplementedError

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        def reg(name, value):
            q = Signal(value.shape(), name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += q.eq(value)
            return q

        # Weight load: decode once (cols decoders shared by all rows), store per row.
        idle = Signal()
        decoded = [self._decode_weight(m, self.wl.payload.w[c], f"wdec{c}") for c in range(cfg.cols)]
        weights = []
        load = self.wl.valid & self.wl.ready
        for r in range(cfg.rows):
            row = []
            for c in range(cfg.cols):
                stored = {k: Signal(v.shape(), name=f"w{r}_{c}_{k}", reset_less=True)
                          for k, v in decoded[c].items()}
                with m.If(load & (self.wl.payload.row == r)):
                    m.d.sync += [stored[k].eq(decoded[c][k]) for k in stored]
                row.append(stored)
            weights.append(row)
        m.d.comb += [self.wl.ready.eq(idle),
                     self.i.ready.eq(advance & ~(self.wl.valid & idle))]

        valid = Signal()
        m.d.comb += valid.eq(self.i.valid & self.i.ready)
        last = self.i.payload.last
        valids = []
        for s in range(cfg.product_stages):
            valid_q = Signal(name=f"p{s}_valid")
            with m.If(advance):
                m.d.sync += valid_q.eq(valid)
            valid, last = valid_q, reg(f"p{s}_last", last)
            valids.append(valid_q)
        products, nars = self._products(m, reg, weights)

        sum_valid = Signal()
        with m.If(advance):
            m.d.sync += sum_valid.eq(valid)
        last_q = reg("sum_last", last)
        # ``mid``: the accumulators hold part of a dot product (its last beat not yet in).
        mid = Signal()
        with m.If(advance & sum_valid):
            m.d.sync += mid.eq(~last_q)
        m.d.comb += idle.eq(~mid & ~Cat(*valids, sum_valid).any())

        with m.If(advance):
            m.d.sync += self.o.valid.eq(sum_valid & last_q)
        for r in range(cfg.rows):
            carries = []
            if isinstance(products[r][-1], list):          # carry-ins that complete negations
                carries = list(products[r][-1])
                products[r] = products[r][:-1]
            total = tree_sum(m, products[r], f"tree{r}", max_width=cfg.acc_width, carries=carries)
            lane_sum = Signal(signed(min(len(total), cfg.acc_width)), name=f"lane_sum{r}")
            m.d.comb += lane_sum.eq(total)
            sum_q = reg(f"sum{r}", lane_sum)
            nar_q = reg(f"sum_nar{r}", nars[r])
            assert len(carries) <= 1                 # a tree of k leaves has k - 1 adders
            carry_q = reg(f"sum_carry{r}", carries[0] if carries else C(0, 1))
            acc = Signal(signed(cfg.acc_width), name=f"acc{r}")
            acc_nar = Signal(name=f"acc_nar{r}")
            new = Signal(signed(cfg.acc_width), name=f"acc_next{r}")
            new_nar = Signal(name=f"acc_nar_next{r}")
            m.d.comb += [new.eq(acc + sum_q + carry_q), new_nar.eq(acc_nar | nar_q)]
            with m.If(advance & sum_valid):
                m.d.sync += [acc.eq(Mux(last_q, 0, new)), acc_nar.eq(Mux(last_q, 0, new_nar))]
                with m.If(last_q):
                    m.d.sync += [self.o.payload.acc[r].eq(new), self.o.payload.nar[r].eq(new_nar)]
        return m


class LPArray(_DotArray):
    """``lp-array``: LP x LP products (see the module docstring for ports and latency).

    Product datapath (``product_stages = 3``)::

        activation decode; T_a' = T_a - sf*2^F + (acc_frac - tb + vw)*2^F (per column) --[R]-->
        P = T_w + T_a'; t = P >> F; fine = table[P mod 2^F] << (t mod 4) (one LUT level:
            a (2^F * 4)-entry table), cleared (flip-flop reset) when t is outside
            0..prod_width+vw-1 or an operand is zero/NaR; q = t >> 2 (per product) --[R]-->
        mag = (fine << 4q)[vw : vw + prod_width]; mag XOR sign (per product) --[R]-->
        row adder tree over the products and the row's count of negative signs --[R]--> accumulate

    ``vw = table_bits + 1``. ``mag`` is ``floor(table[j] * 2^sh) mod 2^prod_width`` with
    ``sh = t - vw = (P_pe >> F) + acc_frac - table_bits``: the PE's product
    (``golden.lp.fixed_products``), bit for bit. The shift is split for LUT4 fabric: the
    two low bits of the shift go into the 2^frac table (whose outputs are 4-input
    functions for F = 2) before the register, leaving a 2:1 coarse shifter by multiples
    of 4 (2 levels for a 12-bit window and 4-bit entries), whose last level also takes
    the sign's XOR; the +1 that completes each negation is one
    small per-row operand (the count of negative products) instead of one adder per
    product. Constants of the shift live in the broadcast activation log, so the
    per-product logic is one add, a range check, the table and the coarse shifter.
    """

    def __init__(self, config: LPArrayConfig, *, units: bool = False):
        if not isinstance(config, LPArrayConfig):
            raise ConfigError(f"LPArray needs an LPArrayConfig, not {config!r}")
        self.pe = config.pe()
        super().__init__(config, {"sf": In(signed(config.sf_width))}, units=units)

    def _decode_weight(self, m, code, name):
        pe = self.pe
        logw = pe.frac_bits + pe.es + Signal(range(-pe.rs, pe.rs)).shape().width

        def logic(u, ins):
            sign, zero, nar, log = lp_decode(u, pe, ins["code"], ins["_"] + "d")
            return {"sign": sign, "kill": zero | nar, "nar": nar, "log": log}
        out = unit(m, name, {"code": code}, {"sign": 1, "kill": 1, "nar": 1, "log": signed(logw)}, logic, self.units)
        return out

    def _products(self, m, reg, weights):
        cfg, pe = self.config, self.pe
        F, tb, W = pe.frac_bits, pe.table_bits, pe.product_width
        vw = tb + 1                                  # table entry width
        span = W + vw                                # shift positions that keep a bit
        qbits = max(1, bits_for((span - 1) >> 2))    # coarse steps of 4
        # Column: decode, then fold the scale and every constant of the shift into the
        # broadcast log, so that t = P >> F is the shift position directly:
        # t = I + acc_frac - tb + vw, in range 0..span-1 when some bit lands in the window.
        offset = (cfg.acc_frac - tb + vw) << F
        acts = []
        for c in range(cfg.cols):
            d = self._decode_weight(m, self.i.payload.a[c], f"adec{c}")
            alog = Signal(signed(max(len(d["log"]), len(self.sf) + F, bits_for(offset) + 1) + 2),
                          name=f"alog{c}")
            m.d.comb += alog.eq(d["log"] - (self.sf << F) + offset)
            acts.append({"sign": reg(f"s0_asign{c}", d["sign"]), "kill": reg(f"s0_akill{c}", d["kill"]),
                         "nar": reg(f"s0_anar{c}", d["nar"]), "log": reg(f"s0_alog{c}", alog)})

        table = lp_exp2_table(F, tb)
        # The fine table: entry (j, r) = table[j] << r, r = 0..3 (one LUT level for F = 2).
        fine_table = Array(Const(table[j % (1 << F)] << (j >> F), vw + 3) for j in range(4 << F))
        products, nars = [], []
        for r in range(cfg.rows):
            row, row_nar, signs = [], [], []
            for c in range(cfg.cols):
                w, a = weights[r][c], acts[c]
                plen = max(len(w["log"]), len(a["log"]), F + 3 + qbits) + 1

                def index(u, ins, plen=plen):
                    p = Signal(signed(plen), name=ins["_"] + "p")
                    u.d.comb += p.eq(ins["wlog"] + ins["alog"])
                    t = p[F:].as_signed()
                    fine = Signal(vw + 3, name=ins["_"] + "fine")
                    u.d.comb += fine.eq(fine_table[Cat(p[:F], t[:2])] if F else fine_table[t[:2]])
                    return {"fine": fine, "q": t[2:2 + qbits],
                            "out": (t < 0) | (t >= span) | ins["kill"]}
                s1 = unit(m, f"addexp_{r}_{c}", {"wlog": w["log"], "alog": a["log"],
                                                 "kill": w["kill"] | a["kill"]},
                          {"fine": vw + 3, "q": qbits, "out": 1}, index, self.units)
                # A product that lands outside the window (or has a zero/NaR operand)
                # clears its fine register: a flip-flop reset, not logic.
                fine = reg(f"s1_fine{r}_{c}", Mux(s1["out"], 0, s1["fine"]))
                q = reg(f"s1_q{r}_{c}", s1["q"])
                sign = reg(f"s1_sign{r}_{c}", w["sign"] ^ a["sign"])
                row_nar.append(w["nar"] | a["nar"])

                def shift(u, ins):
                    wide = Signal(vw + 3 + 4 * ((1 << qbits) - 1), name=ins["_"] + "wide")
                    u.d.comb += wide.eq(ins["fine"] << Cat(C(0, 2), ins["q"]))
                    mag = wide[vw:vw + W]
                    # One's complement here; the +1 of each negation is the row's sign count.
                    return {"prod": Cat(mag ^ ins["sign"].replicate(W), ins["sign"]).as_signed()}
                s2 = unit(m, f"shift_{r}_{c}", {"fine": fine, "q": q, "sign": sign},
                          {"prod": signed(W + 1)}, shift, self.units)
                row.append(reg(f"s2_prod{r}_{c}", s2["prod"]))
                signs.append(sign)
            # The +1 of each negation: one carry-in per adder of the row (the tree's
            # cols - 1 adders and the accumulator's), so it costs no logic.
            row.append([reg(f"s2_sign{r}_{c}", s) for c, s in enumerate(signs)])
            nar1 = reg(f"s1_nar{r}", Cat(*row_nar).any())
            products.append(row)
            nars.append(reg(f"s2_nar{r}", nar1))
        return products, nars


class Int8Array(_DotArray):
    """``int8-array``: int8 x int8 products, one radix-4 Booth multiplier per product
    (``product_stages = 1``)::

        w * a (per product) --[R]--> row adder tree --[R]--> accumulate

    The baseline is built to be hard to beat: weights are Booth-recoded at load (stored as
    4 digits of 3 bits, :func:`hw.arith.booth_recode`), so a product is four partial
    products and a tree of carry-chain adders (:func:`hw.arith.booth_product`): about
    100 LUT4 on iCE40 against 177 for Yosys's default mapping of ``w * a``.
    """

    def __init__(self, config: Int8ArrayConfig, *, units: bool = False):
        if not isinstance(config, Int8ArrayConfig):
            raise ConfigError(f"Int8Array needs an Int8ArrayConfig, not {config!r}")
        super().__init__(config, units=units)

    def _decode_weight(self, m, code, name):
        # Booth-recoded at load (amortised over every activation the tile meets).
        return unit(m, name, {"code": code}, {"digits": 12},
                    lambda u, ins: {"digits": Cat(*booth_recode(u, ins["code"].as_signed(), ins["_"] + "b"))},
                    self.units)

    def _products(self, m, reg, weights):
        cfg = self.config
        products, nars = [], []
        for r in range(cfg.rows):
            row = []
            for c in range(cfg.cols):
                def mul(u, ins):
                    digits = [ins["digits"][3 * i:3 * i + 3] for i in range(4)]
                    return {"p": booth_product(u, ins["a"], digits, ins["_"] + "booth", 16)}
                out = unit(m, f"mul_{r}_{c}", {"digits": weights[r][c]["digits"], "a": self.i.payload.a[c]},
                           {"p": signed(16)}, mul, self.units)
                row.append(reg(f"s0_prod{r}_{c}", out["p"]))
            products.append(row)
            nars.append(Const(0, 1))
        return products, nars


class FP8Array(_DotArray):
    """``fp8-array``: E4M3 x E4M3 products, exact, truncated into the accumulator's fixed
    point (``product_stages = 2``)::

        decode a (per column); mant_w * mant_a, E'_w + E'_a (per product) --[R]-->
        shift, +/- (per product) --[R]--> row adder tree --[R]--> accumulate
    """

    def __init__(self, config: FP8ArrayConfig, *, units: bool = False):
        if not isinstance(config, FP8ArrayConfig):
            raise ConfigError(f"FP8Array needs an FP8ArrayConfig, not {config!r}")
        super().__init__(config, units=units)

    def _decode_weight(self, m, code, name):
        def logic(u, ins):
            f = FP8_E4M3(ins["code"])
            normal = f.exp != 0
            return {"sign": f.sign, "mant": Cat(f.mant, normal), "exp": Mux(normal, f.exp, 1),
                    "nan": (f.exp == 15) & (f.mant == 7)}
        return unit(m, name, {"code": code}, {"sign": 1, "mant": 4, "exp": 4, "nan": 1}, logic, self.units)

    def _products(self, m, reg, weights):
        cfg = self.config
        acts = [self._decode_weight(m, self.i.payload.a[c], f"adec{c}") for c in range(cfg.cols)]
        products, nars = [], []
        for r in range(cfg.rows):
            row, row_nan = [], []
            for c in range(cfg.cols):
                w, a = weights[r][c], acts[c]

                def mul(u, ins):
                    return {"pm": ins["wm"] * ins["am"],
                            "sh": ins["we"] + ins["ae"] + (cfg.acc_frac - 2 * FP8_EXP_OFFSET)}
                s0 = unit(m, f"mul_{r}_{c}", {"wm": w["mant"], "am": a["mant"], "we": w["exp"], "ae": a["exp"]},
                          {"pm": 8, "sh": signed(8)}, mul, self.units)
                pm, sh = reg(f"s0_pm{r}_{c}", s0["pm"]), reg(f"s0_sh{r}_{c}", s0["sh"])
                sign, nan = reg(f"s0_sign{r}_{c}", w["sign"] ^ a["sign"]), reg(f"s0_nan{r}_{c}", w["nan"] | a["nan"])
                row_nan.append(nan)

                def shift(u, ins):
                    mag = shift_floor(u, ins["pm"], ins["sh"], cfg.acc_width, ins["_"] + "mag")
                    return {"prod": Mux(ins["nan"], 0, Mux(ins["sign"], -mag, mag))}
                s1 = unit(m, f"shift_{r}_{c}", {"pm": pm, "sh": sh, "sign": sign, "nan": nan},
                          {"prod": signed(cfg.acc_width)}, shift, self.units)
                row.append(reg(f"s1_prod{r}_{c}", s1["prod"]))
            products.append(row)
            nars.append(reg(f"s1_nan{r}", Cat(*row_nan).any()))
        return products, nars
