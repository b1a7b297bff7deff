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
drive all three alike. The E4M3 bit layout is :data:`fp8_layout`.
"""

import dataclasses

from amaranth import C, Cat, Mux, Signal, signed, unsigned
from amaranth.lib import data

from .config import BlockConfig, ConfigError, param
from .pe import DotProductPE, pe_beat_layout, pe_out_layout, shift_floor

__all__ = ["Int8PEConfig", "Int8PE", "FP8PEConfig", "FP8PE", "fp8_layout", "beat_layout", "out_layout"]

#: An E4M3 code, LSB first: 3 mantissa bits, 4 exponent bits (bias 7), the sign.
fp8_layout = data.StructLayout({"mant": unsigned(3), "exp": unsigned(4), "sign": unsigned(1)})


def _check_common(cfg, min_acc):
    if cfg.lanes < 1:
        raise ConfigError(f"lanes must be >= 1, not lanes={cfg.lanes!r}")
    if not min_acc <= cfg.acc_width <= 64:
        raise ConfigError(f"acc_width must be in {min_acc}..64, not acc_width={cfg.acc_width!r}")


@dataclasses.dataclass(frozen=True)
class Int8PEConfig(BlockConfig):
    """Parameters of the INT8 MAC PE.

    Parameters
    ----------
    lanes : int
        int8 x int8 products per cycle, >= 1.
    acc_width : int
        Accumulator width (two's complement, wraps), 16..64.
    """

    block = "int8-pe"

    lanes: int = param(4, "int8 x int8 products per cycle, >= 1")
    acc_width: int = param(32, "accumulator width in bits, 16..64")

    def validate(self):
        _check_common(self, 16)

    @property
    def width(self) -> int:
        return 8

    @property
    def latency(self) -> int:
        return Int8PE.product_stages + 2


@dataclasses.dataclass(frozen=True)
class FP8PEConfig(BlockConfig):
    """Parameters of the FP8 (E4M3) MAC PE.

    Parameters
    ----------
    lanes : int
        E4M3 x E4M3 products per cycle, >= 1.
    acc_width : int
        Accumulator width (two's complement, wraps), 8..64.
    acc_frac : int
        Fraction bits of the accumulator, 0..acc_width-1 (18 keeps every product exact).
    """

    block = "fp8-pe"

    lanes: int = param(4, "E4M3 x E4M3 products per cycle, >= 1")
    acc_width: int = param(32, "accumulator width in bits, 8..64")
    acc_frac: int = param(16, "fraction bits of the accumulator, 0..acc_width-1")

    def validate(self):
        _check_common(self, 8)
        if not 0 <= self.acc_frac < self.acc_width:
            raise ConfigError(f"acc_frac must be in 0..acc_width-1={self.acc_width - 1}, "
                              f"not acc_frac={self.acc_frac!r}")

    @property
    def width(self) -> int:
        return 8

    @property
    def latency(self) -> int:
        return FP8PE.product_stages + 2


class Int8PE(DotProductPE):
    """INT8 MAC PE: ``o.payload.acc`` = wrapped sum of ``w[l] * a[l]`` (codes read as
    int8) over a dot product's beats. See :class:`hw.pe.DotProductPE` for the ports."""

    product_stages = 1

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

    product_stages = 2

    def __init__(self, config: FP8PEConfig):
        if not isinstance(config, FP8PEConfig):
            raise ConfigError(f"FP8PE needs an FP8PEConfig, not {config!r}")
        super().__init__(config)

    def _products(self, m, reg):
        cfg = self.config
        beat = self.i.payload

        def decode(code):
            f = fp8_layout(code)
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
            m.d.comb += [pm.eq(wm * am), sh.eq(we + ae + (cfg.acc_frac - 20))]
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


def beat_layout(config):
    """Input beat of either baseline PE: ``w[lanes]``, ``a[lanes]`` (8-bit codes), ``last``."""
    return pe_beat_layout(config.lanes, 8)


def out_layout(config):
    return pe_out_layout(config.acc_width)
