"""The named SuperNets of the SUSHI figures, the platform each is served on, and serving
one seeded stream with a list of policies (what ``tessera sushi`` runs).

=============  =====================================  ==========================================
name           SuperNet                               platform (:func:`platform`)
=============  =====================================  ==========================================
``digits-cnn`` :mod:`golden.sushi.digits_cnn`, 64      8 KB SGS buffer of 64-byte blocks (126
               SubNets, ~52 KB of int8 weights        persistent + 2 streaming slots: ~15 % of
                                                      the SuperNet); the RTL replay runs on it
``minilm``     :mod:`golden.sushi.elastic_minilm`,    2 MB SGS buffer of 16 KB blocks (126 + 2
               72 SubNets, 10.6 MB of int8 weights    slots: ~19 % of the SuperNet), the size of
               (the optional ``minilm`` extra)        SushiAccel's on-chip memory class
=============  =====================================  ==========================================

Both on :data:`~golden.sushi.platform.CORE` at
:data:`~golden.sushi.platform.OFFCHIP_BYTES_PER_CYCLE`.
"""

from dataclasses import dataclass

from .. import GoldenError
from .platform import CORE, Platform
from .results import ServeResult
from .serve import POLICIES, serve
from .space import SubNetSpace
from .streams import Query, make_stream
from .supernet import SuperNet

__all__ = ["SUPERNETS", "load", "platform", "space", "Served", "serve_stream"]

#: SuperNet names.
SUPERNETS = ("digits-cnn", "minilm")

#: name -> (buffer bytes, block bytes).
_BUFFERS = {"digits-cnn": (8 * 1024, 64), "minilm": (2 * 1024 * 1024, 16 * 1024)}


def _check(name: str) -> None:
    if name not in SUPERNETS:
        raise GoldenError(f"unknown SuperNet {name!r}; SuperNets: {', '.join(SUPERNETS)}")


def load(name: str) -> SuperNet:
    """The SuperNet ``name`` (trained / measured on first use, then cached)."""
    _check(name)
    if name == "digits-cnn":
        from .digits_cnn import supernet
        return supernet()
    from .elastic_minilm import supernet
    return supernet()


def platform(name: str) -> Platform:
    """The platform ``name`` is served on (module docstring)."""
    _check(name)
    capacity, block = _BUFFERS[name]
    return Platform.of_size(capacity, block)


def space(name: str, block_bytes: int | None = None) -> SubNetSpace:
    """``name``'s SubNet space, cut into ``block_bytes`` (default: its platform's blocks)."""
    return SubNetSpace(load(name), block_bytes or platform(name).block_bytes, CORE)


@dataclass
class Served:
    """One stream served by several policies."""

    space: SubNetSpace
    platform: Platform
    stream: list[Query]
    results: dict[str, ServeResult]


def serve_stream(name: str, kind: str, queries: int, seed: int, policies=POLICIES,
                 buffer_platform: Platform | None = None) -> Served:
    """Serve the seeded stream ``kind`` of ``name``'s SubNets with each of ``policies`` on
    ``buffer_platform`` (default: :func:`platform`)."""
    _check(name)
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise GoldenError(f"unknown policy {bad[0] if bad else None!r}; policies: {', '.join(POLICIES)}")
    plat = buffer_platform or platform(name)
    sp = space(name, plat.block_bytes)
    stream = make_stream(sp, plat, kind, queries, seed=seed)
    return Served(sp, plat, stream, {p: serve(p, sp, plat, stream) for p in policies})
