"""``tessera bench sweep``: a 48-point N:M core sweep on Dask, a LocalCluster vs serial.

The points: N:M in {1:4, 2:4, 4:4, 2:8} x rows in {1, 2, 4} x pipeline in {0..3}, each
synthesized for iCE40 (``synth_ice40`` for LUT4, nextpnr-ice40 HX8K for Fmax; no generic
synthesis). Figures:

1. Parallel, interrupted and resumed: ``tessera sweep`` as a subprocess on its default
   LocalCluster of 2 workers into a fresh store; one worker process is killed (SIGKILL)
   after the first results, and the sweep is interrupted (SIGINT, as Ctrl-C) once half
   the points are stored. The rerun must run exactly the missing points. The parallel
   wall time is the two runs together (two cluster starts, and the points in flight at
   the interruption done twice, are part of it); the per-task overhead is the worker
   time not spent in a point, ``(wall x workers - sum of point times) / points``, and
   Dask's own round trip per task is timed on 200 empty tasks.
2. Serial: the same 48 points one after another in this process
   (``verif.sweep.run_point``, the function the workers run): wall time, speed-up, and
   every point's figures equal to the cluster's (the flow is deterministic).
3. The Pareto front (effective GMAC/s vs LUT4, with Fmax): ``pareto.md``,
   ``pareto.json``, ``pareto.png``.

CPU seconds (the point's process and its tool processes) and the load average are
printed with the wall times: on a shared machine they say how much of a wall time was
waiting for a core. Results go to ``<out>/sweep/`` (``sweep_bench.json`` and ``.md``).
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress

from verif.sweep import PointTask, ResultStore, load_spec, run_point, step_tools
from verif.sweep_report import pareto_report

from ..blocks import BLOCKS

SPEC = {
    "name": "nm-core-48",
    "block": "nm-core",
    "params": {"n,m": [[1, 4], [2, 4], [4, 4], [2, 8]], "rows": [1, 2, 4], "pipeline": {"min": 0, "max": 3}},
    "steps": ["generate", "synth"],
    "target": {"family": "ice40", "device": "hx8k", "package": "ct256", "freq_mhz": 100, "seed": 1,
               "generic": False},
}
FIGURES = ("lut4", "carry", "ff", "fmax_mhz", "fits")


def _serial(spec, out: Path) -> tuple[float, dict]:
    block = BLOCKS[spec.block]
    task, tools = spec.task, step_tools(spec.task)
    results = {}
    started = time.monotonic()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task("serial, one process", total=len(spec.points))
        for i, params in enumerate(spec.points):
            config = block.config(**params).to_json()
            results[config] = run_point(PointTask(block, config, task, str(out / f"p{i:02d}"), tools))
            progress.advance(bar)
    return time.monotonic() - started, results


def _dask_round_trip(workers: int, tasks: int = 200) -> float:
    """Seconds per empty task, submitted and gathered one at a time on a LocalCluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        client.submit(int, 0, pure=False).result()          # warm
        started = time.monotonic()
        for i in range(tasks):
            client.submit(int, i, pure=False).result()
        return (time.monotonic() - started) / tasks


def _rows(path: Path) -> dict[str, dict]:
    store = ResultStore(path)
    try:
        return {json.dumps(r["config"], sort_keys=True): r for r in store.rows()}
    finally:
        store.close()


def _stored(path: Path) -> int:
    try:
        return sqlite3.connect(path).execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def _resume(spec_file: Path, out: Path, half: int) -> dict:
    """Run ``tessera sweep``, kill a worker, interrupt half-way, rerun: what ran each time."""
    import psutil

    store = out / "results.sqlite"
    argv = [sys.executable, "-m", "tessera.cli", "sweep", str(spec_file), "-o", str(out)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = None
    while proc.poll() is None:
        time.sleep(0.5)
        n = _stored(store)
        if killed is None and n >= 2:
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            if workers:
                victim = workers[-1]
                killed = {"pid": victim.pid, "after_points": n}
                victim.kill()
        if n >= half:
            os.killpg(proc.pid, signal.SIGINT)
            break
    first_out, first_err = proc.communicate(timeout=900)
    first_seconds = time.monotonic() - started
    kept = _stored(store)
    started = time.monotonic()
    second = subprocess.run(argv, capture_output=True, text=True)
    err_lines = [line for line in first_err.replace("\r", "\n").splitlines() if line.strip()]
    return {"killed_worker": killed, "interrupt_exit": proc.returncode, "kept_after_interrupt": kept,
            "interrupt_message": " ".join(err_lines[-2:]), "first_run_seconds": round(first_seconds, 1),
            "rerun": second.stdout.strip(), "rerun_exit": second.returncode,
            "rerun_seconds": round(time.monotonic() - started, 1)}


def run_bench(out: Path, jobs: int = 2) -> dict:
    out = (out / "sweep").resolve()
    for name in ("parallel", "serial"):                  # a benchmark starts from empty stores
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "nm-core-48.json"
    spec_file.write_text(json.dumps(SPEC, indent=2) + "\n")
    spec = load_spec(spec_file, BLOCKS)
    n = len(spec.points)
    click.echo(f"{n} points: {spec.block} N:M x rows x pipeline, steps {', '.join(spec.steps)}, "
               f"{spec.synth.part}; LocalCluster of 2 workers (tessera sweep's default) vs serial")
    load = [os.getloadavg()[0]]

    resume = _resume(spec_file, out / "parallel", n // 2)
    parallel = _rows(out / "parallel" / "results.sqlite")
    load.append(os.getloadavg()[0])
    click.echo(f"run 1: killed worker pid {resume['killed_worker']['pid'] if resume['killed_worker'] else '-'} "
               f"after {resume['killed_worker']['after_points'] if resume['killed_worker'] else '-'} points; "
               f"Ctrl-C after {resume['kept_after_interrupt']} stored points, {resume['first_run_seconds']} s "
               f"(exit {resume['interrupt_exit']}: {resume['interrupt_message']})")
    click.echo(f"run 2 ({resume['rerun_seconds']} s): {resume['rerun']}")
    parallel_s = resume["first_run_seconds"] + resume["rerun_seconds"]
    busy = sum(r["result"]["seconds"] for r in parallel.values())
    parallel_cpu = sum(r["result"].get("cpu_seconds") or 0 for r in parallel.values())
    workers = 2
    overhead = (parallel_s * workers - busy) / n
    round_trip = _dask_round_trip(workers)
    click.echo(f"LocalCluster ({workers} workers): {parallel_s:.1f} s wall for both runs, {len(parallel)} points "
               f"stored ({sum(r['status'] == 'ok' for r in parallel.values())} ok); per-task overhead "
               f"{overhead:.2f} s (worker time outside the points); Dask round trip {1000 * round_trip:.1f} ms "
               f"per empty task; {parallel_cpu:.1f} s CPU")

    serial_s, serial = _serial(spec, out / "serial")
    serial_cpu = sum(r["cpu_seconds"] for r in serial.values())
    load.append(os.getloadavg()[0])
    mismatched = [c for c, r in serial.items()
                  if r["status"] != "ok" or parallel.get(_key(c), {}).get("status") != "ok"
                  or not _same(r, parallel[_key(c)]["result"])]
    click.echo(f"serial (one process): {serial_s:.1f} s wall, {serial_cpu:.1f} s CPU -> speed-up "
               f"{serial_s / parallel_s:.2f}x; {n - len(mismatched)}/{n} points with figures identical "
               f"to the cluster's")
    click.echo(f"1-minute load average at start / after the cluster runs / after serial: "
               f"{' / '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} cores")

    report = pareto_report(out / "parallel", report_dir=out)
    click.echo(report["markdown"], nl=False)
    click.echo(f"Pareto plot: {report['files']['plot']}")

    result = {"points": n, "workers": workers, "serial_seconds": round(serial_s, 1),
              "parallel_seconds": round(parallel_s, 1), "speedup": round(serial_s / parallel_s, 3),
              "per_task_overhead_seconds": round(overhead, 3), "dask_round_trip_ms": round(1000 * round_trip, 2),
              "sum_task_seconds": round(busy, 1), "serial_cpu_seconds": round(serial_cpu, 1),
              "parallel_cpu_seconds": round(parallel_cpu, 1), "load_average": load, "cores": os.cpu_count(),
              "identical_serial_parallel": n - len(mismatched), "resume": resume,
              "pareto": report["front"], "plot": report["files"]["plot"]}
    (out / "sweep_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "sweep_bench.md").write_text("\n".join([
        f"LocalCluster({workers}) {parallel_s:.1f} s (interrupted + resumed); serial {serial_s:.1f} s; "
        f"speed-up {serial_s / parallel_s:.2f}x; per-task overhead {overhead:.2f} s; "
        f"Dask round trip {1000 * round_trip:.1f} ms", f"resume: {resume['rerun']}", "",
        report["markdown"]]) + "\n")
    return result


def _same(a: dict, b: dict) -> bool:
    return "synth" in a and "synth" in b and all(a["synth"][f] == b["synth"][f] for f in FIGURES)


def _key(config_json: str) -> str:
    return json.dumps(json.loads(config_json), sort_keys=True)
