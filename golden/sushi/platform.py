"""The platform the schedulers plan for: an SGS weight buffer (its geometry is its
``spec.sgs_buffer.SGSBufferConfig``, nothing else), the off-chip bandwidth, and the
tensor core the SubNets are priced on.

:data:`CORE` and :data:`OFFCHIP_BYTES_PER_CYCLE` are the SUSHI figures' accelerator: a
dense 256-MAC/cycle core (``NMCoreConfig(n=4, m=4, rows=64)``) fed at 8 bytes per core
cycle, i.e. 32 MACs per off-chip byte: between an FPGA accelerator of SushiAccel's class
(a ZCU104 has ~1.7 k DSPs against ~19 GB/s of DDR4, ~96 bytes per 200 MHz cycle: ~18 MACs
per byte) and edge NPUs, which have far more MACs per byte of LPDDR bandwidth. At batch 1
such a machine is bound by weight traffic on fully connected and transformer layers (and
on convolutions over small feature maps), which is the regime SubGraph-stationary serving
is for.
"""

from dataclasses import dataclass

from spec.nm_core import NMCoreConfig
from spec.sgs_buffer import SGSBufferConfig

from .. import GoldenError

__all__ = ["CORE", "OFFCHIP_BYTES_PER_CYCLE", "Platform"]

#: The tensor core every SUSHI figure prices SubNets on (also the RTL benches' choice).
CORE = NMCoreConfig(n=4, m=4, rows=64)

#: Off-chip bandwidth of the SUSHI figures' platform, bytes per core cycle.
OFFCHIP_BYTES_PER_CYCLE = 8


@dataclass(frozen=True)
class Platform:
    """An SGS buffer and the off-chip memory behind it.

    Parameters
    ----------
    buffer : spec.sgs_buffer.SGSBufferConfig
        The buffer: block size, slots, persistent slots (``tags``), word width all come
        from it.
    offchip_bytes_per_cycle : int
        Off-chip bandwidth in bytes per core cycle, >= 1.
    """

    buffer: SGSBufferConfig
    offchip_bytes_per_cycle: int = OFFCHIP_BYTES_PER_CYCLE

    def __post_init__(self):
        if not isinstance(self.buffer, SGSBufferConfig):
            raise GoldenError(f"a platform needs an SGSBufferConfig, not {self.buffer!r}")
        bw = self.offchip_bytes_per_cycle
        if isinstance(bw, bool) or not isinstance(bw, int) or bw < 1:
            raise GoldenError(f"offchip_bytes_per_cycle must be an integer >= 1, not {bw!r}")

    @property
    def block_bytes(self) -> int:
        return self.buffer.block_bytes

    @property
    def block_words(self) -> int:
        return self.buffer.block_words

    @property
    def word_bytes(self) -> int:
        return self.buffer.word_bytes

    @property
    def capacity_blocks(self) -> int:
        """Block slots in all (persistent + streaming)."""
        return self.buffer.slots

    @property
    def persistent_blocks(self) -> int:
        """Slots of the persistent region (the buffer's tags)."""
        return self.buffer.tags

    @property
    def capacity_bytes(self) -> int:
        return self.buffer.capacity_words * self.buffer.word_bytes

    @classmethod
    def of_size(cls, capacity_bytes: int, block_bytes: int, *, stream_slots: int = 2, word_width: int = 32,
                id_width: int = 12, offchip_bytes_per_cycle: int = OFFCHIP_BYTES_PER_CYCLE) -> "Platform":
        """A buffer of ``capacity_bytes`` in blocks of ``block_bytes``, ``stream_slots`` of its
        slots streaming and the rest persistent.

        Raises
        ------
        GoldenError
            If the buffer is smaller than one block, or leaves no persistent slot.
        """
        word_bytes = word_width // 8
        if capacity_bytes < block_bytes:
            raise GoldenError(f"a buffer of {capacity_bytes} bytes is smaller than one block of "
                              f"{block_bytes} bytes")
        if block_bytes % word_bytes or capacity_bytes % block_bytes:
            raise GoldenError(f"a buffer of {capacity_bytes} bytes is not a whole number of {block_bytes}-byte "
                              f"blocks of {word_width}-bit words")
        slots = capacity_bytes // block_bytes
        if slots <= stream_slots:
            raise GoldenError(f"a buffer of {slots} block(s) of {block_bytes} bytes leaves no persistent slot "
                              f"beside {stream_slots} streaming slot(s)")
        buffer = SGSBufferConfig(capacity_words=capacity_bytes // word_bytes, word_width=word_width,
                                 block_words=block_bytes // word_bytes, tags=slots - stream_slots,
                                 id_width=id_width)
        return cls(buffer, offchip_bytes_per_cycle)
