"""Collective schedules: which chunk crosses which link when.

Chunks: an All-Gather, Reduce-Scatter or All-Reduce over ``npus`` NPUs with ``chunks``
chunks per NPU has chunk ids ``0 .. npus*chunks - 1``; chunk ``c`` belongs to NPU
``c // chunks`` (it starts there in an All-Gather, ends there reduced in a
Reduce-Scatter).

A transfer ``(chunk, src, dst, start, end)`` occupies the link ``src -> dst`` during
``[start, end)`` (integer picoseconds) and carries the value the source holds at
``start``: in an All-Gather the chunk itself, in a Reduce-Scatter the partial sum of the
contributions the source has gathered so far. :mod:`golden.tacos.check` states and
checks these rules.

``schedule.json`` (:meth:`Schedule.to_json`)::

    {"npus": N, "collective": "all-gather", "time_us": T,
     "transfers": [{"chunk": c, "src": s, "dst": d, "start_us": t0, "end_us": t1}, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .. import GoldenError
from ..files import atomic_write
from .topology import PS_PER_US

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce")


class Transfer(NamedTuple):
    chunk: int
    src: int
    dst: int
    start: int          # ps
    end: int            # ps


def check_collective(collective: str) -> str:
    if collective not in COLLECTIVES:
        raise GoldenError(f"collective must be one of {', '.join(COLLECTIVES)}, not {collective!r}")
    return collective


@dataclass(frozen=True)
class Schedule:
    """A synthesised (or baseline) collective: its transfers in start-time order.

    Members
    -------
    npus, chunks : int
        NPUs, and chunks per NPU (chunk ids ``0 .. npus*chunks - 1``).
    chunk_bytes : int
        Bytes per chunk (the transfers' link times were computed for this size).
    collective : str
        ``all-gather``, ``reduce-scatter`` or ``all-reduce``.
    transfers : tuple of Transfer
        Sorted by (start, end, chunk, src, dst).
    """

    npus: int
    chunks: int
    chunk_bytes: int
    collective: str
    transfers: tuple[Transfer, ...]

    def __post_init__(self):
        check_collective(self.collective)

    @property
    def time_ps(self) -> int:
        """Collective time: when the last transfer ends (0 for no transfers)."""
        return max((t.end for t in self.transfers), default=0)

    @property
    def time_us(self) -> float:
        return self.time_ps / PS_PER_US

    def to_dict(self) -> dict:
        return {"npus": self.npus, "collective": self.collective, "time_us": self.time_us,
                "transfers": [{"chunk": t.chunk, "src": t.src, "dst": t.dst,
                               "start_us": t.start / PS_PER_US, "end_us": t.end / PS_PER_US}
                              for t in self.transfers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":")) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``schedule.json`` atomically (temporary file, then rename)."""
        return atomic_write(path, self.to_json())

    @classmethod
    def from_dict(cls, doc: dict, chunk_bytes: int = 0) -> "Schedule":
        """Read ``schedule.json`` back (times rounded to ps; chunks per NPU from the chunk ids).

        ``chunk_bytes``: the chunk size it was made for (the file does not say; 0: unknown,
        and :func:`.check.check` then checks durations against no link time).
        """
        try:
            npus, collective = int(doc["npus"]), check_collective(doc["collective"])
            transfers = [Transfer(int(t["chunk"]), int(t["src"]), int(t["dst"]),
                                  round(t["start_us"] * PS_PER_US), round(t["end_us"] * PS_PER_US))
                         for t in doc["transfers"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise GoldenError(f"malformed schedule: {exc!r}") from None
        n_chunks = 1 + max((t.chunk for t in transfers), default=npus - 1)
        if npus < 1 or n_chunks % npus:
            raise GoldenError(f"malformed schedule: chunk ids 0..{n_chunks - 1} do not split over {npus} NPUs")
        return cls(npus, n_chunks // npus, chunk_bytes, collective,
                   tuple(sorted(transfers, key=_order)))


def _order(t: Transfer):
    return (t.start, t.end, t.chunk, t.src, t.dst)


def make_schedule(npus, chunks, chunk_bytes, collective, transfers) -> Schedule:
    return Schedule(npus, chunks, chunk_bytes, collective, tuple(sorted(transfers, key=_order)))


def mirror(schedule: Schedule, collective: str) -> Schedule:
    """Reverse a schedule in time and direction: ``(c, s->d, [t0, t1))`` becomes
    ``(c, d->s, [T-t1, T-t0))``.

    An All-Gather on the transposed network, mirrored, is a Reduce-Scatter on the network
    (each chunk's broadcast tree becomes its reduction tree, children before parents).
    """
    T = schedule.time_ps
    return make_schedule(schedule.npus, schedule.chunks, schedule.chunk_bytes, collective,
                         (Transfer(t.chunk, t.dst, t.src, T - t.end, T - t.start) for t in schedule.transfers))


def asap(schedule: Schedule, collective: str | None = None) -> Schedule:
    """Start every transfer as early as its dependencies allow, keeping each link's order.

    A transfer of chunk ``c`` from ``s`` depends on every transfer of ``c`` into ``s`` that
    ended no later than it started, and on the previous transfer on its link. The result
    never ends later than the input; it moves the same values (the same dependencies).
    """
    events = []
    for i, t in enumerate(schedule.transfers):
        events.append((t.end, 0, i))                 # arrivals before departures at one instant
        events.append((t.start, 1, i))
    events.sort()
    new_start = [0] * len(schedule.transfers)
    new_end = [0] * len(schedule.transfers)
    ready: dict[tuple[int, int], int] = {}
    link_free: dict[tuple[int, int], int] = {}
    for _, kind, i in events:
        t = schedule.transfers[i]
        if kind == 0:
            key = (t.dst, t.chunk)
            ready[key] = max(ready.get(key, 0), new_end[i])
        else:
            start = max(ready.get((t.src, t.chunk), 0), link_free.get((t.src, t.dst), 0))
            new_start[i], new_end[i] = start, start + (t.end - t.start)
            link_free[(t.src, t.dst)] = new_end[i]
    return make_schedule(schedule.npus, schedule.chunks, schedule.chunk_bytes,
                         collective or schedule.collective,
                         (Transfer(t.chunk, t.src, t.dst, new_start[i], new_end[i])
                          for i, t in enumerate(schedule.transfers)))


def all_reduce(reduce_scatter: Schedule, all_gather: Schedule) -> Schedule:
    """All-Reduce = Reduce-Scatter, then All-Gather of the reduced chunks, each chunk's
    All-Gather starting as soon as that chunk is reduced (:func:`asap`)."""
    if (reduce_scatter.npus, reduce_scatter.chunks) != (all_gather.npus, all_gather.chunks):
        raise GoldenError("Reduce-Scatter and All-Gather must have the same NPUs and chunks")
    shift = reduce_scatter.time_ps
    joined = make_schedule(all_gather.npus, all_gather.chunks, all_gather.chunk_bytes, "all-reduce",
                           list(reduce_scatter.transfers)
                           + [t._replace(start=t.start + shift, end=t.end + shift) for t in all_gather.transfers])
    return asap(joined)
