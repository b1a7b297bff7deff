"""``tessera bench scaleout``: multi-accelerator traces through ASTRA-sim.

1. Tensor-parallel inference: the digits CNN (dense, compiled for the default machine,
   batch 8) on P = 1, 2, 3 NPUs (its last layer's 10 channels are three groups of four,
   so 3 is the most it splits into), clock 100 MHz. Every layer's All-Gather as a COMM_COLL
   node (ASTRA-sim's ring algorithm on a ring of P) and as TACOS's schedule on a
   unidirectional ring (``ring:P``). The traces run without their memory nodes (this
   ASTRA-sim build aborts on memory nodes mixed with sends and receives; with them dropped
   both variants model the same thing: the compute queue's instructions at the ISS's
   cycle model plus the network). For P = 1 the ISS's own cycle estimate of the compiled
   program (DMA included) is given for reference.
2. A data-parallel training step of the digits CNN with N:M weights (dense, 2:4, 1:8 from
   ``golden.sparse_train``'s masks; conv1, K = 9, stays dense) on 16 NPUs, a 4x4 torus;
   per NPU 64 or 1024 samples; the sparse phase (dense weight gradients and All-Reduces)
   and a frozen mask (fine-tune: kept entries only); gradient All-Reduces as COMM_COLL and
   as TACOS. Compute model: :class:`compiler.scaleout.TrainingNPU` (100 TFLOP/s, 1000
   GB/s, bf16 activations and weights, fp32 gradients) on ASTRA-sim's roofline, and the
   same NPU with memory no limit (1e6 GB/s: compute-bound) at 1024 samples.

Network for both: links of 50 GB/s in ASTRA-sim's units (2^30 bytes/s: 53.7 GB/s ours)
and 0.5 µs; the TACOS topologies are generated at the same link speed. Results go to
``<out>/scaleout/report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from compiler import CompileError, astra
from compiler.chakra import NodeType, write_traces
from compiler.model import compile_model
from compiler.scaleout import (TrainingNPU, replicated, scaleout_traces, train_layers, training_step_traces,
                               without_memory_nodes)
from compiler.sources import load_source
from golden.digits import DigitsCNN
from golden.tacos import generate
from spec.accel import AcceleratorConfig

from ..tables import progress_bar

__all__ = ["run_bench"]

CLOCK_MHZ = 100.0
BATCH = 8
TP_NPUS = (1, 2, 3)
PATTERNS = ((4, 4), (2, 4), (1, 8))
TRAIN_BATCHES = (64, 1024)
PHASES = ("sparse", "fine-tune")
TORUS = (4, 4)
NPU = TrainingNPU()
COMPUTE_BOUND = TrainingNPU(mem_gbps=1e6)


def _label(n: int, m: int) -> str:
    return "dense" if n == m else f"{n}:{m}"


def _tensor_parallel(work: Path, report) -> list[dict]:
    torch.set_num_threads(1)
    source = load_source("digits")
    compiled = compile_model(source.exported, source.calib, AcceleratorConfig(), batch=BATCH)
    _, results = compiled.run(source.test_x[:BATCH])
    iss_cycles = sum(r.cycles for r in results) + sum(h["estimated_cycles"] for h in compiled.manifest["host_ops"])
    rows = []
    for k, p in enumerate(TP_NPUS):
        row = {"npus": p}
        for collective in ("coll", "tacos"):
            if p == 1 and collective == "tacos":
                continue
            topo = generate(f"ring:{p}", 50 * astra.GIB_PER_GB, 0.5) if collective == "tacos" else None
            traces = without_memory_nodes(scaleout_traces(compiled, p, "tensor", clock_mhz=CLOCK_MHZ,
                                                          collective=collective, topology=topo))
            compute = max(1000 * sum(n.duration_micros for n in t.nodes if n.type == NodeType.COMP) for t in traces)
            if p == 1:
                traces = replicated(traces[0], 2)
            prefix = work / f"tp{p}_{collective}"
            write_traces(prefix, traces)
            result = astra.run(prefix, astra.Network.ring(max(p, 2)))
            row["compute_us"] = compute / 1000
            row[f"{collective}_us"] = result.time_ns / 1000
            if p == 1:
                row["iss_us"] = iss_cycles / CLOCK_MHZ
        report(k + 1)
        rows.append(row)
    base = rows[0]["coll_us"]
    for row in rows:
        row["coll_speedup"] = base / row["coll_us"]
        if "tacos_us" in row:
            row["tacos_speedup"] = base / row["tacos_us"]
    return rows


def _training(work: Path, report, start: int) -> list[dict]:
    torch.manual_seed(0)
    net = DigitsCNN()
    layers = {nm: train_layers(net, (1, 8, 8), *nm, dense_layers=("conv1",)) for nm in PATTERNS}
    topo = generate(f"torus:{TORUS[0]}x{TORUS[1]}", 50 * astra.GIB_PER_GB, 0.5)
    network = astra.Network.torus(*TORUS)
    cases = [(NPU, "roofline", b) for b in TRAIN_BATCHES] + [(COMPUTE_BOUND, "compute-bound", TRAIN_BATCHES[-1])]
    rows, done = [], start
    for npu, kind, batch in cases:
        system = astra.System(roofline=True, peak_tflops=npu.peak_tflops, local_mem_gbps=npu.mem_gbps, dims=len(TORUS))
        for phase in PHASES:
            for nm in PATTERNS:
                row = {"npu": kind, "batch": batch, "phase": phase, "pattern": _label(*nm)}
                for collective in ("coll", "tacos"):
                    traces = training_step_traces(layers[nm], topo.npus, batch, npu, phase=phase,
                                                  collective=collective,
                                                  topology=topo if collective == "tacos" else None)
                    prefix = work / f"train_{kind}_{batch}_{phase}_{row['pattern'].replace(':', 'of')}_{collective}"
                    write_traces(prefix, traces)
                    result = astra.run(prefix, network, system)
                    exposed = max(result.exposed_ns)
                    row["gflop"] = sum(n.attrs["num_ops"] for n in traces[0].nodes if n.type == NodeType.COMP) / 1e9
                    row[f"{collective}_step_us"] = result.time_ns / 1000
                    row[f"{collective}_compute_us"] = (result.time_ns - exposed) / 1000
                    row[f"{collective}_exposed_us"] = exposed / 1000
                    done += 1
                    report(done)
                rows.append(row)
    for row in rows:
        dense = next(r for r in rows if (r["npu"], r["batch"], r["phase"], r["pattern"])
                     == (row["npu"], row["batch"], row["phase"], "dense"))
        for collective in ("coll", "tacos"):
            row[f"{collective}_speedup"] = dense[f"{collective}_step_us"] / row[f"{collective}_step_us"]
    return rows


def _tp_table(rows) -> str:
    lines = ["| NPUs | compute per NPU (µs) | ASTRA-sim, COMM_COLL All-Gathers (µs) | speed-up "
             "| ASTRA-sim, TACOS All-Gathers (µs) | speed-up |", "|---|---|---|---|---|---|"]
    for r in rows:
        tacos = f"{r['tacos_us']:.1f} | {r['tacos_speedup']:.2f}x" if "tacos_us" in r else "- | -"
        lines.append(f"| {r['npus']} | {r['compute_us']:.1f} | {r['coll_us']:.1f} | {r['coll_speedup']:.2f}x "
                     f"| {tacos} |")
    return "\n".join(lines)


def _train_table(rows) -> str:
    lines = ["| NPU | samples/NPU | phase | weights | GFLOP/NPU | compute (µs) | COMM_COLL: exposed (µs) "
             "| step (µs) | exposed share | speed-up vs dense | TACOS: exposed (µs) | step (µs) | exposed share "
             "| speed-up |",
             "|" + "---|" * 14]
    for r in rows:
        cells = [r["npu"], r["batch"], r["phase"], r["pattern"], f"{r['gflop']:.3f}", f"{r['coll_compute_us']:.2f}"]
        for c in ("coll", "tacos"):
            cells += [f"{r[f'{c}_exposed_us']:.2f}", f"{r[f'{c}_step_us']:.2f}",
                      f"{100 * r[f'{c}_exposed_us'] / r[f'{c}_step_us']:.0f}%", f"{r[f'{c}_speedup']:.2f}x"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def run_bench(out: Path, jobs: int = 2) -> dict:
    """Run both sections (module docstring), print the tables, write JSON and Markdown."""
    reason = astra.missing()
    if reason:
        raise CompileError(f"tessera bench scaleout runs ASTRA-sim: {reason}")
    out = Path(out) / "scaleout"
    work = out / "traces"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    n_train = (len(TRAIN_BATCHES) + 1) * len(PHASES) * len(PATTERNS) * 2
    with progress_bar("scale-out", len(TP_NPUS) + n_train) as report:
        tp = _tensor_parallel(work, report)
        train = _training(work, report, len(TP_NPUS))
    iss = tp[0]["iss_us"]
    text = (f"## Tensor-parallel inference: digits CNN (dense), batch {BATCH}, {CLOCK_MHZ:.0f} MHz, ring of P NPUs\n\n"
            + _tp_table(tp)
            + f"\n\nCompute: the compute queue's instructions of one NPU's share at the ISS's cycle model "
              f"(memory nodes dropped). For P = 1 the ISS estimates {iss:.1f} µs for the whole program, DMA "
              "included. TACOS: one chunk (a share) per NPU on a unidirectional ring, exactly P-1 link times.\n\n"
            + f"## Data-parallel training step: digits CNN, 16 NPUs on a {TORUS[0]}x{TORUS[1]} torus\n\n"
            + _train_table(train)
            + f"\n\nNPU: {NPU.peak_tflops:g} TFLOP/s, {NPU.mem_gbps:g} GB/s (roofline in ASTRA-sim, on); "
              f"compute-bound: memory {COMPUTE_BOUND.mem_gbps:g} GB/s. bf16 activations and weights, fp32 "
              "gradients; GEMMs only. Sparse phase: weight gradients and All-Reduces dense; fine-tune: the "
              "kept entries only. Links 50 GB/s (ASTRA-sim units), 0.5 µs. Exposed = step minus compute "
              "(ASTRA-sim's figure); speed-up over the dense model in the same row set.\n")
    click.echo(text, nl=False)
    doc = {"tensor_parallel": {"model": "digits", "batch": BATCH, "clock_mhz": CLOCK_MHZ, "rows": tp},
           "training": {"npu": NPU.__dict__, "compute_bound_npu": COMPUTE_BOUND.__dict__, "torus": TORUS,
                        "rows": train},
           "wall_s": time.perf_counter() - started}
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "report.md").write_text("# tessera bench scaleout\n\n" + text)
    click.echo(f"wrote {out / 'report.json'} and .md ({doc['wall_s']:.0f} s)")
    return doc
