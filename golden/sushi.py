"""SUSHI: serving a query stream from the SubNets of one weight-shared SuperNet, with a
SubGraph-stationary (SGS) weight buffer (arXiv 2306.17266).

Everything here is numpy except the SuperNet's training (PyTorch, run once and cached),
so the cache models and schedulers load fast (the cocotb bench uses them).

SuperNet
--------
An MLP on scikit-learn's 8x8 digits (:mod:`golden.digits`'s data split) with elastic
depth and width: ``depth`` hidden layers out of ``max(depths)`` (the first ones), each
using the first ``w`` of its ``max(widths)`` output units; the classifier head reads the
last active hidden layer. A SubNet's layer ``l`` therefore uses the top-left
``[w_out, w_in]`` corner of the SuperNet's weight matrix ``W_l`` -- SubNets overlap, and a
smaller SubNet's weights are a subset of a larger one's. Training uses the sandwich rule
(BigNAS/slimmable networks): every step trains the largest SubNet on the labels and the
smallest plus ``RECIPE["random_subnets"]`` random SubNets on the largest one's soft
outputs (in-place distillation), so every SubNet is usable without retraining.

Weights are stored as int8 with one symmetric scale per SuperNet layer
(``q = clip(round(W / s), -127, 127)``, ``s = max|W| / 127``); a SubNet's top-1 is
measured on the test split with exactly those int8 weights (dequantized), float
activations and float biases. Biases (a few hundred bytes) live beside the core, not in
the weight buffer.

Weight blocks
-------------
The unit the buffer and the schedulers deal with. Every layer's stored matrix
``W[rows, K]`` (the head's 10 rows padded with zero rows) is cut into tiles of
``tile_rows x tile_cols`` int8 weights, ``tile_rows * tile_cols = block_bytes``
(:func:`tile_shape`: 256 B -> 16 x 16, 64 B -> 8 x 8, 16 B -> 4 x 4). Block ids are
global: layer by layer, and within a layer row tile by row tile, column tiles inner
(``id = offset[l] + i * col_tiles[l] + j``). A SubNet reads the blocks covering its
corners, in that same order (the order the tensor core consumes a layer: each block of
output rows, the reduction axis inner). A block's bytes are its tile in row-major order
(:meth:`SubNetSpace.block_data`).

Cost model
----------
``compute_l = golden.nm.cycles(core, w_out, w_in, 1)`` for each layer of a SubNet
(batch 1: one query is one image), on the tensor-core config the caller states. Weights
that are not resident stream from off-chip memory at ``offchip_bytes_per_cycle`` while the
core computes (the buffer's streaming region double-buffers), so a layer takes
``max(compute_l, ceil(missed_bytes_l / bw))`` cycles and a query the sum over its layers,
plus ``ceil(pinned_bytes / bw)`` when the SubGraph is rewritten before it (not
overlapped). On-chip reads are assumed to keep pace with the core (a buffer built for it
reads one core beat of weights per cycle). Off-chip traffic counts whole blocks.

Policies (one harness, :func:`serve`)
-------------------------------------
Every policy picks each query's SubNet with the same rule (:func:`choose_subnet`), from
the latency each SubNet would have *given what is resident at that moment*; they differ
in what they keep on chip:

* ``sushi``: :class:`SushiSched`. Before queries 1 .. ``period`` - 1 and then every
  ``period`` queries it chooses the SubGraph to hold in the persistent region: among
  candidate SubGraphs (the resident one, the blocks most used recently, and each SubNet's
  own blocks topped up with the most used others) the one under which the last
  ``window`` queries, replayed with the choice rule, have the fewest SLO violations, then
  the fewest off-chip bytes (the rewrite included), then the highest accuracy.
* ``no-cache``: nothing persists across queries; every block is fetched each time.
* ``lru``: every block slot of the buffer (persistent and streaming) is one LRU cache
  over weight blocks; every miss is inserted, evicting the least recently used.
* ``static``: one SubNet serves every query, its first blocks pinned once (as many as the
  persistent region holds). It is chosen with hindsight of the whole stream: the most
  accurate SubNet that meets the targets of at least ``STATIC_SLO_FRACTION`` of the
  queries (if none does, the one meeting the most, the faster on ties).

The SubNet choice rule and the policy for impossible queries (:func:`choose_subnet`):
among the SubNets that meet the query's accuracy floor (all of them when there is none,
or when no SubNet meets it: an accuracy violation) and its latency target, those within
``tolerance`` points of the most accurate are equally good (default: one test image,
``100 / 360`` points, the resolution of the measured top-1), and the one of them with the
fewest off-chip bytes is served. When none meets the latency target, the fastest one is
served (best effort) and a latency violation reported. With ``strict=True`` such a
query raises :class:`GoldenError` instead.

Exact off-chip counts
---------------------
:class:`SGSCacheModel` is the golden twin of the SGS buffer (``hw.sgs_buffer``): it
replays the command stream (``read``/``pin``/``drop``) a schedule produces and counts hits,
misses and off-chip words exactly as the hardware's counters do. :class:`LRUCacheModel`
counts the LRU baseline.
"""

import hashlib
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from . import GoldenError, nm
from .cache import cache_dir, load_or_rebuild

__all__ = ["SuperNetSpec", "SubNet", "tile_shape", "TrainedSuperNet", "supernet", "SubNetInfo",
           "SubNetSpace", "Platform", "Query", "STREAMS", "make_stream", "Command",
           "SGSCacheModel", "LRUCacheModel", "choose_subnet", "SushiSched", "QueryRecord",
           "ServeResult", "POLICIES", "serve", "static_subnet", "RECIPE", "STATIC_SLO_FRACTION"]

#: Training recipe of the SuperNet; part of the cache key, so changing it retrains.
RECIPE = {"epochs": 60, "batch": 64, "lr": 3e-3, "random_subnets": 2, "version": 2}

#: The static baseline must meet the targets of at least this fraction of the queries.
STATIC_SLO_FRACTION = 0.9


# --------------------------------------------------------------------------- SuperNet

@dataclass(frozen=True)
class SuperNetSpec:
    """Shape of the elastic MLP.

    Parameters
    ----------
    in_features : int
        Input features (64 for the 8x8 digits).
    widths : tuple of int
        Width choices of every hidden layer, ascending.
    depths : tuple of int
        Depth choices (number of hidden layers), ascending, >= 1.
    classes : int
        Output classes.
    """

    in_features: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 3)
    classes: int = 10

    def __post_init__(self):
        for name in ("widths", "depths"):
            values = getattr(self, name)
            if not values or list(values) != sorted(set(values)) or min(values) < 1:
                raise GoldenError(f"{name} must be distinct positive integers in ascending order, "
                                  f"not {name}={values!r}")
        if self.in_features < 1 or self.classes < 2:
            raise GoldenError(f"need in_features >= 1 and classes >= 2, not in_features="
                              f"{self.in_features!r}, classes={self.classes!r}")

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    def subnets(self) -> list["SubNet"]:
        """Every SubNet: each depth with every width per hidden layer (smallest first)."""
        return [SubNet(d, ws) for d in self.depths for ws in itertools.product(self.widths, repeat=d)]

    def largest(self) -> "SubNet":
        return SubNet(self.max_depth, (self.max_width,) * self.max_depth)

    def smallest(self) -> "SubNet":
        return SubNet(self.depths[0], (self.widths[0],) * self.depths[0])

    def stored_shapes(self, tile_rows: int = 1) -> list[tuple[int, int]]:
        """``[rows, K]`` of every SuperNet layer as stored (head rows padded to ``tile_rows``)."""
        shapes = [(self.max_width, self.in_features)]
        shapes += [(self.max_width, self.max_width)] * (self.max_depth - 1)
        shapes.append((-(-self.classes // tile_rows) * tile_rows, self.max_width))
        return shapes


@dataclass(frozen=True)
class SubNet:
    """A choice of depth and of the width of each active hidden layer."""

    depth: int
    widths: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"d{self.depth}-w" + "-".join(map(str, self.widths))

    def layer_dims(self, spec: SuperNetSpec) -> list[tuple[int, int, int]]:
        """``(supernet_layer, out, K)`` of each layer this SubNet runs, in order."""
        dims, k = [], spec.in_features
        for l, w in enumerate(self.widths):
            dims.append((l, w, k))
            k = w
        dims.append((spec.max_depth, spec.classes, k))
        return dims


def tile_shape(block_bytes: int) -> tuple[int, int]:
    """``(tile_rows, tile_cols)`` of a block of ``block_bytes`` int8 weights: a power of two
    >= 2, cols = 2^ceil(log2(bytes) / 2), rows = bytes / cols (256 -> 16 x 16, 32 -> 4 x 8)."""
    if not isinstance(block_bytes, int) or block_bytes < 2 or block_bytes & (block_bytes - 1):
        raise GoldenError(f"a weight block must be a power of two >= 2 bytes, not block_bytes={block_bytes!r}")
    cols = 1 << -(-int(math.log2(block_bytes)) // 2)
    return block_bytes // cols, cols


# ----------------------------------------------------------------- training (cached)

def _digits_split() -> tuple[np.ndarray, ...]:
    """``golden.digits``' split as flat float arrays (imports torch and scikit-learn)."""
    from .digits import load_data
    data = load_data()
    return (data.x_train.flatten(1).numpy(), data.y_train.numpy(),
            data.x_test.flatten(1).numpy(), data.y_test.numpy())


@dataclass(frozen=True)
class TrainedSuperNet:
    """The trained SuperNet's float parameters (``weights[l]`` is ``[rows, K]`` as in
    :meth:`SuperNetSpec.stored_shapes`, the head unpadded) and the test split it is
    evaluated on."""

    spec: SuperNetSpec
    seed: int
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    x_test: np.ndarray
    y_test: np.ndarray

    def quantized(self) -> tuple[list[np.ndarray], list[float]]:
        """int8 weights (int64 arrays in [-127, 127]) and the per-layer scales."""
        qs, scales = [], []
        for w in self.weights:
            scale = float(np.abs(w).max()) / 127 or 1.0
            qs.append(np.clip(np.round(w / scale), -127, 127).astype(np.int64))
            scales.append(scale)
        return qs, scales

    def predict(self, subnet: SubNet, x: np.ndarray | None = None) -> np.ndarray:
        """Class predictions of ``subnet`` (int8 weights, float activations) for ``x``
        (default: the test split)."""
        h = (self.x_test if x is None else x).astype(np.float64)
        qs, scales = self.quantized()
        dims = subnet.layer_dims(self.spec)
        for index, (l, out, k) in enumerate(dims):
            h = h @ (qs[l][:out, :k] * scales[l]).T + self.biases[l][:out]
            if index < len(dims) - 1:
                h = np.maximum(h, 0)
        return h.argmax(1)

    def accuracy(self, subnet: SubNet) -> float:
        """Top-1 on the test split, in percent."""
        return 100.0 * float(np.mean(self.predict(subnet) == self.y_test))


def _train(spec: SuperNetSpec, seed: int, x_train: np.ndarray,
           y_train: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        x, y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
        shapes = spec.stored_shapes()
        layers = nn.ModuleList(nn.Linear(k, rows) for rows, k in shapes)

        def forward(xb, subnet: SubNet):
            h = xb
            dims = subnet.layer_dims(spec)
            for index, (l, out, k) in enumerate(dims):
                h = F.linear(h, layers[l].weight[:out, :k], layers[l].bias[:out])
                if index < len(dims) - 1:
                    h = F.relu(h)
            return h

        subnets = spec.subnets()
        largest, smallest = spec.largest(), spec.smallest()
        opt = torch.optim.Adam(layers.parameters(), lr=RECIPE["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, RECIPE["epochs"])
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        for _ in range(RECIPE["epochs"]):
            for idx in torch.randperm(len(x), generator=g).split(RECIPE["batch"]):
                opt.zero_grad()
                logits = forward(x[idx], largest)
                loss = F.cross_entropy(logits, y[idx])
                soft = logits.detach().softmax(1)
                others = [smallest] + [subnets[i] for i in rng.integers(0, len(subnets),
                                                                        RECIPE["random_subnets"])]
                for subnet in others:
                    loss = loss - (soft * forward(x[idx], subnet).log_softmax(1)).sum(1).mean()
                loss.backward()
                opt.step()
            sched.step()
        return ([layer.weight.detach().numpy().astype(np.float64) for layer in layers],
                [layer.bias.detach().numpy().astype(np.float64) for layer in layers])
    finally:
        torch.set_num_threads(threads)


def supernet(spec: SuperNetSpec = SuperNetSpec(), seed: int = 0) -> TrainedSuperNet:
    """The SuperNet ``spec`` trained with ``seed`` (sandwich rule); cached in
    ``golden.cache.cache_dir()`` (``TESSERA_CACHE``) keyed by the spec, the recipe, the
    seed and the torch version, so only the first call trains (seconds on one CPU core).
    Loading a cached SuperNet imports neither torch nor scikit-learn (the test split is
    stored with the weights)."""
    key = hashlib.sha256(repr((spec, RECIPE, seed, metadata.version("torch"))).encode()).hexdigest()[:16]
    path = cache_dir() / f"sushi_supernet_{key}.npz"
    layers = len(spec.stored_shapes())

    def build(tmp):
        x_train, y_train, x_test, y_test = _digits_split()
        weights, biases = _train(spec, seed, x_train, y_train)
        arrays = {f"w{l}": w for l, w in enumerate(weights)} | {f"b{l}": b for l, b in enumerate(biases)}
        np.savez(tmp, x_test=x_test, y_test=y_test, **arrays)

    def load(file):
        with np.load(file) as data:
            return TrainedSuperNet(spec, seed, tuple(data[f"w{l}"] for l in range(layers)),
                                   tuple(data[f"b{l}"] for l in range(layers)), data["x_test"],
                                   data["y_test"])

    return load_or_rebuild(path, load, build, "SUSHI SuperNet")


# ------------------------------------------------------------------ the SubNet space

@dataclass(frozen=True)
class SubNetInfo:
    """One SubNet with its measured and modelled figures.

    Members
    -------
    index : int
        Position in :attr:`SubNetSpace.subnets`.
    accuracy : float
        Top-1 on the test split, percent (int8 weights).
    layers : tuple of (out, K, compute_cycles, blocks)
        Per layer: shape, ``golden.nm.cycles(core, out, K, 1)``, block ids in read order.
    block_bytes : int
        Bytes per weight block.
    """

    index: int
    subnet: SubNet
    accuracy: float
    predictions: np.ndarray = field(repr=False)
    layers: tuple = field(repr=False)
    block_bytes: int = 0

    @property
    def name(self) -> str:
        return self.subnet.name

    @property
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
    """Every SubNet of a trained SuperNet, cut into weight blocks of ``block_bytes``, priced
    on the tensor core ``core`` (any object with ``rows``, ``m`` and ``latency``, e.g.
    ``spec.nm_core.NMCoreConfig``).

    Raises
    ------
    GoldenError
        If the widths or input features are not multiples of the tile shape.
    """

    def __init__(self, net: TrainedSuperNet, block_bytes: int, core):
        spec = net.spec
        self.net, self.spec, self.core = net, spec, core
        self.block_bytes = block_bytes
        self.tile = tile_rows, tile_cols = tile_shape(block_bytes)
        for name, values in (("widths", spec.widths), ("in_features", (spec.in_features,))):
            bad = [v for v in values if v % tile_cols or (name == "widths" and v % tile_rows)]
            if bad:
                raise GoldenError(f"{name} {bad} are not multiples of the {tile_rows} x {tile_cols} "
                                  f"tile of a {block_bytes}-byte block")
        self.stored_shapes = spec.stored_shapes(tile_rows)
        self.grid = [(rows // tile_rows, k // tile_cols) for rows, k in self.stored_shapes]
        self.offsets = list(itertools.accumulate((r * c for r, c in self.grid), initial=0))
        self.n_blocks = self.offsets[-1]
        self._quantized, self.scales = net.quantized()
        infos = []
        for index, subnet in enumerate(spec.subnets()):
            layers = []
            for l, out, k in subnet.layer_dims(spec):
                blocks = tuple(self.offsets[l] + i * self.grid[l][1] + j
                               for i in range(-(-out // tile_rows)) for j in range(k // tile_cols))
                layers.append((out, k, nm.cycles(core, out, k, 1), blocks))
            predictions = net.predict(subnet)
            accuracy = 100.0 * float(np.mean(predictions == net.y_test))
            infos.append(SubNetInfo(index, subnet, accuracy, predictions, tuple(layers), block_bytes))
        self.subnets: list[SubNetInfo] = infos
        self.by_name = {info.name: info for info in infos}
        # usage[s, l, b] = 1 when layer l of SubNet s reads block b (for vectorised pricing).
        depth = max(len(info.layers) for info in infos)
        self.usage = np.zeros((len(infos), depth, self.n_blocks), dtype=np.int64)
        self.compute = np.zeros((len(infos), depth), dtype=np.int64)
        for info in infos:
            for l, (_, _, cycles, blocks) in enumerate(info.layers):
                self.usage[info.index, l, list(blocks)] = 1
                self.compute[info.index, l] = cycles
        self.accuracies = np.array([info.accuracy for info in infos])
        #: One test image's worth of top-1, in points: the resolution of every accuracy here.
        self.accuracy_step = 100.0 / len(net.y_test)
        self.sizes = self.usage.sum(axis=(1, 2))

    def block_data(self, block: int) -> np.ndarray:
        """The int8 weights of ``block`` (its tile, row-major; ``block_bytes`` values)."""
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 0 <= block < self.n_blocks:
            raise GoldenError(f"unknown weight block {block!r}: this SuperNet has blocks "
                              f"0..{self.n_blocks - 1}")
        l = int(np.searchsorted(self.offsets, block, side="right")) - 1
        i, j = divmod(int(block) - self.offsets[l], self.grid[l][1])
        tr, tc = self.tile
        w = np.zeros(self.stored_shapes[l], dtype=np.int64)
        q = self._quantized[l]
        w[:q.shape[0], :q.shape[1]] = q
        return w[i * tr:(i + 1) * tr, j * tc:(j + 1) * tc].reshape(-1)

    def latencies(self, resident: np.ndarray, bw: int, extra_bytes: int = 0) -> np.ndarray:
        """Cycles of every SubNet when the blocks with ``resident[b]`` set need no fetch."""
        missed = self.usage @ (1 - resident.astype(np.int64))           # [subnets, layers]
        fetch = -(-missed * self.block_bytes // bw)
        return np.maximum(self.compute, fetch).sum(axis=1) + -(-extra_bytes // bw)

    def no_cache_latencies(self, bw: int) -> np.ndarray:
        return self.latencies(np.zeros(self.n_blocks, dtype=bool), bw)


# ------------------------------------------------------------------------- platform

@dataclass(frozen=True)
class Platform:
    """The buffer and memory the schedulers plan for.

    Parameters
    ----------
    block_bytes : int
        Bytes per weight block (the buffer's ``block_words`` x word bytes).
    word_bytes : int
        Bytes per buffer word (off-chip traffic is counted in words by the hardware).
    capacity_blocks : int
        Block slots in the buffer (persistent + streaming), >= 1.
    persistent_blocks : int
        Slots of the persistent region (the buffer's tags), 0 <= p < capacity_blocks.
    offchip_bytes_per_cycle : int
        Off-chip bandwidth in bytes per core cycle.
    """

    block_bytes: int
    word_bytes: int
    capacity_blocks: int
    persistent_blocks: int
    offchip_bytes_per_cycle: int

    def __post_init__(self):
        if self.word_bytes < 1 or self.block_bytes % self.word_bytes:
            raise GoldenError(f"a block of {self.block_bytes} bytes is not a whole number of "
                              f"{self.word_bytes}-byte words")
        if self.capacity_blocks < 1:
            raise GoldenError(f"the buffer's capacity is smaller than one block of {self.block_bytes} "
                              f"bytes (capacity_blocks={self.capacity_blocks})")
        if not 0 <= self.persistent_blocks < self.capacity_blocks:
            raise GoldenError(f"persistent_blocks must be in 0..capacity_blocks-1 = "
                              f"{self.capacity_blocks - 1} (one streaming slot), not {self.persistent_blocks}")
        if self.offchip_bytes_per_cycle < 1:
            raise GoldenError(f"offchip_bytes_per_cycle must be >= 1, not {self.offchip_bytes_per_cycle}")

    @property
    def block_words(self) -> int:
        return self.block_bytes // self.word_bytes

    @classmethod
    def from_bytes(cls, capacity_bytes: int, block_bytes: int, *, stream_blocks: int = 2,
                   word_bytes: int = 4, offchip_bytes_per_cycle: int = 8) -> "Platform":
        """A buffer of ``capacity_bytes`` with ``stream_blocks`` streaming slots."""
        if capacity_bytes < block_bytes:
            raise GoldenError(f"a buffer of {capacity_bytes} bytes is smaller than one block of "
                              f"{block_bytes} bytes")
        slots = capacity_bytes // block_bytes
        return cls(block_bytes, word_bytes, slots, max(0, slots - stream_blocks), offchip_bytes_per_cycle)

    @classmethod
    def from_buffer(cls, buffer, offchip_bytes_per_cycle: int = 8) -> "Platform":
        """The platform of an SGS buffer config (``capacity_words``, ``block_words``,
        ``word_width``, ``tags``: ``spec.sgs_buffer.SGSBufferConfig``)."""
        word_bytes = buffer.word_width // 8
        if buffer.capacity_words < buffer.block_words:
            raise GoldenError(f"capacity_words={buffer.capacity_words} is smaller than one block "
                              f"(block_words={buffer.block_words})")
        return cls(buffer.block_words * word_bytes, word_bytes, buffer.capacity_words // buffer.block_words,
                   buffer.tags, offchip_bytes_per_cycle)


# -------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class Query:
    """One inference request: a latency target in core cycles, an optional accuracy floor
    (percent top-1), and the test image it classifies."""

    latency_target: int
    accuracy_floor: float | None
    image: int


#: The seeded query streams of :func:`make_stream`.
STREAMS = ("steady", "drift", "phased")

#: Latency classes as ranges of quantiles of the SubNets' no-cache latencies.
_CLASSES = {"tight": (0.05, 0.3), "medium": (0.3, 0.7), "loose": (0.7, 1.0)}


def make_stream(space: SubNetSpace, platform: Platform, kind: str, queries: int = 400,
                seed: int = 0, *, phase: int = 50) -> list[Query]:
    """A seeded query stream.

    Latency targets come in three classes, each a range of the SubNets' latencies
    without any cache: tight between their 5th and 30th percentiles, medium between the
    30th and 70th, loose between the 70th and the slowest (uniform within the class):

    * ``steady``: i.i.d. 30 % tight, 40 % medium, 30 % loose; no accuracy floors.
    * ``drift``: the share of tight targets falls linearly from 70 % to 5 % over the stream
      while loose ones rise from 5 % to 70 % (medium the rest); no floors.
    * ``phased``: phases of ``phase`` queries, each with 80 % of one class (tight, loose, medium,
      loose, tight, ... in turn) and the rest uniform; 25 % of the queries carry an
      accuracy floor at the 75th percentile of the SubNets' top-1.
    """
    if kind not in STREAMS:
        raise GoldenError(f"unknown query stream {kind!r}; streams: {', '.join(STREAMS)}")
    if queries < 1 or phase < 1:
        raise GoldenError(f"a stream needs >= 1 query and phases of >= 1, not queries={queries}, phase={phase}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise GoldenError(f"the stream's seed must be an integer >= 0, not seed={seed!r}")
    rng = np.random.default_rng(seed)
    base = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    ranges = [(np.quantile(base, lo), np.quantile(base, hi)) for lo, hi in _CLASSES.values()]
    floor = float(np.quantile(space.accuracies, 0.75))
    stream = []
    for q in range(queries):
        t = q / max(1, queries - 1)
        if kind == "steady":
            p = [0.3, 0.4, 0.3]
        elif kind == "drift":
            tight, loose = 0.7 - 0.65 * t, 0.05 + 0.65 * t
            p = [tight, 1 - tight - loose, loose]
        else:
            main = [0, 2, 1, 2][(q // phase) % 4]
            p = [0.1] * 3
            p[main] = 0.8
        cls = int(rng.choice(3, p=np.array(p) / sum(p)))
        target = int(round(rng.uniform(*ranges[cls])))
        acc_floor = floor if kind == "phased" and rng.random() < 0.25 else None
        stream.append(Query(target, acc_floor, int(rng.integers(0, len(space.net.y_test)))))
    return stream


# ------------------------------------------------------------- cache models (exact)

@dataclass(frozen=True)
class Command:
    """One request to the SGS buffer (``spec.sgs_buffer.request_layout``).

    ``read``: deliver ``block``'s words to the core (hit: from the persistent region;
    miss: fetched into the streaming region). ``pin``: fetch ``block`` into persistent slot
    ``slot`` (any other slot holding it is dropped). ``drop``: forget slot ``slot``.
    """

    op: str
    block: int = 0
    slot: int = 0

    def __post_init__(self):
        if self.op not in ("read", "pin", "drop"):
            raise GoldenError(f"unknown buffer command {self.op!r}; commands: read, pin, drop")


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

    Semantics (those of ``hw.sgs_buffer``): ``read`` hits when some valid slot holds the
    block; ``pin`` first invalidates every slot holding the block and the target slot, then
    fetches the block into the target slot; ``drop`` invalidates a slot. ``pin``/``drop``
    naming a slot ``>= tags`` raise :class:`GoldenError` (the hardware ignores them).
    """

    def __init__(self, tags: int, block_words: int, n_blocks: int | None = None):
        if tags < 0 or block_words < 1:
            raise GoldenError(f"need tags >= 0 and block_words >= 1, not tags={tags}, block_words={block_words}")
        self.tags, self.block_words, self.n_blocks = tags, block_words, n_blocks
        self.slots: list[int | None] = [None] * tags
        self.hits = self.misses = self.pins = self.offchip_words = 0
        #: Block ids fetched from off-chip memory, in order (misses and pins).
        self.fetches: list[int] = []

    @property
    def resident(self) -> set[int]:
        return {b for b in self.slots if b is not None}

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
        """Apply one command; for ``read`` return whether it hit."""
        if command.op == "read":
            block = self._block(command.block)
            if block in self.slots:
                self.hits += 1
                return True
            self.misses += 1
            self.offchip_words += self.block_words
            self.fetches.append(block)
            return False
        slot = self._slot(command.slot)
        if command.op == "drop":
            self.slots[slot] = None
            return None
        block = self._block(command.block)
        self.slots = [None if b == block else b for b in self.slots]
        self.slots[slot] = block
        self.pins += 1
        self.offchip_words += self.block_words
        self.fetches.append(block)
        return None

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


# ------------------------------------------------------------------ SubNet choice

def _choose(space: SubNetSpace, targets: np.ndarray, floors: np.ndarray, latencies: np.ndarray,
            missed_bytes: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The choice rule for many queries at once (one buffer state): returns the SubNet
    indices and the latency and accuracy violation flags."""
    acc = space.accuracies
    index = np.arange(len(acc))
    floor_ok = acc[None, :] >= floors[:, None] - 1e-9                      # [queries, subnets]
    acc_violation = ~floor_ok.any(axis=1)
    candidates = floor_ok | acc_violation[:, None]
    fast = candidates & (latencies[None, :] <= targets[:, None])
    lat_violation = ~fast.any(axis=1)
    best = np.where(fast, acc[None, :], -np.inf).max(axis=1)
    near = fast & (acc[None, :] >= best[:, None] - tolerance - 1e-9)
    # Ranks: within the accuracy band fewest off-chip bytes, then more accurate, then faster;
    # best effort (nothing fast enough): fastest, then more accurate.
    rank_near = np.empty(len(acc), dtype=np.int64)
    rank_near[np.lexsort((index, latencies, -acc, missed_bytes))] = index
    rank_fast = np.empty(len(acc), dtype=np.int64)
    rank_fast[np.lexsort((index, -acc, latencies))] = index
    big = len(acc)
    choices = np.where(lat_violation,
                       np.where(candidates, rank_fast[None, :], big).argmin(axis=1),
                       np.where(near, rank_near[None, :], big).argmin(axis=1))
    return choices, lat_violation, acc_violation


def _floors(queries) -> np.ndarray:
    return np.array([-np.inf if q.accuracy_floor is None else q.accuracy_floor for q in queries])


def choose_subnet(space: SubNetSpace, query: Query, latencies: np.ndarray, missed_bytes: np.ndarray,
                  *, tolerance: float = 0.0, strict: bool = False, index: int = 0) -> tuple[int, str]:
    """Pick the SubNet for ``query`` given each SubNet's latency and off-chip bytes under
    the current buffer contents.

    Among the SubNets that meet the accuracy floor (all of them when there is no floor, or
    when none meets it: an ``accuracy`` violation) and the latency target, those within
    ``tolerance`` points of the most accurate one are equally good; of those, the one with
    the fewest off-chip bytes (then the more accurate, the faster, the smaller index). When
    none meets the latency target, the fastest (then the more accurate) one is served as
    best effort: a ``latency`` violation (with ``strict``, :class:`GoldenError`).

    Returns ``(subnet index, violation)``, violation one of ``""``, ``"latency"``,
    ``"accuracy"``, ``"latency+accuracy"``.
    """
    choices, lat_bad, acc_bad = _choose(space, np.array([query.latency_target]), _floors([query]),
                                        latencies, missed_bytes, tolerance)
    violation = "+".join(v for v, bad in (("latency", lat_bad[0]), ("accuracy", acc_bad[0])) if bad)
    if violation and strict:
        floor = "" if query.accuracy_floor is None else f" with top-1 >= {query.accuracy_floor:.2f}%"
        raise GoldenError(f"query {index}: no SubNet meets latency <= {query.latency_target} cycles"
                          f"{floor} (fastest possible now: {int(latencies.min())} cycles)")
    return int(choices[0]), violation


# ---------------------------------------------------------------------- results

@dataclass(frozen=True)
class QueryRecord:
    index: int
    subnet: str
    latency: int
    target: int
    accuracy: float
    correct: bool
    offchip_bytes: int
    swap_bytes: int
    violation: str


@dataclass
class ServeResult:
    """Outcome of one policy on one stream.

    ``commands`` is the SGS buffer's request stream (``None`` for LRU, which the SGS
    buffer does not implement); ``query_starts[q]`` is the index of query q's first
    command (its SubGraph update, if any, then its reads).
    """

    policy: str
    records: list[QueryRecord]
    commands: list[Command] | None
    query_starts: list[int] | None
    platform: Platform
    swaps: int = 0

    def summary(self) -> dict[str, Any]:
        r = self.records
        n = len(r)
        return {
            "policy": self.policy,
            "queries": n,
            "offchip_bytes_per_query": sum(x.offchip_bytes for x in r) / n,
            "mean_latency_cycles": sum(x.latency for x in r) / n,
            "served_accuracy": sum(x.accuracy for x in r) / n,
            "served_correct": 100.0 * sum(x.correct for x in r) / n,
            "slo_violations": sum(bool(x.violation) for x in r),
            "latency_violations": sum("latency" in x.violation for x in r),
            "accuracy_violations": sum("accuracy" in x.violation for x in r),
            "subgraph_swaps": self.swaps,
            "distinct_subnets": len({x.subnet for x in r}),
        }


def _record(space, q, query, info, latency, offchip_bytes, swap_bytes, violation):
    return QueryRecord(q, info.name, int(latency), query.latency_target, info.accuracy,
                       bool(info.predictions[query.image] == space.net.y_test[query.image]),
                       int(offchip_bytes), int(swap_bytes), violation)


def _check(space: SubNetSpace, platform: Platform):
    if space.block_bytes != platform.block_bytes:
        raise GoldenError(f"the SubNet space is cut into {space.block_bytes}-byte blocks but the "
                          f"platform's blocks are {platform.block_bytes} bytes")


def _missed_bytes(space: SubNetSpace, resident: np.ndarray) -> np.ndarray:
    return (space.usage.sum(axis=1) @ (1 - resident.astype(np.int64))) * space.block_bytes


def _mask(space: SubNetSpace, blocks) -> np.ndarray:
    mask = np.zeros(space.n_blocks, dtype=bool)
    mask[list(blocks)] = True
    return mask


# -------------------------------------------------------------------- SushiSched

class SushiSched:
    """The SUSHI scheduler: per query, the SubNet given the resident SubGraph; every
    ``period`` queries, the SubGraph to keep in the persistent region. Emits the SGS
    buffer's command stream and counts its off-chip words with :class:`SGSCacheModel`.

    Decisions happen before queries 1, 2, ..., ``period`` - 1 (warm-up) and then before
    every ``period``-th query. Candidate SubGraphs (at most ``persistent_blocks`` blocks each)
    are the one resident now; the blocks most used by the SubNets served in the last
    ``window`` queries; and, for every SubNet, its own blocks (its most used ones when it
    is larger than the region) topped up with the most used others. Each candidate is
    scored by replaying the last ``window`` queries under the choice rule with that
    SubGraph resident: fewest SLO violations first, then fewest off-chip bytes including
    the rewrite itself (blocks not yet resident), then the highest served accuracy. The
    best candidate is pinned (``pin`` for each new block into a freed slot, ``drop`` for
    slots left empty); blocks that stay keep their slots.

    Parameters
    ----------
    space : SubNetSpace
    platform : Platform
    period : int
        Queries between SubGraph decisions, >= 1.
    window : int
        Recent queries a decision looks at, >= 1.
    tolerance : float, optional
        Accuracy band of the choice rule, points (:func:`choose_subnet`); default one
        test image (``space.accuracy_step``), the resolution of the measured top-1.
    strict : bool
        Raise :class:`GoldenError` on a query no SubNet can serve within its targets.
    """

    def __init__(self, space: SubNetSpace, platform: Platform, *, period: int = 8, window: int = 32,
                 tolerance: float | None = None, strict: bool = False):
        _check(space, platform)
        tolerance = space.accuracy_step if tolerance is None else tolerance
        if period < 1 or window < 1:
            raise GoldenError(f"period and window must be >= 1, not period={period}, window={window}")
        if tolerance < 0:
            raise GoldenError(f"tolerance must be >= 0 points, not {tolerance}")
        self.space, self.platform = space, platform
        self.period, self.window, self.tolerance, self.strict = period, window, tolerance, strict

    def candidates(self, served: list[int], resident: np.ndarray) -> list[np.ndarray]:
        """Candidate SubGraphs (block masks), the resident one first."""
        space, size = self.space, self.platform.persistent_blocks
        freq = space.usage[served].sum(axis=(0, 1))
        ranked = np.lexsort((np.arange(space.n_blocks), ~resident, -freq))   # most used first
        position = np.empty(space.n_blocks, dtype=np.int64)
        position[ranked] = np.arange(space.n_blocks)
        used = ranked[freq[ranked] > 0]
        masks = [resident, _mask(space, used[:size])]
        for info in space.subnets:
            own = np.array(info.blocks)
            own = own[np.argsort(position[own])][:size]
            mask = _mask(space, own)
            extra = used[~mask[used]][:size - len(own)]
            mask[extra] = True
            masks.append(mask)
        unique, seen = [], set()
        for mask in masks:
            key = mask.tobytes()
            if key not in seen:
                seen.add(key)
                unique.append(mask)
        return unique

    def score(self, mask: np.ndarray, resident: np.ndarray, recent: list[Query]) -> tuple:
        """(violations, off-chip bytes incl. the rewrite, -accuracy) of the recent queries
        replayed with ``mask`` resident."""
        space, bw = self.space, self.platform.offchip_bytes_per_cycle
        missed = _missed_bytes(space, mask)
        choices, lat_bad, acc_bad = _choose(space, np.array([q.latency_target for q in recent]),
                                            _floors(recent), space.latencies(mask, bw), missed,
                                            self.tolerance)
        rewrite = int(np.count_nonzero(mask & ~resident)) * space.block_bytes
        return (int(np.count_nonzero(lat_bad | acc_bad)), int(missed[choices].sum()) + rewrite,
                -float(space.accuracies[choices].sum()))

    def decide(self, recent: list[Query], served: list[int], resident: np.ndarray) -> np.ndarray:
        """The SubGraph to hold for the next queries (returns ``resident`` to keep it)."""
        candidates = self.candidates(served, resident)
        scores = [self.score(mask, resident, recent) for mask in candidates]
        return candidates[min(range(len(candidates)), key=lambda k: (scores[k], k))]

    def run(self, stream: list[Query]) -> ServeResult:
        space, platform = self.space, self.platform
        bw = platform.offchip_bytes_per_cycle
        model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
        commands: list[Command] = []
        starts, records, served = [], [], []
        swaps = 0
        for q, query in enumerate(stream):
            starts.append(len(commands))
            before = model.offchip_words
            resident = _mask(space, model.resident)
            if q and (q < self.period or q % self.period == 0) and platform.persistent_blocks:
                target = self.decide(stream[max(0, q - self.window):q], served[-self.window:], resident)
                if not np.array_equal(target, resident):
                    swaps += 1
                    free = [s for s, b in enumerate(model.slots) if b is None or not target[b]]
                    incoming = [int(b) for b in np.flatnonzero(target & ~resident)]
                    update = [Command("pin", block, slot) for slot, block in zip(free, incoming)]
                    update += [Command("drop", 0, slot) for slot in free[len(incoming):]
                               if model.slots[slot] is not None]
                    for command in update:
                        model.apply(command)
                    commands += update
                    resident = target
            swap_bytes = (model.offchip_words - before) * platform.word_bytes
            # The rewrite delays this query: the choice sees it.
            latencies = space.latencies(resident, bw, extra_bytes=swap_bytes)
            choice, violation = choose_subnet(space, query, latencies, _missed_bytes(space, resident),
                                              tolerance=self.tolerance, strict=self.strict, index=q)
            info = space.subnets[choice]
            for block in info.blocks:
                commands.append(Command("read", block))
                model.apply(commands[-1])
            served.append(choice)
            offchip = (model.offchip_words - before) * platform.word_bytes
            records.append(_record(space, q, query, info, latencies[choice], offchip, swap_bytes, violation))
        return ServeResult("sushi", records, commands, starts, platform, swaps)


def _no_cache(space, platform, stream, strict, tolerance) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    empty = np.zeros(space.n_blocks, dtype=bool)
    latencies, missed = space.latencies(empty, bw), _missed_bytes(space, empty)
    model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
    commands, starts, records = [], [], []
    for q, query in enumerate(stream):
        starts.append(len(commands))
        before = model.offchip_words
        choice, violation = choose_subnet(space, query, latencies, missed, tolerance=tolerance,
                                          strict=strict, index=q)
        info = space.subnets[choice]
        for block in info.blocks:
            commands.append(Command("read", block))
            model.apply(commands[-1])
        offchip = (model.offchip_words - before) * platform.word_bytes
        records.append(_record(space, q, query, info, latencies[choice], offchip, 0, violation))
    return ServeResult("no-cache", records, commands, starts, platform)


def _lru(space, platform, stream, strict, tolerance) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    cache = LRUCacheModel(platform.capacity_blocks, platform.block_words)
    records = []
    for q, query in enumerate(stream):
        # Every SubNet priced exactly on the current LRU state (evictions inside the query
        # included), so the LRU baseline gets the same cache-aware choice as SushiSched.
        latencies = np.zeros(len(space.subnets), dtype=np.int64)
        missed = np.zeros(len(space.subnets), dtype=np.int64)
        for info in space.subnets:
            layer_misses = cache.preview([layer[3] for layer in info.layers])
            latencies[info.index] = sum(max(layer[2], -(-k * space.block_bytes // bw))
                                        for layer, k in zip(info.layers, layer_misses))
            missed[info.index] = sum(layer_misses) * space.block_bytes
        choice, violation = choose_subnet(space, query, latencies, missed, tolerance=tolerance,
                                          strict=strict, index=q)
        info = space.subnets[choice]
        before = cache.offchip_words
        for block in info.blocks:
            cache.read(block)
        offchip = (cache.offchip_words - before) * platform.word_bytes
        records.append(_record(space, q, query, info, latencies[choice], offchip, 0, violation))
    return ServeResult("lru", records, None, None, platform)


def static_subnet(space: SubNetSpace, platform: Platform, stream: list[Query]) -> tuple[int, list[int]]:
    """The static baseline's SubNet and the blocks it pins (see the module docstring)."""
    bw = platform.offchip_bytes_per_cycle
    targets = np.array([q.latency_target for q in stream])
    floors = _floors(stream)
    best = None
    for info in space.subnets:
        pinned = list(info.blocks[:platform.persistent_blocks])
        latency = space.latencies(_mask(space, pinned), bw)[info.index]
        met = float(np.mean((latency <= targets) & (info.accuracy >= floors - 1e-9)))
        ok = met >= STATIC_SLO_FRACTION
        key = (ok, info.accuracy if ok else met, -latency)
        if best is None or key > best[0]:
            best = (key, info.index, pinned)
    return best[1], best[2]


def _static(space, platform, stream, strict, tolerance) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    choice, pinned = static_subnet(space, platform, stream)
    info = space.subnets[choice]
    model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
    commands, starts, records = [], [], []
    for q, query in enumerate(stream):
        starts.append(len(commands))
        before = model.offchip_words
        if q == 0:
            for slot, block in enumerate(pinned):
                commands.append(Command("pin", block, slot))
                model.apply(commands[-1])
        swap_bytes = model.offchip_words * platform.word_bytes if q == 0 else 0
        latency = space.latencies(_mask(space, model.resident), bw)[choice] + -(-swap_bytes // bw)
        for block in info.blocks:
            commands.append(Command("read", block))
            model.apply(commands[-1])
        floor_bad = query.accuracy_floor is not None and info.accuracy < query.accuracy_floor - 1e-9
        violation = "+".join(v for v, bad in (("latency", latency > query.latency_target),
                                              ("accuracy", floor_bad)) if bad)
        if violation and strict:
            raise GoldenError(f"query {q}: the static SubNet {info.name} misses its target ({violation})")
        offchip = (model.offchip_words - before) * platform.word_bytes
        records.append(_record(space, q, query, info, latency, offchip, swap_bytes, violation))
    return ServeResult("static", records, commands, starts, platform, int(bool(pinned)))


#: Policy names accepted by :func:`serve`.
POLICIES = ("sushi", "no-cache", "lru", "static")


def serve(policy: str, space: SubNetSpace, platform: Platform, stream: list[Query], *,
          tolerance: float | None = None, strict: bool = False, **options) -> ServeResult:
    """Run ``policy`` (one of :data:`POLICIES`) over ``stream``. ``tolerance`` is the choice
    rule's accuracy band in points (every policy but ``static`` uses it; default one test
    image, ``space.accuracy_step``); ``options`` go to :class:`SushiSched` (``period``,
    ``window``)."""
    _check(space, platform)
    tolerance = space.accuracy_step if tolerance is None else tolerance
    if policy == "sushi":
        return SushiSched(space, platform, tolerance=tolerance, strict=strict, **options).run(stream)
    if options:
        raise GoldenError(f"policy {policy!r} takes no options, got {sorted(options)}")
    runners = {"no-cache": _no_cache, "lru": _lru, "static": _static}
    if policy not in runners:
        raise GoldenError(f"unknown policy {policy!r}; policies: {', '.join(POLICIES)}")
    return runners[policy](space, platform, stream, strict, tolerance)
