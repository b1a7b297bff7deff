"""The SubNet space of a SuperNet, cut into weight blocks and priced on a tensor core.

Weight blocks
-------------
The unit the buffer and the schedulers deal with. Every stored matrix ``W[rows, K]`` of
the SuperNet is zero-padded to whole tiles of ``tile_rows x tile_cols`` int8 weights,
``tile_rows * tile_cols = block_bytes`` (:func:`tile_shape`: 64 B -> 8 x 8, 256 B -> 16 x 16,
16 KB -> 128 x 128), and cut into them. Block ids are global: matrix by matrix, and within
a matrix row tile by row tile, column tiles inner (``id = offset[i] + r * col_tiles[i] +
c``). A product of a SubNet reads every block its rows and columns touch, in that same
order (the order the tensor core consumes a layer: each block of output rows, the
reduction axis inner); a block it touches only in part is still read whole, so a SubNet
whose widths are not multiples of the tile reads (and is charged for) the rest of the
tile too. A block's bytes are its tile in row-major order (:meth:`SubNetSpace.block_data`).

Cost model
----------
A product takes ``golden.nm.cycles(core, out, K, columns)`` cycles of compute on the
tensor core the caller states (``out x K`` weights, ``columns`` activations per query).
Weights that are not resident stream from off-chip memory at ``bw`` bytes per cycle while
the core computes (the buffer's streaming region double-buffers), so a product takes
``max(compute, ceil(missed_bytes / bw))`` cycles and a query the sum over its products,
plus ``ceil(extra_bytes / bw)`` for a SubGraph rewrite before it (not overlapped).
On-chip reads are assumed to keep pace with the core. Off-chip traffic counts whole
blocks.
"""

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .. import GoldenError, nm
from .supernet import SubNet, SuperNet

__all__ = ["tile_shape", "SubNetInfo", "SubNetSpace"]


def tile_shape(block_bytes: int) -> tuple[int, int]:
    """``(tile_rows, tile_cols)`` of a block of ``block_bytes`` int8 weights, a power of two
    >= 2: cols = 2^ceil(log2(bytes) / 2), rows = bytes / cols (256 -> 16 x 16, 32 -> 4 x 8)."""
    if (isinstance(block_bytes, bool) or not isinstance(block_bytes, (int, np.integer)) or block_bytes < 2
            or block_bytes & (block_bytes - 1)):
        raise GoldenError(f"a weight block must be a power of two >= 2 bytes, not block_bytes={block_bytes!r}")
    cols = 1 << -(-int(math.log2(block_bytes)) // 2)
    return int(block_bytes) // cols, cols


def _tiles(ranges, size: int) -> list[int]:
    return sorted({t for a, b in ranges for t in range(a // size, (b - 1) // size + 1)})


@dataclass(frozen=True)
class SubNetInfo:
    """One SubNet with its measured and modelled figures.

    Members
    -------
    index : int
        Position in :attr:`SubNetSpace.subnets`.
    accuracy : float
        Measured quality, percent (the SuperNet's ``metric``).
    layers : tuple of (out, K, compute_cycles, blocks)
        Per product: shape, ``golden.nm.cycles(core, out, K, columns)``, block ids in read order.
    """

    index: int
    subnet: SubNet
    accuracy: float
    layers: tuple = field(repr=False)
    block_bytes: int = 0

    @property
    def name(self) -> str:
        return self.subnet.name

    @functools.cached_property
    def blocks(self) -> tuple[int, ...]:
        """Every block the SubNet reads, in read order."""
        return tuple(b for layer in self.layers for b in layer[3])

    @property
    def compute_cycles(self) -> int:
        return sum(layer[2] for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        """Bytes of weight blocks the SubNet reads (whole blocks)."""
        return len(self.blocks) * self.block_bytes


class SubNetSpace:
    """Every SubNet of ``net`` cut into weight blocks of ``block_bytes`` and priced on the
    tensor core ``core`` (any object with ``rows``, ``m`` and ``latency``, e.g.
    ``spec.nm_core.NMCoreConfig``; see the module docstring).

    Members
    -------
    subnets : list of SubNetInfo
    usage : int array [subnets, products, blocks]
        1 where product ``l`` of SubNet ``s`` reads block ``b``.
    compute : int array [subnets, products]
    accuracies : float array [subnets]
    accuracy_step : float
        The SuperNet's resolution (one test item), points.
    """

    def __init__(self, net: SuperNet, block_bytes: int, core):
        self.net, self.core, self.block_bytes = net, core, block_bytes
        self.tile = tr, tc = tile_shape(block_bytes)
        self.stored_shapes = [m.shape for m in net.matrices]
        self.grid = [(-(-rows // tr), -(-k // tc)) for rows, k in self.stored_shapes]
        self.offsets = list(itertools.accumulate((r * c for r, c in self.grid), initial=0))
        self.n_blocks = self.offsets[-1]
        infos = []
        for index, subnet in enumerate(net.subnets):
            layers = []
            for use in subnet.uses:
                blocks = ()
                if use.matrix is not None:
                    i, cols = use.matrix, self.grid[use.matrix][1]
                    blocks = tuple(self.offsets[i] + r * cols + c
                                   for r in _tiles(use.rows, tr) for c in _tiles(use.cols, tc))
                layers.append((use.out, use.k, nm.cycles(core, use.out, use.k, use.columns), blocks))
            infos.append(SubNetInfo(index, subnet, float(net.quality[index]), tuple(layers), block_bytes))
        self.subnets: list[SubNetInfo] = infos
        self.by_name = {info.name: info for info in infos}
        depth = max(len(info.layers) for info in infos)
        self.usage = np.zeros((len(infos), depth, self.n_blocks), dtype=np.int64)
        self.compute = np.zeros((len(infos), depth), dtype=np.int64)
        for info in infos:
            for l, (_, _, cycles, blocks) in enumerate(info.layers):
                self.usage[info.index, l, list(blocks)] = 1
                self.compute[info.index, l] = cycles
        # The blocks of every (SubNet, product), flattened in that order, and each one's
        # [start, end) in the flat list: pricing many buffer states is then a gather and
        # a cumulative sum (no dense [subnets, products, blocks] products).
        lists = [list(info.layers[l][3]) if l < len(info.layers) else [] for info in infos for l in range(depth)]
        self._flat = np.array([b for blocks in lists for b in blocks], dtype=np.int64)
        ends = np.cumsum([len(blocks) for blocks in lists])
        self._ends = ends.reshape(len(infos), depth)
        self._starts = self._ends - np.array([len(blocks) for blocks in lists]).reshape(len(infos), depth)
        self.accuracies = np.array([info.accuracy for info in infos])
        self.accuracy_step = float(net.resolution)
        self.sizes = self.usage.sum(axis=(1, 2))
        self.item_quality = net.item_quality

    @property
    def items(self) -> int:
        return self.net.items

    def block_data(self, block: int) -> np.ndarray:
        """The int8 weights of ``block`` (its tile, row-major, zero padded; ``block_bytes``
        values as int64)."""
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 0 <= block < self.n_blocks:
            raise GoldenError(f"unknown weight block {block!r}: this SuperNet has blocks "
                              f"0..{self.n_blocks - 1}")
        i = int(np.searchsorted(self.offsets, block, side="right")) - 1
        r, c = divmod(int(block) - self.offsets[i], self.grid[i][1])
        tr, tc = self.tile
        tile = np.zeros((tr, tc), dtype=np.int64)
        part = self.net.matrices[i][r * tr:(r + 1) * tr, c * tc:(c + 1) * tc]
        tile[:part.shape[0], :part.shape[1]] = part
        return tile.reshape(-1)

    def latencies(self, resident: np.ndarray, bw: int, extra_bytes: int = 0) -> np.ndarray:
        """Cycles of every SubNet when the blocks with ``resident[b]`` set need no fetch."""
        return self.latencies_many(resident[None], bw)[0] + -(-extra_bytes // bw)

    def _missed_blocks(self, residents: np.ndarray) -> np.ndarray:
        """Blocks each (SubNet, product) misses, for each buffer state: ``[n, subnets, products]``."""
        miss = ~np.asarray(residents, dtype=bool)[:, self._flat]
        total = np.zeros((len(miss), miss.shape[1] + 1), dtype=np.int32)
        np.cumsum(miss, axis=1, out=total[:, 1:])
        return (total[:, self._ends] - total[:, self._starts]).astype(np.int64)

    def price_many(self, residents: np.ndarray, bw: int) -> tuple[np.ndarray, np.ndarray]:
        """``(latencies, missed_bytes)``, each ``[n, subnets]``, for buffer states ``residents [n, blocks]``."""
        missed = self._missed_blocks(residents)
        fetch = -(-missed * self.block_bytes // bw)
        return np.maximum(self.compute[None], fetch).sum(axis=2), missed.sum(axis=2) * self.block_bytes

    def latencies_many(self, residents: np.ndarray, bw: int) -> np.ndarray:
        """:meth:`latencies` for many buffer states at once: ``residents [n, blocks]`` ->
        ``[n, subnets]``."""
        fetch = -(-self._missed_blocks(residents) * self.block_bytes // bw)
        return np.maximum(self.compute[None], fetch).sum(axis=2)

    def missed_bytes(self, resident: np.ndarray) -> np.ndarray:
        """Off-chip bytes of every SubNet with ``resident`` blocks on chip."""
        return self.missed_bytes_many(resident[None])[0]

    def missed_bytes_many(self, residents: np.ndarray) -> np.ndarray:
        """:meth:`missed_bytes` for many buffer states at once (``[n, subnets]``)."""
        return self._missed_blocks(residents).sum(axis=2) * self.block_bytes

    def no_cache_latencies(self, bw: int) -> np.ndarray:
        return self.latencies(np.zeros(self.n_blocks, dtype=bool), bw)

    def compute_latencies(self) -> np.ndarray:
        """Cycles of every SubNet with all of its weights on chip (compute only)."""
        return self.compute.sum(axis=1)

    def pareto_front(self, bw: int) -> list[int]:
        """SubNets no other SubNet beats on all three of quality (higher), latency without a
        cache (lower) and weight bytes (lower) while being strictly better on one; by latency."""
        acc, lat, size = self.accuracies, self.no_cache_latencies(bw), self.sizes
        front = []
        for s in range(len(acc)):
            no_worse = (acc >= acc[s]) & (lat <= lat[s]) & (size <= size[s])
            better = (acc > acc[s]) | (lat < lat[s]) | (size < size[s])
            if not np.any(no_worse & better):
                front.append(s)
        return sorted(front, key=lambda s: (lat[s], -acc[s], s))
