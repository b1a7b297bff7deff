"""The accelerator's RTL against the ISS on Verilator and Icarus: the smoke set of random
legal programs and one program of every error class (verif/accel_campaign.py), on the
default machine, on one with a top-N unit, a dense core and narrow queues, on a
packing machine (GEMM/POST ``pack``) and on one with the LP array (GEMM ``unit = 1``);
the wide matrix adds bus widths, a 2:8 core, a packing 4:8 core, an LP<8,1,4> 4x8 machine
and more programs behind ``-m wide``."""

import pytest

from spec.accel import AcceleratorConfig
from verif.accel_campaign import verify_smoke

from .conftest import require_simulator, sim_matrix

SIMS = ["verilator", "icarus"]
SMOKE = [AcceleratorConfig(),
         AcceleratorConfig(n=4, m=4, topn="1:4+1:4", queue_depth=1, token_depth=2, max_burst=4),
         # row packing: about half the GEMMs (and their POSTs) run pack = 1
         AcceleratorConfig(rows=2, packing=True, act_rows=256, wgt_rows=64, acc_rows=64, param_rows=64),
         # the LP array as unit 1: about half the tiles' GEMMs run on it (weights in act)
         AcceleratorConfig(lp="6,1,2", act_rows=256, wgt_rows=32, acc_rows=64, param_rows=32)]
WIDE = [AcceleratorConfig(topn="2:4", axi_data_width=128),
        AcceleratorConfig(n=4, m=8, rows=4, packing=True, axi_data_width=128),     # pack 1 and 2
        AcceleratorConfig(n=1, m=4, rows=2, axi_data_width=128),
        AcceleratorConfig(n=2, m=8, rows=8, axi_data_width=256, max_burst=4),
        AcceleratorConfig(queue_depth=1, token_depth=1, max_burst=1),
        AcceleratorConfig(n=4, m=8, rows=4, lp="8,1,4", axi_data_width=128)]


def _check(cfg, sim, sim_root, legal):
    require_simulator(sim)
    cases = verify_smoke(cfg, sim=sim, build_root=sim_root, legal=legal)
    failed = [name for name, ok in cases if not ok]
    assert len(cases) == legal + 9 and not failed, f"programs that differ from the ISS on {sim}: {failed}"


# The dense top-N machine's Verilator build is the slowest of make test (~100 s): Icarus
# runs it there, Verilator under -m wide.
# The LP machine's Verilator build (~70 s) likewise runs under -m wide.
@pytest.mark.parametrize("cfg,sim", sim_matrix(SMOKE, SIMS, lambda c: f"{c.n}of{c.m}x{c.rows}-topn{c.topn or 'none'}"
                                               + ("-packing" if c.packing else "") + (f"-lp{c.lp}" if c.lp else ""),
                                               wide=lambda c, s: (c.topn != "" or c.lp != "") and s == "verilator"))
def test_accel_matches_the_iss(cfg, sim, sim_root):
    _check(cfg, sim, sim_root, legal=8)


@pytest.mark.wide
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", WIDE, ids=lambda c: c.tag[:48])
def test_accel_matches_the_iss_wide(cfg, sim, sim_root):
    _check(cfg, sim, sim_root, legal=40)
