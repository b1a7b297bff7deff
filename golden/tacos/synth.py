"""TACOS: topology-aware collective synthesis by greedy link-chunk matching (arXiv 2304.05301).

All-Gather
----------
TACOS unrolls the network in time (a time-expanded network, TEN): at an instant ``t``
every link that is free at ``t`` can start carrying one chunk, which arrives one link
time later. The synthesiser walks the TEN forward, event by event:

1. at ``t``, chunks whose transfers end at ``t`` arrive (and can leave again at ``t``);
2. link-chunk matching: for each destination NPU ``d`` (in id order), its free incoming
   links are taken in a random order; link ``s -> d`` is matched with one of the chunks
   ``s`` holds and ``d`` neither holds nor already receives (the unsatisfied
   postconditions of ``d`` that ``s`` can serve). A link with no such chunk stays idle
   until ``s`` receives a new chunk;
3. ``t`` advances to the next arrival.

Matching at ``d`` never interferes with matching at another NPU (a link has one
destination), so this is TACOS's greedy maximal matching of free links to unsatisfied
(NPU, chunk) pairs at each instant; every NPU receives every chunk exactly once, so each
chunk spreads along a spanning tree rooted at its owner. Heterogeneous links are handled
because time advances by events, not by a fixed step. The same seed gives the same
schedule (numpy's ``default_rng``).

Which chunk a link takes (``policy``):

- ``random``: uniformly among the candidates, as the TACOS paper does;
- ``fifo`` (a refinement measured in ``tessera bench tacos``): the candidate that has
  been waiting longest at ``s`` (arrived there first), then the one fewest NPUs hold or
  receive, then uniformly. Forwarding in arrival order pipelines the chunks the way a ring
  does: with several chunks per NPU it meets the ingress lower bound on rings (and, with 4
  chunks per NPU, on the 4x4 torus and the 16-NPU hypercube) where the random choice stays
  one to three link times above it.

Reduce-Scatter and All-Reduce
-----------------------------
A Reduce-Scatter on the network is an All-Gather synthesised on the transposed network
(every link reversed), mirrored in time and direction (:func:`.schedule.mirror`): each
chunk's broadcast tree becomes its reduction tree, every NPU sending its partial sum
once, after its children. All-Reduce is that Reduce-Scatter followed by an All-Gather,
each chunk's All-Gather starting once the chunk is reduced (:func:`.schedule.all_reduce`).
"""

from __future__ import annotations

import heapq

import numpy as np

from .. import GoldenError
from .schedule import Schedule, Transfer, all_reduce, asap, check_collective, make_schedule, mirror
from .topology import Topology, check_chunk_bytes


def _check_chunks(chunks) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise GoldenError(f"chunks per NPU must be an integer >= 1, not {chunks!r}")
    return int(chunks)


POLICIES = ("random", "fifo")


def synthesize_all_gather(topology: Topology, chunks: int, chunk_bytes: int,
                          rng: np.random.Generator, policy: str = "random") -> Schedule:
    """TACOS All-Gather on ``topology``: ``chunks`` chunks of ``chunk_bytes`` per NPU."""
    fifo = policy == "fifo"
    n = topology.npus
    k = n * chunks
    tau = [int(v) for v in topology.link_times_ps(chunk_bytes)]
    src = [l.src for l in topology.links]
    dst = [l.dst for l in topology.links]

    owner = np.arange(k) // chunks
    have = np.zeros((n, k), dtype=bool)
    have[owner, np.arange(k)] = True
    covered = have.copy()                          # held or on its way
    holders = covered.sum(axis=0)                  # per chunk: NPUs holding or receiving it
    arrived = np.zeros((n, k), dtype=np.int64)     # when each NPU received each chunk
    remaining = n * k - k
    idle_by_src: list[list[int]] = [[] for _ in range(n)]
    heap: list[tuple[int, int, int]] = []          # (arrival time, link, chunk)
    transfers: list[Transfer] = []
    consider = list(range(len(tau)))
    t = 0
    while True:
        by_dst: dict[int, list[int]] = {}
        for link in consider:
            by_dst.setdefault(dst[link], []).append(link)
        for d in sorted(by_dst):
            links = sorted(by_dst[d])
            if len(links) > 1:
                links = [links[i] for i in rng.permutation(len(links))]
            cov = covered[d]
            for link in links:
                s = src[link]
                cand = np.flatnonzero(have[s] > cov)
                if cand.size == 0:
                    idle_by_src[s].append(link)
                    continue
                if cand.size > 1 and fifo:
                    at = arrived[s, cand]
                    cand = cand[at == at.min()]
                    if cand.size > 1:
                        h = holders[cand]
                        cand = cand[h == h.min()]
                c = int(cand[rng.integers(cand.size)]) if cand.size > 1 else int(cand[0])
                cov[c] = True
                holders[c] += 1
                remaining -= 1
                end = t + tau[link]
                transfers.append(Transfer(c, s, d, t, end))
                heapq.heappush(heap, (end, link, c))
        if remaining == 0:
            break
        if not heap:                               # a validated topology is connected
            raise GoldenError(f"synthesis stalled at {t} ps with {remaining} chunk deliveries left")
        t = heap[0][0]
        consider, woken = [], set()
        while heap and heap[0][0] == t:
            _, link, c = heapq.heappop(heap)
            have[dst[link], c] = True
            arrived[dst[link], c] = t
            consider.append(link)
            woken.add(dst[link])
        for s in sorted(woken):
            consider += idle_by_src[s]
            idle_by_src[s] = []
    return make_schedule(n, chunks, chunk_bytes, "all-gather", transfers)


def synthesize(topology: Topology, collective: str, chunks: int, chunk_bytes: int,
               seed: int = 0, policy: str = "random") -> Schedule:
    """TACOS schedule of ``collective`` (``all-gather``, ``reduce-scatter``, ``all-reduce``).

    Parameters
    ----------
    topology : Topology
    collective : str
    chunks : int
        Chunks per NPU (>= 1); chunk ``c`` belongs to NPU ``c // chunks``.
    chunk_bytes : int
        Bytes per chunk (sets every link's time).
    seed : int
        Seed of the random matching order: the same seed gives the same schedule.
    policy : str
        How a link picks among its candidate chunks: ``random`` (the paper) or ``fifo``.
    """
    check_collective(collective)
    chunks = _check_chunks(chunks)
    check_chunk_bytes(chunk_bytes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GoldenError(f"seed must be an integer >= 0, not {seed!r}")
    if policy not in POLICIES:
        raise GoldenError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")

    def gather():
        return synthesize_all_gather(topology, chunks, chunk_bytes, np.random.default_rng([seed, 0]), policy)

    def scatter():
        ag = synthesize_all_gather(topology.transposed(), chunks, chunk_bytes,
                                   np.random.default_rng([seed, 1]), policy)
        return asap(mirror(ag, "reduce-scatter"))

    if collective == "all-gather":
        return gather()
    if collective == "reduce-scatter":
        return scatter()
    return all_reduce(scatter(), gather())
