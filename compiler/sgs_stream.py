"""Lower a SUSHI schedule onto the SGS weight buffer: request words and the off-chip
memory image.

:class:`golden.sushi.SushiSched` (or any policy of :func:`golden.sushi.serve` that runs on
the buffer) produces a list of :class:`golden.sushi.Command` (op codes
:class:`spec.sgs_buffer.Op`); this module packs each into the buffer's request word with
the hardware's own layout (:func:`spec.sgs_buffer.request_layout`), writes request streams
as hex files (:func:`write_requests`), and packs every weight block of a SuperNet into
``block_words`` words (:func:`spec.sgs_buffer.word_layout`: the block's int8 weights in
order, four per 32-bit word with weight 0 in the low byte) -- the content the off-chip
memory returns for a fetch.
"""

from pathlib import Path

import numpy as np

from golden.sushi import Command, SubNetSpace
from spec import outputs
from spec.packing import pack
from spec.sgs_buffer import (
    Op,
    SGSBufferConfig,
    read_layout,
    request_layout,
    word_layout,
)

from . import CompileError

__all__ = ["pack_request", "pack_requests", "request_hex_digits", "write_requests", "pack_block", "memory_image",
           "unpack_read"]

#: The ops a schedule sends (``Op.RESERVED`` is accepted and ignored by the hardware, never emitted).
_OPS = (Op.READ, Op.PIN, Op.DROP)


def pack_request(config: SGSBufferConfig, command: Command, *, n_blocks: int | None = None) -> int:
    """The request word of one command.

    Raises
    ------
    CompileError
        For an unknown op, a block id that does not fit ``id_width`` bits (or is not below
        ``n_blocks`` when given: a request for an unknown block), or a PIN/DROP slot outside
        the persistent region.
    """
    if command.op not in _OPS:
        raise CompileError(f"unknown buffer command {command.op!r}; commands: "
                           f"{', '.join(f'Op.{op.name}' for op in _OPS)}")
    block, slot = int(command.block), int(command.slot)
    if command.op is not Op.DROP:
        if not 0 <= block < (1 << config.id_width):
            raise CompileError(f"block id {block} does not fit the buffer's id_width={config.id_width} bits")
        if n_blocks is not None and block >= n_blocks:
            raise CompileError(f"request for an unknown block {block}: the SuperNet has blocks 0..{n_blocks - 1}")
    else:
        block = 0
    if command.op is Op.READ:
        slot = 0
    elif not 0 <= slot < config.tags:
        raise CompileError(f"{command.op.name} names slot {slot}, outside the persistent region "
                           f"(tags={config.tags}: slots 0..{config.tags - 1})")
    return pack(request_layout(config), {"op": command.op, "block": block, "slot": slot}, "request")


def pack_requests(config: SGSBufferConfig, commands, *, n_blocks: int | None = None) -> list[int]:
    return [pack_request(config, c, n_blocks=n_blocks) for c in commands]


def request_hex_digits(config: SGSBufferConfig) -> int:
    """Hex digits of one request word (:func:`write_requests`)."""
    return -(-request_layout(config).size // 4)


def write_requests(config: SGSBufferConfig, commands, path: Path, *, n_blocks: int | None = None) -> int:
    """Write the request words of ``commands`` to ``path``, one zero-padded hex word per
    line (``$readmemh`` style), through a temporary file (a reader never sees half).
    Returns the number of words."""
    words = pack_requests(config, commands, n_blocks=n_blocks)
    digits = request_hex_digits(config)
    outputs.write_text(path, "".join(f"{w:0{digits}x}\n" for w in words))
    return len(words)


def pack_block(config: SGSBufferConfig, values) -> list[int]:
    """``block_bytes`` int8 weights -> ``block_words`` words."""
    v = np.asarray(values).reshape(-1)
    if v.size != config.block_bytes:
        raise CompileError(f"a block holds {config.block_bytes} weights, got {v.size}")
    if v.size and (v.min() < -128 or v.max() > 127):
        raise CompileError(f"weights must be int8, got values in [{v.min()}, {v.max()}]")
    layout = word_layout(config)
    per_word = config.word_bytes
    return [pack(layout, [int(x) for x in v[w * per_word:(w + 1) * per_word]], f"word {w}")
            for w in range(config.block_words)]


def memory_image(config: SGSBufferConfig, space: SubNetSpace) -> dict[int, list[int]]:
    """Every block of ``space`` as the words the off-chip memory returns for its fetch."""
    if space.block_bytes != config.block_bytes:
        raise CompileError(f"the SuperNet is cut into {space.block_bytes}-byte blocks but the buffer's "
                           f"blocks are {config.block_bytes} bytes ({config.block_words} x "
                           f"{config.word_width}-bit words)")
    if space.n_blocks > (1 << config.id_width):
        raise CompileError(f"the SuperNet has {space.n_blocks} blocks; id_width={config.id_width} "
                           f"names only {1 << config.id_width}")
    return {b: pack_block(config, space.block_data(b)) for b in range(space.n_blocks)}


def unpack_read(config: SGSBufferConfig, bits: int) -> tuple[list[int], bool]:
    """A read-port payload -> (the word's int8 weights, last)."""
    word = read_layout(config).from_bits(bits)
    return list(word.word), bool(word.last)

