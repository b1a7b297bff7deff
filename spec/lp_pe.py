"""The logarithmic-posit PE's contract: its config and its stream payloads.

Both operands are LP<n, es, rs> codes (``golden.lp``); the arithmetic, bit for bit, is
``golden.lp.fixed_products`` with the table :func:`spec.numerics.lp_exp2_table`. The
stream formats are the dot-product PEs' (:mod:`spec.pe`). The generator is
``hw.lp_pe.LPPE``.
"""

import dataclasses
from typing import ClassVar

from .config import BlockConfig, ConfigError, param
from .numerics import lp_frac_bits
from .pe import pe_beat_layout, pe_out_layout

__all__ = ["LPPEConfig", "beat_layout", "out_layout"]


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
    ops_unit = "product"
    #: Register stages of the product datapath (decode, log add + table, shift).
    product_stages: ClassVar[int] = 3

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
        return lp_frac_bits(self.n, self.es, self.rs)

    @property
    def sf_range(self) -> range:
        return range(-(1 << (self.sf_width - 1)), 1 << (self.sf_width - 1))

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` beat to ``o.valid`` (no back-pressure)."""
        return self.product_stages + 2

    @property
    def ops_per_cycle(self) -> int:
        """Products per cycle: one per lane."""
        return self.lanes


def beat_layout(config: LPPEConfig):
    """Input beat: ``w[lanes]``, ``a[lanes]`` (n-bit LP codes) and ``last``."""
    return pe_beat_layout(config.lanes, config.n)


def out_layout(config: LPPEConfig):
    """Output: ``acc`` (signed, ``acc_width``; value ``acc / 2^acc_frac``) and ``nar``."""
    return pe_out_layout(config.acc_width)
