"""The dot-product arrays' contract (``lp-array``, ``int8-array``, ``fp8-array``): their
configs and their stream payloads.

An array has ``rows`` x ``cols`` products per cycle. Each row holds ``cols`` weights
(weight-stationary, loaded one row per transfer on the ``wl`` stream); each input beat
carries ``cols`` activation codes, broadcast to every row. A dot product is the run of
beats up to and including one with ``last`` set; the array then emits one accumulator
per row. A row's arithmetic is exactly that of the matching single PE with
``lanes = cols`` (``golden.lp.fixed_products``, ``golden.mac``), so each config
validates through the PE config it names (:meth:`pe`), and the per-format rules stay
in one place.
"""

import dataclasses
from typing import ClassVar

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from .config import BlockConfig, ConfigError, param
from .lp_pe import LPPEConfig
from .mac_pe import FP8PEConfig, Int8PEConfig

__all__ = ["LPArrayConfig", "Int8ArrayConfig", "FP8ArrayConfig", "MAX_ROWS", "MAX_COLS",
           "array_beat_layout", "array_load_layout", "array_out_layout", "stored_weight_bits"]

MAX_ROWS = MAX_COLS = 64


class _ArrayMixin:
    """Shape checks and the figures every array shares."""

    def _check_shape(self):
        if not 1 <= self.rows <= MAX_ROWS:
            raise ConfigError(f"rows must be in 1..{MAX_ROWS}, not rows={self.rows!r}")
        if not 1 <= self.cols <= MAX_COLS:
            raise ConfigError(f"cols must be in 1..{MAX_COLS}, not cols={self.cols!r}")
        self.pe()                                  # the per-row arithmetic's own checks

    @property
    def ops_per_cycle(self) -> int:
        """Products per cycle: ``rows * cols``."""
        return self.rows * self.cols

    @property
    def width(self) -> int:
        return self.pe().width

    @property
    def product_stages(self) -> int:
        return self.pe().product_stages

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` beat to ``o.valid`` (no back-pressure)."""
        return self.product_stages + 2

    def check_layer(self, out_features: int, in_features: int):
        """Raise :class:`ConfigError` unless a layer of ``out_features`` x ``in_features``
        tiles onto the array (``rows`` divides the outputs, ``cols`` the inputs)."""
        for what, size, name, unit in (("out_features", out_features, "rows", self.rows),
                                       ("in_features", in_features, "cols", self.cols)):
            if size < 1 or size % unit:
                raise ConfigError(f"{what}={size} does not divide into the array's {name}={unit}")


@dataclasses.dataclass(frozen=True)
class LPArrayConfig(_ArrayMixin, BlockConfig):
    """Parameters of the LP array (frozen; validated on construction). The format and
    datapath parameters mean what they mean for :class:`spec.lp_pe.LPPEConfig`.

    Defaults: LP<6, 1, 2>, 3-bit table fractions, a 12-bit product window with 8
    fraction bits: on the digits CNN this datapath's bit-exact top-1 equals the float LP
    one (``tessera bench lp`` measures it); the window must then hold a layer's products
    (``sf`` chosen so), as with ``prod_width`` on the PE. On MiniLM that window is too
    narrow (its products span more than 12 bits, and the small ones truncate to 0): the
    bench measures the cosine at ``prod_width=16`` too, which keeps the float LP one."""

    block = "lp-array"
    ops_unit = "product"

    rows: int = param(4, "output rows (each holds cols weights), 1..64")
    cols: int = param(4, "broadcast activations per beat, 1..64")
    n: int = param(6, "LP word width in bits, 3..10")
    es: int = param(1, "LP exponent bits, 0..3")
    rs: int = param(2, "LP regime cap, 1..n-1")
    table_bits: int = param(3, "fraction bits of the 2^frac table entries, 1..16")
    acc_width: int = param(24, "accumulator width in bits, 8..64")
    acc_frac: int = param(8, "fraction bits of the accumulator, 0..acc_width-1")
    sf_width: int = param(6, "width of the signed runtime scale input sf, 2..8")
    prod_width: int = param(12, "product magnitude window in bits, 4..acc_width, or 0 for acc_width")

    def validate(self):
        self._check_shape()

    def pe(self) -> LPPEConfig:
        """The single PE whose arithmetic one row computes (``lanes = cols``)."""
        return LPPEConfig(n=self.n, es=self.es, rs=self.rs, lanes=self.cols,
                          table_bits=self.table_bits, acc_width=self.acc_width,
                          acc_frac=self.acc_frac, sf_width=self.sf_width, prod_width=self.prod_width)


@dataclasses.dataclass(frozen=True)
class Int8ArrayConfig(_ArrayMixin, BlockConfig):
    """Parameters of the INT8 array: int8 x int8 products, ``acc_width`` accumulators."""

    block = "int8-array"
    ops_unit = "product"

    rows: int = param(4, "output rows (each holds cols weights), 1..64")
    cols: int = param(4, "broadcast activations per beat, 1..64")
    acc_width: int = param(24, "accumulator width in bits, 16..64")

    def validate(self):
        self._check_shape()

    def pe(self) -> Int8PEConfig:
        return Int8PEConfig(lanes=self.cols, acc_width=self.acc_width)


@dataclasses.dataclass(frozen=True)
class FP8ArrayConfig(_ArrayMixin, BlockConfig):
    """Parameters of the FP8 (E4M3) array (products exact, truncated to ``acc_frac``)."""

    block = "fp8-array"
    ops_unit = "product"

    rows: int = param(4, "output rows (each holds cols weights), 1..64")
    cols: int = param(4, "broadcast activations per beat, 1..64")
    acc_width: int = param(32, "accumulator width in bits, 8..64")
    acc_frac: int = param(16, "fraction bits of the accumulator, 0..acc_width-1")

    def validate(self):
        self._check_shape()

    def pe(self) -> FP8PEConfig:
        return FP8PEConfig(lanes=self.cols, acc_width=self.acc_width, acc_frac=self.acc_frac)


def array_beat_layout(config) -> data.StructLayout:
    """Activation beat: ``a[cols]`` codes of ``width`` bits and ``last``."""
    return data.StructLayout({"a": data.ArrayLayout(unsigned(config.width), config.cols), "last": 1})


def array_load_layout(config) -> data.StructLayout:
    """Weight load: the ``row`` to load and its ``w[cols]`` codes."""
    return data.StructLayout({"row": unsigned(max(1, (config.rows - 1).bit_length())),
                              "w": data.ArrayLayout(unsigned(config.width), config.cols)})


def array_out_layout(config) -> data.StructLayout:
    """Output: one ``acc`` per row (signed ``acc_width``) and its ``nar`` flag."""
    return data.StructLayout({"acc": data.ArrayLayout(signed(config.acc_width), config.rows),
                              "nar": data.ArrayLayout(unsigned(1), config.rows)})


def stored_weight_bits(config) -> int:
    """Bits one weight occupies in the array's weight registers (as the array stores it:
    LP pre-decoded to sign, kill, NaR and the fixed-point log; FP8 to sign, 4-bit
    significand, 4-bit exponent and NaN; INT8 as four radix-4 Booth digits of 3 bits)."""
    if isinstance(config, LPArrayConfig):
        pe = config.pe()
        return 3 + pe.frac_bits + pe.es + Shape.cast(range(-pe.rs, pe.rs)).width
    if isinstance(config, FP8ArrayConfig):
        return 10
    return 12
