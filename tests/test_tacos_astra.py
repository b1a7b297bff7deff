"""Our traces through ASTRA-sim 2.0 (the analytical network backends), against our own models.

ASTRA-sim is found through $ASTRA_SIM, then ``astra-sim`` on PATH, then the shared build
(../shared/tools/astra-sim/astra-sim); the tests skip, saying why, where none exists.

Units: ASTRA-sim's network bandwidth "GB/s" is 2^30 bytes/s (a 1 MiB message on a 50 GB/s
link with 500 ns latency takes 20031 ns), ours is 1e9 bytes/s, so the topologies here are
generated at ``50 * 2^30 / 1e9`` of ours; with 4 MiB chunks every link time is a whole
number of ns (78125 + 500), which ASTRA-sim's integer cycles can represent exactly.
"""

import pytest

from compiler import astra
from compiler.chakra import CollectiveType, Trace, write_traces
from compiler.collectives import replay_ps, schedule_traces, write_schedule_traces
from golden.tacos import check, generate, synthesize

BANDWIDTH = 50 * astra.GIB_PER_GB          # our GB/s that equals ASTRA-sim's 50 "GB/s"
CHUNK = 4 << 20

pytestmark = pytest.mark.skipif(astra.find() is None, reason=astra.missing() or "")


def _run(prefix, network: astra.Network, tmp_path, npus: int) -> list[int]:
    """ASTRA-sim's finish cycle (ns) of every NPU."""
    result = astra.run(prefix, network, astra.System(), workdir=tmp_path / f"{prefix.name}.astra")
    assert len(result.finished_ns) == npus
    return list(result.finished_ns)


@pytest.mark.parametrize("collective, chunks", [("all-gather", 1), ("all-gather", 2), ("all-reduce", 2)])
def test_unidirectional_ring_runs_in_astra_sim_exactly_as_scheduled(tmp_path, collective, chunks):
    """On a unidirectional ring every NPU sends on one link only, so ASTRA-sim's one send in
    flight per NPU is no extra constraint: the TACOS traces finish in ASTRA-sim at exactly the
    schedule's time, to the nanosecond. This proves ASTRA-sim reads our sends and receives
    (peers, sizes, tags) and our dependencies as the schedule means them."""
    topo = generate("ring:8", BANDWIDTH, 0.5)
    schedule = synthesize(topo, collective, chunks, CHUNK, seed=1, policy="fifo")
    check(schedule, topo)
    write_schedule_traces(schedule, tmp_path / "tacos", topo)
    cycles = _run(tmp_path / "tacos", astra.Network.ring(8), tmp_path, 8)
    assert max(cycles) * 1000 == schedule.time_ps


@pytest.mark.parametrize("spec, dims, collective", [("ring-bi:8", [8], "all-gather"),
                                                    ("torus:4x4", [4, 4], "all-reduce")])
def test_multi_link_schedules_match_the_one_send_in_flight_model(tmp_path, spec, dims, collective):
    """Where an NPU sends on several links at once, ASTRA-sim (which keeps one send in flight
    per NPU) takes longer than the link model; every NPU's finish time equals our replay of
    the same traces with one send in flight per NPU (ready sends in node-id order), and the
    whole run is never faster than the schedule. Our torus ids (dimension 0 fastest) are
    ASTRA-sim's: a send to a neighbour is one hop there."""
    topo = generate(spec, BANDWIDTH, 0.5)
    schedule = synthesize(topo, collective, 1, CHUNK, seed=0)
    traces = schedule_traces(schedule, topo)
    write_traces(tmp_path / "tacos", traces)
    cycles = _run(tmp_path / "tacos", astra.Network.torus(*dims), tmp_path, topo.npus)
    assert max(cycles) * 1000 == replay_ps(traces, topo, sends_in_flight=1)
    assert max(cycles) * 1000 > schedule.time_ps == replay_ps(traces, topo)


def test_comm_coll_nodes_run_as_astra_sims_own_collectives(tmp_path):
    """COMM_COLL traces (comm_type, comm_size): ASTRA-sim runs its ring All-Gather on each
    NPU's comm_size bytes, so growing comm_size by D adds exactly (N-1) * D / bandwidth, the
    bandwidth term of a ring All-Gather in our link model; its All-Reduce of the same buffer
    grows by at least the bandwidth bound 2 (N-1)/N * D / bandwidth and at most 10 % more."""
    n, bytes_per_ns = 8, 50 * 2**30 / 1e9
    network = astra.Network.ring(n)

    def run(kind, size):
        traces = [Trace(i) for i in range(n)]
        for t in traces:
            t.add_comm_coll(f"{kind.name} {size}", kind, size)
        prefix = tmp_path / f"{kind.name}_{size}"
        write_traces(prefix, traces)
        cycles = _run(prefix, network, tmp_path, n)
        assert len(set(cycles)) == 1
        return cycles[0]

    small, large = 1 << 20, 8 << 20
    gather = run(CollectiveType.ALL_GATHER, large) - run(CollectiveType.ALL_GATHER, small)
    assert gather == pytest.approx((n - 1) * (large - small) / bytes_per_ns, rel=1e-4)
    reduce = run(CollectiveType.ALL_REDUCE, large) - run(CollectiveType.ALL_REDUCE, small)
    bound = 2 * (n - 1) / n * (large - small) / bytes_per_ns
    assert bound <= reduce <= 1.1 * bound
