"""The N:M tensor core's contract: its config and its stream payloads.

Conventions are those of :mod:`golden.nm`: a row's weights are groups of ``m``
consecutive elements along the reduction axis K, compressed to ``n`` values and ``n``
log2(m)-bit indices (slot j holds the value at position ``indices[j]`` of the group).
The generator is ``hw.nm_core.NMCore``; docs/formats.md describes the bits.
"""

import dataclasses

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import exact_log2

from .config import BlockConfig, ConfigError, param

__all__ = ["NMCoreConfig", "MAX_ROWS", "group_layout", "weight_group_layout", "beat_layout", "out_layout"]

#: The widest core the generator emits: emission time and memory grow faster than the
#: rows (256 rows: ~20 s; 1,024 rows: minutes and over a gigabyte).
MAX_ROWS = 1024


@dataclasses.dataclass(frozen=True)
class NMCoreConfig(BlockConfig):
    """Parameters of an N:M tensor core (frozen; validated on construction).

    Parameters
    ----------
    n : int
        Multipliers (weight slots) per row; 1 <= n <= m.
    m : int
        Group size along the reduction axis; a power of two, >= 2.
    rows : int
        Output rows computed in parallel (each with its own weights, sharing activations).
    width : int
        Width of activations and weights (two's complement), >= 2.
    acc_width : int
        Accumulator width (two's complement, wraps on overflow), >= 2 * width.
    pipeline : int
        Optional register stages before the accumulator, 0..3 (see module docstring).
        Latency from accepting a ``last`` beat to ``o.valid`` is ``pipeline + 1`` cycles.

    Raises
    ------
    ConfigError
        If any parameter is out of range.
    """

    block = "nm-core"
    ops_unit = "MAC"

    n: int = param(2, "multipliers (weight slots) per row, 1 <= n <= m")
    m: int = param(4, "group size along the reduction axis, a power of two >= 2")
    rows: int = param(1, "output rows computed in parallel, 1..1024")
    width: int = param(8, "activation and weight width in bits, >= 2")
    acc_width: int = param(32, "accumulator width in bits, >= 2 * width")
    pipeline: int = param(3, "optional register stages before the accumulator, 0..3")

    def validate(self):
        if self.m < 2 or self.m & (self.m - 1):
            raise ConfigError(f"m must be a power of two >= 2, not m={self.m!r}")
        if not 1 <= self.n <= self.m:
            raise ConfigError(f"n must satisfy 1 <= n <= m, not n={self.n!r}, m={self.m!r}")
        if not 1 <= self.rows <= MAX_ROWS:
            raise ConfigError(f"rows must be in 1..{MAX_ROWS}, not rows={self.rows!r} (the Verilog of "
                              f"{MAX_ROWS} rows already takes minutes and gigabytes to emit; run wider "
                              "layers as row tiles)")
        if self.width < 2:
            raise ConfigError(f"width must be >= 2, not width={self.width!r}")
        if self.acc_width < 2 * self.width:
            raise ConfigError(f"acc_width must be >= 2 * width = {2 * self.width}, "
                              f"not acc_width={self.acc_width!r}")
        if not 0 <= self.pipeline <= 3:
            raise ConfigError(f"pipeline must be in 0..3, not pipeline={self.pipeline!r}")

    @classmethod
    def from_nm(cls, text: str, **params) -> "NMCoreConfig":
        """``NMCoreConfig.from_nm("2:4", rows=8)``: a core from its ``n:m`` text."""
        try:
            n, m = (int(v) for v in str(text).split(":"))
        except ValueError:
            raise ConfigError(f"core {text!r} is not of the form n:m") from None
        return cls(n=n, m=m, **params)

    @property
    def sparse(self) -> bool:
        """True when the payload carries indices (n < m); False for the dense baseline."""
        return self.n < self.m

    @property
    def index_width(self) -> int:
        """Bits per index: log2(m)."""
        return exact_log2(self.m)

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` beat to ``o.valid`` (no back-pressure)."""
        return self.pipeline + 1

    @property
    def multipliers(self) -> int:
        return self.rows * self.n

    @property
    def effective_macs_per_cycle(self) -> int:
        """Dense-equivalent MACs per cycle at full rate: m per row."""
        return self.rows * self.m

    @property
    def ops_per_cycle(self) -> int:
        """Effective (dense-equivalent) MACs per cycle."""
        return self.effective_macs_per_cycle


def group_layout(n: int, m: int, width: int) -> data.StructLayout:
    """One compressed n:m group: ``values[n]`` (signed ``width`` bits) and, when
    ``n < m``, ``indices[n]`` (log2(m) bits each). A dense group (``n == m``) has no
    indices: slot j is element j. The core's weight port and the top-N unit's terms
    both use this layout, so a term goes to an ``n_t:m`` core's weight port as it is."""
    fields = {"values": data.ArrayLayout(signed(width), n)}
    if n < m:
        fields["indices"] = data.ArrayLayout(unsigned(exact_log2(m)), n)
    return data.StructLayout(fields)


def weight_group_layout(config: NMCoreConfig) -> data.StructLayout:
    """One row's compressed weight group: :func:`group_layout` of the core's n:m."""
    return group_layout(config.n, config.m, config.width)


def beat_layout(config: NMCoreConfig) -> data.StructLayout:
    """Payload of the input stream: one M-group of activations and every row's weights.

    ``last``: this group ends the dot product; its result goes out on ``o`` and the
    next beat starts a new one.
    """
    return data.StructLayout({
        "act": data.ArrayLayout(signed(config.width), config.m),
        "weights": data.ArrayLayout(weight_group_layout(config), config.rows),
        "last": 1,
    })


def out_layout(config: NMCoreConfig) -> data.ArrayLayout:
    """Payload of the output stream: one accumulator per row."""
    return data.ArrayLayout(signed(config.acc_width), config.rows)
