"""Seeded query streams: per-query latency SLOs and accuracy floors.

A query names a test item (an image, a sentence), a latency target in core cycles and,
optionally, an accuracy floor (the least quality, in the SuperNet's metric, it accepts).

Latency targets come in three classes, each a range of the SubNets' latencies *without
any cache* (so every target is met by some SubNet even with nothing resident, but a
cached SubGraph lets a more accurate SubNet meet it): **tight** between their 5th and
30th percentiles, **medium** between the 30th and 70th, **loose** between the 70th and
the slowest SubNet (uniform within the class). Floors sit at a quantile of the SubNets'
quality: **median** (the 50th percentile) or **high** (the 75th). A query with a tight
target and a high floor may be impossible without the cache's help; the schedulers
report it as a violation (never an error unless ``strict``).

* ``steady``: i.i.d., 30 % tight, 40 % medium, 30 % loose; 25 % of queries with a median floor.
* ``drift``: the share of tight targets falls linearly from 70 % to 5 % over the stream
  while loose ones rise from 5 % to 70 % (medium the rest); 25 % median floors.
* ``phased``: phases of ``phase`` queries, each with 80 % of one class (tight, loose, medium,
  loose, tight, ... in turn) and the rest uniform; 25 % high floors.
* ``bursty``: a background of 20 % tight, 40 % medium, 40 % loose with 10 % median floors,
  interrupted by bursts (one starts after any query with probability 1/40) of 10 to 30
  tight queries, half of them with a high floor.
"""

from dataclasses import dataclass

import numpy as np

from .. import GoldenError
from .platform import Platform
from .space import SubNetSpace

__all__ = ["Query", "STREAMS", "make_stream"]


@dataclass(frozen=True)
class Query:
    """One inference request: a latency target in core cycles, an optional accuracy floor
    (percent, the SuperNet's metric), and the test item it runs on."""

    latency_target: int
    accuracy_floor: float | None
    item: int


#: The seeded query streams of :func:`make_stream`.
STREAMS = ("steady", "drift", "phased", "bursty")

#: Latency classes as ranges of quantiles of the SubNets' no-cache latencies.
_CLASSES = {"tight": (0.05, 0.3), "medium": (0.3, 0.7), "loose": (0.7, 1.0)}
_TIGHT, _MEDIUM, _LOOSE = range(3)


def make_stream(space: SubNetSpace, platform: Platform, kind: str, queries: int = 400,
                seed: int = 0, *, phase: int = 50) -> list[Query]:
    """A seeded query stream of ``kind`` (one of :data:`STREAMS`; module docstring).

    Raises
    ------
    GoldenError
        For an unknown kind, fewer than one query, a phase shorter than one query or a
        negative seed.
    """
    if kind not in STREAMS:
        raise GoldenError(f"unknown query stream {kind!r}; streams: {', '.join(STREAMS)}")
    for name, value in (("queries", queries), ("phase", phase)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise GoldenError(f"a stream needs {name} >= 1, not {name}={value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GoldenError(f"seed must be an integer >= 0, not seed={seed!r}")
    rng = np.random.default_rng(seed)
    base = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    lo, hi = np.log(base.min()), np.log(base.max())
    ranges = [(lo + (hi - lo) * k / 3, lo + (hi - lo) * (k + 1) / 3) for k in range(3)]
    median, high = (float(np.quantile(space.accuracies, q)) for q in (0.5, 0.75))
    stream, burst = [], 0
    for q in range(queries):
        t = q / max(1, queries - 1)
        floor_p, floor = 0.25, median
        if kind == "steady":
            p = [0.3, 0.4, 0.3]
        elif kind == "drift":
            tight, loose = 0.7 - 0.65 * t, 0.05 + 0.65 * t
            p = [tight, 1 - tight - loose, loose]
        elif kind == "phased":
            p = [0.1] * 3
            p[[_TIGHT, _LOOSE, _MEDIUM, _LOOSE][(q // phase) % 4]] = 0.8
            floor = high
        else:
            if burst == 0 and rng.random() < 1 / 40:
                burst = int(rng.integers(10, 31))
            if burst:
                burst -= 1
                p, floor_p, floor = [1.0, 0.0, 0.0], 0.5, high
            else:
                p, floor_p = [0.2, 0.4, 0.4], 0.1
        cls = int(rng.choice(3, p=np.array(p) / sum(p)))
        target = int(round(np.exp(rng.uniform(*ranges[cls]))))
        acc_floor = floor if rng.random() < floor_p else None
        stream.append(Query(target, acc_floor, int(rng.integers(0, space.items))))
    return stream
