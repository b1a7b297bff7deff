"""Fast checks of the GEAR reconstruction unit in Amaranth's own simulator (no Verilog):
config validation, layouts, the compiler's packing, and small tiles against the golden
fixed-point path (golden.gear.GearFixed.reconstruct_int) with random stalls on every
stream, including rows with more outliers than slots and back-to-back tiles."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler import CompileError
from compiler.gear_stream import lower
from golden import gear
from hw.gear_unit import GearUnit
from spec import ConfigError
from spec.gear_unit import (
    GearFixedFormat,
    GearUnitConfig,
    factor_layout,
    out_layout,
    row_layout,
)


@pytest.mark.parametrize("kwargs, message", [
    (dict(head_dim=0), "head_dim must be >= 1, not head_dim=0"),
    (dict(head_dim=32, group_size=5), "group_size must divide head_dim=32, not group_size=5"),
    (dict(group_size=0), "group_size must divide head_dim=32, not group_size=0"),
    (dict(head_dim=4, rank=5), "rank must be in 0..head_dim=4, not rank=5"),
    (dict(rank=-1), "rank must be in 0..head_dim=32, not rank=-1"),
    (dict(max_bits=1), "max_bits must be in 2..8, not max_bits=1"),
    (dict(frac_bits=0), "frac_bits must be in 1..16, not frac_bits=0"),
    (dict(scale_width=1), "scale_width must be in 2..24, not scale_width=1"),
    (dict(zero_width=40), "zero_width must be in 2..32, not zero_width=40"),
    (dict(factor_width=17), "factor_width must be in 2..16, not factor_width=17"),
    (dict(out_width=1), "out_width must be in 2..32, not out_width=1"),
    (dict(head_dim=4, outlier_slots=5), "outlier_slots must be in 0..head_dim=4, not outlier_slots=5"),
    (dict(factor_frac=5), "factor_frac must be in 0..frac_bits=4, not factor_frac=5"),
    (dict(rank=2.5), "rank must be an integer, not 2.5"),
])
def test_config_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GearUnitConfig(**kwargs)


def test_config_json_round_trip():
    cfg = GearUnitConfig(head_dim=8, rank=2, outlier_slots=1, group_size=4)
    assert GearUnitConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="for block 'nm-core', not 'gear-unit'"):
        GearUnitConfig.from_json('{"block": "nm-core"}')


def test_layout_sizes():
    cfg = GearUnitConfig()   # 32 lanes, rank 4, 2 slots, per-lane pairs
    codes, pairs, a = 32 * 4, 32 * (12 + 16), 4 * 5
    slots = 2 * (5 + 8 + 1)
    assert row_layout(cfg).size == codes + pairs + a + slots + 4   # load, more, first, last
    assert factor_layout(cfg).size == 4 * 32 * 5
    assert out_layout(cfg).size == 32 * 8
    # A V-only unit (one pair per row), no low rank, no outliers: codes + one pair.
    v = GearUnitConfig(group_size=32, rank=0, outlier_slots=0)
    assert row_layout(v).size == 128 + 28 + 2
    assert cfg.latency == 3


def simulate(cfg, program, seed=0, stall=0.3):
    """Run ``program`` through GearUnit in Amaranth's simulator; return (result, edges)
    where edges are (first row accepted, last output taken) clock counts."""
    dut = GearUnit(cfg)
    rng = np.random.default_rng(seed)
    rows_layout, f_layout = row_layout(cfg), factor_layout(cfg)
    transfers, edges = [], {}

    async def clock_counter(ctx):
        edges["now"] = 0
        while True:
            await ctx.tick()
            edges["now"] += 1

    async def rows(ctx):
        ctx.set(dut.bits, program.bits)
        for n, beat in enumerate(program.rows):
            while rng.random() < stall:
                await ctx.tick()
            ctx.set(dut.i.payload, rows_layout.const(beat))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            if n == 0:
                edges["first"] = edges["now"]
            ctx.set(dut.i.valid, 0)

    async def factors(ctx):
        for beat in program.factors:
            while rng.random() < stall:
                await ctx.tick()
            ctx.set(dut.factors.payload, f_layout.const(beat))
            ctx.set(dut.factors.valid, 1)
            await ctx.tick().until(dut.factors.ready)
            ctx.set(dut.factors.valid, 0)

    async def sink(ctx):
        while len(transfers) < program.outputs:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                transfers.append([payload[d] for d in range(cfg.head_dim)])
                edges["last"] = edges["now"]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(clock_counter)
    sim.add_testbench(rows)
    if cfg.rank:
        sim.add_testbench(factors)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (4 * len(program.rows) / (1 - stall) + 60))
    assert len(transfers) == program.outputs, "the unit did not deliver every row"
    return program.assemble(transfers), edges


CONFIGS = [GearUnitConfig(head_dim=4, rank=2, outlier_slots=2),
           GearUnitConfig(head_dim=6, rank=1, outlier_slots=1, group_size=3, frac_bits=4,
                          scale_width=10, zero_width=12, factor_width=5, out_width=6, factor_frac=0),
           GearUnitConfig(head_dim=4, rank=0, outlier_slots=0, max_bits=2),
           GearUnitConfig(head_dim=3, rank=3, outlier_slots=3, max_bits=8)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.tag)
@pytest.mark.parametrize("extreme", [False, True])
def test_random_tiles_match_golden(cfg, extreme):
    rng = np.random.default_rng(cfg.head_dim * 10 + cfg.rank + extreme)
    bits = 2 if cfg.max_bits == 2 else 4
    fixed = gear.random_fixed(rng, (1, 2, 5, cfg.head_dim), cfg.rank, cfg.fixed_format, bits,
                              max_outliers=6 if cfg.outlier_slots else 0, extreme=extreme)
    if cfg.group_size > 1:   # the unit shares pairs across its lane groups
        g = cfg.group_size
        fixed = fixed.__class__(**{**fixed.__dict__,
                                   "scale": np.repeat(fixed.scale[..., ::g], g, axis=-1),
                                   "zero": np.repeat(fixed.zero[..., ::g], g, axis=-1)})
    program = lower(cfg, fixed, bits, filler=rng)
    got, _ = simulate(cfg, program, seed=int(extreme))
    assert np.array_equal(got, fixed.reconstruct_int())


def test_full_rate_cycles_match_cycle_model():
    cfg = GearUnitConfig(head_dim=4, rank=2, outlier_slots=1)
    rng = np.random.default_rng(3)
    fixed = gear.random_fixed(rng, (1, 2, 6, 4), 2, cfg.fixed_format, 4, max_outliers=5)
    program = lower(cfg, fixed, 4)
    got, edges = simulate(cfg, program, stall=0.0)
    assert np.array_equal(got, fixed.reconstruct_int())
    counts = fixed.outliers_per_row()
    measured = edges["last"] - edges["first"] + 1
    assert measured == gear.cycles(cfg, counts.ravel()), (measured, counts.ravel())


def test_one_row_tiles_run_back_to_back():
    cfg = GearUnitConfig(head_dim=2, rank=1, outlier_slots=1)
    fixed = gear.random_fixed(np.random.default_rng(9), (2, 3, 1, 2), 1, cfg.fixed_format, 4,
                              max_outliers=0)
    got, edges = simulate(cfg, lower(cfg, fixed, 4), stall=0.0)
    assert np.array_equal(got, fixed.reconstruct_int())
    assert edges["last"] - edges["first"] + 1 == gear.cycles(cfg, [0] * 6)


def test_real_compressed_tile_matches_golden():
    cfg = GearUnitConfig(head_dim=8, rank=2, outlier_slots=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 1, 16, 8))
    x[..., 3] *= 8
    comp = gear.compress(x, 4, 8, 0.05, 2, axis="channel")
    fixed = gear.to_fixed(comp, cfg.fixed_format)
    got, _ = simulate(cfg, lower(cfg, fixed, 4, filler=rng))
    assert np.array_equal(got, fixed.reconstruct_int())
    assert gear.relative_error(x, fixed.reconstruct()) < 0.1


def test_lowering_errors():
    cfg = GearUnitConfig(head_dim=4, rank=1, outlier_slots=0)
    rng = np.random.default_rng(0)
    fmt = cfg.fixed_format
    with pytest.raises(CompileError, match="rank 2, more than the unit's rank=1"):
        lower(cfg, gear.random_fixed(rng, (1, 1, 2, 4), 2, fmt, 4, max_outliers=0), 4)
    fixed = gear.random_fixed(rng, (1, 1, 2, 4), 1, fmt, 4, max_outliers=0)
    with pytest.raises(CompileError, match="code value .* does not fit"):
        lower(cfg, fixed, 2)
    with pytest.raises(CompileError, match="head_dim=8, the unit has head_dim=4"):
        lower(cfg, gear.random_fixed(rng, (1, 1, 2, 8), 1, fmt, 4), 4)
    many = gear.random_fixed(np.random.default_rng(1), (1, 1, 2, 4), 1, fmt, 4, max_outliers=8)
    if many.outlier_pos.size:
        with pytest.raises(CompileError, match="outlier_slots=0"):
            lower(cfg, many, 4)
    k_tile = gear.to_fixed(gear.compress(rng.standard_normal((1, 1, 8, 4)), 4, 4, 0, 0),
                           cfg.fixed_format)
    with pytest.raises(CompileError, match="differ inside a group of group_size=2"):
        lower(GearUnitConfig(head_dim=4, rank=0, group_size=2), k_tile, 4)


def test_golden_default_format_is_the_default_unit():
    """The unit's default config computes in spec's default fixed-point format."""
    assert GearUnitConfig().fixed_format == GearFixedFormat()
