"""The SGS buffer's cocotb bench (verif/sgs_buffer_tb.py) on the emitted Verilog, on
Verilator and Icarus: a smoke pair of geometries in ``make test`` (four streaming slots
and a power-of-two tag table; one streaming slot and a tag table whose slot field can
name slots that do not exist), more behind ``-m wide``."""

import pytest

from golden import sushi
from hw.sgs_buffer import SGSBuffer
from spec.sgs_buffer import SGSBufferConfig
from tessera.cli import main
from verif.runner import run_bench
from verif.sgs_buffer_tb import bench_spec

from .conftest import require_simulator

SIMS = ["verilator", "icarus"]
SMOKE = [SGSBufferConfig(capacity_words=128, block_words=4, tags=28, word_width=32, id_width=8),
         SGSBufferConfig(capacity_words=88, block_words=8, tags=10, word_width=16, id_width=7)]
WIDE = [SGSBufferConfig(),
        SGSBufferConfig(capacity_words=4, block_words=2, tags=1, word_width=32, id_width=8),
        SGSBufferConfig(capacity_words=512, block_words=16, tags=17, word_width=8, id_width=9),
        SGSBufferConfig(capacity_words=256, block_words=8, tags=24, word_width=256, id_width=10)]


def run(cfg, sim, sim_root):
    require_simulator(sim)
    # Train (or load) the bench's SuperNet here: imports are slow inside the simulator.
    sushi.supernet(bench_spec(cfg))
    result = run_bench(cfg, SGSBuffer(cfg), "sgs_buffer", "verif.sgs_buffer_tb", sim=sim,
                       build_root=sim_root, quiet=True)
    assert result.passed and result.tests == 4


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", SMOKE, ids=lambda c: c.tag)
def test_sgs_buffer_bench(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", WIDE, ids=lambda c: c.tag)
def test_sgs_buffer_bench_wide(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


def test_cli_verify_runs_the_bench(tmp_path, capsys):
    require_simulator("icarus")
    cfg = SGSBufferConfig(capacity_words=16, block_words=4, tags=2, word_width=32, id_width=8)
    sushi.supernet(bench_spec(cfg))
    assert main(["verify", "sgs-buffer", "--sim", "icarus", "--capacity-words", "16", "--block-words", "4",
                 "--tags", "2", "--id-width", "8", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "icarus: 4/4 passed" in out and "sushi_schedule_replay" in out
