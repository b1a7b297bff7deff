"""The ``tessera`` command line: generate/verify/synth per block, one-line errors."""

import json
import subprocess
import sys

import pytest

from hw import write_verilog
from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from tessera.cli import main
from verif.lint import lint

from .conftest import require_simulator


def test_generate_writes_verilog_and_config(tmp_path, capsys):
    assert main(["generate", "nm-core", "--n", "2", "--m", "8", "--rows", "3", "-o", str(tmp_path)]) == 0
    verilog = (tmp_path / "nm_core.v").read_text()
    assert "module nm_core(" in verilog
    text = (tmp_path / "nm_core.json").read_text()
    config = json.loads(text)
    record = config.pop("provenance")
    # Parameters not given take their defaults.
    assert config == {"block": "nm-core", "n": 2, "m": 8, "rows": 3, "width": 8, "acc_width": 32,
                      "pipeline": 3, "packing": False}
    assert record["command"] == "generate nm-core" and record["parameters"]["rows"] == 3
    assert {"tessera", "amaranth"} <= set(record["versions"])
    # The file reads back as the config it records.
    assert NMCoreConfig.from_json(text) == NMCoreConfig(n=2, m=8, rows=3)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["generate", "nm-core", "--n", "5", "--m", "4"], "n must satisfy 1 <= n <= m, not n=5, m=4"),
    (["generate", "nm-core", "--m", "6"], "m must be a power of two >= 2, not m=6"),
    (["generate", "nm-core", "--rows", "0"], "rows must be in 1..1024, not rows=0"),
    (["generate", "nm-core", "--rows", "100000"], "rows must be in 1..1024, not rows=100000"),
    (["generate", "nm-core", "--width", "1"], "width must be >= 2, not width=1"),
    (["generate", "nm-core", "--n", "two"], "'two' is not a valid integer"),
    (["generate", "no-such-block"], "No such command 'no-such-block'"),
])
def test_bad_input_prints_one_line_and_fails(argv, message, tmp_path, capsys):
    assert main([*argv, "-o", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tessera: error: ") and message in err


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tessera.cli", "generate", "nm-core", "--n", "9",
                           "-o", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "tessera: error: n must satisfy 1 <= n <= m, not n=9, m=4\n"


def test_help_lists_blocks_and_parameters(capsys):
    assert main(["generate", "--help"]) == 0
    assert "nm-core" in capsys.readouterr().out
    assert main(["generate", "nm-core", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--n", "--m", "--rows", "--width", "--acc-width", "--pipeline", "--out"):
        assert option in out
    for command in ("verify", "synth"):
        assert main([command, "nm-core", "--help"]) == 0
        assert "--n" in capsys.readouterr().out


@pytest.mark.parametrize("cfg", [NMCoreConfig(n=2, m=4, rows=2), NMCoreConfig(n=4, m=4, pipeline=0),
                                 NMCoreConfig(n=1, m=8, rows=3, pipeline=1),
                                 NMCoreConfig(n=4, m=8, pipeline=2)],
                         ids=lambda c: c.tag)
def test_generated_verilog_lints_clean(cfg, tmp_path):
    path = write_verilog(NMCore(cfg), "nm_core", tmp_path)
    assert lint(path) == []


def test_verify_runs_the_bench(tmp_path, capsys, monkeypatch):
    require_simulator("icarus")
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    assert main(["verify", "nm-core", "--n", "1", "--m", "4", "--sim", "icarus",
                 "--build-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "icarus: 6/6 passed" in captured.out and "full_rate_cycles" in captured.out
    assert "verify nm-core on icarus 2/2" in captured.err and "verify nm-core" not in captured.out
