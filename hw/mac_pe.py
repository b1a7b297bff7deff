"""Baseline dot-product PEs with the LP PE's interface (``hw/pe.py``): INT8 and FP8 (E4M3).

``int8-pe`` (``Int8PE``): int8 x int8 multipliers, one per lane; latency 3::

    a * w (lanes) --[R: product]--> lane adder tree --[R]--> accumulate --[o.payload]

``fp8-pe`` (``FP8PE``): OCP E4M3 ("fn": no infinities, ``S.1111.111`` is NaN) operands,
products exact (a 4x4-bit mantissa multiplier and an exponent add per lane), shifted
into the accumulator's fixed point with truncation (``golden.mac.fp8_products``);
latency 4::

    decode, mant_w * mant_a, E'_w + E'_a --[R]--> shift, +/- --[R]--> tree --[R]--> acc

Both use the LP PE's stream formats (codes as unsigned ``width``-bit words, ``last``,
and ``acc``/``nar`` out; ``int8-pe`` never sets ``nar``), so benches and the compiler
drive all three alike. The E4M3 bit layout is :data:`spec.numerics.FP8_E4M3`; the configs are in :mod:`spec.mac_pe`.
"""

from amaranth import C, Cat, Mux, Signal, signed

from spec import ConfigError
from spec.mac_pe import FP8PEConfig, Int8PEConfig
from spec.numerics import FP8_E4M3, FP8_EXP_OFFSET

from .pe import DotProductPE, shift_floor

__all__ = ["Int8PE", "FP8PE"]

class Int8PE(DotProductPE):
    """INT8 MAC PE: ``o.payload.acc`` = wrapped sum of ``w[l] * a[l]`` (codes read as
    int8) over a dot product's beats. See :class:`hw.pe.DotProductPE` for the ports."""

    def __init__(self, config: Int8PEConfig):
        if not isinstance(config, Int8PEConfig):
            raise ConfigError(f"Int8PE needs an Int8PEConfig, not {config!r}")
        super().__init__(config)

    def _products(self, m, reg):
        beat = self.i.payload
        products = []
        for lane in range(self.config.lanes):
            p = Signal(signed(16), name=f"prod{lane}")
            m.d.comb += p.eq(beat.w[lane].as_signed() * beat.a[lane].as_signed())
            products.append(reg(f"prod{lane}_q", p))
        return products, C(0, 1)


class FP8PE(DotProductPE):
    """FP8 (E4M3) MAC PE: ``o.payload.acc`` = wrapped sum of the products
    ``golden.mac.fp8_products`` defines, in units of ``2^-acc_frac``; ``nar``: some
    operand was NaN. See :class:`hw.pe.DotProductPE` for the ports."""

    def __init__(self, config: FP8PEConfig):
        if not isinstance(config, FP8PEConfig):
            raise ConfigError(f"FP8PE needs an FP8PEConfig, not {config!r}")
        super().__init__(config)

    def _products(self, m, reg):
        cfg = self.config
        beat = self.i.payload

        def decode(code):
            f = FP8_E4M3(code)
            normal = f.exp != 0
            mant = Cat(f.mant, normal)                       # 1.mmm or 0.mmm, times 8
            exp = Mux(normal, f.exp, 1)
            nan = (f.exp == 15) & (f.mant == 7)
            return f.sign, mant, exp, nan

        stage0 = []
        for lane in range(cfg.lanes):
            ws, wm, we, wn = decode(beat.w[lane])
            as_, am, ae, an = decode(beat.a[lane])
            pm = Signal(8, name=f"s0_pm{lane}")
            sh = Signal(signed(8), name=f"s0_sh{lane}")
            m.d.comb += [pm.eq(wm * am), sh.eq(we + ae + (cfg.acc_frac - 2 * FP8_EXP_OFFSET))]
            stage0.append((reg(f"s0_sign{lane}", ws ^ as_), reg(f"s0_nan{lane}", wn | an),
                           reg(f"s0_pm{lane}_q", pm), reg(f"s0_sh{lane}_q", sh)))

        products, nans = [], []
        for lane, (sign, nan, pm, sh) in enumerate(stage0):
            mag = shift_floor(m, pm, sh, cfg.acc_width, f"s1_mag{lane}")
            prod = Signal(signed(cfg.acc_width), name=f"s1_prod{lane}")
            m.d.comb += prod.eq(Mux(nan, 0, Mux(sign, -mag, mag)))
            products.append(reg(f"s1_prod{lane}_q", prod))
            nans.append(nan)
        any_nan = Signal(name="s1_nan")
        m.d.comb += any_nan.eq(Cat(*nans).any())
        return products, reg("s1_nan_q", any_nan)
