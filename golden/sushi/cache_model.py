"""Bit-true cache models: the SGS buffer's golden twin, and the LRU baseline.

:class:`SGSCacheModel` replays the request stream a schedule produces (:class:`Command`,
op codes :class:`spec.sgs_buffer.Op`) and counts hits, misses, pins and off-chip words
exactly as ``hw.sgs_buffer``'s counters do; the instruction-set simulator and the RTL
benches call it, so this module imports numpy and :mod:`spec` only (never torch).
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from spec.sgs_buffer import Op

from .. import GoldenError

__all__ = ["Command", "SGSCacheModel", "LRUCacheModel"]

#: The ops a schedule may send (``Op.RESERVED`` is the hardware's ignored code).
_OPS = (Op.READ, Op.PIN, Op.DROP)


@dataclass(frozen=True)
class Command:
    """One request to the SGS buffer (``spec.sgs_buffer.request_layout``).

    ``Op.READ``: deliver ``block``'s words to the core (hit: from the persistent region;
    miss: fetched into the streaming region). ``Op.PIN``: fetch ``block`` into persistent
    slot ``slot`` (any other slot holding it is dropped). ``Op.DROP``: forget slot ``slot``.
    """

    op: Op
    block: int = 0
    slot: int = 0

    def __post_init__(self):
        if not isinstance(self.op, Op) or self.op not in _OPS:
            raise GoldenError(f"unknown buffer command {self.op!r}; commands: "
                              f"{', '.join(f'Op.{op.name}' for op in _OPS)}")

    def to_json(self) -> list[int]:
        """``[op code, block, slot]``."""
        return [self.op.value, int(self.block), int(self.slot)]

    @classmethod
    def from_json(cls, value) -> "Command":
        op, block, slot = value
        try:
            op = Op(op)
        except ValueError:
            raise GoldenError(f"unknown buffer op code {op!r}") from None
        return cls(op, block, slot)


class SGSCacheModel:
    """The SGS buffer's golden twin: persistent slots with tags, counts exactly as the
    hardware counters do.

    Parameters
    ----------
    tags : int
        Persistent slots.
    block_words : int
        Words per block (each miss and each pin fetches this many off-chip words).
    n_blocks : int, optional
        When given, a command naming a block outside ``0..n_blocks-1`` raises
        :class:`GoldenError` (a request for an unknown block).

    Semantics (those of ``hw.sgs_buffer``): ``READ`` hits when some valid slot holds the
    block; ``PIN`` first invalidates every slot holding the block and the target slot, then
    fetches the block into the target slot; ``DROP`` invalidates a slot. ``PIN``/``DROP``
    naming a slot ``>= tags`` raise :class:`GoldenError` (the hardware ignores them).
    """

    def __init__(self, tags: int, block_words: int, n_blocks: int | None = None):
        if tags < 0 or block_words < 1:
            raise GoldenError(f"need tags >= 0 and block_words >= 1, not tags={tags}, block_words={block_words}")
        self.tags, self.block_words, self.n_blocks = tags, block_words, n_blocks
        self.slots: list[int | None] = [None] * tags
        self._slot_of: dict[int, int] = {}          # resident block -> its slot
        self.hits = self.misses = self.pins = self.offchip_words = 0
        #: Block ids fetched from off-chip memory, in order (misses and pins).
        self.fetches: list[int] = []

    @property
    def resident(self) -> set[int]:
        return set(self._slot_of)

    def _block(self, block) -> int:
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 0 or (
                self.n_blocks is not None and block >= self.n_blocks):
            limit = f"0..{self.n_blocks - 1}" if self.n_blocks is not None else "ids >= 0"
            raise GoldenError(f"request for an unknown block {block!r} (known: {limit})")
        return int(block)

    def _slot(self, slot) -> int:
        if not isinstance(slot, (int, np.integer)) or not 0 <= slot < self.tags:
            raise GoldenError(f"slot {slot!r} is outside the persistent region (0..{self.tags - 1})")
        return int(slot)

    def apply(self, command: Command) -> bool | None:
        """Apply one command; for ``READ`` return whether it hit."""
        if command.op is Op.READ:
            block = self._block(command.block)
            if block in self._slot_of:
                self.hits += 1
                return True
            self.misses += 1
            self.offchip_words += self.block_words
            self.fetches.append(block)
            return False
        slot = self._slot(command.slot)
        if command.op is Op.DROP:
            self._clear(slot)
            return None
        block = self._block(command.block)
        if block in self._slot_of:
            self._clear(self._slot_of[block])
        self._clear(slot)
        self.slots[slot] = block
        self._slot_of[block] = slot
        self.pins += 1
        self.offchip_words += self.block_words
        self.fetches.append(block)
        return None

    def _clear(self, slot: int) -> None:
        if self.slots[slot] is not None:
            del self._slot_of[self.slots[slot]]
            self.slots[slot] = None

    def replay(self, commands) -> dict[str, int]:
        for command in commands:
            self.apply(command)
        return self.counters()

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "pins": self.pins,
                "offchip_words": self.offchip_words}


class LRUCacheModel:
    """LRU over weight blocks: ``capacity_blocks`` slots; every miss is inserted, evicting
    the least recently used block."""

    def __init__(self, capacity_blocks: int, block_words: int):
        if capacity_blocks < 1:
            raise GoldenError(f"an LRU cache needs >= 1 block of capacity, not {capacity_blocks}")
        self.capacity, self.block_words = capacity_blocks, block_words
        self.lines: OrderedDict[int, None] = OrderedDict()
        self.hits = self.misses = self.offchip_words = 0

    def read(self, block: int) -> bool:
        if block in self.lines:
            self.lines.move_to_end(block)
            self.hits += 1
            return True
        self.misses += 1
        self.offchip_words += self.block_words
        self.lines[block] = None
        if len(self.lines) > self.capacity:
            self.lines.popitem(last=False)
        return False

    @property
    def resident(self) -> set[int]:
        return set(self.lines)

    def preview(self, layers) -> list[int]:
        """Misses per layer if ``layers`` (block lists, in read order) were read now; the
        cache is left unchanged. Exact, evictions inside the sequence included."""
        lines = OrderedDict(self.lines)
        misses = []
        for blocks in layers:
            count = 0
            for block in blocks:
                if block in lines:
                    lines.move_to_end(block)
                    continue
                count += 1
                lines[block] = None
                if len(lines) > self.capacity:
                    lines.popitem(last=False)
            misses.append(count)
        return misses
