"""The baselines SushiSched is measured against: no cache, LRU, and a static SubNet.

All of them pick each query's SubNet with the same choice rule as SushiSched
(:mod:`golden.sushi.choice`), from the latency each SubNet would have *given what is
resident at that moment*; they differ in what they keep on chip:

* ``no-cache``: nothing persists across queries; every block is fetched each time.
* ``lru``: every block slot of the buffer (persistent and streaming) is one LRU cache
  over weight blocks; every miss is inserted, evicting the least recently used. Each
  SubNet is priced exactly on the LRU state of the moment (evictions within the query
  included), so LRU gets the same cache-aware choice as SushiSched. The SGS buffer does
  not implement LRU, so this policy has no request stream.
* ``static``: one SubNet serves every query, its SubGraph pinned once: as many of its
  blocks as the persistent region holds, those of its fetch-bound products first (the
  pins that shorten its latency most). It is chosen with hindsight of the whole stream:
  the most accurate SubNet that meets both targets of at least
  :data:`STATIC_SLO_FRACTION` of the queries (if none does, the one meeting the most, the
  faster on ties).
"""

import numpy as np

from spec.sgs_buffer import Op

from .cache_model import Command, LRUCacheModel, SGSCacheModel
from .choice import EPS, choose_subnet, floors, impossible, violation_text
from .platform import Platform
from .results import ServeResult
from .sched import mask, record, rewrite
from .space import SubNetSpace

__all__ = ["STATIC_SLO_FRACTION", "no_cache", "lru", "static", "static_subnet", "static_blocks"]

#: The static baseline must meet the targets of at least this fraction of the queries.
STATIC_SLO_FRACTION = 0.9


def no_cache(space: SubNetSpace, platform: Platform, stream, strict: bool, tolerance: float) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    empty = np.zeros(space.n_blocks, dtype=bool)
    latencies, missed = space.latencies(empty, bw), space.missed_bytes(empty)
    model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
    commands, starts, records = [], [], []
    for q, query in enumerate(stream):
        starts.append(len(commands))
        before = model.offchip_words
        choice, violation = choose_subnet(space, query, latencies, missed, tolerance=tolerance,
                                          strict=strict, index=q)
        for block in space.subnets[choice].blocks:
            commands.append(Command(Op.READ, block))
            model.apply(commands[-1])
        offchip = (model.offchip_words - before) * platform.word_bytes
        records.append(record(space, q, query, choice, latencies[choice], offchip, 0, violation))
    return ServeResult("no-cache", records, commands, starts, platform)


def _lru_price(space: SubNetSpace, cache: LRUCacheModel, s: int, bw: int) -> tuple[int, int]:
    info = space.subnets[s]
    misses = cache.preview([layer[3] for layer in info.layers])
    latency = sum(max(layer[2], -(-k * space.block_bytes // bw)) for layer, k in zip(info.layers, misses))
    return latency, sum(misses) * space.block_bytes


def _lru_choice(space: SubNetSpace, cache: LRUCacheModel, query, bw: int, tolerance: float):
    """The choice rule on the LRU state, pricing only the SubNets that can matter (exact:
    a SubNet's latency is at least its compute-only latency)."""
    acc, lower = space.accuracies, space.compute_latencies()
    floor = -np.inf if query.accuracy_floor is None else query.accuracy_floor
    candidates = np.flatnonzero(acc >= floor - EPS)
    acc_bad = not len(candidates)
    if acc_bad:
        candidates = np.arange(len(acc))
    priced: dict[int, tuple[int, int]] = {}

    def price(s):
        if s not in priced:
            priced[s] = _lru_price(space, cache, int(s), bw)
        return priced[s]

    best = None
    for s in sorted(candidates, key=lambda s: (-acc[s], s)):
        if best is not None and acc[s] < best - tolerance - EPS:
            break
        if lower[s] <= query.latency_target and price(s)[0] <= query.latency_target and best is None:
            best = acc[s]
    if best is not None:
        near = [s for s in priced if acc[s] >= best - tolerance - EPS and priced[s][0] <= query.latency_target]
        choice = min(near, key=lambda s: (priced[s][1], -acc[s], priced[s][0], s))
        return choice, priced[choice], violation_text(False, acc_bad)
    # Best effort: the fastest candidate (then the more accurate).
    fastest = None
    for s in sorted(candidates, key=lambda s: (lower[s], s)):
        if fastest is not None and lower[s] > priced[fastest][0]:
            break
        latency = price(s)[0]
        if fastest is None or (latency, -acc[s], s) < (priced[fastest][0], -acc[fastest], fastest):
            fastest = s
    return fastest, priced[fastest], violation_text(True, acc_bad)


def lru(space: SubNetSpace, platform: Platform, stream, strict: bool, tolerance: float) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    cache = LRUCacheModel(platform.capacity_blocks, platform.block_words)
    records = []
    for q, query in enumerate(stream):
        choice, (latency, _), violation = _lru_choice(space, cache, query, bw, tolerance)
        if violation and strict:
            raise impossible(query, q, int(latency))
        before = cache.offchip_words
        for block in space.subnets[choice].blocks:
            cache.read(block)
        offchip = (cache.offchip_words - before) * platform.word_bytes
        records.append(record(space, q, query, int(choice), latency, offchip, 0, violation))
    return ServeResult("lru", records, None, None, platform)


def static_blocks(space: SubNetSpace, platform: Platform, s: int) -> list[int]:
    """The blocks the static policy pins for SubNet ``s`` (module docstring): greedily, one
    block at a time into the product whose fetch exceeds its compute the most, then the
    rest in read order, up to the persistent region's size."""
    info, bw, size = space.subnets[s], platform.offchip_bytes_per_cycle, platform.persistent_blocks
    pending = [list(layer[3]) for layer in info.layers]
    pinned = []
    while len(pinned) < size:
        # (fetch cycles - compute cycles, -product) of every product with blocks left.
        slack = [(-(-len(p) * space.block_bytes // bw) - layer[2], -l) for l, (p, layer)
                 in enumerate(zip(pending, info.layers)) if p]
        if not slack or max(slack)[0] <= 0:
            break
        product = -max(slack)[1]
        pinned.append(pending[product].pop(0))
    rest = [b for p in pending for b in p]
    return pinned + rest[:size - len(pinned)]


def static_subnet(space: SubNetSpace, platform: Platform, stream) -> tuple[int, list[int]]:
    """The static baseline's SubNet and the blocks it pins (module docstring)."""
    bw = platform.offchip_bytes_per_cycle
    targets, query_floors = np.array([q.latency_target for q in stream]), floors(stream)
    best = None
    for info in space.subnets:
        pinned = static_blocks(space, platform, info.index)
        latency = space.latencies(mask(space, pinned), bw)[info.index]
        met = float(np.mean((latency <= targets) & (info.accuracy >= query_floors - EPS)))
        ok = met >= STATIC_SLO_FRACTION
        key = (ok, info.accuracy if ok else met, -latency, -info.index)
        if best is None or key > best[0]:
            best = (key, info.index, pinned)
    return best[1], best[2]


def static(space: SubNetSpace, platform: Platform, stream, strict: bool, tolerance: float) -> ServeResult:
    bw = platform.offchip_bytes_per_cycle
    choice, pinned = static_subnet(space, platform, stream)
    info = space.subnets[choice]
    model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
    commands, starts, records = [], [], []
    for q, query in enumerate(stream):
        starts.append(len(commands))
        before = model.offchip_words
        if q == 0 and pinned:
            commands += rewrite(model, mask(space, pinned))
        swap_bytes = (model.offchip_words - before) * platform.word_bytes
        latency = space.latencies(mask(space, model.resident), bw, extra_bytes=swap_bytes)[choice]
        for block in info.blocks:
            commands.append(Command(Op.READ, block))
            model.apply(commands[-1])
        floor_bad = query.accuracy_floor is not None and info.accuracy < query.accuracy_floor - EPS
        violation = violation_text(latency > query.latency_target, floor_bad)
        if violation and strict:
            raise impossible(query, q, int(latency))
        offchip = (model.offchip_words - before) * platform.word_bytes
        records.append(record(space, q, query, choice, latency, offchip, swap_bytes, violation))
    return ServeResult("static", records, commands, starts, platform, int(bool(pinned)))
