"""golden.tacos: topologies, the TACOS synthesiser, baselines, the checker, the bound, traces, CLI."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileError
from compiler.chakra import NodeType, read_traces
from compiler.collectives import replay_ps, schedule_traces
from golden import GoldenError
from golden.tacos import (BASELINES, COLLECTIVES, Link, Schedule, Topology, baseline, check, generate,
                          load_topology, lower_bound_ps, parse_topology, synthesize)
from golden.tacos.schedule import Transfer, asap, make_schedule, mirror
from tessera.cli import main

MIB = 1 << 20
SMALL = ["ring:8", "ring-bi:8", "ring-bi:5", "mesh:3x4", "torus:4x4", "torus:3x3", "mesh:2x2x2", "hypercube:8",
         "switch:8", "torus:4x4:fail=3,seed=1", "random:12:degree=3,seed=2"]


def tau(topology: Topology, nbytes: int = MIB) -> int:
    times = set(topology.link_times_ps(nbytes).tolist())
    assert len(times) == 1
    return times.pop()


# --- topologies ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, npus, links", [
    ("ring:8", 8, 8), ("ring-bi:8", 8, 16), ("ring-bi:2", 2, 2), ("mesh:4x4", 16, 48), ("torus:4x4", 16, 64),
    ("torus:4x4x4", 64, 384), ("mesh:2x3x2", 12, 40), ("hypercube:16", 16, 64), ("switch:8", 8, 56),
    ("torus:4x4:fail=3,seed=1", 16, 58), ("random:12:degree=3,seed=2", 12, 36)])
def test_generators_have_the_npus_and_links_they_promise(spec, npus, links):
    topo = generate(spec)
    assert (topo.npus, len(topo.links)) == (npus, links)
    assert topo.is_symmetric() == (spec != "ring:8")
    assert generate(spec) == topo                             # deterministic for a seed


def test_generated_link_parameters_and_rings():
    assert {(l.bandwidth, l.latency) for l in generate("torus:4x4", 25, 2.0).links} == {(25, 2.0)}
    assert {l.bandwidth for l in generate("switch:8", 70).links} == {10.0}     # a port's 70 GB/s over 7 links
    for spec in ("torus:4x4x4", "mesh:4x4", "mesh:2x3x2", "hypercube:16", "ring-bi:8"):
        topo = generate(spec)
        assert topo.ring is not None and topo.is_cycle(topo.ring)
    assert generate("mesh:3x3").ring is None                  # an odd bipartite grid has no Hamiltonian cycle
    assert generate("random:12:degree=3,seed=2") != generate("random:12:degree=3,seed=3")
    assert Link(0, 1, 50, 0.5).time_ps(MIB) == 500_000 + 20_971_520


def test_topology_file_formats(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("npus: 3\nbandwidth: 10\nlatency: 1\nlinks:\n  - [0, 1]\n  - [1, 2, 20]\n  - [2, 0, 20, 0.25]\n"
                 "  - {src: 0, dst: 2, bandwidth: 5}\n  - {src: 1, dst: 0}\n  - [2, 1]\n")
    topo = load_topology(f)
    assert topo.npus == 3 and topo.name == "t.yaml"
    assert topo.link(0, 1) == Link(0, 1, 10, 1) and topo.link(2, 0) == Link(2, 0, 20, 0.25)
    assert topo.link(0, 2) == Link(0, 2, 5, 1)
    g = tmp_path / "g.yaml"
    g.write_text(topo.to_yaml())
    assert load_topology(g).links == topo.links
    b = tmp_path / "b.yaml"
    b.write_text("npus: 2\nbidirectional: true\nlinks: [[0, 1]]\n")
    assert {(l.src, l.dst) for l in parse_topology(str(b)).links} == {(0, 1), (1, 0)}


@pytest.mark.parametrize("text, match", [
    ("npus: 3\nlinks: [[0, 1], [1, 0], [1, 2]]\n", "disconnected: NPU 0 cannot be reached from NPU 2"),
    ("npus: 2\nlinks: [[0, 1, 0], [1, 0]]\n", "bandwidth must be > 0"),
    ("npus: 2\nlinks: [[0, 1, -1.0], [1, 0]]\n", "bandwidth must be > 0"),
    ("npus: 2\nlinks: [[0, 1, .inf], [1, 0]]\n", "finite"),
    ("npus: 2\nlinks: [[0, 1], [1, 0, 50, -1]]\n", "latency must be >= 0"),
    ("npus: 2\nlinks: [[0, 1], [1, 5]]\n", r"dst=5 is not an NPU of this topology \(npus=2"),
    ("npus: 2\nlinks: [[0, 1], [1, 0], [0, 1]]\n", "listed twice"),
    ("npus: 2\nlinks: [[0, 0], [1, 0]]\n", "to itself"),
    ("npus: 2\nlinks: [[0, 1], [1]]\n", r"expected \[src, dst\]"),
    ("npus: two\nlinks: [[0, 1], [1, 0]]\n", "npus must be an integer, not 'two'"),
    ("npus: 2\n", "missing key 'links'"),
    ("npus: 2\nlinks: [[0, 1], [1, 0]]\nspeed: 3\n", r"unknown key\(s\) \['speed'\]"),
    ("npus: 2\nlinks: [[0, 1], [1, 0]\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_topology_files(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(GoldenError, match=match):
        load_topology(f)


@pytest.mark.parametrize("spec, match", [
    ("cube:8", "unknown topology generator 'cube'"), ("ring", "missing the size"), ("torus:4y4", "shape"),
    ("hypercube:12", "power-of-two"), ("ring:1", "at least 2"), ("ring:8:fail=1", "cannot fail 1 links"),
    ("torus:4x4:colour=3", "option 'colour=3'"), ("random:8:degree=9", "degree must be in"),
    ("no/such/file.yaml", "neither a file nor a generator")])
def test_bad_generator_specs(spec, match):
    with pytest.raises(GoldenError, match=match):
        parse_topology(spec)
    with pytest.raises(GoldenError, match="bandwidth must be > 0"):
        generate("ring:4", bandwidth=0)


# --- exact cases --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 8, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_unidirectional_ring_takes_exactly_n_minus_1_link_times(n, seed):
    topo = generate(f"ring:{n}")
    for policy in ("random", "fifo"):
        ag = synthesize(topo, "all-gather", 1, MIB, seed=seed, policy=policy)
        check(ag, topo)
        assert ag.time_ps == (n - 1) * tau(topo)
        assert synthesize(topo, "all-reduce", 1, MIB, seed=seed, policy=policy).time_ps == 2 * (n - 1) * tau(topo)


@pytest.mark.parametrize("n", [2, 3, 4, 7, 8, 16])
def test_bidirectional_ring_takes_exactly_half_as_long(n):
    topo = generate(f"ring-bi:{n}")
    for seed in range(3):
        ag = synthesize(topo, "all-gather", 1, MIB, seed=seed)
        check(ag, topo)
        assert ag.time_ps == math.ceil((n - 1) / 2) * tau(topo)
        assert ag.time_ps == lower_bound_ps(topo, "all-gather", 1, MIB)


def test_heterogeneous_links():
    """Two NPUs, a fast link one way and a slow one back: each chunk needs its own link."""
    topo = Topology(2, (Link(0, 1, 100, 0.5), Link(1, 0, 25, 2.0)))
    fast, slow = (l.time_ps(MIB) for l in topo.links)
    assert synthesize(topo, "all-gather", 1, MIB).time_ps == slow
    assert synthesize(topo, "all-gather", 3, MIB).time_ps == 3 * slow
    ar = synthesize(topo, "all-reduce", 1, MIB)
    check(ar, topo)
    assert ar.time_ps == 2 * slow                          # NPU 1's chunk needs the slow link both ways
    # a mixed mesh: fast x links, slow y links; valid, above its bound, faster than uniform slow links
    mixed = Topology(16, tuple(Link(l.src, l.dst, 200 if abs(l.src - l.dst) in (1, 3) else 50, 0.5)
                               for l in generate("torus:4x4").links))
    s = synthesize(mixed, "all-reduce", 2, MIB, seed=3)
    check(s, mixed)
    assert lower_bound_ps(mixed, "all-reduce", 2, MIB) <= s.time_ps
    assert s.time_ps < synthesize(generate("torus:4x4", 50), "all-reduce", 2, MIB, seed=3).time_ps


# --- validity, bound, determinism ----------------------------------------------------------------

@pytest.mark.parametrize("spec", SMALL)
def test_every_schedule_is_valid_and_above_the_lower_bound(spec):
    """TACOS (both chunk policies) and every applicable baseline, for all three collectives;
    TACOS never sends a chunk to an NPU that has it."""
    topo = generate(spec)
    for collective in COLLECTIVES:
        for chunks in (1, 2):
            bound = lower_bound_ps(topo, collective, chunks, MIB)
            for policy in ("random", "fifo"):
                s = synthesize(topo, collective, chunks, MIB, seed=1, policy=policy)
                report = check(s, topo)
                assert report.redundant == 0 and report.time_ps >= bound > 0
                per_chunk = {"all-gather": topo.npus - 1, "reduce-scatter": topo.npus - 1,
                             "all-reduce": 2 * (topo.npus - 1)}[collective]
                assert report.transfers == per_chunk * topo.npus * chunks
            for name in BASELINES:
                if name == "rhd" and topo.npus & (topo.npus - 1):
                    continue
                b = baseline(topo, name, collective, chunks, MIB)
                if collective == "all-gather":
                    check(b, topo)
                assert b.time_ps >= bound


def test_same_seed_same_schedule():
    topo = generate("torus:4x4")
    a = synthesize(topo, "all-reduce", 2, MIB, seed=5)
    assert synthesize(topo, "all-reduce", 2, MIB, seed=5) == a
    assert synthesize(topo, "all-reduce", 2, MIB, seed=6).transfers != a.transfers


def test_baselines_exact_times():
    ring8, t8 = generate("ring:8"), tau(generate("ring:8"))
    assert baseline(ring8, "ring", "all-gather", 1, MIB).time_ps == 7 * t8
    assert baseline(ring8, "ring", "all-reduce", 2, MIB).time_ps == 2 * 7 * 2 * t8
    sw = generate("switch:8")
    assert baseline(sw, "direct", "all-gather", 1, MIB).time_ps == tau(sw)
    hc = generate("hypercube:16")
    # recursive doubling without step barriers: the last dimension's link carries 8 chunks
    assert baseline(hc, "rhd", "all-gather", 1, MIB).time_ps == 8 * tau(hc)
    bi = generate("ring-bi:8")
    assert baseline(bi, "ring-bi", "all-gather", 1, MIB).time_ps == 4 * tau(bi)
    with pytest.raises(GoldenError, match="power-of-two"):
        baseline(generate("ring:6"), "rhd", "all-gather", 1, MIB)


def test_fifo_reaches_the_bound_where_random_does_not():
    """The fifo chunk policy (oldest first) pipelines like a ring: on a ring with 4 chunks per
    NPU it meets the lower bound, the paper's random choice does not."""
    topo = generate("ring:8")
    bound = lower_bound_ps(topo, "all-gather", 4, MIB)
    assert synthesize(topo, "all-gather", 4, MIB, policy="fifo").time_ps == bound == 28 * tau(topo)
    assert synthesize(topo, "all-gather", 4, MIB, policy="random").time_ps > bound


def _ag(topo=None):
    topo = topo or generate("ring-bi:4")
    return topo, synthesize(topo, "all-gather", 1, MIB)


def test_checker_catches_every_broken_rule():
    topo, s = _ag()
    T = s.transfers
    t = tau(topo)

    def broken(transfers, collective="all-gather"):
        return make_schedule(4, 1, MIB, collective, transfers)

    with pytest.raises(GoldenError, match="NPU 0 lacks chunk|lacks chunk"):
        check(broken(T[:-1]), topo)
    with pytest.raises(GoldenError, match="no link 0->2"):
        check(broken([*T, Transfer(0, 0, 2, 0, t)]), topo)
    with pytest.raises(GoldenError, match="link time"):
        check(broken([*T[:-1], T[-1]._replace(end=T[-1].end + 1)]), topo)
    first = T[0]
    with pytest.raises(GoldenError, match="carries two chunks at once"):
        check(broken([*T, Transfer((first.chunk + 1) % 4, first.src, first.dst, first.start + 1, first.start + 1 + t)]),
              topo)
    late = next(x for x in T if x.start > 0)                   # a forwarded chunk, sent at time 0
    early = [x for x in T if x != late and not (x.src, x.dst, x.start) == (late.src, late.dst, 0)]
    with pytest.raises(GoldenError, match=f"chunk {late.chunk} leaves NPU {late.src} at 0.0+ us .*before it arrived"):
        check(broken([*early, late._replace(start=0, end=t)]), topo)
    with pytest.raises(GoldenError, match="does not match"):
        check(s, generate("ring-bi:5"))
    # a Reduce-Scatter that sends one partial sum twice counts it twice
    rs = synthesize(topo, "reduce-scatter", 1, MIB)
    check(rs, topo)
    dup = rs.transfers[0]
    with pytest.raises(GoldenError, match="twice|incomplete"):
        check(make_schedule(4, 1, MIB, "reduce-scatter", [*rs.transfers, dup._replace(start=rs.time_ps,
                                                                                     end=rs.time_ps + t)]), topo)
    with pytest.raises(GoldenError, match="incomplete sum"):
        check(make_schedule(4, 1, MIB, "reduce-scatter", rs.transfers[1:]), topo)


def test_mirror_and_asap():
    topo = generate("torus:3x3")
    ag = synthesize(topo.transposed(), "all-gather", 2, MIB)
    rs = mirror(ag, "reduce-scatter")
    check(rs, topo)
    assert rs.time_ps == ag.time_ps
    packed = asap(rs)
    check(packed, topo)
    assert packed.time_ps <= rs.time_ps
    assert asap(packed) == packed


def test_bad_synthesis_parameters():
    topo = generate("ring:4")
    for kwargs, match in (({"chunks": 0}, "chunks per NPU"), ({"chunk_bytes": 0}, "chunk size"),
                          ({"collective": "broadcast"}, "collective must be"), ({"seed": -1}, "seed"),
                          ({"policy": "best"}, "policy")):
        args = {"collective": "all-gather", "chunks": 1, "chunk_bytes": MIB, **kwargs}
        with pytest.raises(GoldenError, match=match):
            synthesize(topo, **args)
    with pytest.raises(GoldenError, match="under 1 ps"):
        synthesize(generate("ring:4", bandwidth=1e9, latency=0), "all-gather", 1, 1)


# --- schedule.json, traces, CLI ------------------------------------------------------------------

def test_schedule_json_format_and_round_trip(tmp_path):
    topo = generate("torus:3x3")
    s = synthesize(topo, "all-gather", 2, MIB)
    doc = json.loads(s.write(tmp_path / "schedule.json").read_text())
    assert list(doc) == ["npus", "collective", "time_us", "transfers"]
    assert (doc["npus"], doc["collective"], doc["time_us"]) == (9, "all-gather", s.time_ps / 1e6)
    assert all(list(t) == ["chunk", "src", "dst", "start_us", "end_us"] for t in doc["transfers"])
    assert {t["chunk"] for t in doc["transfers"]} == set(range(18))
    for c in range(18):                                         # chunk c starts at NPU c // C
        assert min(doc["transfers"], key=lambda t: (t["chunk"] != c, t["start_us"]))["src"] == c // 2
    back = Schedule.from_dict(doc, chunk_bytes=MIB)
    assert back == s
    check(back, topo)
    with pytest.raises(GoldenError, match="malformed"):
        Schedule.from_dict({"npus": 9, "collective": "all-gather"})


@pytest.mark.parametrize("spec", ["ring:6", "ring-bi:5", "torus:4x4", "mesh:2x3x2", "torus:4x4:fail=3,seed=1"])
@pytest.mark.parametrize("collective", COLLECTIVES)
def test_traces_replay_to_the_schedule_time(spec, collective):
    """The per-NPU send/receive traces carry the schedule's dependencies: run as early as they
    allow on the link model, they finish exactly when the schedule does (one send and one
    receive per transfer, paired by tag)."""
    topo = generate(spec)
    s = synthesize(topo, collective, 2, MIB, seed=2)
    traces = schedule_traces(s, topo)
    sends = [n for t in traces for n in t.nodes if n.type == NodeType.COMM_SEND]
    recvs = [n for t in traces for n in t.nodes if n.type == NodeType.COMM_RECV]
    assert len(sends) == len(recvs) == len(s.transfers)
    assert sorted(n.attrs["comm_tag"] for n in sends) == list(range(len(s.transfers)))
    for trace in traces:
        for node in trace.nodes:
            t = s.transfers[node.attrs["comm_tag"]]
            assert (node.attrs["comm_src"], node.attrs["comm_dst"], node.attrs["comm_size"]) == (t.src, t.dst, MIB)
    assert replay_ps(traces, topo) == s.time_ps
    assert replay_ps(traces, topo, sends_in_flight=1) >= s.time_ps
    with pytest.raises(CompileError, match="does not match"):
        schedule_traces(s, generate("ring:3"))


def test_cli_tacos_writes_schedule_and_traces(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["tacos", "torus:4x4", "--collective", "all-reduce", "--chunks", "2", "--chunk-bytes", "65536",
                 "--seed", "3", "--bandwidth", "25", "--latency", "1", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "all-reduce on torus:4x4 (16 NPUs, 64 links)" in said and "lower bound" in said
    doc = json.loads((out / "schedule.json").read_text())
    topo = generate("torus:4x4", 25, 1)
    s = Schedule.from_dict(doc, chunk_bytes=65536)
    assert s == synthesize(topo, "all-reduce", 2, 65536, seed=3)
    check(s, topo)
    traces = read_traces(out / "trace", npus=16)
    assert sum(len(t) for t in traces) == 2 * len(doc["transfers"])
    f = tmp_path / "split.yaml"
    f.write_text("npus: 3\nlinks: [[0, 1], [1, 0], [2, 0]]\n")
    assert main(["tacos", str(f), "--collective", "all-gather", "--chunks", "1", "--chunk-bytes", "8",
                 "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disconnected" in err and not (tmp_path / "x").exists()


@settings(max_examples=25, deadline=None)
@given(npus=st.integers(2, 9), extra=st.integers(0, 8), seed=st.integers(0, 2**16), chunks=st.integers(1, 3),
       collective=st.sampled_from(COLLECTIVES), policy=st.sampled_from(["random", "fifo"]))
def test_random_heterogeneous_networks(npus, extra, seed, chunks, collective, policy):
    """Any connected network with links of mixed bandwidth and latency (a random spanning tree
    plus random links, each direction drawn on its own): the schedule is valid, above the
    bound, replays from its traces to its own time, and the seed fixes it."""
    import random

    rng = random.Random(seed)
    order = list(range(npus))
    rng.shuffle(order)
    pairs = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, npus)}
    for _ in range(extra):
        a, b = rng.sample(range(npus), 2)
        pairs.add((min(a, b), max(a, b)))
    links = tuple(Link(a, b, rng.choice([12.5, 25.0, 50.0, 100.0]), rng.choice([0.0, 0.5, 2.0]))
                  for pair in sorted(pairs) for a, b in (pair, pair[::-1]))
    topo = Topology(npus, links)
    s = synthesize(topo, collective, chunks, 65536, seed=seed, policy=policy)
    assert check(s, topo).redundant == 0
    assert s.time_ps >= lower_bound_ps(topo, collective, chunks, 65536)
    assert replay_ps(schedule_traces(s, topo), topo) == s.time_ps
    assert synthesize(topo, collective, chunks, 65536, seed=seed, policy=policy) == s
