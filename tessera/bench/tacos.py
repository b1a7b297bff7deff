"""``tessera bench tacos``: TACOS All-Reduce against baselines and the lower bound.

Set-up: All-Reduce, one 1 MiB chunk per NPU (an N MiB buffer), links of 50 GB/s and
0.5 µs (link time 21.47 µs per chunk), seed 0; every TACOS schedule passes the validity
checker (:func:`golden.tacos.check`).

Figures:

1. All-Reduce time on 2-D and 3-D tori and meshes of 16 to 512 NPUs and on irregular
   networks (tori with failed links, random connected graphs): TACOS with the paper's
   random chunk choice (``tacos``) and with the ``fifo`` refinement, the baselines (ring
   over a Hamiltonian cycle, the same ring both ways, direct, recursive halving/doubling;
   each pipelined per chunk, routed over shortest paths, timed by the same link model), and
   the lower bound (:func:`golden.tacos.lower_bound_ps`). The speed-up is over the best
   baseline. ``direct`` is left out above 256 NPUs (quadratic in messages, and the slowest
   baseline wherever it runs).
2. Synthesis time of the 512-NPU All-Reduces (the paper: 6.09 minutes for a heterogeneous
   512-NPU system), including a heterogeneous 8x8x8 torus (200 / 100 / 50 GB/s per
   dimension). Measured in the worker process (wall clock and that process's CPU time)
   while ``jobs`` cases run at once on a possibly shared machine.

Results go to ``<out>/tacos_bench.json`` and ``.md``; the tables are printed.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

from golden.tacos import BASELINES, Link, Topology, baseline, check, generate, lower_bound_ps, synthesize

COLLECTIVE = "all-reduce"
CHUNKS = 1
CHUNK_BYTES = 1 << 20
SEED = 0
HETERO = "hetero-torus:8x8x8"
TORI = ["torus:4x4", "torus:8x8", "torus:4x4x4", "torus:16x16", "torus:8x8x4", "torus:8x8x8"]
MESHES = ["mesh:4x4", "mesh:8x8", "mesh:4x4x4", "mesh:16x16", "mesh:8x8x4", "mesh:8x8x8"]
IRREGULAR = ["torus:8x8:fail=6,seed=1", "torus:8x8x4:fail=16,seed=1", "random:64:degree=4,seed=1",
             "random:256:degree=4,seed=1", HETERO]
DIRECT_MAX_NPUS = 256


def _topology(spec: str) -> Topology:
    if spec != HETERO:
        return generate(spec)
    base = generate("torus:8x8x8")
    speed = {1: 200.0, 7: 200.0, 8: 100.0, 56: 100.0, 64: 50.0, 448: 50.0}
    return Topology(base.npus, tuple(Link(l.src, l.dst, speed[abs(l.src - l.dst)], l.latency) for l in base.links),
                    "torus:8x8x8 at 200/100/50 GB/s", base.ring)


def _case(spec: str) -> dict:
    topo = _topology(spec)
    row = {"topology": topo.name, "npus": topo.npus, "links": len(topo.links),
           "lower_bound_us": lower_bound_ps(topo, COLLECTIVE, CHUNKS, CHUNK_BYTES) / 1e6}
    for policy, key in (("random", "tacos"), ("fifo", "tacos-fifo")):
        t0, c0 = time.perf_counter(), time.process_time()
        schedule = synthesize(topo, COLLECTIVE, CHUNKS, CHUNK_BYTES, seed=SEED, policy=policy)
        row[f"{key}_synth_s"] = time.perf_counter() - t0
        row[f"{key}_synth_cpu_s"] = time.process_time() - c0
        report = check(schedule, topo)
        row[f"{key}_us"] = report.time_us
        row[f"{key}_transfers"] = report.transfers
    for name in BASELINES:
        if (name == "rhd" and topo.npus & (topo.npus - 1)) or (name == "direct" and topo.npus > DIRECT_MAX_NPUS):
            row[f"{name}_us"] = None
            continue
        t0 = time.perf_counter()
        row[f"{name}_us"] = baseline(topo, name, COLLECTIVE, CHUNKS, CHUNK_BYTES).time_us
        row[f"{name}_s"] = time.perf_counter() - t0
    best = min((row[f"{n}_us"], n) for n in BASELINES if row[f"{n}_us"] is not None)
    row["best_baseline"] = best[1]
    row["speedup_vs_best"] = best[0] / row["tacos_us"]
    row["fifo_speedup_vs_best"] = best[0] / row["tacos-fifo_us"]
    row["speedup_vs_ring"] = row["ring_us"] / row["tacos_us"]
    row["tacos_vs_bound"] = row["tacos_us"] / row["lower_bound_us"]
    row["fifo_vs_bound"] = row["tacos-fifo_us"] / row["lower_bound_us"]
    return row


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _time_table(rows) -> str:
    head = ("| topology | NPUs | links | lower bound (µs) | TACOS (µs) | TACOS fifo (µs) | "
            + " | ".join(f"{n} (µs)" for n in BASELINES)
            + " | best baseline | speed-up (best) | speed-up (ring) | TACOS / bound | fifo / bound |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['topology']} | {r['npus']} | {r['links']} | {_fmt(r['lower_bound_us'])} "
                     f"| {_fmt(r['tacos_us'])} | {_fmt(r['tacos-fifo_us'])} | "
                     + " | ".join(_fmt(r[f'{n}_us']) for n in BASELINES)
                     + f" | {r['best_baseline']} | {r['speedup_vs_best']:.2f}x | {r['speedup_vs_ring']:.2f}x "
                       f"| {r['tacos_vs_bound']:.3f} | {r['fifo_vs_bound']:.3f} |")
    return "\n".join(lines)


def _synth_table(rows) -> str:
    lines = ["| topology | NPUs | transfers | TACOS synthesis: wall (s) | CPU (s) | TACOS fifo: wall (s) "
             "| CPU (s) | vs the paper's 6.09 min (wall) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['topology']} | {r['npus']} | {r['tacos_transfers']:,} | {r['tacos_synth_s']:.1f} "
                     f"| {r['tacos_synth_cpu_s']:.1f} | {r['tacos-fifo_synth_s']:.1f} "
                     f"| {r['tacos-fifo_synth_cpu_s']:.1f} | {6.09 * 60 / r['tacos_synth_s']:.0f}x faster |")
    return "\n".join(lines)


def run_bench(out: Path, jobs: int = 2) -> dict:
    """Run every case (``jobs`` at a time), print the tables, write JSON and Markdown."""
    specs = TORI + MESHES + IRREGULAR
    order = sorted(specs, key=lambda s: -_topology(s).npus)      # the big ones first
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = dict(zip(order, pool.map(_case, order)))
    rows = [done[s] for s in specs]
    big = [r for r in rows if r["npus"] == 512]
    result = {"collective": COLLECTIVE, "chunks_per_npu": CHUNKS, "chunk_bytes": CHUNK_BYTES,
              "link": {"bandwidth_gbps": 50.0, "latency_us": 0.5}, "seed": SEED, "jobs": jobs,
              "baselines": list(BASELINES), "rows": rows, "wall_s": time.perf_counter() - t0}
    tables = ("## All-Reduce time (1 MiB per NPU, 50 GB/s, 0.5 µs links)\n\n" + _time_table(rows)
              + "\n\nBaselines: ring over a Hamiltonian cycle (one direction), ring-bi (the same ring both "
                "ways, each chunk half way round each way), direct (every NPU to every other, routed), rhd "
                "(recursive halving / doubling, powers of two); each sends a chunk as soon as it has it (no "
                "step barriers) and routes over shortest paths; '-' = not applicable.\n\n"
              + "## Synthesis time, 512 NPUs (All-Reduce, 1 chunk per NPU)\n\n" + _synth_table(big) + "\n")
    click.echo(tables, nl=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tacos_bench.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "tacos_bench.md").write_text("# tessera bench tacos\n\n" + tables)
    click.echo(f"wrote {out / 'tacos_bench.json'} and .md ({result['wall_s']:.0f} s)")
    return result
