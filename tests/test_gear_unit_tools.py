"""The GEAR unit in the tool flow: Verilator lint of its Verilog, the CLI (generate,
verify, synth, bench) and the benchmark's table code on small inputs."""

import json

import numpy as np
import pytest

from hw import write_verilog
from hw.gear_unit import GearUnit
from spec.gear_unit import GearUnitConfig
from tessera.bench import gear as bench_gear
from tessera.cli import main
from verif.lint import lint

from .conftest import require_simulator

LINT = [GearUnitConfig(),
        GearUnitConfig(head_dim=8, rank=0, outlier_slots=0),
        GearUnitConfig(head_dim=6, group_size=3, rank=1, outlier_slots=1, factor_frac=4),
        GearUnitConfig(head_dim=1, rank=1, outlier_slots=1, max_bits=8),
        GearUnitConfig(head_dim=5, rank=5, outlier_slots=5, out_width=12, frac_bits=10, zero_width=24)]


@pytest.mark.parametrize("cfg", LINT, ids=lambda c: c.tag)
def test_generated_verilog_lints_clean(cfg, tmp_path):
    path = write_verilog(GearUnit(cfg), "gear_unit", tmp_path)
    assert lint(path) == []


def test_generate_writes_verilog_and_config(tmp_path, capsys):
    assert main(["generate", "gear-unit", "--head-dim", "8", "--rank", "2", "-o", str(tmp_path)]) == 0
    assert "module gear_unit(" in (tmp_path / "gear_unit.v").read_text()
    config = json.loads((tmp_path / "gear_unit.json").read_text())
    assert config == {"block": "gear-unit", **GearUnitConfig(head_dim=8, rank=2).to_dict()}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--group-size", "5"], "group_size must divide head_dim=32, not group_size=5"),
    (["--head-dim", "4", "--rank", "6"], "rank must be in 0..head_dim=4, not rank=6"),
    (["--factor-frac", "9"], "factor_frac must be in 0..frac_bits=4, not factor_frac=9"),
])
def test_bad_parameters_print_one_line(argv, message, tmp_path, capsys):
    assert main(["generate", "gear-unit", *argv, "-o", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tessera: error: ") and message in err


def test_blocks_and_bench_list_gear(capsys):
    assert main(["blocks"]) == 0
    assert "gear-unit" in capsys.readouterr().out
    assert main(["bench", "--help"]) == 0
    assert "gear" in capsys.readouterr().out


def test_verify_runs_the_bench(tmp_path, capsys):
    require_simulator("icarus")
    assert main(["verify", "gear-unit", "--head-dim", "3", "--rank", "1", "--outlier-slots", "1",
                 "--sim", "icarus", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "icarus: 3/3 passed" in out and "full_rate_cycles" in out


def test_synth_without_pnr(tmp_path, capsys):
    assert main(["synth", "gear-unit", "--head-dim", "2", "--rank", "1", "--outlier-slots", "1",
                 "--no-pnr", "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["block"] == "gear-unit" and report["pnr"] is None
    # Two lanes: two dequantizers, two 5x5 multipliers, adders, round/saturate.
    assert 100 < report["ice40"]["lut4"] < 2000
    assert "| gear_unit |" in capsys.readouterr().out


def test_bench_accuracy_rows_on_small_tensors():
    rng = np.random.default_rng(0)
    layers = rng.standard_normal((2, 1, 2, 128, 32))
    rows = bench_gear.accuracy_rows(layers, "K", "channel", 64)
    assert [(r["bits"], r["method"]) for r in rows] == [(b, m) for b in (2, 4) for m in ("KIVI", "GEAR-L", "GEAR")]
    for r in rows:
        assert len(r["error_per_layer"]) == 2
        assert r["compression"] == pytest.approx(16 / r["bits_per_element"])
        assert r["unit_error"] >= r["error"] * 0.9
    kivi4 = next(r for r in rows if r["bits"] == 4 and r["method"] == "KIVI")
    assert kivi4["bits_per_element"] == pytest.approx(4.5)
    table = bench_gear._accuracy_table(rows, per_layer=True)
    assert table.count("\n") == len(rows) + 1


def test_bench_hardware_table_uses_measured_fmax():
    def result(label, head_dim, lut, fmax):
        pnr = {"fmax_mhz": fmax, "lc_used": 10, "lc_available": 7680} if fmax else None
        return {"label": label, "config": GearUnitConfig(head_dim=head_dim).to_dict(),
                "report": {"ice40": {"lut4": lut, "carry": 1, "ff": 2}, "pnr": pnr}}

    table, rows = bench_gear._hardware_table([result("big", 32, 16000, None), result("small", 8, 4000, 100.0)])
    big, small = rows
    assert small["values_per_s"] == 8 * 100e6 and small["fmax_measured"]
    assert big["fmax_mhz"] == 100.0 and not big["fmax_measured"]
    assert big["values_per_s_per_kilo_lut4"] == pytest.approx(32 * 100e6 / 16)
    assert "does not fit" in table and "(8-lane Fmax)" in table
