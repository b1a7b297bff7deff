"""The N:M core's cocotb bench (verif/nm_core_tb.py) on the emitted Verilog, on
Verilator and Icarus, for the smoke matrix of (N, M) x rows; the wide matrix adds
pipeline depths and row counts behind ``-m wide``."""

import pytest

from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from verif.runner import run_bench

from .conftest import require_simulator, sim_matrix

SIMS = ["verilator", "icarus"]
SMOKE = [NMCoreConfig(n=n, m=m, rows=rows)
         for (n, m) in [(4, 4), (2, 4), (1, 4), (2, 8), (4, 8)] for rows in (1, 4)]
# Accumulator wrap-around (16 bits) with an unregistered datapath, and odd row counts.
SMOKE += [NMCoreConfig(n=2, m=4, rows=3, acc_width=16, pipeline=0)]
# Row packing: 1:4 on 2:4 (two rows); 1:8 and 2:8 on 4:8 (unregistered select).
SMOKE += [NMCoreConfig(n=2, m=4, rows=2, packing=True),
          NMCoreConfig(n=4, m=8, rows=1, pipeline=1, packing=True)]
WIDE = [NMCoreConfig(n=n, m=m, rows=rows, pipeline=p)
        for (n, m) in [(8, 8), (1, 8), (3, 4), (1, 2), (2, 16)] for rows in (2, 8) for p in (0, 1, 2, 3)]
WIDE += [NMCoreConfig(n=n, m=m, rows=rows, pipeline=p, packing=True)
         for (n, m) in [(2, 4), (3, 4), (4, 8), (6, 8), (4, 16)] for rows in (1, 5) for p in (0, 2, 3)]
WIDE += [NMCoreConfig(n=2, m=8, rows=1, pipeline=0, acc_width=16, packing=True)]


def run(cfg, sim, sim_root):
    require_simulator(sim)
    result = run_bench(cfg, NMCore(cfg), "nm_core", "verif.nm_core_tb", sim=sim,
                       build_root=sim_root, quiet=True)
    assert result.passed and result.tests == 6


# Four-row cores other than 2:4 run on Icarus in make test, on Verilator under -m wide.
@pytest.mark.parametrize("cfg,sim", sim_matrix(
    SMOKE, SIMS, lambda c: f"{c.n}of{c.m}-rows{c.rows}-acc{c.acc_width}-p{c.pipeline}" + ("-packing" if c.packing else ""),
    wide=lambda c, s: s == "verilator" and c.rows == 4 and (c.n, c.m) != (2, 4)))
def test_nm_core_bench(cfg, sim, sim_root):
    run(cfg, sim, sim_root)


@pytest.mark.wide
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", WIDE, ids=lambda c: f"{c.n}of{c.m}-rows{c.rows}-p{c.pipeline}"
                         + ("-packing" if c.packing else ""))
def test_nm_core_bench_wide(cfg, sim, sim_root):
    run(cfg, sim, sim_root)
