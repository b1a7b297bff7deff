"""SushiSched: the SubNet for each query given the resident SubGraph, and, periodically,
the SubGraph to hold; and its oracle twin that decides from the queries to come.

Both emit the SGS buffer's request stream and count its off-chip words with
:class:`~golden.sushi.cache_model.SGSCacheModel`, so their traffic is what the buffer's
counters would show.
"""

import numpy as np

from spec.sgs_buffer import Op

from .. import GoldenError
from .cache_model import Command, SGSCacheModel
from .choice import choose_many, choose_subnet, floors
from .platform import Platform
from .results import QueryRecord, ServeResult
from .space import SubNetSpace
from .streams import Query

__all__ = ["SushiSched", "record", "mask", "rewrite", "check_compatible"]


def check_compatible(space: SubNetSpace, platform: Platform) -> None:
    if space.block_bytes != platform.block_bytes:
        raise GoldenError(f"the SubNet space is cut into {space.block_bytes}-byte blocks but the "
                          f"platform's blocks are {platform.block_bytes} bytes")
    if space.n_blocks > 1 << platform.buffer.id_width:
        raise GoldenError(f"the SuperNet has {space.n_blocks} blocks; the buffer's id_width="
                          f"{platform.buffer.id_width} names only {1 << platform.buffer.id_width}")


def mask(space: SubNetSpace, blocks) -> np.ndarray:
    """A block mask with ``blocks`` set."""
    m = np.zeros(space.n_blocks, dtype=bool)
    m[list(blocks)] = True
    return m


def record(space: SubNetSpace, q: int, query: Query, choice: int, latency, offchip_bytes, swap_bytes,
           violation: str) -> QueryRecord:
    info = space.subnets[choice]
    return QueryRecord(q, info.name, int(latency), query.latency_target, info.accuracy,
                       float(space.item_quality[choice, query.item]), int(offchip_bytes), int(swap_bytes),
                       violation)


def rewrite(model: SGSCacheModel, target: np.ndarray) -> list[Command]:
    """The commands that make ``target`` (a block mask) the persistent region's content:
    blocks that stay keep their slots; each new block is pinned into a freed slot; slots
    left over are dropped. Applies them to ``model`` and returns them."""
    resident = model.resident
    free = [s for s, b in enumerate(model.slots) if b is None or not target[b]]
    incoming = [int(b) for b in np.flatnonzero(target) if int(b) not in resident]
    if len(incoming) > len(free):
        raise GoldenError(f"a SubGraph of {int(target.sum())} blocks does not fit {model.tags} persistent slots")
    commands = [Command(Op.PIN, block, slot) for slot, block in zip(free, incoming)]
    commands += [Command(Op.DROP, 0, slot) for slot in free[len(incoming):] if model.slots[slot] is not None]
    for command in commands:
        model.apply(command)
    return commands


class SushiSched:
    """The SUSHI scheduler: per query, the SubNet given the resident SubGraph (the choice
    rule of :mod:`golden.sushi.choice`); every ``period`` queries, the SubGraph to keep in
    the persistent region.

    Decisions happen before queries 1, 2, ..., ``period`` - 1 (warm-up) and then before
    every ``period``-th query. Candidate SubGraphs (at most ``persistent_blocks`` blocks
    each) are the one resident now; the blocks most used by the SubNets served in the last
    ``window`` queries; and, for every SubNet, its own blocks (its most used ones when it is
    larger than the region) topped up with the most used others. Each candidate is scored
    by replaying the last ``window`` queries under the choice rule with that SubGraph
    resident: fewest SLO violations first, then the highest served accuracy (candidates
    within the choice rule's band, ``tolerance`` per query, of the best count as equal),
    then the fewest off-chip bytes including the rewrite itself (blocks not yet resident).
    The best candidate
    is pinned (``PIN`` for each new block into a freed slot, ``DROP`` for slots left
    empty); blocks that stay keep their slots. A rewrite is not overlapped with compute: it
    delays the query after it by its fetch time (the choice rule sees that), so it waits
    for the first query it does not push past its targets (or that misses them anyway);
    the next decision replaces a rewrite still waiting.

    With ``lookahead=True`` it is the **oracle**: it knows the stream, so every decision
    (from query 0 on) scores the next ``window`` queries instead of the last ones, with the
    SubNets they would choose under the current SubGraph as the usage statistics. An upper
    reference for window-based SubGraph decisions, not a proof of optimality.

    Parameters
    ----------
    space : SubNetSpace
    platform : Platform
    period : int
        Queries between SubGraph decisions, >= 1.
    window : int
        Queries a decision looks at, >= 1.
    tolerance : float, optional
        Accuracy band of the choice rule, points; default the SuperNet's resolution.
    strict : bool
        Raise :class:`GoldenError` on a query no SubNet can serve within its targets.
    lookahead : bool
        Decide from the queries to come (the oracle).
    """

    def __init__(self, space: SubNetSpace, platform: Platform, *, period: int = 8, window: int = 32,
                 tolerance: float | None = None, strict: bool = False, lookahead: bool = False):
        check_compatible(space, platform)
        tolerance = space.accuracy_step if tolerance is None else tolerance
        for name, value in (("period", period), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise GoldenError(f"period and window must be integers >= 1, not {name}={value!r}")
        if not tolerance >= 0:
            raise GoldenError(f"tolerance must be >= 0 points, not {tolerance!r}")
        self.space, self.platform = space, platform
        self.period, self.window, self.tolerance, self.strict = period, window, tolerance, strict
        self.lookahead = lookahead

    @property
    def name(self) -> str:
        return "oracle" if self.lookahead else "sushi"

    def candidates(self, served: list[int], resident: np.ndarray) -> list[np.ndarray]:
        """Candidate SubGraphs (block masks), the resident one first."""
        space, size = self.space, self.platform.persistent_blocks
        freq = space.usage[served].sum(axis=(0, 1)) if served else np.zeros(space.n_blocks, dtype=np.int64)
        ranked = np.lexsort((np.arange(space.n_blocks), ~resident, -freq))   # most used first
        position = np.empty(space.n_blocks, dtype=np.int64)
        position[ranked] = np.arange(space.n_blocks)
        used = ranked[freq[ranked] > 0]
        masks = [resident, mask(space, used[:size])]
        for info in space.subnets:
            own = np.array(info.blocks)
            own = own[np.argsort(position[own], kind="stable")][:size]
            m = mask(space, own)
            extra = used[~m[used]][:size - len(own)]
            m[extra] = True
            masks.append(m)
        unique, seen = [], set()
        for m in masks:
            key = m.tobytes()
            if key not in seen:
                seen.add(key)
                unique.append(m)
        return unique

    def scores(self, masks: list[np.ndarray], resident: np.ndarray, queries: list[Query]) -> list[tuple]:
        """(violations, off-chip bytes incl. the rewrite, -accuracy) of ``queries`` replayed
        with each of ``masks`` resident."""
        space = self.space
        latencies, missed = space.price_many(np.array(masks), self.platform.offchip_bytes_per_cycle)
        targets, query_floors = np.array([q.latency_target for q in queries]), floors(queries)
        out = []
        for k, m in enumerate(masks):
            choices, lat_bad, acc_bad = choose_many(space, targets, query_floors, latencies[k], missed[k],
                                                    self.tolerance)
            rewrite_bytes = int(np.count_nonzero(m & ~resident)) * space.block_bytes
            out.append((int(np.count_nonzero(lat_bad | acc_bad)), int(missed[k][choices].sum()) + rewrite_bytes,
                        -float(space.accuracies[choices].sum())))
        return out

    def score(self, m: np.ndarray, resident: np.ndarray, queries: list[Query]) -> tuple:
        return self.scores([m], resident, queries)[0]

    def decide(self, queries: list[Query], served: list[int], resident: np.ndarray) -> np.ndarray:
        """The SubGraph to hold for the next queries (returns ``resident`` to keep it): of
        the candidates with the fewest violations, those whose served accuracy is within
        the choice rule's band (``tolerance`` per query) of the best are equally good, and
        the one with the fewest off-chip bytes wins (then the more accurate, the first)."""
        candidates = self.candidates(served, resident)
        scores = self.scores(candidates, resident, queries)
        fewest = min(v for v, _, _ in scores)
        best = min(a for v, _, a in scores if v == fewest)
        band = self.tolerance * len(queries) + 1e-9
        return candidates[min((k for k, (v, _, a) in enumerate(scores) if v == fewest and a <= best + band),
                              key=lambda k: (scores[k][1], scores[k][2], k))]

    def _deciding(self, q: int) -> bool:
        if self.lookahead:
            return q % self.period == 0
        return q > 0 and (q < self.period or q % self.period == 0)

    def _harmless(self, query: Query, resident: np.ndarray, target: np.ndarray) -> bool:
        """Whether rewriting to ``target`` right before ``query`` leaves it within its targets,
        or it would miss them anyway."""
        space, bw = self.space, self.platform.offchip_bytes_per_cycle
        latencies, missed = space.price_many(np.array([resident, target]), bw)
        delay = -(-int(np.count_nonzero(target & ~resident)) * space.block_bytes // bw)
        _, violation_now = choose_subnet(space, query, latencies[0], missed[0], tolerance=self.tolerance)
        _, violation_after = choose_subnet(space, query, latencies[1] + delay, missed[1], tolerance=self.tolerance)
        return not violation_after or bool(violation_now)

    def run(self, stream: list[Query]) -> ServeResult:
        space, platform = self.space, self.platform
        bw = platform.offchip_bytes_per_cycle
        model = SGSCacheModel(platform.persistent_blocks, platform.block_words, space.n_blocks)
        commands: list[Command] = []
        starts, records, served = [], [], []
        swaps, pending = 0, None
        for q, query in enumerate(stream):
            starts.append(len(commands))
            before = model.offchip_words
            resident = mask(space, model.resident)
            if self._deciding(q):
                if self.lookahead:
                    upcoming = stream[q:q + self.window]
                    latencies, missed = space.price_many(resident[None], bw)
                    hint, _, _ = choose_many(space, np.array([x.latency_target for x in upcoming]),
                                             floors(upcoming), latencies[0], missed[0], self.tolerance)
                    pending = self.decide(upcoming, [int(c) for c in hint], resident)
                else:
                    pending = self.decide(stream[max(0, q - self.window):q], served[-self.window:], resident)
            if pending is not None and np.array_equal(pending, resident):
                pending = None
            # A rewrite is not overlapped with compute: it waits for a query it does not
            # push past its targets.
            if pending is not None and self._harmless(query, resident, pending):
                swaps += 1
                commands += rewrite(model, pending)
                resident, pending = pending, None
            swap_bytes = (model.offchip_words - before) * platform.word_bytes
            # The rewrite delays this query: the choice sees it.
            latencies, missed = space.price_many(resident[None], bw)
            latencies = latencies[0] + -(-swap_bytes // bw)
            choice, violation = choose_subnet(space, query, latencies, missed[0],
                                              tolerance=self.tolerance, strict=self.strict, index=q)
            for block in space.subnets[choice].blocks:
                commands.append(Command(Op.READ, block))
                model.apply(commands[-1])
            served.append(choice)
            offchip = (model.offchip_words - before) * platform.word_bytes
            records.append(record(space, q, query, choice, latencies[choice], offchip, swap_bytes, violation))
        return ServeResult(self.name, records, commands, starts, platform, swaps)
