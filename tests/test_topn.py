"""The activation top-N unit (hw/topn.py): config checks, Amaranth simulation against
golden.tasd, lint, and its cocotb bench on Verilator and Icarus."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import tasd
from hw import write_verilog
from hw.topn import TopN
from spec import ConfigError
from spec.nm_core import NMCoreConfig, weight_group_layout
from spec.packing import pack
from spec.topn import TopNConfig, topn_in_layout, topn_out_layout, topn_term_layout
from verif.lint import lint
from verif.runner import run_bench

from .conftest import require_simulator


@pytest.mark.parametrize("series, message", [
    ("2:4+2:8", "share one m"), ("2:6", "power of two"), ("5:4", "1 <= n <= m"),
    ("3:4+2:4", "keep more than m=4"), ("2/4", "not of the form n:m"),
])
def test_config_rejects_bad_series(series, message):
    with pytest.raises(ConfigError, match=message):
        TopNConfig(series=series)


#: Every series a top-N unit can be built for with m <= 8.
ALL_SERIES = sorted({"+".join(f"{n}:{m}" for n in combo)
                     for m in (2, 4, 8) for k in (1, 2, 3)
                     for combo in itertools.product(range(1, m + 1), repeat=k)
                     if sum(combo) <= m})


@pytest.mark.parametrize("series", ALL_SERIES)
def test_every_term_is_a_core_weight_group(series):
    """docs/formats.md's promise: term t of the unit's output has exactly the layout of an
    n_t:m core's weight group (a dense n_t = m term has no indices, like a 4:4 core), and
    its bits, read with that layout, hold golden.tasd.decompose's term."""
    cfg = TopNConfig(series=series)
    out = topn_out_layout(cfg)
    rng = np.random.default_rng(len(series))
    group = rng.integers(-128, 128, cfg.m)
    terms = tasd.decompose(group[None, :], series)
    fields = {}
    for t, (n, m) in enumerate(cfg.terms):
        core_group = weight_group_layout(NMCoreConfig(n=n, m=m, rows=1))
        assert topn_term_layout(cfg, t) == core_group
        value = {"values": terms[t].values[0, 0].tolist()}
        if n < m:
            value["indices"] = terms[t].indices[0, 0].tolist()
        fields[f"t{t}"] = value
    bits = pack(out, {"terms": fields, "last": 1})
    for t, (n, m) in enumerate(cfg.terms):
        offset = out["terms"].offset + out.members["terms"][f"t{t}"].offset
        core_group = weight_group_layout(NMCoreConfig(n=n, m=m, rows=1))
        word = core_group.from_bits((bits >> offset) & ((1 << core_group.size) - 1))
        assert [word.values[j] for j in range(n)] == terms[t].values[0, 0].tolist()
        if n < m:
            assert [word.indices[j] for j in range(n)] == terms[t].indices[0, 0].tolist()
        else:       # a dense term keeps every element in order: nothing to index
            assert terms[t].indices[0, 0].tolist() == list(range(m))


@pytest.mark.parametrize("series", ["2:4", "2:4+1:4", "1:8+2:8", "1:2+1:2", "4:4", "2:4+2:4"])
def test_amaranth_simulation_matches_golden(series):
    cfg = TopNConfig(series=series)
    dut = TopN(cfg)
    rng = np.random.default_rng(1)
    groups = rng.choice([-128, 127, 0, 1, -1, 5, -5], size=(150, cfg.m))
    layout = topn_in_layout(cfg)
    got = []

    async def source(ctx):
        for g in groups:
            ctx.set(dut.i.payload, layout.const({"act": [int(v) for v in g], "last": 0}))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(got) < len(groups):
            ctx.set(dut.o.ready, rng.random() < 0.7)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append([([payload.terms[f"t{t}"].values[j] for j in range(n)],
                             [payload.terms[f"t{t}"].indices[j] for j in range(n)] if n < m
                             else list(range(n)))
                            for t, (n, m) in enumerate(cfg.terms)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * 2000)
    terms = tasd.decompose(groups, series)
    want = [[(t.values[g, 0].tolist(), t.indices[g, 0].tolist()) for t in terms] for g in range(len(groups))]
    assert got == want


@pytest.mark.parametrize("series", ["2:4+1:4", "2:8"])
def test_verilog_lints_clean(series, tmp_path):
    assert lint(write_verilog(TopN(TopNConfig(series=series)), "topn", tmp_path)) == []


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("series", ["2:4+1:4", "1:8+2:8"])
def test_topn_bench(series, sim, sim_root):
    require_simulator(sim)
    cfg = TopNConfig(series=series)
    result = run_bench(cfg, TopN(cfg), "topn", "verif.topn_tb", sim=sim, build_root=sim_root, quiet=True)
    assert result.passed and result.tests == 3
