"""Baseline collective algorithms, timed by the same link model as TACOS.

Each baseline is a fixed pattern of logical messages (a chunk from one NPU to another,
sent once it has arrived at the sender). A message between NPUs without a direct link is
routed over a shortest path (in link time; ties to the lower NPU id) and forwarded hop by
hop (store and forward). Every link serves the hops waiting for it one at a time in the
order they became ready (ties: the algorithm's order). The result is a
:class:`~.schedule.Schedule` of physical transfers that :func:`.check.check` validates
(All-Gather: relays may receive a chunk they already hold; those count as redundant).

All-Gather patterns (``C`` chunks per NPU move independently, pipelined):

- ``ring``: along one Hamiltonian cycle of the network when a quick search finds one
  (Warnsdorff's rule with bounded backtracking), else along a depth-first order with the
  non-adjacent steps routed; each chunk travels ``N-1`` steps in one direction;
- ``ring-bi``: the same ring used in both directions, each chunk going half way each way;
- ``direct``: every NPU sends each of its chunks to every other NPU (offsets 1..N-1);
- ``rhd``: recursive doubling (N a power of two): in step ``k`` NPU ``i`` sends all the
  chunks it holds to NPU ``i xor 2^k``.

Reduce-Scatter baselines are the same patterns mirrored (ring Reduce-Scatter, direct
Reduce-Scatter, recursive halving: each the time-reverse of its All-Gather on the
transposed network), and All-Reduce is Reduce-Scatter then All-Gather, composed exactly as
TACOS's (:func:`.schedule.all_reduce`).
"""

from __future__ import annotations

import heapq

from .. import GoldenError
from .schedule import Schedule, Transfer, all_reduce, asap, check_collective, make_schedule, mirror
from .topology import Topology, check_chunk_bytes

BASELINES = ("ring", "ring-bi", "direct", "rhd")


class _Router:
    """Shortest paths (in link time) with deterministic tie-breaking, computed per source."""

    def __init__(self, topology: Topology, times):
        self.topology = topology
        self.times = times
        self.adj = [[] for _ in range(topology.npus)]
        for i, link in enumerate(topology.links):
            self.adj[link.src].append((link.dst, i))
        for a in self.adj:
            a.sort()
        self._pred: dict[int, list[int]] = {}

    def path_links(self, s: int, d: int) -> list[int]:
        pred = self._pred.get(s)
        if pred is None:
            pred = self._pred[s] = self._tree(s)
        links = []
        while d != s:
            link = pred[d]
            links.append(link)
            d = self.topology.links[link].src
        return links[::-1]

    def _tree(self, s: int) -> list[int]:
        n = self.topology.npus
        dist = [None] * n
        pred = [-1] * n
        heap = [(0, s, -1)]
        while heap:
            d, u, via = heapq.heappop(heap)
            if dist[u] is not None:
                continue
            dist[u], pred[u] = d, via
            for v, link in self.adj[u]:
                if dist[v] is None:
                    heapq.heappush(heap, (d + int(self.times[link]), v, link))
        return pred


def ring_order(topology: Topology, budget: int | None = None) -> tuple[list[int], bool]:
    """An order of the NPUs for ring algorithms and whether it is a Hamiltonian cycle.

    Takes the topology's own ring (generators know one), then NPU id order, then a
    Warnsdorff search (next: the unvisited neighbour with the fewest unvisited neighbours;
    bounded backtracking); falls back to depth-first order.
    """
    n = topology.npus
    if topology.ring is not None:
        return list(topology.ring), True
    out = [set(o) for o in topology.out_neighbours]
    if all((i + 1) % n in out[i] for i in range(n)):
        return list(range(n)), True
    budget = budget if budget is not None else 50 * n
    path, on = [0], [False] * n
    on[0] = True
    stack = [iter(_warnsdorff(0, out, on))]
    steps = 0
    while stack and steps < budget:
        steps += 1
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            on[path.pop()] = False
            continue
        path.append(nxt)
        on[nxt] = True
        if len(path) == n:
            if 0 in out[nxt]:
                return path, True
            on[path.pop()] = False
            continue
        stack.append(iter(_warnsdorff(nxt, out, on)))
    order, seen = [], [False] * n
    todo = [0]
    while todo:                                         # depth-first order
        u = todo.pop()
        if seen[u]:
            continue
        seen[u] = True
        order.append(u)
        todo.extend(sorted(out[u], reverse=True))
    return order, False


def _warnsdorff(u, out, on):
    free = [v for v in out[u] if not on[v]]
    return sorted(free, key=lambda v: (sum(not on[w] for w in out[v]), v))


def _messages(topology: Topology, name: str, chunks: int):
    """The logical messages of an All-Gather pattern: (chunk, src, dst, dependency index)."""
    n = topology.npus
    msgs: list[tuple[int, int, int, int]] = []
    if name in ("ring", "ring-bi"):
        order, _ = ring_order(topology)
        for pos, o in enumerate(order):
            for c in range(o * chunks, (o + 1) * chunks):
                if name == "ring":
                    legs = [(1, n - 1)]
                else:
                    legs = [(1, n // 2), (-1, (n - 1) // 2)]
                for step, hops in legs:
                    dep = -1
                    for j in range(hops):
                        a, b = order[(pos + step * j) % n], order[(pos + step * (j + 1)) % n]
                        msgs.append((c, a, b, dep))
                        dep = len(msgs) - 1
    elif name == "direct":
        for k in range(1, n):
            for o in range(n):
                for c in range(o * chunks, (o + 1) * chunks):
                    msgs.append((c, o, (o + k) % n, -1))
    elif name == "rhd":
        if n & (n - 1):
            raise GoldenError(f"baseline rhd needs a power-of-two number of NPUs, not {n}")
        got = {(o, c): -1 for o in range(n) for c in range(o * chunks, (o + 1) * chunks)}
        k = 1
        while k < n:
            new = {}
            for i in range(n):
                p = i ^ k
                group = (i // k) * k                    # owners whose chunks i holds now
                for o in range(group, group + k):
                    for c in range(o * chunks, (o + 1) * chunks):
                        msgs.append((c, i, p, got[(i, c)]))
                        new[(p, c)] = len(msgs) - 1
            got.update(new)
            k *= 2
    else:
        raise GoldenError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return msgs


def _simulate(topology: Topology, msgs, chunks: int, chunk_bytes: int) -> Schedule:
    times = topology.link_times_ps(chunk_bytes)
    router = _Router(topology, times)
    children = [[] for _ in msgs]
    heap = []
    for m, (_, _, _, dep) in enumerate(msgs):
        if dep < 0:
            heap.append((0, m, 0))
        else:
            children[dep].append(m)
    heapq.heapify(heap)
    free = [0] * len(topology.links)
    paths: dict[int, list[int]] = {}
    transfers = []
    while heap:
        ready, m, hop = heapq.heappop(heap)
        c, s, d, _ = msgs[m]
        path = paths.get(m)
        if path is None:
            path = paths[m] = router.path_links(s, d)
        link = path[hop]
        start = max(ready, free[link])
        end = start + int(times[link])
        free[link] = end
        transfers.append(Transfer(c, topology.links[link].src, topology.links[link].dst, start, end))
        if hop + 1 < len(path):
            heapq.heappush(heap, (end, m, hop + 1))
        else:
            del paths[m]
            for child in children[m]:
                heapq.heappush(heap, (end, child, 0))
    return make_schedule(topology.npus, chunks, chunk_bytes, "all-gather", transfers)


def baseline(topology: Topology, name: str, collective: str, chunks: int, chunk_bytes: int) -> Schedule:
    """The schedule of baseline ``name`` (:data:`BASELINES`) for ``collective``."""
    check_collective(collective)
    check_chunk_bytes(chunk_bytes)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise GoldenError(f"chunks per NPU must be an integer >= 1, not {chunks!r}")

    def gather(topo):
        return _simulate(topo, _messages(topo, name, chunks), chunks, chunk_bytes)

    def scatter():
        return asap(mirror(gather(topology.transposed()), "reduce-scatter"))

    if collective == "all-gather":
        return gather(topology)
    if collective == "reduce-scatter":
        return scatter()
    return all_reduce(scatter(), gather(topology))
