"""Fast checks of the N:M core in Amaranth's own simulator (no Verilog, no compiler
toolchain): config validation, payload layouts, and small products at every pipeline
depth against golden.nm.matmul, with random stalls on both streams."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler.nm_stream import lower_matmul, lower_series_parts
from golden import nm, tasd
from hw.nm_core import NMCore
from spec import ConfigError
from spec import nm_core as spec_nm
from spec.nm_core import NMCoreConfig, beat_layout, out_layout


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=5, m=4), "1 <= n <= m, not n=5, m=4"),
    (dict(n=0, m=4), "1 <= n <= m, not n=0"),
    (dict(n=2, m=6), "m must be a power of two >= 2, not m=6"),
    (dict(n=1, m=1), "m must be a power of two >= 2, not m=1"),
    (dict(rows=0), "rows must be in 1..1024, not rows=0"),
    (dict(width=1), "width must be >= 2, not width=1"),
    (dict(acc_width=15), "acc_width must be >= 2 \\* width = 16, not acc_width=15"),
    (dict(pipeline=4), "pipeline must be in 0..3, not pipeline=4"),
    (dict(n=2.0), "n must be an integer, not 2.0"),
    (dict(n=4, m=4, packing=True), "packing needs a sparse core with 2 <= n < m, not n=4, m=4"),
    (dict(n=1, m=4, packing=True), "packing needs a sparse core with 2 <= n < m, not n=1"),
    (dict(packing=1), "packing must be True or False, not packing=1"),
])
def test_config_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        NMCoreConfig(**kwargs)


def test_config_json_round_trip_and_errors():
    cfg = NMCoreConfig(n=1, m=8, rows=3, pipeline=2)
    assert NMCoreConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown nm-core parameter"):
        NMCoreConfig.from_dict({"n": 1, "colour": 3})
    with pytest.raises(ConfigError, match="not valid JSON"):
        NMCoreConfig.from_json("{")
    with pytest.raises(ConfigError, match="for block 'lp-pe', not 'nm-core'"):
        NMCoreConfig.from_json('{"block": "lp-pe"}')


def test_layout_sizes():
    # 2:4, one row: 4 activations, 2 values, 2 two-bit indices, last.
    assert beat_layout(NMCoreConfig(n=2, m=4)).size == 32 + 16 + 4 + 1
    # Dense 4:4 carries no indices.
    assert beat_layout(NMCoreConfig(n=4, m=4, rows=2)).size == 32 + 2 * 32 + 1
    assert out_layout(NMCoreConfig(rows=3)).size == 96


def simulate(cfg: NMCoreConfig, program, seed=0, stall=0.3):
    """Run ``program`` through NMCore in Amaranth's simulator; return the result."""
    dut = NMCore(cfg)
    rng = np.random.default_rng(seed)
    layout = beat_layout(cfg)
    transfers = []

    async def source(ctx):
        if cfg.sparse:
            ctx.set(dut.n_active, program.n_active)
        for beat in program.beats:
            while rng.random() < stall:
                await ctx.tick()
            ctx.set(dut.i.payload, layout.const(beat))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(transfers) < len(program.outputs):
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                transfers.append([payload[r] for r in range(cfg.rows * cfg.out_slots)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * 40 * (len(program.beats) + 20))
    assert len(transfers) == len(program.outputs), "the core did not deliver every output"
    return program.assemble(transfers)


@pytest.mark.parametrize("pipeline", [0, 1, 2, 3])
@pytest.mark.parametrize("n, m, rows", [(2, 4, 2), (4, 4, 1), (1, 8, 3)])
def test_small_products_match_golden(n, m, rows, pipeline):
    cfg = NMCoreConfig(n=n, m=m, rows=rows, pipeline=pipeline)
    rng = np.random.default_rng(n * 100 + m * 10 + rows)
    w = rng.integers(-128, 128, (rows + 1, 3 * m))
    values, indices = nm.compress(nm.prune(w, n, m), n, m)
    x = rng.integers(-128, 128, (3 * m, 2))
    got = simulate(cfg, lower_matmul(cfg, values, indices, x, filler=rng))
    assert np.array_equal(got, nm.matmul(values, indices, x, n, m))


def test_runtime_n_prime_ignores_disabled_slots():
    cfg = NMCoreConfig(n=4, m=8, rows=2)
    rng = np.random.default_rng(7)
    for n in (1, 2, 3):
        w = rng.integers(-128, 128, (2, 16))
        values, indices = nm.compress(nm.prune(w, n, 8), n, 8)
        x = rng.integers(-128, 128, (16, 1))
        program = lower_matmul(cfg, values, indices, x, n=n, filler=rng)
        assert program.n_active == n
        assert np.array_equal(simulate(cfg, program, seed=n), nm.matmul(values, indices, x, n, 8))


def test_packing_layout_and_modes():
    cfg = NMCoreConfig(n=6, m=8, rows=2, packing=True)
    assert cfg.pack_modes == (1, 2, 3)
    assert [cfg.pack_factor(n) for n in range(7)] == [1, 6, 3, 2, 1, 1, 1]
    assert NMCoreConfig(n=6, m=8).pack_factor(1) == 1          # packing off: never packs
    assert out_layout(cfg).length == 12 and out_layout(NMCoreConfig(n=6, m=8, rows=2)).length == 2
    # Logical row r * P + q: physical row r, slots q * N'.., result at r * n + q.
    assert spec_nm.logical_slot(cfg, 2, 4) == (1, 2) and spec_nm.out_index(cfg, 2, 4) == 7
    assert spec_nm.logical_slot(cfg, 4, 1) == (1, 0) and spec_nm.out_index(cfg, 4, 1) == 6
    with pytest.raises(ConfigError, match="logical row 6 is outside 0..3"):
        spec_nm.logical_slot(cfg, 3, 6)
    with pytest.raises(ConfigError, match="n_active must be an integer in 0..6, not 7"):
        cfg.pack_factor(7)
    # The cycle model prices a packed mode at its rate.
    assert nm.cycles(cfg, 12, 16, 1, n_active=1) == 2 + cfg.latency
    assert nm.cycles(cfg, 12, 16, 1, n_active=4) == 12 + cfg.latency == nm.cycles(cfg, 12, 16, 1)


@pytest.mark.parametrize("n, m, rows, pipeline", [(2, 4, 2, 0), (2, 4, 2, 3), (4, 8, 1, 1),
                                                  (4, 8, 1, 3), (3, 4, 2, 2)])
def test_packed_modes_match_golden(n, m, rows, pipeline):
    """Every N' on a packing core (packed when N' divides n), one after another on the same
    core, with stalls: results equal golden.nm.matmul and the beat count is the model's."""
    cfg = NMCoreConfig(n=n, m=m, rows=rows, pipeline=pipeline, packing=True)
    rng = np.random.default_rng(n * 100 + m * 10 + rows + pipeline)
    for n_active in range(1, n + 1):
        out_rows = 2 * rows * cfg.pack_factor(n_active) + 1
        w = rng.integers(-128, 128, (out_rows, 3 * m))
        values, indices = nm.compress(nm.prune(w, n_active, m), n_active, m)
        x = rng.integers(-128, 128, (3 * m, 2))
        program = lower_matmul(cfg, values, indices, x, n=n_active, filler=rng)
        assert len(program.beats) == nm.cycles(cfg, out_rows, 3 * m, 2, n_active=n_active) - cfg.latency
        got = simulate(cfg, program, seed=n_active)
        assert np.array_equal(got, nm.matmul(values, indices, x, n_active, m)), f"N'={n_active}"


def test_series_on_a_packing_core_matches_the_terms():
    """2:4+1:4 on a packing 2:4 core: the 2:4 product plus the packed 1:4 product equal
    the sum of the terms times x (Amaranth simulation, with stalls)."""
    cfg = NMCoreConfig(n=2, m=4, rows=2, packing=True)
    rng = np.random.default_rng(11)
    w = rng.integers(-128, 128, (5, 12))
    x = rng.integers(-128, 128, (12, 2))
    terms = tasd.decompose(w, "2:4+1:4")
    parts = lower_series_parts(cfg, terms, x, filler=rng)
    got = sum(simulate(cfg, part, seed=k) for k, part in enumerate(parts))
    assert np.array_equal(got, tasd.reconstruct(terms).astype(np.int64) @ x)
