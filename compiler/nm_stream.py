"""Lower a compressed matrix product onto the N:M tensor core's input stream.

The core (``hw.nm_core``) takes one *beat* per cycle: an M-group of activations shared
by all rows and one compressed weight group per row. A product ``W[R, K] @ X[K, C]`` is
streamed in this order (the order :func:`golden.nm.cycles` prices)::

    for each block of `rows` output rows (the last block padded with zero weights):
        for each column c of X:
            for each group g of K // m:          # last = (g == G - 1)
                beat(act = X[g*m:(g+1)*m, c], weights = W[block, g])

and every ``last`` beat yields one output transfer holding that block's ``rows`` results
for column ``c``. Words are packed with the hardware's own payload layouts
(:func:`spec.nm_core.beat_layout`) through :func:`spec.packing.pack`, so there is no
second encoder to drift, and every value is range-checked against its field before it
is packed: an activation of 300, a float, or an index >= m is a :class:`CompileError`,
never a silently truncated word.
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import signed, unsigned

from golden import GoldenError, nm, tasd
from spec import SpecError
from spec.nm_core import NMCoreConfig, beat_layout, out_index, out_layout
from spec.packing import check_array, pack

from . import CompileError

__all__ = ["NMProgram", "lower_matmul", "lower_series", "lower_series_parts", "pack_beat", "unpack_output"]


@dataclass(frozen=True)
class NMProgram:
    """A product lowered onto one core configuration.

    Members
    -------
    config : NMCoreConfig
    beats : list of dict
        Input-stream payloads in order (fields of :func:`spec.nm_core.beat_layout`).
    outputs : list of (row_block, column)
        What each output transfer holds, in order.
    out_rows, cols : int
        Shape of the full result ``Y[out_rows, cols]``.
    n_active : int
        Value to drive on the core's ``n_active`` input (sparse cores).
    """

    config: NMCoreConfig
    beats: list
    outputs: list
    out_rows: int
    cols: int
    n_active: int

    def packed_beats(self) -> list[int]:
        layout = beat_layout(self.config)
        return [pack(layout, beat, f"beat {k}") for k, beat in enumerate(self.beats)]

    @property
    def pack(self) -> int:
        """Logical rows per physical row (``config.pack_factor(n_active)``)."""
        return self.config.pack_factor(self.n_active) if self.config.sparse else 1

    def assemble(self, transfers: list[list[int]]) -> np.ndarray:
        """Place the row results of each output transfer (:func:`unpack_output`) into
        ``Y[out_rows, cols]``; a packed block's logical rows are read at
        :func:`spec.nm_core.out_index`."""
        if len(transfers) != len(self.outputs):
            raise CompileError(f"expected {len(self.outputs)} output transfers, got {len(transfers)}")
        rows = self.config.rows * self.pack
        where = [out_index(self.config, self.n_active, l) if self.config.sparse else l
                 for l in range(rows)]
        y = np.zeros((-(-self.out_rows // rows) * rows, self.cols), dtype=np.int64)
        for (block, col), values in zip(self.outputs, transfers):
            y[block * rows:(block + 1) * rows, col] = [values[k] for k in where]
        return y[:self.out_rows]


def lower_matmul(config: NMCoreConfig, values, indices, x, *, n: int | None = None,
                 filler: np.random.Generator | None = None) -> NMProgram:
    """Lower compressed ``W`` (``values``/``indices`` as from :func:`golden.nm.compress`,
    shape ``[R, K // m, n]``) times ``x[K]`` or ``x[K, C]`` onto ``config``.

    ``n`` is the weights' N (defaults to ``config.n``). A sparse core runs any
    ``n <= config.n`` by setting ``n_active = n``; the unused slots are filled with
    zeros, or with random values and indices from ``filler`` (which the hardware must
    ignore; testbenches use this). A dense core (``config.n == config.m``) runs any
    ``n`` by receiving the decompressed groups.
    """
    n = config.n if n is None else n
    try:
        v = check_array("weight", values, signed(config.width))
        idx = check_array("index", indices, unsigned(config.index_width))
        a = check_array("activation", x, signed(config.width))
    except SpecError as exc:
        raise CompileError(str(exc)) from None
    if not 1 <= n <= config.n:
        raise CompileError(f"{n}:{config.m} weights cannot run on a {config.n}:{config.m} core "
                           f"(n must be 1..{config.n})")
    if v.ndim != 3 or v.shape[-1] != n or idx.shape != v.shape:
        raise CompileError(f"values and indices must have shape [rows, groups, n={n}], "
                           f"got {v.shape} and {idx.shape}")
    if a.ndim == 1:
        a = a[:, None]
    out_rows, groups = v.shape[0], v.shape[1]
    if a.ndim != 2 or a.shape[0] != groups * config.m:
        raise CompileError(f"activations must have shape [K={groups * config.m}] or [K, cols], "
                           f"got {np.asarray(x).shape}")

    rows, m, slots = config.rows, config.m, config.n
    # A packing core at n_active = n dividing its N runs `pack` logical rows per
    # physical row: logical row r * pack + q of a block in slots q*n .. q*n+n-1 of row r
    # (spec.nm_core.logical_slot).
    pack = config.pack_factor(n) if config.sparse else 1
    blocks = -(-out_rows // (rows * pack))
    if config.sparse:
        # Logical rows, padded to whole blocks: n distinct indices, zero values.
        lv = np.zeros((blocks * rows * pack, groups, n), dtype=np.int64)
        li = np.broadcast_to(np.arange(n), lv.shape).copy()
        lv[:out_rows], li[:out_rows] = v, idx
        # Physical rows: the pack logical rows of each side by side along the slots.
        def physical(a):
            return a.reshape(blocks * rows, pack, groups, n).transpose(0, 2, 1, 3).reshape(
                blocks * rows, groups, pack * n)
        # Pad to `slots` slots: zero (or random filler) values in the slots pack*n..slots-1.
        pad_shape = (blocks * rows, groups, slots)
        pv = np.zeros(pad_shape, dtype=np.int64)
        pi = np.zeros(pad_shape, dtype=np.int64)
        if filler is not None:
            lo, hi = -(1 << (config.width - 1)), 1 << (config.width - 1)
            pv[...] = filler.integers(lo, hi, pad_shape)
            pi[...] = filler.integers(0, m, pad_shape)
        pv[:, :, :pack * n] = physical(lv)
        pi[:, :, :pack * n] = physical(li)
    else:
        dense = np.zeros((blocks * rows, groups * m), dtype=np.int64)
        dense[:out_rows] = nm.decompress(v, idx, n, m)
        pv = dense.reshape(blocks * rows, groups, m)

    beats, outputs = [], []
    for block in range(blocks):
        block_rows = range(block * rows, (block + 1) * rows)
        for col in range(a.shape[1]):
            for g in range(groups):
                weights = []
                for r in block_rows:
                    group = {"values": [int(e) for e in pv[r, g]]}
                    if config.sparse:
                        group["indices"] = [int(e) for e in pi[r, g]]
                    weights.append(group)
                beats.append({
                    "act": [int(e) for e in a[g * m:(g + 1) * m, col]],
                    "weights": weights,
                    "last": int(g == groups - 1),
                })
            outputs.append((block, col))
    return NMProgram(config, beats, outputs, out_rows, a.shape[1], n if config.sparse else slots)


def pack_beat(config: NMCoreConfig, beat: dict) -> int:
    """Pack one beat (fields of :func:`spec.nm_core.beat_layout`) into its payload bits,
    every field range-checked (:func:`spec.packing.pack`)."""
    return pack(beat_layout(config), beat, "beat")


def unpack_output(config: NMCoreConfig, bits: int) -> list[int]:
    """Split an output payload into its signed accumulator values: one per row, or
    ``config.out_slots`` per row on a packing core (:func:`spec.nm_core.out_index`)."""
    layout = out_layout(config)
    word = layout.from_bits(bits)
    return [word[k] for k in range(layout.length)]


def lower_series_parts(config: NMCoreConfig, terms, x, *,
                       filler: np.random.Generator | None = None) -> list[NMProgram]:
    """Lower a TASD series ``A ~= T1 + T2 + ...`` (``golden.tasd.Term`` list, all for the
    same ``A[R, K]``) times ``x`` onto ``config``: the products whose results add up.

    The terms are packed into passes (:func:`golden.tasd.pack_terms`: non-overlapping
    terms that fit the core's n together share a pass), each pass is read in the core's
    m-groups (a 2:4 term is a 4:8 tensor), and the passes of each
    :func:`golden.tasd.pass_groups` group are concatenated along K with ``x`` repeated,
    so they accumulate in one dot product: ``passes * K / m`` beats per row block and
    column at the group's ``n_active`` (``golden.tasd.series_cycles``). Without packing
    there is one group; a packing core runs e.g. 2:4+1:4 as a 2:4 product and a packed
    1:4 product.
    """
    if not terms:
        raise CompileError("a series needs at least one term")
    dense = [np.asarray(term.dense()) for term in terms]
    if len(dense[0].shape) != 2 or any(d.shape != dense[0].shape for d in dense):
        raise CompileError("every term must be a [rows, K] matrix of the same shape")
    if dense[0].shape[1] % config.m:
        raise CompileError(f"K={dense[0].shape[1]} is not a multiple of the core's m={config.m}")
    try:
        groups = tasd.pass_groups([(t.n, t.m) for t in terms], config)
    except GoldenError as exc:
        raise CompileError(str(exc)) from None
    a = np.asarray(x)
    programs = []
    for n_active, passes in groups:
        values, indices = [], []
        for members in passes:
            v, i = nm.compress(sum(dense[k] for k in members), n_active, config.m)
            values.append(v)
            indices.append(i)
        repeated = np.concatenate([a] * len(passes), axis=0)
        programs.append(lower_matmul(config, np.concatenate(values, axis=1),
                                     np.concatenate(indices, axis=1), repeated,
                                     n=n_active if config.sparse else config.n, filler=filler))
    return programs


def lower_series(config: NMCoreConfig, terms, x, *, filler: np.random.Generator | None = None) -> NMProgram:
    """:func:`lower_series_parts` for a series that is one product (always, without
    packing): ``sum_t T_t @ x`` in one program.

    Raises
    ------
    CompileError
        If the series runs as several products on a packing core (use
        :func:`lower_series_parts`).
    """
    parts = lower_series_parts(config, terms, x, filler=filler)
    if len(parts) > 1:
        raise CompileError(f"the series {tasd.format_series([(t.n, t.m) for t in terms])} runs as "
                           f"{len(parts)} products on a packing {config.n}:{config.m} core (n_active "
                           f"{', '.join(str(p.n_active) for p in parts)}): use lower_series_parts")
    return parts[0]
