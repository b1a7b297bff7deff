"""Our traces through ASTRA-sim 2.0 (the analytical network backends), against our own models.

ASTRA-sim is found through $ASTRA_SIM, then ``astra-sim`` on PATH, then the shared build
(../shared/tools/astra-sim/astra-sim); the tests skip, saying why, where none exists.

Units: ASTRA-sim's network bandwidth "GB/s" is 2^30 bytes/s (a 1 MiB message on a 50 GB/s
link with 500 ns latency takes 20031 ns), ours is 1e9 bytes/s, so the topologies here are
generated at ``50 * 2^30 / 1e9`` of ours; with 4 MiB chunks every link time is a whole
number of ns (78125 + 500), which ASTRA-sim's integer cycles can represent exactly.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from compiler.chakra import CollectiveType, Trace, write_traces
from compiler.collectives import replay_ps, schedule_traces, write_schedule_traces
from golden.tacos import check, generate, synthesize

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTH = 50 * 2**30 / 1e9              # our GB/s that equals ASTRA-sim's 50 "GB/s"
CHUNK = 4 << 20


def _astra_sim() -> Path | None:
    shared = [base / "shared" / "tools" / "astra-sim" / "astra-sim" for base in (ROOT.parent, ROOT.parent.parent)]
    for candidate in (os.environ.get("ASTRA_SIM"), shutil.which("astra-sim"), *shared,
                      Path("/work/shared/tools/astra-sim/astra-sim")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


ASTRA = _astra_sim()
pytestmark = pytest.mark.skipif(ASTRA is None, reason="ASTRA-sim not found ($ASTRA_SIM, astra-sim on PATH, "
                                                      "../shared/tools/astra-sim): it has no package to install")


def _network(tmp_path: Path, dims: list[int]) -> Path:
    """An ASTRA-sim network config: one bidirectional Ring per dimension (a ring or a torus)."""
    path = tmp_path / f"net_{'x'.join(map(str, dims))}.yml"
    k = len(dims)
    path.write_text(f"topology: [ {', '.join(['Ring'] * k)} ]\nnpus_count: [ {', '.join(map(str, dims))} ]\n"
                    f"bandwidth: [ {', '.join(['50.0'] * k)} ]\nlatency: [ {', '.join(['500.0'] * k)} ]\n")
    return path


def _system(tmp_path: Path) -> tuple[Path, Path]:
    system = tmp_path / "system.json"
    system.write_text('{"scheduling-policy": "LIFO", "endpoint-delay": 10, "active-chunks-per-dimension": 1,\n'
                      ' "preferred-dataset-splits": 4, "all-reduce-implementation": ["ring"],\n'
                      ' "all-gather-implementation": ["ring"], "reduce-scatter-implementation": ["ring"],\n'
                      ' "all-to-all-implementation": ["ring"], "collective-optimization": "localBWAware",\n'
                      ' "local-mem-bw": 1600, "boost-mode": 0, "roofline-enabled": 0, "peak-perf": 900}\n')
    memory = tmp_path / "memory.json"
    memory.write_text('{"memory-type": "NO_MEMORY_EXPANSION"}\n')
    return system, memory


def _run(prefix: Path, network: Path, tmp_path: Path, npus: int) -> list[int]:
    """ASTRA-sim's finish cycle (ns) of every NPU."""
    system, memory = _system(tmp_path)
    proc = subprocess.run([str(ASTRA), f"--workload-configuration={prefix}", f"--system-configuration={system}",
                           f"--remote-memory-configuration={memory}", f"--network-configuration={network}"],
                          capture_output=True, text=True, timeout=120)
    finished = {int(npu): int(cycles)
                for npu, cycles in re.findall(r"sys\[(\d+)\] finished, (\d+) cycles", proc.stdout)}
    assert sorted(finished) == list(range(npus)), proc.stdout[-2000:] + proc.stderr[-2000:]
    return [finished[i] for i in range(npus)]


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
    cycles = _run(tmp_path / "tacos", _network(tmp_path, [8]), tmp_path, 8)
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
    cycles = _run(tmp_path / "tacos", _network(tmp_path, dims), tmp_path, topo.npus)
    assert max(cycles) * 1000 == replay_ps(traces, topo, sends_in_flight=1)
    assert max(cycles) * 1000 > schedule.time_ps == replay_ps(traces, topo)


def test_comm_coll_nodes_run_as_astra_sims_own_collectives(tmp_path):
    """COMM_COLL traces (comm_type, comm_size): ASTRA-sim runs its ring All-Gather on each
    NPU's comm_size bytes, so growing comm_size by D adds exactly (N-1) * D / bandwidth, the
    bandwidth term of a ring All-Gather in our link model; its All-Reduce of the same buffer
    grows by at least the bandwidth bound 2 (N-1)/N * D / bandwidth and at most 10 % more."""
    n, bytes_per_ns = 8, 50 * 2**30 / 1e9
    network = _network(tmp_path, [n])

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
