"""Network topologies for collective synthesis: NPUs joined by directed links.

A link carries one chunk at a time; sending a chunk of ``B`` bytes over a link takes

    link time = latency + B / bandwidth

(bandwidth in GB/s = 1e9 bytes/s, latency in µs). All times in this package are integer
**picoseconds** (``link_time_ps``), so schedules are exact and deterministic; they are
printed and written in µs.

Topology file (YAML)
--------------------
::

    npus: 4              # NPU ids 0..npus-1
    bandwidth: 50        # GB/s, for links that state none (optional, default 50)
    latency: 0.5         # µs, for links that state none (optional, default 0.5)
    bidirectional: false # true: every link listed also runs the other way (optional)
    links:               # directed links
      - [0, 1]                      # src, dst
      - [1, 2, 25]                  # src, dst, bandwidth
      - [2, 3, 25, 1.0]             # src, dst, bandwidth, latency
      - {src: 3, dst: 0, bandwidth: 50, latency: 0.5}

Generators (``parse_topology("torus:4x4")``)
--------------------------------------------
``KIND:SHAPE[:key=value,...]``; NPU ids are row-major with dimension 0 fastest
(``id = x0 + X0 * (x1 + X1 * x2)``, ASTRA-sim's order of dimensions):

============================ ===========================================================
``ring:N``                   unidirectional ring ``i -> i+1 mod N``
``ring-bi:N``                bidirectional ring
``mesh:AxB`` / ``mesh:AxBxC``  2-D / 3-D mesh, bidirectional links between neighbours
``torus:AxB`` / ``torus:AxBxC`` 2-D / 3-D torus (mesh plus wrap-around links)
``hypercube:N``              N NPUs (a power of two), ``i <-> i xor 2^k``
``switch:N``                 an N-port switch unwound into links: every NPU to every
                             other, each link ``bandwidth / (N-1)`` so an NPU's total
                             injection (and ejection) bandwidth is the port's
``random:N``                 a random connected graph: a random spanning tree plus random
                             extra links up to ``degree`` (option, default 3) per NPU on
                             average, bidirectional; ``seed`` option (default 0)
============================ ===========================================================

Every generator takes the option ``fail=K``: K bidirectional cables (both directions of a
link) fail, chosen by ``seed`` among those whose loss keeps the network connected, e.g.
``torus:4x4:fail=2,seed=1`` or ``random:32:degree=4,seed=7``.

Errors (a malformed file, an unknown generator, a zero bandwidth, a link to an NPU that
does not exist, a disconnected network) raise :class:`golden.GoldenError` naming the
offending value.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import GoldenError

DEFAULT_BANDWIDTH_GBPS = 50.0
DEFAULT_LATENCY_US = 0.5

PS_PER_US = 1_000_000


@dataclass(frozen=True)
class Link:
    """A directed link: ``src -> dst`` at ``bandwidth`` GB/s with ``latency`` µs."""

    src: int
    dst: int
    bandwidth: float = DEFAULT_BANDWIDTH_GBPS
    latency: float = DEFAULT_LATENCY_US

    def time_ps(self, chunk_bytes: int) -> int:
        """Picoseconds to carry ``chunk_bytes`` over this link (latency + bytes / bandwidth)."""
        return round(self.latency * PS_PER_US) + round(chunk_bytes * 1000 / self.bandwidth)


@dataclass(frozen=True)
class Topology:
    """``npus`` NPUs and the directed links between them (validated on construction).

    Members
    -------
    npus : int
        Number of NPUs (ids 0..npus-1), at least 2.
    links : tuple of Link
        Directed links, at most one per ordered pair; the network must be strongly
        connected (every NPU reaches every other).
    name : str
        Where it came from (the generator spec or the file name).
    ring : tuple of int, optional
        A Hamiltonian cycle (an order of all NPUs, each linked to the next and the last to
        the first) when the generator knows one; the ring baselines use it.
    """

    npus: int
    links: tuple[Link, ...]
    name: str = ""
    ring: tuple[int, ...] | None = None

    def __post_init__(self):
        if isinstance(self.npus, bool) or not isinstance(self.npus, int) or self.npus < 2:
            raise GoldenError(f"a topology needs an integer number of NPUs >= 2, not npus={self.npus!r}")
        seen = set()
        for link in self.links:
            for end in ("src", "dst"):
                v = getattr(link, end)
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.npus:
                    raise GoldenError(f"{self._where}link {link.src}->{link.dst}: {end}={v!r} is not an NPU "
                                      f"of this topology (npus={self.npus}: ids 0..{self.npus - 1})")
            if link.src == link.dst:
                raise GoldenError(f"{self._where}link {link.src}->{link.dst} joins an NPU to itself")
            for what, v in (("bandwidth", link.bandwidth), ("latency", link.latency)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise GoldenError(f"{self._where}link {link.src}->{link.dst}: {what} must be a finite "
                                      f"number, not {v!r}")
            if link.bandwidth <= 0:
                raise GoldenError(f"{self._where}link {link.src}->{link.dst}: bandwidth must be > 0 GB/s, "
                                  f"not {link.bandwidth!r}")
            if link.latency < 0:
                raise GoldenError(f"{self._where}link {link.src}->{link.dst}: latency must be >= 0 us, "
                                  f"not {link.latency!r}")
            if (link.src, link.dst) in seen:
                raise GoldenError(f"{self._where}link {link.src}->{link.dst} is listed twice")
            seen.add((link.src, link.dst))
        self._check_connected()
        if self.ring is not None and not self.is_cycle(self.ring):
            raise GoldenError(f"{self._where}ring {self.ring!r} is not a cycle through every NPU over links")

    def is_cycle(self, order) -> bool:
        """True when ``order`` visits every NPU once, each linked to the next (and the last to the first)."""
        pairs = self.link_index
        return (sorted(order) == list(range(self.npus))
                and all((a, b) in pairs for a, b in zip(order, list(order[1:]) + [order[0]])))

    @property
    def _where(self) -> str:
        return f"topology {self.name}: " if self.name else ""

    def _check_connected(self) -> None:
        for graph, direction in ((self.out_neighbours, "reach"), (self.in_neighbours, "be reached from")):
            seen = [False] * self.npus
            seen[0] = True
            todo = deque([0])
            while todo:
                u = todo.popleft()
                for v in graph[u]:
                    if not seen[v]:
                        seen[v] = True
                        todo.append(v)
            if not all(seen):
                lost = seen.index(False)
                raise GoldenError(f"{self._where}the network is disconnected: NPU 0 cannot {direction} NPU {lost}")

    # --- views -------------------------------------------------------------------------

    @cached_property
    def out_neighbours(self) -> tuple[tuple[int, ...], ...]:
        out = [[] for _ in range(self.npus)]
        for link in self.links:
            out[link.src].append(link.dst)
        return tuple(tuple(sorted(o)) for o in out)

    @cached_property
    def in_neighbours(self) -> tuple[tuple[int, ...], ...]:
        inn = [[] for _ in range(self.npus)]
        for link in self.links:
            inn[link.dst].append(link.src)
        return tuple(tuple(sorted(i)) for i in inn)

    @cached_property
    def link_index(self) -> dict[tuple[int, int], int]:
        """(src, dst) -> index into ``links``."""
        return {(l.src, l.dst): i for i, l in enumerate(self.links)}

    def link(self, src: int, dst: int) -> Link | None:
        i = self.link_index.get((src, dst))
        return None if i is None else self.links[i]

    def link_times_ps(self, chunk_bytes: int) -> np.ndarray:
        """Link time of every link (same order as ``links``) for one chunk, in ps."""
        check_chunk_bytes(chunk_bytes)
        times = np.array([l.time_ps(chunk_bytes) for l in self.links], dtype=np.int64)
        if times.size and times.min() < 1:
            l = self.links[int(times.argmin())]
            raise GoldenError(f"{self._where}link {l.src}->{l.dst} would carry a {chunk_bytes}-byte chunk in "
                              f"under 1 ps (bandwidth {l.bandwidth} GB/s, latency {l.latency} us)")
        return times

    def transposed(self) -> "Topology":
        """The same network with every link reversed (for Reduce-Scatter synthesis)."""
        return Topology(self.npus, tuple(Link(l.dst, l.src, l.bandwidth, l.latency) for l in self.links),
                        f"{self.name}^T" if self.name else "",
                        None if self.ring is None else tuple(reversed(self.ring)))

    def is_symmetric(self) -> bool:
        """True when every link has a reverse link of the same bandwidth and latency."""
        return all((r := self.link(l.dst, l.src)) is not None
                   and (r.bandwidth, r.latency) == (l.bandwidth, l.latency) for l in self.links)

    def to_yaml(self) -> str:
        """The topology in the file format (every link explicit)."""
        import yaml

        doc = {"npus": self.npus,
               "links": [[l.src, l.dst, l.bandwidth, l.latency] for l in self.links]}
        return yaml.safe_dump(doc, default_flow_style=None, sort_keys=False)


def check_chunk_bytes(chunk_bytes) -> int:
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, (int, np.integer)) or chunk_bytes <= 0:
        raise GoldenError(f"chunk size must be a positive number of bytes, not {chunk_bytes!r}")
    return int(chunk_bytes)


# --- the file format ------------------------------------------------------------------------

def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GoldenError(f"{where}: {what} must be a number, not {value!r}")
    return float(value)


def _integer(value, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GoldenError(f"{where}: {what} must be an integer, not {value!r}")
    return value


def topology_from_dict(doc, name: str = "") -> Topology:
    """A :class:`Topology` from the parsed YAML document (see the module docstring)."""
    where = f"topology {name}" if name else "topology"
    if not isinstance(doc, dict):
        raise GoldenError(f"{where}: expected a mapping with 'npus' and 'links', not {type(doc).__name__}")
    unknown = set(doc) - {"npus", "bandwidth", "latency", "bidirectional", "links", "name"}
    if unknown:
        raise GoldenError(f"{where}: unknown key(s) {sorted(unknown)} (known: npus, links, bandwidth, latency, "
                          f"bidirectional, name)")
    for key in ("npus", "links"):
        if key not in doc:
            raise GoldenError(f"{where}: missing key {key!r}")
    npus = _integer(doc["npus"], "npus", where)
    bandwidth = _number(doc.get("bandwidth", DEFAULT_BANDWIDTH_GBPS), "bandwidth", where)
    latency = _number(doc.get("latency", DEFAULT_LATENCY_US), "latency", where)
    both = doc.get("bidirectional", False)
    if not isinstance(both, bool):
        raise GoldenError(f"{where}: bidirectional must be true or false, not {both!r}")
    if not isinstance(doc["links"], list) or not doc["links"]:
        raise GoldenError(f"{where}: links must be a non-empty list, not {doc['links']!r}")
    links = []
    for i, item in enumerate(doc["links"]):
        at = f"{where}, link #{i}"
        if isinstance(item, list):
            if not 2 <= len(item) <= 4:
                raise GoldenError(f"{at}: expected [src, dst], [src, dst, bandwidth] or "
                                  f"[src, dst, bandwidth, latency], not {item!r}")
            src, dst = (_integer(v, k, at) for v, k in zip(item[:2], ("src", "dst")))
            bw = _number(item[2], "bandwidth", at) if len(item) > 2 else bandwidth
            lat = _number(item[3], "latency", at) if len(item) > 3 else latency
        elif isinstance(item, dict):
            extra = set(item) - {"src", "dst", "bandwidth", "latency"}
            if extra or not {"src", "dst"} <= set(item):
                raise GoldenError(f"{at}: expected keys src, dst (and bandwidth, latency), not {sorted(item)}")
            src, dst = _integer(item["src"], "src", at), _integer(item["dst"], "dst", at)
            bw = _number(item.get("bandwidth", bandwidth), "bandwidth", at)
            lat = _number(item.get("latency", latency), "latency", at)
        else:
            raise GoldenError(f"{at}: expected a list or a mapping, not {item!r}")
        links.append(Link(src, dst, bw, lat))
        if both:
            links.append(Link(dst, src, bw, lat))
    return Topology(npus, tuple(links), str(doc.get("name", name)))


def load_topology(path: str | os.PathLike) -> Topology:
    """Read a topology file (YAML, see the module docstring)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GoldenError(f"cannot read topology file {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GoldenError(f"topology file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return topology_from_dict(doc, path.name)


# --- generators -----------------------------------------------------------------------------

def _dims(shape: str, spec: str, ndims: tuple[int, ...]) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(x\d+)*", shape):
        raise GoldenError(f"topology {spec!r}: shape must look like 4x4 or 4x4x4, not {shape!r}")
    dims = tuple(int(v) for v in shape.split("x"))
    if len(dims) not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise GoldenError(f"topology {spec!r}: expected a {want} shape, not {shape!r}")
    if any(d < 1 for d in dims):
        raise GoldenError(f"topology {spec!r}: every dimension must be >= 1, not {shape!r}")
    return dims


def _grid(dims, wrap: bool) -> list[tuple[int, int]]:
    """Undirected edges of a mesh (wrap=False) or torus (wrap=True), dimension 0 fastest."""
    strides = [int(np.prod(dims[:k])) for k in range(len(dims))]
    edges = set()
    for node in range(int(np.prod(dims))):
        coords = [(node // strides[k]) % dims[k] for k in range(len(dims))]
        for k, size in enumerate(dims):
            if coords[k] + 1 < size:
                other = node + strides[k]
            elif wrap and size > 2:
                other = node - coords[k] * strides[k]
            else:
                continue
            edges.add((min(node, other), max(node, other)))
    return sorted(edges)


def _both(edges, bw, lat) -> tuple[Link, ...]:
    return tuple(Link(a, b, bw, lat) for e in edges for a, b in (e, e[::-1]))


def _options(text: str, spec: str, allowed: set[str]) -> dict[str, int]:
    out = {}
    if not text:
        return out
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in allowed or not re.fullmatch(r"\d+", value):
            raise GoldenError(f"topology {spec!r}: option {item!r} is not one of "
                              f"{', '.join(sorted(k + '=INT' for k in allowed))}")
        out[key] = int(value)
    return out


GENERATORS = ("ring", "ring-bi", "mesh", "torus", "hypercube", "switch", "random")


def generate(spec: str, bandwidth: float = DEFAULT_BANDWIDTH_GBPS,
             latency: float = DEFAULT_LATENCY_US) -> Topology:
    """The topology of a generator spec such as ``torus:4x4`` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    shape, _, opts = rest.partition(":")
    if kind not in GENERATORS:
        raise GoldenError(f"unknown topology generator {kind!r} in {spec!r} (known: {', '.join(GENERATORS)}; "
                          f"or give a YAML file)")
    if not shape:
        raise GoldenError(f"topology {spec!r}: missing the size, e.g. {kind}:8")
    options = _options(opts, spec, {"fail", "seed"} | ({"degree"} if kind == "random" else set()))
    for what, v in (("bandwidth", bandwidth), ("latency", latency)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GoldenError(f"topology {spec!r}: {what} must be a finite number, not {v!r}")
    if bandwidth <= 0:
        raise GoldenError(f"topology {spec!r}: bandwidth must be > 0 GB/s, not {bandwidth!r}")
    seed = options.get("seed", 0)

    ring = None
    if kind in ("mesh", "torus"):
        dims = _dims(shape, spec, (1, 2, 3))
        links = _both(_grid(dims, kind == "torus"), bandwidth, latency)
        n = int(np.prod(dims))
        ring = _grid_cycle(dims, kind == "torus")
    else:
        (n,) = _dims(shape, spec, (1,))
        ring = tuple(range(n))
        if kind == "ring":
            links = tuple(Link(i, (i + 1) % n, bandwidth, latency) for i in range(n)) if n > 1 else ()
        elif kind == "ring-bi":
            links = _both(_grid((n,), True), bandwidth, latency)
        elif kind == "hypercube":
            if n < 2 or n & (n - 1):
                raise GoldenError(f"topology {spec!r}: a hypercube needs a power-of-two number of NPUs, not {n}")
            edges = [(i, i ^ (1 << k)) for i in range(n) for k in range(n.bit_length() - 1) if i < i ^ (1 << k)]
            links = _both(edges, bandwidth, latency)
            ring = tuple(i ^ (i >> 1) for i in range(n))          # a Gray code
        elif kind == "switch":
            links = tuple(Link(a, b, bandwidth / max(n - 1, 1), latency)
                          for a in range(n) for b in range(n) if a != b)
        else:                                                   # random
            links = _both(_random_edges(n, options.get("degree", 3), seed, spec), bandwidth, latency)
            ring = None
    if n < 2:
        raise GoldenError(f"topology {spec!r}: needs at least 2 NPUs, not {n}")
    if options.get("fail"):
        links = _fail(n, links, options["fail"], seed, spec)
    topology = Topology(n, links, spec)
    if ring is not None and topology.is_cycle(ring):
        topology = Topology(n, links, spec, ring)
    return topology


def _snake(dims) -> list[tuple[int, ...]]:
    """Boustrophedon order of a grid's coordinates: consecutive ones are neighbours."""
    if not dims:
        return [()]
    out = []
    for i, rest in enumerate(_snake(dims[1:])):
        xs = range(dims[0]) if i % 2 == 0 else range(dims[0] - 1, -1, -1)
        out += [(x, *rest) for x in xs]
    return out


def _grid_cycle(dims, wrap: bool) -> tuple[int, ...] | None:
    """A Hamiltonian cycle of a mesh (one even dimension needed) or torus, or None.

    One dimension (``W`` wide) is the columns, the snake order of the others the rows
    (``H`` of them, even): along row 0, then back and forth over columns 1..W-1 of rows
    1..H-1, and home along column 0.
    """
    strides = [int(np.prod(dims[:k])) for k in range(len(dims))]
    ident = lambda coords: sum(c * s for c, s in zip(coords, strides))    # noqa: E731
    big = [k for k, d in enumerate(dims) if d > 1]
    if len(big) == 1:
        return tuple(range(int(np.prod(dims)))) if wrap or dims[big[0]] == 2 else None
    for col in big:
        others = [k for k in big if k != col]
        rows = _snake([dims[k] for k in others])
        if len(rows) % 2:
            continue
        width = dims[col]

        def at(x, row):
            coords = [0] * len(dims)
            coords[col] = x
            for k, v in zip(others, row):
                coords[k] = v
            return ident(coords)

        cycle = [at(x, rows[0]) for x in range(width)]
        for j in range(1, len(rows)):
            xs = range(width - 1, 0, -1) if j % 2 else range(1, width)
            cycle += [at(x, rows[j]) for x in xs]
        cycle += [at(0, rows[j]) for j in range(len(rows) - 1, 0, -1)]
        return tuple(cycle)
    return None


def _random_edges(n: int, degree: int, seed: int, spec: str) -> list[tuple[int, int]]:
    if not 1 <= degree <= n - 1:
        raise GoldenError(f"topology {spec!r}: degree must be in [1, {n - 1}], not {degree}")
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    edges = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, n)}
    target = max(len(edges), round(n * degree / 2))
    while len(edges) < target:
        a, b = rng.sample(range(n), 2)
        edges.add((min(a, b), max(a, b)))
    return sorted(edges)


def _fail(n: int, links: tuple[Link, ...], count: int, seed: int, spec: str) -> tuple[Link, ...]:
    """Remove ``count`` cables (a link and its reverse), keeping the network connected."""
    rng = random.Random(seed)
    cables = sorted({(min(l.src, l.dst), max(l.src, l.dst)) for l in links})
    rng.shuffle(cables)
    alive = list(links)
    failed = 0
    for a, b in cables:
        if failed == count:
            break
        trial = tuple(l for l in alive if {l.src, l.dst} != {a, b})
        try:
            Topology(n, trial)
        except GoldenError:
            continue                                            # this cable is a bridge: keep it
        alive = list(trial)
        failed += 1
    if failed < count:
        raise GoldenError(f"topology {spec!r}: cannot fail {count} links and stay connected (at most {failed})")
    return tuple(alive)


def parse_topology(text: str, bandwidth: float = DEFAULT_BANDWIDTH_GBPS,
                   latency: float = DEFAULT_LATENCY_US) -> Topology:
    """A topology from a file path (YAML) or a generator spec (``ring:8``, ``torus:4x4``, ...).

    ``bandwidth`` (GB/s) and ``latency`` (µs) apply to generated links; a file states its own.
    """
    if Path(text).exists():
        return load_topology(text)
    if text.split(":", 1)[0] in GENERATORS or re.fullmatch(r"[a-z-]+:.*", text):
        return generate(text, bandwidth, latency)
    raise GoldenError(f"topology {text!r} is neither a file nor a generator spec "
                      f"({', '.join(g + ':...' for g in GENERATORS)})")
