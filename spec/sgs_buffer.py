"""The SUSHI SubGraph-stationary weight buffer's contract: config, request op codes and
stream payloads.

The generator is ``hw.sgs_buffer.SGSBuffer``; ``golden.sushi``'s cache model predicts its
counters from the requests alone; docs/formats.md describes the bits.
"""

import dataclasses

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum
from amaranth.utils import ceil_log2

from .config import BlockConfig, ConfigError, param

__all__ = ["SGSBufferConfig", "Op", "request_layout", "fetch_layout", "word_layout", "read_layout",
           "JOB_QUEUE_DEPTH"]


#: Read jobs the front end may queue ahead of the reader.
JOB_QUEUE_DEPTH = 4


class Op(enum.Enum, shape=2):
    """Request op code (``request_layout().op``)."""

    READ = 0
    PIN = 1
    DROP = 2
    #: Accepted and ignored.
    RESERVED = 3


@dataclasses.dataclass(frozen=True)
class SGSBufferConfig(BlockConfig):
    """Parameters of an SGS weight buffer (frozen; validated on construction).

    Parameters
    ----------
    capacity_words : int
        On-chip words in all, a multiple of ``block_words``; the buffer has
        ``capacity_words / block_words`` block slots.
    word_width : int
        Bits per word (a whole number of int8 weights: a multiple of 8, >= 8).
    block_words : int
        Words per weight block, a power of two >= 2.
    tags : int
        Tag-table entries = slots of the persistent region, >= 1; at least one slot must
        be left for the streaming region.
    id_width : int
        Bits of a block id (the buffer can name ``2**id_width`` blocks), 1..32.
    counter_width : int
        Width of the hit/miss/off-chip-word counters, 8..64.

    Raises
    ------
    ConfigError
        If any parameter is out of range (the message names it).
    """

    block = "sgs-buffer"
    ops_unit = "word"

    capacity_words: int = param(2048, "on-chip words in all (persistent + streaming), a multiple of block-words")
    word_width: int = param(32, "bits per word, a multiple of 8")
    block_words: int = param(64, "words per weight block, a power of two >= 2")
    tags: int = param(30, "tag-table entries = persistent slots (the rest of the slots stream)")
    id_width: int = param(12, "bits of a block id")
    counter_width: int = param(32, "width of the hit/miss/off-chip-word counters")

    def validate(self):
        if self.word_width < 8 or self.word_width % 8:
            raise ConfigError(f"word_width must be a multiple of 8, >= 8, not word_width={self.word_width!r}")
        if self.block_words < 2 or self.block_words & (self.block_words - 1):
            raise ConfigError(f"block_words must be a power of two >= 2, not block_words={self.block_words!r}")
        if self.capacity_words < self.block_words:
            raise ConfigError(f"capacity_words={self.capacity_words!r} is smaller than one block "
                              f"(block_words={self.block_words})")
        if self.capacity_words % self.block_words:
            raise ConfigError(f"capacity_words={self.capacity_words!r} is not a multiple of "
                              f"block_words={self.block_words}")
        if self.tags < 1:
            raise ConfigError(f"tags must be >= 1, not tags={self.tags!r}")
        if self.tags >= self.slots:
            raise ConfigError(f"tags={self.tags!r} leaves no streaming slot: the buffer has "
                              f"{self.slots} slot(s) of {self.block_words} words, so tags must be "
                              f"<= {self.slots - 1}")
        if not 1 <= self.id_width <= 32:
            raise ConfigError(f"id_width must be in 1..32, not id_width={self.id_width!r}")
        if not 8 <= self.counter_width <= 64:
            raise ConfigError(f"counter_width must be in 8..64, not counter_width={self.counter_width!r}")

    @property
    def slots(self) -> int:
        """Block slots in all."""
        return self.capacity_words // self.block_words

    @property
    def stream_slots(self) -> int:
        """Slots of the streaming region."""
        return self.slots - self.tags

    @property
    def word_bytes(self) -> int:
        return self.word_width // 8

    @property
    def block_bytes(self) -> int:
        return self.block_words * self.word_bytes

    @property
    def slot_width(self) -> int:
        """Bits of the ``slot`` field of a request (names persistent slots 0..tags-1)."""
        return max(1, ceil_log2(self.tags))


def request_layout(config: SGSBufferConfig) -> data.StructLayout:
    """A request: ``op`` (:class:`Op`), ``block`` (id, READ and PIN), ``slot`` (PIN, DROP)."""
    return data.StructLayout({"op": Op, "block": unsigned(config.id_width),
                              "slot": unsigned(config.slot_width)})


def fetch_layout(config: SGSBufferConfig) -> data.StructLayout:
    """An off-chip read request: the block whose ``block_words`` words must come on ``fill``."""
    return data.StructLayout({"block": unsigned(config.id_width)})


def word_layout(config: SGSBufferConfig) -> data.ArrayLayout:
    """A buffer word: ``word_width / 8`` int8 weights, element 0 in the low bits."""
    return data.ArrayLayout(signed(8), config.word_bytes)


def read_layout(config: SGSBufferConfig) -> data.StructLayout:
    """A word on the read port, and whether it is the last of its block."""
    return data.StructLayout({"word": word_layout(config), "last": 1})
