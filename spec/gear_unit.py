"""The GEAR KV reconstruction unit's contract: its fixed-point format, config and
stream payloads.

:class:`GearFixedFormat` is the arithmetic's format (widths and fraction bits of S, Z,
the factors and the output); ``golden.gear.to_fixed`` converts a compressed cache into it
and :class:`GearUnitConfig` (whose fields include it, with the same defaults) is the unit
that computes in it. The generator is ``hw.gear_unit.GearUnit``; docs/formats.md
describes the bits.
"""

import dataclasses

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from .config import BlockConfig, ConfigError, param

__all__ = ["GearFixedFormat", "GearUnitConfig", "row_layout", "outlier_layout", "factor_layout",
           "out_layout"]


@dataclasses.dataclass(frozen=True)
class GearFixedFormat:
    """Widths of the GEAR fixed-point fields. All values are integers in units of
    ``2**-frac_bits`` of the output LSB, except the factor products (``2**-factor_frac``).

    Members
    -------
    frac_bits : fraction bits of S, Z and the aligned factor products below the output LSB
    scale_width : width of the unsigned per-group scale S
    zero_width : width of the signed per-group zero Z
    factor_width : width of each signed low-rank factor value
    out_width : output width (two's complement)
    factor_frac : fraction bits of the factor products (<= frac_bits)
    """

    frac_bits: int = 4
    scale_width: int = 12
    zero_width: int = 16
    factor_width: int = 5
    out_width: int = 8
    factor_frac: int = 3


_DEFAULT = GearFixedFormat()


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
    ops_unit = "value"

    head_dim: int = param(32, "values per reconstructed row (lanes), >= 1")
    group_size: int = param(1, "lanes sharing one scale/zero pair per row beat; divides head_dim")
    rank: int = param(4, "low-rank factors per row, 0..head_dim")
    max_bits: int = param(4, "code field width, 2..8 (runtime bits input selects 2 or 4)")
    frac_bits: int = param(_DEFAULT.frac_bits, "fractional bits of S and Z below the output LSB, 1..16")
    scale_width: int = param(_DEFAULT.scale_width, "width of the unsigned per-group scale S, 2..24")
    zero_width: int = param(_DEFAULT.zero_width, "width of the signed per-group zero Z, 2..32")
    factor_width: int = param(_DEFAULT.factor_width, "width of each signed low-rank factor value, 2..16")
    factor_frac: int = param(_DEFAULT.factor_frac, "fractional bits of the factor products, 0..frac_bits")
    out_width: int = param(_DEFAULT.out_width, "output width (two's complement), 2..32")
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
    def fixed_format(self) -> "GearFixedFormat":
        """The fixed-point format this unit computes in (``golden.gear.to_fixed``'s)."""
        return GearFixedFormat(**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(GearFixedFormat)})

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

    @property
    def ops_per_cycle(self) -> int:
        """Reconstructed int8 values per cycle: one row."""
        return self.values_per_cycle


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
