"""Collective schedules as Chakra traces: one COMM_SEND/COMM_RECV graph per NPU.

:func:`schedule_traces` turns a :class:`golden.tacos.Schedule` into the form ASTRA-sim
takes as a custom collective: for every transfer ``(chunk c, s -> d, [t0, t1))``

- NPU ``d`` gets a COMM_RECV node (``comm_src = s``), NPU ``s`` a COMM_SEND node
  (``comm_dst = d``), both with ``comm_size`` = the chunk's bytes and ``comm_tag`` = the
  transfer's index in the schedule (which pairs them);
- the send's data dependencies are the receives of chunk ``c`` at ``s`` that end no
  later than ``t0`` (the value it forwards: in a Reduce-Scatter, every partial sum it
  has added up); its control dependency is the previous send on the same link, so the
  link carries its chunks in the schedule's order.

Each NPU's nodes are in time order (receives at their end, sends at their start,
receives first at one instant), so node ids grow with time. :func:`append_schedule` adds
the same nodes to existing traces, after given nodes (a collective inside a larger trace:
:mod:`compiler.scaleout`).
"""

from __future__ import annotations

import os
from pathlib import Path

from golden.tacos import Schedule, Topology

from . import CompileError
from .chakra import Trace, write_traces


def schedule_traces(schedule: Schedule, topology: Topology | None = None) -> list[Trace]:
    """One :class:`~compiler.chakra.Trace` per NPU for ``schedule``.

    ``topology`` given: its NPU count must match the schedule's.
    """
    if topology is not None and topology.npus != schedule.npus:
        raise CompileError(f"the schedule is for {schedule.npus} NPUs but the topology has {topology.npus} "
                           f"(NPU count does not match)")
    traces = [Trace(npu) for npu in range(schedule.npus)]
    append_schedule(traces, schedule)
    return traces


def append_schedule(traces: list[Trace], schedule: Schedule, *, after: list[tuple[int, ...]] | None = None,
                    tag_base: int = 0, prefix: str = "") -> list[tuple[int, ...]]:
    """Append ``schedule``'s sends and receives to ``traces`` (one per NPU, in NPU order)
    as the module docstring describes, with ``comm_tag = tag_base + transfer index``.

    ``after[npu]``: node ids of that trace the collective waits for (control
    dependencies of its nodes that have no other dependency). Returns, per NPU, the
    collective's last nodes there (those no other node of the collective depends on):
    what a consumer of the collective's result waits for.
    """
    n = schedule.npus
    if len(traces) != n or [t.npu for t in traces] != list(range(n)):
        raise CompileError(f"the schedule is for {n} NPUs but {len(traces)} traces were given "
                           f"(NPU count does not match)")
    if schedule.chunk_bytes <= 0:
        raise CompileError(f"the schedule must state its chunk size in bytes, not {schedule.chunk_bytes!r}")
    events = []                                    # (npu, time, 0 recv / 1 send, transfer index)
    for i, t in enumerate(schedule.transfers):
        if not (0 <= t.src < n and 0 <= t.dst < n):
            raise CompileError(f"transfer #{i} joins NPUs {t.src}->{t.dst}, outside 0..{n - 1}")
        events.append((t.dst, t.end, 0, i))
        events.append((t.src, t.start, 1, i))
    events.sort()
    recvs: dict[tuple[int, int], list[int]] = {}   # (npu, chunk) -> recv node ids so far
    last_send: dict[tuple[int, int], int] = {}     # link -> its latest send node id
    sinks: list[set[int]] = [set() for _ in range(n)]
    size = schedule.chunk_bytes
    for npu, _, kind, i in events:
        t = schedule.transfers[i]
        trace = traces[npu]
        start = () if after is None else tuple(after[npu])
        if kind == 0:
            node = trace.add_comm_recv(f"{prefix}recv c{t.chunk} from {t.src}", t.src, size, tag=tag_base + i,
                                       ctrl_deps=start)
            recvs.setdefault((npu, t.chunk), []).append(node)
        else:
            prev = last_send.get((t.src, t.dst))
            deps = recvs.get((npu, t.chunk), ())
            ctrl = (prev,) if prev is not None else (() if deps else start)
            node = trace.add_comm_send(f"{prefix}send c{t.chunk} to {t.dst}", t.dst, size, tag=tag_base + i,
                                       deps=deps, ctrl_deps=ctrl)
            sinks[npu].difference_update(deps, ctrl)
            last_send[(t.src, t.dst)] = node
        sinks[npu].add(node)
    return [tuple(sorted(s)) for s in sinks]


def write_schedule_traces(schedule: Schedule, prefix: str | os.PathLike,
                          topology: Topology | None = None) -> list[Path]:
    """Write ``PREFIX.<npu>.et`` for every NPU of ``schedule``; return the paths."""
    return write_traces(prefix, schedule_traces(schedule, topology))


def replay_ps(traces: list[Trace], topology: Topology, sends_in_flight: int | None = None) -> int:
    """Run send/receive traces as early as their dependencies allow on the link model (ps).

    A send takes its link's time for its ``comm_size`` and completes on arrival; a receive
    completes when its matching send (same ``comm_tag``) has arrived and its own
    dependencies are done. ``sends_in_flight=None``: an NPU sends on any number of links
    at once, as the link model assumes (a TACOS schedule replays to its own time).
    ``sends_in_flight=1``: an NPU keeps one send in flight and, when it is free, starts
    the ready send with the lowest node id, which is how ASTRA-sim 2.0's workload layer
    issues them (its HardwareResource; measured against its analytical backends).

    Returns when the last node completes.
    """
    import heapq

    from .chakra import NodeType

    n = len(traces)
    if topology.npus != n:
        raise CompileError(f"{n} traces but the topology has {topology.npus} NPUs (NPU count does not match)")
    key = lambda npu, nid: npu * (1 << 32) + nid          # noqa: E731  (global node key)
    nodes, send_of_tag = {}, {}
    dependents: dict[int, list[int]] = {}
    missing: dict[int, int] = {}
    for trace in traces:
        for node in trace.nodes:
            k = key(trace.npu, node.id)
            nodes[k] = (trace.npu, node)
            if node.type == NodeType.COMM_SEND:
                tag = node.attrs["comm_tag"]
                if tag in send_of_tag:
                    raise CompileError(f"two sends carry comm_tag {tag}")
                send_of_tag[tag] = k
            elif node.type != NodeType.COMM_RECV:
                raise CompileError(f"replay runs send/receive traces only, not {node.type.name} "
                                   f"(node {node.id} of NPU {trace.npu})")
            deps = set(node.data_deps) | set(node.ctrl_deps)
            missing[k] = len(deps)
            for dep in deps:
                dependents.setdefault(key(trace.npu, dep), []).append(k)
    recv_of_send: dict[int, int] = {}
    for k, (npu, node) in nodes.items():
        if node.type == NodeType.COMM_RECV:
            send = send_of_tag.get(node.attrs["comm_tag"])
            if send is None:
                raise CompileError(f"receive {node.id} of NPU {npu} (tag {node.attrs['comm_tag']}) has no send")
            recv_of_send[send] = k
            missing[k] += 1                                   # the arrival
            dependents.setdefault(send, []).append(k)
    completions: list[tuple[int, int]] = []                  # (time, node key)
    ready = [[] for _ in range(n)]                           # per NPU: send keys ready to start
    busy = [0] * n
    finish = 0

    def resolve(k: int, now: int) -> None:
        npu, node = nodes[k]
        if node.type == NodeType.COMM_RECV:
            heapq.heappush(completions, (now, k))
        else:
            heapq.heappush(ready[npu], k)

    for k, count in missing.items():
        if count == 0:
            resolve(k, 0)
    now = 0
    while True:
        for npu in range(n):
            while ready[npu] and (sends_in_flight is None or busy[npu] < sends_in_flight):
                k = heapq.heappop(ready[npu])
                node = nodes[k][1]
                link = topology.link(npu, node.attrs["comm_dst"])
                if link is None:
                    raise CompileError(f"send {node.id} of NPU {npu}: no link {npu}->{node.attrs['comm_dst']}")
                busy[npu] += 1
                heapq.heappush(completions, (now + link.time_ps(node.attrs["comm_size"]), k))
        if not completions:
            break
        now = completions[0][0]
        while completions and completions[0][0] == now:
            _, k = heapq.heappop(completions)
            npu, node = nodes[k]
            finish = max(finish, now)
            if node.type == NodeType.COMM_SEND:
                busy[npu] -= 1
            for child in dependents.get(k, ()):
                missing[child] -= 1
                if missing[child] == 0:
                    resolve(child, now)
    stuck = [k for k, count in missing.items() if count]
    if stuck:
        npu, node = nodes[stuck[0]]
        raise CompileError(f"{len(stuck)} node(s) never run (a dependency cycle or a lost message), "
                           f"e.g. node {node.id} of NPU {npu}")
    return finish
