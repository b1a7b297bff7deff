"""The validity checker of collective schedules, and the lower bound they are measured by.

Rules (:func:`check`; any broken rule raises :class:`golden.GoldenError` naming the
transfer):

1. every transfer uses a link of the topology and takes exactly its link time for the
   schedule's chunk size (when the schedule states it);
2. no link carries two chunks at once (per link, each transfer starts no earlier than
   the previous one ended);
3. no chunk leaves a node before it arrived there: a transfer carries what its source
   holds at its start, counting arrivals that end at that very instant;
4. values: each NPU holds, per chunk, the set of NPUs whose contributions it has summed.
   All-Gather starts with the owner holding the finished chunk (all contributions);
   Reduce-Scatter and All-Reduce start with every NPU holding its own contribution. A
   transfer delivers the source's set; a finished chunk replaces what the destination
   holds, a partial sum is added to it and must not overlap it (a contribution counted
   twice is an error);
5. at the end every NPU holds every finished chunk (All-Gather, All-Reduce), or every
   chunk's owner holds it finished (Reduce-Scatter).

A receive of a finished chunk the destination already holds is valid but wasted; the
report counts them (``redundant``): TACOS never makes one, routed baselines do (a relay
NPU may already hold the chunk it forwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import GoldenError
from .schedule import Schedule
from .topology import Topology


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check` measured on a valid schedule."""

    time_ps: int
    transfers: int
    redundant: int

    @property
    def time_us(self) -> float:
        return self.time_ps / 1e6


def _us(ps: int) -> str:
    return f"{ps / 1e6:.6f} us"


def check(schedule: Schedule, topology: Topology) -> CheckReport:
    """Check every rule of the module docstring; return the measured report."""
    n, chunks = topology.npus, schedule.chunks
    if schedule.npus != n:
        raise GoldenError(f"the schedule is for {schedule.npus} NPUs but the topology has {n} "
                          f"(NPU count does not match)")
    n_chunks = n * chunks
    times = topology.link_times_ps(schedule.chunk_bytes) if schedule.chunk_bytes else None
    index = topology.link_index
    events = []
    for i, t in enumerate(schedule.transfers):
        where = f"transfer #{i} (chunk {t.chunk} {t.src}->{t.dst} at {_us(t.start)})"
        if not 0 <= t.chunk < n_chunks:
            raise GoldenError(f"{where}: chunk id out of range 0..{n_chunks - 1}")
        link = index.get((t.src, t.dst))
        if link is None:
            raise GoldenError(f"{where}: the topology has no link {t.src}->{t.dst}")
        if t.start < 0 or t.end <= t.start:
            raise GoldenError(f"{where}: bad interval [{_us(t.start)}, {_us(t.end)})")
        if times is not None and t.end - t.start != times[link]:
            raise GoldenError(f"{where}: takes {_us(t.end - t.start)}, but the link time for "
                              f"{schedule.chunk_bytes} bytes is {_us(int(times[link]))}")
        events.append((t.end, 0, i))
        events.append((t.start, 1, i))
    # rule 2, per link in start order
    by_link: dict[int, list[int]] = {}
    for i, t in enumerate(schedule.transfers):
        by_link.setdefault(index[(t.src, t.dst)], []).append(i)
    for link, items in by_link.items():
        items.sort(key=lambda i: schedule.transfers[i].start)
        for a, b in zip(items, items[1:]):
            ta, tb = schedule.transfers[a], schedule.transfers[b]
            if tb.start < ta.end:
                raise GoldenError(f"link {ta.src}->{ta.dst} carries two chunks at once: chunk {ta.chunk} "
                                  f"[{_us(ta.start)}, {_us(ta.end)}) and chunk {tb.chunk} from {_us(tb.start)}")

    full = (1 << n) - 1
    owner = np.arange(n_chunks) // chunks
    if schedule.collective == "all-gather":
        value = [[0] * n_chunks for _ in range(n)]
        for c in range(n_chunks):
            value[owner[c]][c] = full
    else:
        value = [[1 << npu] * n_chunks for npu in range(n)]
    carried = [0] * len(schedule.transfers)
    redundant = 0
    events.sort()
    for time, kind, i in events:
        t = schedule.transfers[i]
        if kind == 1:                                            # departure
            v = value[t.src][t.chunk]
            if not v:
                raise GoldenError(f"chunk {t.chunk} leaves NPU {t.src} at {_us(t.start)} (to {t.dst}) "
                                  f"before it arrived there")
            carried[i] = v
        else:                                                    # arrival
            v, cur = carried[i], value[t.dst][t.chunk]
            if v == full:
                redundant += cur == full
                value[t.dst][t.chunk] = full
            else:
                if cur & v:
                    twice = [k for k in range(n) if (cur & v) >> k & 1]
                    raise GoldenError(f"chunk {t.chunk} arriving at NPU {t.dst} at {_us(t.end)} from {t.src} "
                                      f"counts the contributions of NPU(s) {twice[:8]} twice")
                value[t.dst][t.chunk] = cur | v
    must = range(n) if schedule.collective != "reduce-scatter" else None
    for c in range(n_chunks):
        for npu in (must if must is not None else (owner[c],)):
            got = value[npu][c]
            if got != full:
                missing = [k for k in range(n) if not got >> k & 1]
                what = "lacks chunk" if not got else "holds an incomplete sum of chunk"
                raise GoldenError(f"{schedule.collective}: at the end NPU {npu} {what} {c} "
                                  f"(missing the contributions of NPU(s) {missing[:8]})")
    return CheckReport(schedule.time_ps, len(schedule.transfers), redundant)


# --- lower bound ------------------------------------------------------------------------------

def _slots_bound(times: np.ndarray, count: int) -> int:
    """Smallest T (ps) such that links of these times can finish ``count`` transfers by T."""
    if count <= 0:
        return 0
    lo, hi = 0, int(times.min()) * count
    while lo < hi:
        mid = (lo + hi) // 2
        if int((mid // times).sum()) >= count:
            hi = mid
        else:
            lo = mid + 1
    return lo


def lower_bound_ps(topology: Topology, collective: str, chunks: int, chunk_bytes: int) -> int:
    """A lower bound on the collective's time in the link model (ps).

    - All-Gather: every NPU must receive ``(N-1)*C`` chunks over its incoming links (a
      link delivers one chunk per link time): the ingress bound.
    - Reduce-Scatter: every NPU must send its contribution to the ``(N-1)*C`` chunks it
      does not own over its outgoing links: the egress bound.
    - All-Reduce (a Reduce-Scatter and an All-Gather, as TACOS and every baseline here
      build it): ``2*N*(N-1)*C`` transfers over all links together (for a symmetric
      network, each NPU's ingress carrying ``2*(N-1)*C`` chunks), and at least each of
      its halves' bounds.
    - Any of them: the farthest pair of NPUs (shortest path in link time).
    """
    n = topology.npus
    times = topology.link_times_ps(chunk_bytes)
    per_npu = (n - 1) * chunks
    into = [[] for _ in range(n)]
    out = [[] for _ in range(n)]
    for i, link in enumerate(topology.links):
        into[link.dst].append(times[i])
        out[link.src].append(times[i])
    ingress = max(_slots_bound(np.array(t), per_npu) for t in into)
    egress = max(_slots_bound(np.array(t), per_npu) for t in out)
    dist = distances_ps(topology, times)
    out_ecc, in_ecc = dist.max(axis=1), dist.max(axis=0)
    if collective == "all-gather":                      # owner's chunk must reach the farthest NPU
        return int(max(ingress, out_ecc.max()))
    if collective == "reduce-scatter":                  # the farthest contribution must reach the owner
        return int(max(egress, in_ecc.max()))
    return int(max(ingress, egress, _slots_bound(times, 2 * n * per_npu), (in_ecc + out_ecc).max()))


def distances_ps(topology: Topology, times: np.ndarray) -> np.ndarray:
    """All-pairs shortest path times (ps) over the links: ``dist[s, d]``."""
    import heapq

    n = topology.npus
    adj = [[] for _ in range(n)]
    for i, link in enumerate(topology.links):
        adj[link.src].append((link.dst, int(times[i])))
    out = np.zeros((n, n), dtype=np.int64)
    for s in range(n):
        dist = [-1] * n
        heap = [(0, s)]
        while heap:
            d, u = heapq.heappop(heap)
            if dist[u] >= 0:
                continue
            dist[u] = d
            for v, w in adj[u]:
                if dist[v] < 0:
                    heapq.heappush(heap, (d + w, v))
        out[s] = dist
    return out
