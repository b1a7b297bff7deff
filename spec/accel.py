"""The Tessera accelerator's configuration: the N:M core, the optional top-N unit, the
scratchpads, the AXI interfaces and the queues, cross-checked as one object.

Scratchpads (``amaranth.lib.memory`` SRAMs, addressed in rows; docs/isa.md)
---------------------------------------------------------------------------
========  =====================================================  ======================
SRAM      one row is                                             rows (config field)
========  =====================================================  ======================
``act``   one core activation group: ``m`` int8 (``m`` bytes)    ``act_rows``
``wgt``   one core weight field: ``rows`` compressed groups      ``wgt_rows``
``acc``   one core output: ``rows`` int32 accumulators           ``acc_rows``
``param`` one output channel's POST parameters (64 bits)         ``param_rows``
========  =====================================================  ======================

So every SRAM row is a whole core beat (or core output), and a GEMM reads one ``act`` row
and one ``wgt`` row per cycle. The optional LP array (``lp``) takes its operands, LP codes
in the low ``n`` bits of each byte, from ``act`` alone: activations and weight tiles. In DRAM a row of each SRAM occupies :meth:`pitch` bytes
(its bytes rounded up to a power of two), so rows never straddle a power-of-two
boundary; LOAD and STORE addresses and strides are multiples of the pitch.

The AXI4 master is ``axi_data_width`` bits wide (64, 128 or 256) with
``axi_addr_width``-bit byte addresses and bursts of at most ``max_burst`` beats that
never cross a 4 KiB boundary. The host programs the machine through an AXI4-Lite slave
(32-bit registers, :mod:`spec.isa` ``CSR``).
"""

import dataclasses
import functools

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2, exact_log2

from .config import BlockConfig, ConfigError, SpecError, param
from .nm_core import NMCoreConfig, beat_layout, out_layout
from .pe_array import LPArrayConfig
from .topn import TopNConfig

__all__ = ["AcceleratorConfig", "MEMORIES", "PARAM_BITS"]

#: The scratchpads, in the order of the LOAD/STORE ``mem`` field (:class:`spec.isa.Mem`).
MEMORIES = ("act", "wgt", "acc", "param")

#: Bits of one channel's POST parameters (``spec.isa.param_layout``): bias, mult, shift.
PARAM_BITS = 64


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig(BlockConfig):
    """Parameters of the accelerator (frozen; validated on construction).

    Parameters
    ----------
    n, m, rows, pipeline : int
        The N:M tensor core (:class:`spec.nm_core.NMCoreConfig`, int8 x int8 -> int32).
    packing : bool
        VEGETA-style row packing of the core (:attr:`spec.nm_core.NMCoreConfig.packing`):
        a GEMM with ``pack = k`` and ``n_active = n >> k`` runs ``2**k`` logical rows per
        core row (docs/isa.md). Needs a sparse core with ``n`` a power of two >= 2; an
        ``acc`` row then holds ``rows * n`` accumulators (:meth:`acc_lanes`).
    lp : str
        The LP array unit, GEMM ``unit = 1`` (:class:`spec.pe_array.LPArrayConfig`):
        its format ``"n,es,rs"`` (e.g. ``"6,1,2"``, ``n <= 8``: a code sits in the low
        ``n`` bits of an ``act`` byte), or ``""`` for none. The array is ``rows`` x ``m``
        (one ``act`` row is one broadcast beat) with the array's default datapath
        (:attr:`lp_array`); its runtime scale is the GEMM's ``sf`` field (docs/isa.md).
    topn : str
        TASD series of the activation top-N unit (e.g. ``"2:4+1:4"``), or ``""`` for no
        unit. Its m must be the core's and every term must fit the core's slots.
    act_rows, wgt_rows, acc_rows, param_rows : int
        Depth of each scratchpad in rows, 2..65536.
    axi_data_width : int
        Data width of the AXI4 master: 64, 128 or 256.
    axi_addr_width : int
        Byte-address width of the AXI4 master, 16..32.
    max_burst : int
        Longest AXI4 burst in beats: 1, 2, 4, 8 or 16.
    queue_depth : int
        Instructions each of the load, compute and store queues holds, 1..64.
    token_depth : int
        Tokens each of the four dependency-token FIFOs holds, 1..64.

    Raises
    ------
    ConfigError
        If a parameter is out of range or the parts do not fit together.
    """

    block = "accel"

    n: int = param(2, "core: multipliers per row (N of N:M)")
    m: int = param(4, "core: group size (M of N:M), a power of two")
    rows: int = param(4, "core: output rows computed in parallel")
    pipeline: int = param(3, "core: register stages before the accumulator, 0..3")
    packing: bool = param(False, "core: runtime row packing (GEMM/POST pack field), n a power of two")
    lp: str = param("", "LP array unit (GEMM unit 1): its format n,es,rs (e.g. 6,1,2), or empty for none")
    topn: str = param("", "activation top-N series (e.g. 2:4+1:4), or empty for none")
    act_rows: int = param(1024, "activation SRAM rows (one m-group of int8 each)")
    wgt_rows: int = param(256, "weight SRAM rows (one compressed group per core row each)")
    acc_rows: int = param(256, "accumulator SRAM rows (one int32 per core row each)")
    param_rows: int = param(256, "POST parameter SRAM rows (one output channel each)")
    axi_data_width: int = param(64, "AXI4 master data width: 64, 128 or 256")
    axi_addr_width: int = param(32, "AXI4 master byte-address width, 16..32")
    max_burst: int = param(16, "longest AXI4 burst in beats: 1, 2, 4, 8 or 16")
    queue_depth: int = param(1, "instructions waiting per load/compute/store queue (besides the one its unit runs), 1..64")
    token_depth: int = param(8, "tokens per dependency FIFO, 1..64")

    def validate(self):
        try:
            core = self.core
        except ConfigError as exc:
            raise ConfigError(f"core: {exc}") from None
        if core.rows > 64:
            raise ConfigError(f"rows must be <= 64, not rows={self.rows!r}")
        if self.packing and self.n & (self.n - 1):
            raise ConfigError(f"packing needs n a power of two (pack = log2 of the logical rows per "
                              f"core row), not n={self.n!r}")
        if self.lp:
            self._check_lp()
        if self.topn:
            try:
                topn = TopNConfig(series=self.topn)
            except ConfigError as exc:
                raise ConfigError(f"topn: {exc}") from None
            self._canonical("topn", topn.series)
            if topn.m != core.m:
                raise ConfigError(f"the top-N unit's m={topn.m} must be the core's m={core.m} "
                                  f"(topn={self.topn!r})")
            wide = [f"{n}:{m}" for n, m in topn.terms if n > core.n]
            if wide:
                raise ConfigError(f"top-N term(s) {', '.join(wide)} need more than the core's "
                                  f"n={core.n} slots (topn={self.topn!r})")
        for name in ("act_rows", "wgt_rows", "acc_rows", "param_rows"):
            value = getattr(self, name)
            if not 2 <= value <= 1 << 16:
                raise ConfigError(f"{name} must be in 2..65536, not {name}={value!r}")
        if self.axi_data_width not in (64, 128, 256):
            raise ConfigError(f"axi_data_width must be 64, 128 or 256, not {self.axi_data_width!r}")
        if not 16 <= self.axi_addr_width <= 32:
            raise ConfigError(f"axi_addr_width must be in 16..32, not {self.axi_addr_width!r}")
        if self.max_burst not in (1, 2, 4, 8, 16):
            raise ConfigError(f"max_burst must be 1, 2, 4, 8 or 16, not {self.max_burst!r}")
        for name in ("queue_depth", "token_depth"):
            value = getattr(self, name)
            if not 1 <= value <= 64:
                raise ConfigError(f"{name} must be in 1..64, not {name}={value!r}")
        if self.pitch("act") > self.bus_bytes:
            raise ConfigError(f"an activation row ({self.m} bytes) must fit one AXI beat of "
                              f"{self.bus_bytes} bytes: use a wider axi_data_width")

    # --- parts ----------------------------------------------------------------------
    @property
    def core(self) -> NMCoreConfig:
        """The tensor core (int8 operands, int32 accumulators)."""
        return NMCoreConfig(n=self.n, m=self.m, rows=self.rows, width=8, acc_width=32,
                            pipeline=self.pipeline, packing=self.packing)

    @property
    def max_pack(self) -> int:
        """The largest GEMM/POST ``pack`` field: log2(n) with packing, else 0."""
        return exact_log2(self.n) if self.packing else 0

    @property
    def acc_lanes(self) -> int:
        """Accumulators per ``acc`` row: ``rows``, or ``rows * n`` with packing (lane ``l``
        of a row is logical row ``l`` of its block; docs/isa.md)."""
        return self.rows * self.core.out_slots

    def block_rows(self, pack: int = 0) -> int:
        """Logical output rows per row block of a GEMM or POST with field ``pack``."""
        if not isinstance(pack, int) or not 0 <= pack <= self.max_pack:
            raise SpecError(f"pack must be in 0..{self.max_pack} on this machine, not {pack!r}")
        return self.rows << pack

    def _check_lp(self):
        parts = self.lp.split(",")
        try:
            n, es, rs = (int(x) for x in parts)
        except ValueError:
            raise ConfigError(f"lp must be 'n,es,rs' (e.g. '6,1,2') or empty, not lp={self.lp!r}") from None
        if not 3 <= n <= 8:
            raise ConfigError(f"the LP unit's codes sit in act bytes: n must be in 3..8, not n={n} (lp={self.lp!r})")
        if self.packing:
            raise ConfigError("the LP unit and row packing are not combined: set lp or packing, not both")
        try:
            self.lp_array
        except ConfigError as exc:
            raise ConfigError(f"lp: {exc} (lp={self.lp!r})") from None
        self._canonical("lp", f"{n},{es},{rs}")

    @property
    def lp_format(self) -> tuple[int, int, int] | None:
        """The LP unit's ``(n, es, rs)``, or None without the unit."""
        return tuple(int(x) for x in self.lp.split(",")) if self.lp else None

    @property
    def lp_array(self) -> LPArrayConfig | None:
        """The LP unit: an ``rows`` x ``m`` :class:`spec.pe_array.LPArrayConfig` in the
        :attr:`lp_format`, with the array's default datapath (table, window, 24-bit
        accumulators with 8 fraction bits, 6-bit ``sf``: the GEMM ``sf`` field)."""
        if not self.lp:
            return None
        n, es, rs = self.lp_format
        return LPArrayConfig(rows=self.rows, cols=self.m, n=n, es=es, rs=rs)

    @property
    def units(self) -> int:
        """GEMM compute units: 1 (the core), 2 with the LP unit."""
        return 2 if self.lp else 1

    @property
    def topn_config(self) -> TopNConfig | None:
        return TopNConfig(series=self.topn) if self.topn else None

    @property
    def bus_bytes(self) -> int:
        return self.axi_data_width // 8

    # --- scratchpads ----------------------------------------------------------------
    def depth(self, mem: str) -> int:
        """Rows of scratchpad ``mem`` (one of :data:`MEMORIES`)."""
        self._check_mem(mem)
        return getattr(self, f"{mem}_rows")

    def row_bits(self, mem: str) -> int:
        """Bits of one row of scratchpad ``mem``."""
        return _row_bits(self, mem)

    def row_layout(self, mem: str):
        """The layout of one row of ``mem``: the core's ``act`` field, its ``weights``
        field, its output, or :func:`spec.isa.param_layout`'s 64 bits."""
        return _row_layout(self, mem)

    def _row_layout(self, mem: str):
        self._check_mem(mem)
        if mem == "act":
            return beat_layout(self.core).members["act"]
        if mem == "wgt":
            return beat_layout(self.core).members["weights"]
        if mem == "acc":
            return out_layout(self.core)
        return data.StructLayout({"bias": signed(32), "mult": unsigned(16), "shift": unsigned(6),
                                  "reserved": unsigned(PARAM_BITS - 54)})

    def row_bytes(self, mem: str) -> int:
        """Bytes a STORE writes per row (and a LOAD uses): the row's bits, rounded up."""
        return -(-self.row_bits(mem) // 8)

    def pitch(self, mem: str) -> int:
        """Bytes one row of ``mem`` occupies in DRAM: its bytes, rounded up to a power of two."""
        return _pitch(self, mem)

    def addr_bits(self, mem: str) -> int:
        """Bits of a row address of ``mem``."""
        return max(1, ceil_log2(self.depth(mem)))

    @staticmethod
    def _check_mem(mem: str) -> None:
        if mem not in MEMORIES:
            raise SpecError(f"unknown scratchpad {mem!r}; scratchpads: {', '.join(MEMORIES)}")


# Layouts are rebuilt on every call otherwise (Amaranth layouts are not cheap): a frozen
# config is hashable, so its derived formats are cached per (config, scratchpad).
@functools.lru_cache(maxsize=256)
def _row_layout(config: AcceleratorConfig, mem: str):
    return config._row_layout(mem)


@functools.lru_cache(maxsize=256)
def _row_bits(config: AcceleratorConfig, mem: str) -> int:
    config._check_mem(mem)
    return data.Layout.cast(_row_layout(config, mem)).size


@functools.lru_cache(maxsize=256)
def _pitch(config: AcceleratorConfig, mem: str) -> int:
    return 1 << ceil_log2(-(-_row_bits(config, mem) // 8))
