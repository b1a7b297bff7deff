"""The dot-product arrays' cocotb bench (verif/pe_array_tb.py) on the emitted Verilog,
every row's output bit-exact against ``golden.pe_array``.

Smoke matrix (Verilator builds cost ~15 s of CPU each, so only one): ``lp-array`` 2 x 2
with every code pair at n = 6 on both simulators; on Icarus random pairs at n = 8 and the
INT8 and FP8 baselines. The wide matrix (``-m wide``) runs every config on both
simulators and adds the benchmark's 4 x 4 shape and other formats."""

import pytest

from hw.pe_array import FP8Array, Int8Array, LPArray
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig
from verif.runner import run_bench

from .conftest import require_simulator

COMPONENTS = {LPArrayConfig: LPArray, Int8ArrayConfig: Int8Array, FP8ArrayConfig: FP8Array}

BOTH = [LPArrayConfig(rows=2, cols=2)]
ICARUS_ONLY = [
    LPArrayConfig(rows=2, cols=3, n=8, es=1, rs=4, table_bits=6, prod_width=18),
    Int8ArrayConfig(rows=2, cols=2),
    FP8ArrayConfig(rows=2, cols=2),
]
WIDE = [
    LPArrayConfig(rows=4, cols=4),
    LPArrayConfig(rows=2, cols=5, n=6, es=1, rs=3, table_bits=5, prod_width=16, acc_frac=10),
    LPArrayConfig(rows=1, cols=1, n=5, es=0, rs=4, table_bits=3, acc_width=12, acc_frac=4, sf_width=4, prod_width=0),
    LPArrayConfig(rows=3, cols=2, n=6, es=2, rs=1, table_bits=8, acc_width=32, acc_frac=16, prod_width=0),
    Int8ArrayConfig(rows=4, cols=4, acc_width=16),
    FP8ArrayConfig(rows=3, cols=1, acc_width=40, acc_frac=18),
]


def cfg_id(c):
    return f"{c.block}-{c.tag}"


def run(cfg, sim, sim_root):
    require_simulator(sim)
    result = run_bench(cfg, COMPONENTS[type(cfg)](cfg), cfg.block.replace("-", "_"), "verif.pe_array_tb",
                       sim=sim, build_root=sim_root, quiet=True)
    assert result.passed and result.tests == 3


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("cfg", BOTH, ids=cfg_id)
def test_array_bench(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.parametrize("cfg", ICARUS_ONLY, ids=cfg_id)
def test_array_bench_icarus(cfg, sim_root):
    run(cfg, "icarus", sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("cfg", WIDE, ids=cfg_id)
def test_array_bench_wide(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("cfg", ICARUS_ONLY, ids=cfg_id)
def test_array_bench_wide_verilator(cfg, sim_root):
    run(cfg, "verilator", sim_root)
