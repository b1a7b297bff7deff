"""The SubNet choice rule every policy uses, given what is resident at that moment.

Among the SubNets that meet the query's accuracy floor (all of them when there is none,
or when no SubNet meets it: an ``accuracy`` violation) and its latency target, those
within ``tolerance`` points of the most accurate are equally good (default: the
SuperNet's resolution, one test item), and the one of them with the fewest off-chip bytes
is served (then the more accurate, the faster, the lower index). When none meets the
latency target, the fastest one (then the more accurate) is served as best effort and a
``latency`` violation reported; with ``strict=True`` such a query raises
:class:`GoldenError` instead.
"""

import numpy as np

from .. import GoldenError
from .space import SubNetSpace
from .streams import Query

__all__ = ["EPS", "choose_subnet", "choose_many", "floors", "violation_text", "impossible"]

#: Slack when comparing accuracies, which are sums of floats.
EPS = 1e-9


def floors(queries) -> np.ndarray:
    """The queries' accuracy floors (``-inf`` where a query has none)."""
    return np.array([-np.inf if q.accuracy_floor is None else q.accuracy_floor for q in queries])


def choose_many(space: SubNetSpace, targets: np.ndarray, query_floors: np.ndarray, latencies: np.ndarray,
                missed_bytes: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The choice rule for many queries at once (one buffer state): returns the SubNet
    indices and the latency and accuracy violation flags."""
    acc = space.accuracies
    index = np.arange(len(acc))
    floor_ok = acc[None, :] >= query_floors[:, None] - EPS                 # [queries, subnets]
    acc_violation = ~floor_ok.any(axis=1)
    candidates = floor_ok | acc_violation[:, None]
    fast = candidates & (latencies[None, :] <= targets[:, None])
    lat_violation = ~fast.any(axis=1)
    best = np.where(fast, acc[None, :], -np.inf).max(axis=1)
    near = fast & (acc[None, :] >= best[:, None] - tolerance - EPS)
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


def violation_text(latency_bad: bool, accuracy_bad: bool) -> str:
    """``""``, ``"latency"``, ``"accuracy"`` or ``"latency+accuracy"``."""
    return "+".join(v for v, bad in (("latency", latency_bad), ("accuracy", accuracy_bad)) if bad)


def impossible(query: Query, index: int, fastest: int) -> GoldenError:
    """The error a strict policy raises for query ``index``, which nothing can serve in time."""
    floor = "" if query.accuracy_floor is None else f" with quality >= {query.accuracy_floor:.2f}"
    return GoldenError(f"query {index}: no SubNet meets latency <= {query.latency_target} cycles"
                       f"{floor} (fastest possible now: {fastest} cycles)")


def choose_subnet(space: SubNetSpace, query: Query, latencies: np.ndarray, missed_bytes: np.ndarray,
                  *, tolerance: float = 0.0, strict: bool = False, index: int = 0) -> tuple[int, str]:
    """Pick the SubNet for ``query`` given each SubNet's latency and off-chip bytes under
    the current buffer contents (module docstring).

    Returns ``(subnet index, violation)``, violation one of ``""``, ``"latency"``,
    ``"accuracy"``, ``"latency+accuracy"``.
    """
    choices, lat_bad, acc_bad = choose_many(space, np.array([query.latency_target]), floors([query]),
                                            latencies, missed_bytes, tolerance)
    violation = violation_text(lat_bad[0], acc_bad[0])
    if violation and strict:
        raise impossible(query, index, int(latencies.min()))
    return int(choices[0]), violation
