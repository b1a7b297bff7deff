"""The LP PE's cocotb bench (verif/lp_pe_tb.py) and the INT8/FP8 baselines' bench
(verif/mac_pe_tb.py) on the emitted Verilog, on Verilator and Icarus.

Smoke matrix: a capped regime at n = 6 (all code pairs) and n = 8 (random pairs), the
benchmark's formats, and both baselines on both simulators; on Icarus also standard-
posit mode at n = 4 (all pairs) and n = 8, rs = 1, and es = 3 with a narrow wrapping
accumulator (all pairs), one lane, three lanes, and a 12-bit product window. Verilator builds cost ~12 s of CPU
each, so the smoke matrix keeps four of them. The wide
matrix (``-m wide``) runs every config on both simulators and adds more."""

import pytest

from hw.lp_pe import LPPE
from hw.mac_pe import FP8PE, Int8PE
from spec.lp_pe import LPPEConfig
from spec.mac_pe import FP8PEConfig, Int8PEConfig
from verif.runner import run_bench

from .conftest import require_simulator, sim_matrix

BOTH = [
    LPPEConfig(n=6, es=1, rs=3),
    LPPEConfig(n=8, es=1, rs=4),
]
ICARUS_ONLY = [
    LPPEConfig(n=4, es=0, rs=3, lanes=2),
    LPPEConfig(n=8, es=0, rs=7, lanes=3),
    LPPEConfig(n=5, es=3, rs=4, lanes=3, table_bits=3, acc_width=12, acc_frac=4, sf_width=4),
    LPPEConfig(n=6, es=2, rs=1, lanes=1, table_bits=12, acc_width=40, acc_frac=24),
    LPPEConfig(n=6, es=1, rs=3, prod_width=12, acc_frac=6),
]
WIDE = [
    LPPEConfig(n=3, es=0, rs=2, lanes=1),
    LPPEConfig(n=5, es=0, rs=2, lanes=4, table_bits=5),
    LPPEConfig(n=6, es=0, rs=5, lanes=8),
    LPPEConfig(n=7, es=1, rs=3, lanes=2, sf_width=8),
    LPPEConfig(n=8, es=2, rs=2, table_bits=12, acc_width=48, acc_frac=24),
    LPPEConfig(n=10, es=1, rs=5, lanes=2),
    LPPEConfig(n=8, es=1, rs=4, prod_width=20),
]
BASELINES = [Int8PEConfig(), FP8PEConfig()]
WIDE_BASELINES = [Int8PEConfig(lanes=1, acc_width=16), FP8PEConfig(lanes=3, acc_width=40, acc_frac=18)]


def lp_id(c):
    return f"n{c.n}-es{c.es}-rs{c.rs}-l{c.lanes}-tb{c.table_bits}-acc{c.acc_width}.{c.acc_frac}-p{c.prod_width}"


def run(cfg, sim, sim_root):
    require_simulator(sim)
    if isinstance(cfg, LPPEConfig):
        dut, top, bench = LPPE(cfg), "lp_pe", "verif.lp_pe_tb"
    else:
        dut = Int8PE(cfg) if isinstance(cfg, Int8PEConfig) else FP8PE(cfg)
        top, bench = cfg.block.replace("-", "_"), "verif.mac_pe_tb"
    result = run_bench(cfg, dut, top, bench, sim=sim, build_root=sim_root, quiet=True)
    assert result.passed and result.tests == 4


# The 8-bit PE runs on Icarus in make test, on Verilator under -m wide.
@pytest.mark.parametrize("cfg,sim", sim_matrix(BOTH, ["verilator", "icarus"], lp_id,
                                               wide=lambda c, s: c.n == 8 and s == "verilator"))
def test_lp_pe_bench(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.parametrize("cfg", ICARUS_ONLY, ids=lp_id)
def test_lp_pe_bench_icarus(cfg, sim_root):
    run(cfg, "icarus", sim_root)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("cfg", BASELINES, ids=lambda c: c.block)
def test_baseline_pe_bench(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("cfg", WIDE + WIDE_BASELINES,
                         ids=lambda c: lp_id(c) if isinstance(c, LPPEConfig) else c.tag)
def test_pe_bench_wide(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("cfg", ICARUS_ONLY, ids=lp_id)
def test_lp_pe_bench_wide_verilator(cfg, sim_root):
    run(cfg, "verilator", sim_root)
