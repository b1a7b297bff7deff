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

__all__ = ["NMCoreConfig", "MAX_ROWS", "group_layout", "weight_group_layout", "beat_layout", "out_layout",
           "logical_slot", "out_index"]

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
    packing : bool
        VEGETA-style row packing (sparse cores with n >= 2 only): at run time, when
        ``n_active = N'`` divides ``n``, each physical row computes ``n // N'`` logical
        rows per beat (:meth:`pack_factor`; :func:`logical_slot` and :func:`out_index`
        say where each logical row's weights and result are). Costs ``n - 1`` extra
        accumulators per row; off, the core is exactly the plain one.

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
    packing: bool = param(False, "runtime row packing: n_active = N' dividing n runs n/N' rows per row")

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
        if not isinstance(self.packing, bool):
            raise ConfigError(f"packing must be True or False, not packing={self.packing!r}")
        if self.packing and not (2 <= self.n < self.m):
            raise ConfigError(f"packing needs a sparse core with 2 <= n < m, not n={self.n!r}, "
                              f"m={self.m!r} (a dense or 1:m core has nothing to pack)")

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
    def pack_modes(self) -> tuple[int, ...]:
        """The ``n_active`` values that pack (divisors of n below n), ascending; empty
        without packing."""
        if not self.packing:
            return ()
        return tuple(d for d in range(1, self.n) if self.n % d == 0)

    def pack_factor(self, n_active: int | None = None) -> int:
        """Logical rows per physical row at ``n_active`` (default n): ``n // n_active``
        when packing is on and ``n_active`` divides n, else 1."""
        if n_active is None:
            return 1
        if not isinstance(n_active, int) or isinstance(n_active, bool) or not 0 <= n_active <= self.n:
            raise ConfigError(f"n_active must be an integer in 0..{self.n}, not {n_active!r}")
        return self.n // n_active if n_active in self.pack_modes else 1

    @property
    def out_slots(self) -> int:
        """Results per row in the output payload: n with packing (one per accumulator), else 1."""
        return self.n if self.packing else 1

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
    """Payload of the output stream: one accumulator per row, or with packing
    ``config.out_slots`` per row (row r's accumulator q at :func:`out_index`)."""
    return data.ArrayLayout(signed(config.acc_width), config.rows * config.out_slots)


def logical_slot(config: NMCoreConfig, n_active: int, logical: int) -> tuple[int, int]:
    """Where logical row ``logical`` (0 <= logical < rows * pack_factor) of a row block
    goes at ``n_active``: ``(physical row, first weight slot)``. Logical row
    ``r * P + q`` (P = :meth:`NMCoreConfig.pack_factor`) uses physical row r's slots
    ``q * n_active .. (q + 1) * n_active - 1``; with P = 1, slots from 0."""
    p = config.pack_factor(n_active)
    if not 0 <= logical < config.rows * p:
        raise ConfigError(f"logical row {logical!r} is outside 0..{config.rows * p - 1}")
    return logical // p, (logical % p) * (n_active if p > 1 else 0)


def out_index(config: NMCoreConfig, n_active: int, logical: int) -> int:
    """Index in the output payload of logical row ``logical``'s result (see
    :func:`logical_slot`): accumulator ``q`` of physical row ``r`` is ``r * out_slots + q``.
    Accumulators a mode does not use read 0."""
    p = config.pack_factor(n_active)
    if not 0 <= logical < config.rows * p:
        raise ConfigError(f"logical row {logical!r} is outside 0..{config.rows * p - 1}")
    return (logical // p) * config.out_slots + logical % p
