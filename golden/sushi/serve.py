"""One harness for every policy: :func:`serve`."""

from .. import GoldenError
from .baselines import lru, no_cache, static
from .platform import Platform
from .results import ServeResult
from .sched import SushiSched, check_compatible
from .space import SubNetSpace
from .streams import Query

__all__ = ["POLICIES", "serve"]

#: Policy names accepted by :func:`serve`: SushiSched, its oracle twin, and the baselines.
POLICIES = ("sushi", "oracle", "no-cache", "lru", "static")


def serve(policy: str, space: SubNetSpace, platform: Platform, stream: list[Query], *,
          tolerance: float | None = None, strict: bool = False, **options) -> ServeResult:
    """Run ``policy`` (one of :data:`POLICIES`) over ``stream``. ``tolerance`` is the choice
    rule's accuracy band in points (every policy but ``static`` uses it; default the
    SuperNet's resolution, ``space.accuracy_step``); ``options`` go to :class:`SushiSched`
    (``period``, ``window``) for ``sushi`` and ``oracle``.

    Raises
    ------
    GoldenError
        For an unknown policy, options a baseline does not take, a space cut into other
        blocks than the platform's, and (with ``strict``) a query no SubNet can serve.
    """
    if policy not in POLICIES:
        raise GoldenError(f"unknown policy {policy!r}; policies: {', '.join(POLICIES)}")
    check_compatible(space, platform)
    tolerance = space.accuracy_step if tolerance is None else tolerance
    if policy in ("sushi", "oracle"):
        return SushiSched(space, platform, tolerance=tolerance, strict=strict, lookahead=policy == "oracle",
                          **options).run(stream)
    if options:
        raise GoldenError(f"policy {policy!r} takes no options, got {sorted(options)}")
    return {"no-cache": no_cache, "lru": lru, "static": static}[policy](space, platform, stream, strict, tolerance)
