"""What serving a stream produced: one record per query and the summary figures."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache_model import Command
from .platform import Platform

__all__ = ["QueryRecord", "ServeResult"]


@dataclass(frozen=True)
class QueryRecord:
    """One served query.

    ``accuracy`` is the served SubNet's quality (the SuperNet's metric, percent);
    ``item_quality`` its quality on this query's own item (100 / 0 for a right / wrong
    digit, 100 x cosine for a sentence). ``swap_bytes`` are the off-chip bytes of the
    SubGraph rewrite before the query (included in ``offchip_bytes`` and, unoverlapped, in
    ``latency``). ``violation`` is ``""``, ``"latency"``, ``"accuracy"`` or both joined by ``+``.
    """

    index: int
    subnet: str
    latency: int
    target: int
    accuracy: float
    item_quality: float
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
        """The figures: SLO attainment (queries with neither violation, %), served accuracy
        (mean quality of the served SubNets), served item quality, mean and p99 latency
        (p99: the smallest latency at least 99 % of the queries stay within), off-chip
        bytes per query, violations, SubGraph rewrites and distinct SubNets served."""
        r = self.records
        n = len(r)
        latencies = np.array([x.latency for x in r])
        return {
            "policy": self.policy,
            "queries": n,
            "slo_attainment": 100.0 * sum(not x.violation for x in r) / n,
            "served_accuracy": sum(x.accuracy for x in r) / n,
            "served_item_quality": sum(x.item_quality for x in r) / n,
            "mean_latency_cycles": float(latencies.mean()),
            "p99_latency_cycles": int(np.quantile(latencies, 0.99, method="inverted_cdf")),
            "offchip_bytes_per_query": sum(x.offchip_bytes for x in r) / n,
            "slo_violations": sum(bool(x.violation) for x in r),
            "latency_violations": sum("latency" in x.violation for x in r),
            "accuracy_violations": sum("accuracy" in x.violation for x in r),
            "subgraph_swaps": self.swaps,
            "distinct_subnets": len({x.subnet for x in r}),
        }
