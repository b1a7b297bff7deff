"""The baseline PEs' contract (``int8-pe``, ``fp8-pe``): configs and stream payloads.

INT8 codes are two's-complement int8; FP8 codes are OCP E4M3
(:data:`spec.numerics.FP8_E4M3`). Both use the dot-product PEs' stream formats
(:mod:`spec.pe`). The arithmetic is ``golden.mac``; the generators are in ``hw.mac_pe``.
"""

import dataclasses
from typing import ClassVar

from .config import BlockConfig, ConfigError, param
from .pe import pe_beat_layout, pe_out_layout

__all__ = ["Int8PEConfig", "FP8PEConfig", "beat_layout", "out_layout"]


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
    ops_unit = "product"
    #: Register stages of the product datapath (the multiplier's output register).
    product_stages: ClassVar[int] = 1

    lanes: int = param(4, "int8 x int8 products per cycle, >= 1")
    acc_width: int = param(32, "accumulator width in bits, 16..64")

    def validate(self):
        _check_common(self, 16)

    @property
    def ops_per_cycle(self) -> int:
        """Products per cycle: one per lane."""
        return self.lanes

    @property
    def width(self) -> int:
        return 8

    @property
    def latency(self) -> int:
        return self.product_stages + 2


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
    ops_unit = "product"
    #: Register stages of the product datapath (multiply + exponent add, shift).
    product_stages: ClassVar[int] = 2

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
        return self.product_stages + 2

    @property
    def ops_per_cycle(self) -> int:
        """Products per cycle: one per lane."""
        return self.lanes


def beat_layout(config):
    """Input beat of either baseline PE: ``w[lanes]``, ``a[lanes]`` (8-bit codes), ``last``."""
    return pe_beat_layout(config.lanes, 8)


def out_layout(config):
    return pe_out_layout(config.acc_width)
