"""The logarithmic-posit (LP) processing element: a ``lanes``-wide dot-product unit on
LP<n, es, rs> codes (format: ``golden/lp.py``; arithmetic: ``golden.lp.fixed_dot``).

Operands: LP x LP
-----------------
Both the weight and the activation are LP codes of the same ``(n, es, rs)``. The
alternative, an LP weight times an int8 activation, needs either a real multiplier
(``2^f`` of the weight times the integer), which is the very cost LP removes, or an
int8-to-log converter (a priority encoder and a log table per lane) to bring the
activation into the log domain. With both operands in LP a product is one fixed-point
add of two logs and an XOR of the signs, which is the point of the format; LPQ
quantizes activations with the layer's (n, es, rs) and its own scale, so this costs
no flexibility. The two scales combine into the one runtime input ``sf = sf_w + sf_a``.

Datapath (``product_stages = 3``, latency 5)::

    decode w, a (lanes x 2) --[R: sign, zero, NaR, log T, sf]-->
    P = T_w + T_a - sf * 2^F; mant = exp2 table[P mod 2^F]; sh = (P >> F) + acc_frac - tb
                            --[R: mant, sh, sign, kill]-->
    mag = floor(mant * 2^sh) mod 2^prod_width (barrel shift, truncating), +/- --[R: product]-->
    lane adder tree --[R]--> accumulate (acc_width bits, wraps) --[o.payload]

Decode of an n-bit code ``c`` (no table: logic): sign = top bit; magnitude word =
``-c`` when negative; the regime run of the body is a priority encoder on ``body XOR
(its top bit)``, capped at ``rs``; the body shifted left by the regime length
(run + a terminator unless the run is ``rs`` long) leaves the exponent and then the
fraction at fixed positions; ``T = Cat(frac, e, k)`` is then just wiring, since
``k * 2^es + e`` with ``0 <= e < 2^es`` is a concatenation.

The 2^frac table has ``2^F`` entries of ``table_bits + 1`` bits:
``round(2^(j/2^F) * 2^table_bits)`` (``golden.lp.exp2_table``), so the linear product
carries ``table_bits`` fraction bits before the shift (relative error <= 2^-(tb+1)).

NaR operands give a zero product and set the output's ``nar`` flag; zero operands give
zero. ``sf`` is sampled with every accepted beat (it travels down the pipeline with the
beat), so it may change between layers without draining the PE.
"""

import dataclasses
import math

from amaranth import Array, C, Cat, Const, Mux, Signal, signed
from amaranth.lib.wiring import In
from amaranth.utils import bits_for

from .config import BlockConfig, ConfigError, param
from .pe import DotProductPE, pe_beat_layout, pe_out_layout, shift_floor

__all__ = ["LPPEConfig", "LPPE", "exp2_table", "beat_layout", "out_layout"]


@dataclasses.dataclass(frozen=True)
class LPPEConfig(BlockConfig):
    """Parameters of an LP PE (frozen; validated on construction).

    Parameters
    ----------
    n, es, rs : int
        The LP format of both operands: ``3 <= n <= 10``, ``0 <= es <= 3``,
        ``1 <= rs <= n - 1``.
    lanes : int
        Products per cycle, >= 1.
    table_bits : int
        Fraction bits of the 2^frac table entries, 1..16.
    acc_width : int
        Accumulator (and product) width, two's complement, wraps; 8..64.
    acc_frac : int
        Fraction bits of the accumulator: it holds ``value * 2^acc_frac``; 0..acc_width-1.
    sf_width : int
        Width of the signed runtime scale input ``sf``, 2..8.
    prod_width : int
        Width of a product's magnitude after the shift (the shifter's output and, plus
        sign and carries, the lane adder tree), 4..acc_width. Narrower than the
        accumulator saves area; a layer's ``sf`` must then keep its products below
        ``2^(prod_width - acc_frac)`` (larger ones wrap; they are not saturated).
        0 (the default) means ``acc_width``; :attr:`product_width` is the width in use.

    Raises
    ------
    ConfigError
        If any parameter is out of range.
    """

    block = "lp-pe"

    n: int = param(8, "LP word width in bits, 3..10")
    es: int = param(1, "LP exponent bits, 0..3")
    rs: int = param(4, "LP regime cap (rs = n-1 is a standard posit regime), 1..n-1")
    lanes: int = param(4, "products per cycle (lanes), >= 1")
    table_bits: int = param(8, "fraction bits of the 2^frac table entries, 1..16")
    acc_width: int = param(32, "accumulator width in bits, 8..64")
    acc_frac: int = param(16, "fraction bits of the accumulator, 0..acc_width-1")
    sf_width: int = param(7, "width of the signed runtime scale input sf, 2..8")
    prod_width: int = param(0, "product magnitude window in bits (the shifter's output), "
                               "4..acc_width, or 0 for acc_width")

    def validate(self):
        if not 3 <= self.n <= 10:
            raise ConfigError(f"n must be in 3..10, not n={self.n!r}")
        if not 0 <= self.es <= 3:
            raise ConfigError(f"es must be in 0..3, not es={self.es!r}")
        if not 1 <= self.rs <= self.n - 1:
            raise ConfigError(f"rs must be in 1..n-1={self.n - 1}, not rs={self.rs!r}")
        if self.lanes < 1:
            raise ConfigError(f"lanes must be >= 1, not lanes={self.lanes!r}")
        if not 1 <= self.table_bits <= 16:
            raise ConfigError(f"table_bits must be in 1..16, not table_bits={self.table_bits!r}")
        if not 8 <= self.acc_width <= 64:
            raise ConfigError(f"acc_width must be in 8..64, not acc_width={self.acc_width!r}")
        if not 0 <= self.acc_frac < self.acc_width:
            raise ConfigError(f"acc_frac must be in 0..acc_width-1={self.acc_width - 1}, "
                              f"not acc_frac={self.acc_frac!r}")
        if not 2 <= self.sf_width <= 8:
            raise ConfigError(f"sf_width must be in 2..8, not sf_width={self.sf_width!r}")
        if self.prod_width != 0 and not 4 <= self.prod_width <= self.acc_width:
            raise ConfigError(f"prod_width must be 0 or in 4..acc_width={self.acc_width}, "
                              f"not prod_width={self.prod_width!r}")

    @property
    def width(self) -> int:
        """Code width on the input stream (= n)."""
        return self.n

    @property
    def product_width(self) -> int:
        """The product window in use: ``prod_width``, or ``acc_width`` when that is 0."""
        return self.prod_width or self.acc_width

    @property
    def frac_bits(self) -> int:
        """F: fraction bits of the fixed-point log (the widest fraction of any code)."""
        return max(self.n - 1 - (1 if self.rs == 1 else 2) - self.es, 0)

    @property
    def sf_range(self) -> range:
        return range(-(1 << (self.sf_width - 1)), 1 << (self.sf_width - 1))

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` beat to ``o.valid`` (no back-pressure)."""
        return LPPE.product_stages + 2


def beat_layout(config: LPPEConfig):
    """Input beat: ``w[lanes]``, ``a[lanes]`` (n-bit LP codes) and ``last``."""
    return pe_beat_layout(config.lanes, config.n)


def out_layout(config: LPPEConfig):
    """Output: ``acc`` (signed, ``acc_width``; value ``acc / 2^acc_frac``) and ``nar``."""
    return pe_out_layout(config.acc_width)


def exp2_table(frac_bits: int, table_bits: int) -> list[int]:
    """Entries ``round(2^(j / 2^frac_bits) * 2^table_bits)``, exact (integer checks)."""
    entries = []
    for j in range(1 << frac_bits):
        target = 1 << (j + (table_bits + 1) * (1 << frac_bits))   # (2y)^(2^F)
        m = int(math.floor(2.0 ** (j / (1 << frac_bits) + table_bits) + 0.5))
        while (2 * m - 1) ** (1 << frac_bits) > target:
            m -= 1
        while (2 * m + 1) ** (1 << frac_bits) <= target:
            m += 1
        entries.append(m)
    return entries


class LPPE(DotProductPE):
    """LP dot-product PE (see the module docstring).

    Parameters
    ----------
    config : LPPEConfig

    Members
    -------
    i : In(stream.Signature(beat_layout(config)))
        ``w[l]``, ``a[l]``: the LP codes of lane l; ``last`` ends a dot product.
        ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(out_layout(config)))
        ``acc``: the dot product in units of ``2^-acc_frac``; ``nar``: some operand was
        NaR. Valid ``config.latency`` (5) cycles after the ``last`` beat was accepted;
        held until ``o.ready``.
    sf : In(signed(sf_width))
        The layer's scale ``sf_w + sf_a``; sampled with each accepted beat.
    """

    product_stages = 3

    def __init__(self, config: LPPEConfig):
        if not isinstance(config, LPPEConfig):
            raise ConfigError(f"LPPE needs an LPPEConfig, not {config!r}")
        super().__init__(config, {"sf": In(signed(config.sf_width))})

    def _decode(self, m, code, name):
        """(sign, zero, nar, T) of an LP code; T = (k * 2^es + e) * 2^F + frac, signed."""
        cfg = self.config
        n, es, rs, F = cfg.n, cfg.es, cfg.rs, cfg.frac_bits
        nb = n - 1
        sign = code[n - 1]
        zero = Signal(name=f"{name}_zero")
        nar = Signal(name=f"{name}_nar")
        m.d.comb += [zero.eq(code == 0), nar.eq(code == 1 << nb)]
        mag = Signal(n, name=f"{name}_mag")
        m.d.comb += mag.eq(Mux(sign, -code, code))
        body = mag[:nb]
        r0 = body[nb - 1]
        differs = Signal(rs, name=f"{name}_differs")         # the top rs body bits vs r0
        m.d.comb += differs.eq(body[nb - rs:] ^ Cat(*([r0] * rs)))
        run_value = Const(rs, range(rs + 1))
        for i in reversed(range(rs)):
            run_value = Mux(differs[rs - 1 - i], i, run_value)
        run = Signal(range(rs + 1), name=f"{name}_run")
        m.d.comb += run.eq(run_value)
        length = Signal(range(rs + 2), name=f"{name}_len")
        m.d.comb += length.eq(run + (run != rs))
        ext = Cat(C(0, es), body) if es else body
        rest = Signal(nb + es, name=f"{name}_rest")
        m.d.comb += rest.eq(ext << length)
        k = Signal(range(-rs, rs), name=f"{name}_k")
        m.d.comb += k.eq(Mux(r0, run - 1, -run))
        parts = []
        if F:
            parts.append(rest[nb - F:nb])
        if es:
            parts.append(rest[nb:nb + es])
        parts.append(k)
        log = Signal(signed(F + es + len(k)), name=f"{name}_log")
        m.d.comb += log.eq(Cat(*parts).as_signed())
        return sign, zero, nar, log

    def _products(self, m, reg):
        cfg = self.config
        F, tb = cfg.frac_bits, cfg.table_bits
        beat = self.i.payload

        # Stage 0: decode both operands of every lane; the scale travels with the beat.
        sf = reg("s0_sf", self.sf)
        lanes = []
        for lane in range(cfg.lanes):
            ws, wz, wn, wl = self._decode(m, beat.w[lane], f"w{lane}")
            as_, az, an, al = self._decode(m, beat.a[lane], f"a{lane}")
            lanes.append((reg(f"s0_sign{lane}", ws ^ as_), reg(f"s0_zero{lane}", wz | az),
                          reg(f"s0_nar{lane}", wn | an), reg(f"s0_wlog{lane}", wl),
                          reg(f"s0_alog{lane}", al)))

        # Stage 1: add the logs, look up 2^frac, work out the shift.
        table = Array(Const(v, tb + 1) for v in exp2_table(F, tb))
        stage1 = []
        for lane, (sign, zero, nar, wl, al) in enumerate(lanes):
            p = Signal(signed(max(len(wl), len(sf) + F) + 2), name=f"s1_p{lane}")
            m.d.comb += p.eq(wl + al - (sf << F))
            mant = Signal(tb + 1, name=f"s1_mant{lane}")
            m.d.comb += mant.eq(table[p[:F]] if F else table[0])
            sh = Signal(signed(len(p) - F + bits_for(cfg.acc_frac + tb) + 1), name=f"s1_sh{lane}")
            m.d.comb += sh.eq((p >> F) + (cfg.acc_frac - tb))
            stage1.append((reg(f"s1_sign{lane}", sign), reg(f"s1_kill{lane}", zero | nar),
                           reg(f"s1_nar{lane}", nar), reg(f"s1_mant{lane}", mant),
                           reg(f"s1_sh{lane}", sh)))

        # Stage 2: shift into the accumulator's fixed point, apply the sign.
        products, nars = [], []
        for lane, (sign, kill, nar, mant, sh) in enumerate(stage1):
            mag = shift_floor(m, mant, sh, cfg.product_width, f"s2_mag{lane}")
            prod = Signal(signed(min(cfg.product_width + 1, cfg.acc_width)), name=f"s2_prod{lane}")
            m.d.comb += prod.eq(Mux(kill, 0, Mux(sign, -mag, mag)))
            products.append(reg(f"s2_prod{lane}_q", prod))
            nars.append(nar)
        any_nar = Signal(name="s2_nar")
        m.d.comb += any_nar.eq(Cat(*nars).any())
        return products, reg("s2_nar_q", any_nar)
