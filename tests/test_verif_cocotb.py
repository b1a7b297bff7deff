"""The verification components themselves (verif/streams.py, scoreboard.py, job.py,
runner.py) on real simulators: monitors attached to the internal streams of a two-block
design on Verilator and Icarus, and what a failing bench reports (the failing tests,
their first assertion lines, a waveform), through run_bench and the CLI."""

import json

import pytest

from spec.nm_core import NMCoreConfig
from tessera.blocks import Block
from tessera.cli import main
from verif import VerifError
from verif.job import Job
from verif.nm_core_internal_tb import NMCoreBehindFifo
from verif.runner import read_results, run_bench, verilator_fst

from .conftest import require_simulator

#: Small, so the Verilator build is cheap.
CFG = NMCoreConfig(n=2, m=4, rows=2)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_monitors_attach_to_internal_streams(sim, sim_root):
    """NMCoreScoreboard on dut.core.o and a pass-through scoreboard on dut.core.i of a
    FIFO + core wrapper. On Verilator the run is traced (--waves): FST."""
    require_simulator(sim)
    waves = sim == "verilator"
    result = run_bench(CFG, NMCoreBehindFifo(CFG), "nm_core_wrapped", "verif.nm_core_internal_tb", sim=sim,
                       build_root=sim_root, quiet=True, waves=waves)
    assert result.passed and {n for n, _ in result.cases} == {"monitors_on_internal_streams",
                                                              "bus_lookup_names_what_exists"}
    log = (result.build_dir / "sim.log").read_text()
    assert "outputs checked on core.i/core.o" in log
    if waves:
        assert result.waves == result.build_dir / ("dump.fst" if verilator_fst() else "dump.vcd")
        assert result.waves.stat().st_size > 0


def test_failing_bench_names_tests_and_keeps_waveform(tmp_path):
    """A core whose output bit 0 is flipped: the error names each failing test with its
    first assertion line (the scoreboard's message: transaction, note, field), and the
    failing tests were rerun with a waveform whose path the message gives."""
    require_simulator("icarus")
    with pytest.raises(VerifError) as err:
        run_bench(CFG, NMCoreBehindFifo(CFG, flip=1), "nm_core", "verif.nm_core_tb", sim="icarus",
                  build_root=tmp_path, quiet=True, testcase="edge_values,full_rate_cycles")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("2 of 2 nm_core tests failed on icarus: ")
    assert "edge_values: nm_core_tb.py:" in message and "full_rate_cycles: nm_core_tb.py:" in message
    assert "transaction 0 (extremes: row block 0, column 0) differs in 1 of 2 fields: payload[0] got" in message
    wave = tmp_path / f"nm_core-{CFG.tag}-icarus" / "waves" / "nm_core.fst"
    assert f"waveform: {wave};" in message and wave.stat().st_size > 0
    cases, failures = read_results(wave.parent / "results.xml")
    assert {name for name, _ in cases} == {"edge_values", "full_rate_cycles"} == set(failures)


def test_cli_verify_prints_the_table_when_a_test_fails(tmp_path, capsys, monkeypatch):
    """`tessera verify --waves` on a faulty core: the PASS/FAIL table, the FST waveform of
    the traced run, then one error line and a non-zero exit."""
    require_simulator("icarus")
    real_build = Block.build
    monkeypatch.setattr(Block, "build", lambda self, cfg: NMCoreBehindFifo(cfg, flip=1 << 40)
                        if self.name == "nm-core" else real_build(self, cfg))
    code = main(["verify", "nm-core", "--n", "2", "--m", "4", "--rows", "2", "--sim", "icarus", "--waves",
                 "--build-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    rows = [line.split() for line in out.splitlines() if line.startswith("icarus ")]
    assert len(rows) == 6 and all(r[2] == "FAIL" for r in rows)
    assert "icarus: 0/6 passed" in out
    wave = tmp_path / f"nm_core-{CFG.tag}-icarus" / "nm_core.fst"
    assert f"icarus: waveform: {wave}" in out and wave.stat().st_size > 0
    assert err.count("\n") == 1 and err.startswith("tessera: error: 6 of 6 nm_core tests failed on icarus: ")
    assert "payload[1] got" in err


def test_cli_verify_build_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("")
    assert main(["verify", "nm-core", "--sim", "icarus", "--build-dir", str(path)]) == 1
    assert capsys.readouterr().err == f"tessera: error: build directory {path} is a file\n"
    assert main(["verify", "nm-core", "--sim", "icarus", "--build-dir", str(path / "sub")]) == 1
    assert capsys.readouterr().err == f"tessera: error: build directory {path / 'sub'} lies under {path}, which is a file\n"


def test_job_description_round_trip_and_missing_parameter(tmp_path):
    job = Job(block="nm-core", config=CFG.to_dict(), test_module="verif.nm_core_perf", top="nm_core",
              sim="icarus", params={"shape": [8, 64, 4]}, output=str(tmp_path / "out.json"))
    path = job.write(tmp_path / "job.json")
    assert Job.load(path) == job and json.loads(path.read_text())["params"] == {"shape": [8, 64, 4]}
    assert Job.load(path).block_config(NMCoreConfig) == CFG
    with pytest.raises(VerifError, match=r"job parameter 'layer' is missing \(this verif.nm_core_perf job has shape\)"):
        job.param("layer")
    job.write_output({"cycles": 3})
    assert json.loads((tmp_path / "out.json").read_text()) == {"cycles": 3}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
