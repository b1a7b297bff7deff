"""cocotb bench of the GEAR reconstruction unit's emitted Verilog against the golden
fixed-point path (``golden.gear.GearFixed.reconstruct_int``), bit for bit.

Every test builds integer tiles (random ones from ``golden.gear.random_fixed``, or real
compressed ones from ``golden.gear.compress`` + ``to_fixed``), lowers them with the
compiler (``compiler.gear_stream``), streams them through the DUT with the stream
drivers (random idle cycles on both inputs, random back-pressure on the output) and
compares every output value exactly (:class:`GearScoreboard`). Run it through
:func:`verif.runner.run_bench` (or ``tessera verify gear-unit``), which passes the unit's
config in the job description.

When the job parameter ``tiles`` names an ``.npz`` file (written by :func:`save_tiles`),
the test ``file_tiles`` also runs the tiles stored there (the pytest runner uses it for
MiniLM's real K/V, which the simulator process does not load itself).
"""

import cocotb
import numpy as np

from compiler.gear_stream import GearProgram, lower
from golden import gear
from spec.gear_unit import GearUnitConfig, factor_layout, out_layout, row_layout

from .bench import ClockedBench
from .job import current, in_simulation
from .scoreboard import Scoreboard

__all__ = ["GearScoreboard", "GearUnitTB", "save_tiles", "load_tiles", "TILES_PARAM"]

#: Job parameter naming an .npz of extra tiles for the ``file_tiles`` test.
TILES_PARAM = "tiles"
_FIELDS = ("codes", "scale", "zero", "a", "b", "outlier_pos", "outlier_val")


def save_tiles(path, tiles: list[tuple[str, int, gear.GearFixed]]) -> None:
    """Write ``(label, bits, fixed)`` tiles to ``path`` for the ``file_tiles`` test."""
    arrays = {}
    for n, (label, bits, fixed) in enumerate(tiles):
        arrays[f"{n}_label"] = np.array(label)
        arrays[f"{n}_bits"] = np.array(bits)
        for name in _FIELDS:
            arrays[f"{n}_{name}"] = getattr(fixed, name)
    np.savez_compressed(path, count=np.array(len(tiles)), **arrays)


def load_tiles(path, fmt) -> list[tuple[str, int, gear.GearFixed]]:
    data = np.load(path)
    tiles = []
    for n in range(int(data["count"])):
        fields = {name: data[f"{n}_{name}"] for name in _FIELDS}
        shape = fields["codes"].shape
        fixed = gear.GearFixed(None, fmt, np.ones((shape[0], shape[1], shape[3])), **fields)
        tiles.append((str(data[f"{n}_label"]), int(data[f"{n}_bits"]), fixed))
    return tiles


class GearScoreboard(Scoreboard):
    """The unit's output stream against ``golden.gear.GearFixed.reconstruct_int``: one
    transaction per row of every tile, in the program's tile order."""

    def __init__(self, config: GearUnitConfig, name: str = ""):
        super().__init__(name, out_layout(config))
        self.config = config

    def expect_program(self, program: GearProgram, fixed: gear.GearFixed, label: str) -> None:
        want = fixed.reconstruct_int()
        for b, h in program.tiles:
            for t in range(program.shape[2]):
                self.expect(want[b, h, t].tolist(), f"{label}: batch {b}, head {h}, token {t}")


class GearUnitTB(ClockedBench):
    """Sources on ``i`` (rows) and ``factors`` (rank > 0), sink on ``o`` with its
    scoreboard, ``bits`` driven per program."""

    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, GearUnitConfig)
        cfg = self.config
        self.fmt = cfg.fixed_format
        self.rows = self.make_source("i", row_layout(cfg), k=1, idle=idle)
        self.factors = (self.make_source("factors", factor_layout(cfg), k=2, idle=idle)
                        if cfg.rank else None)
        self.sink = self.make_sink("o", out_layout(cfg), k=3, backpressure=backpressure)
        self.scoreboard = GearScoreboard(cfg).attach(self.sink)

    def drive(self, program: GearProgram) -> None:
        self.dut.bits.value = program.bits
        if self.factors is not None:
            self.factors.extend(program.packed_factors())
        self.rows.extend(program.packed_rows())

    async def check(self, fixed: gear.GearFixed, bits: int, label: str) -> None:
        program = lower(self.config, fixed, bits, filler=self.rng)
        self.scoreboard.expect_program(program, fixed, label)
        self.drive(program)
        await self.scoreboard.drain(20 * (len(program.rows) + 50), what=f"{label} rows")

    def random_tile(self, tokens, bits, extreme=False, heads=1, max_outliers=None):
        cfg = self.config
        if max_outliers is None:
            max_outliers = 3 * cfg.outlier_slots + 2 if cfg.outlier_slots else 0
        fixed = gear.random_fixed(self.rng, (1, heads, tokens, cfg.head_dim), cfg.rank, self.fmt,
                                  bits, max_outliers=max_outliers, extreme=extreme)
        return share_groups(fixed, cfg.group_size)

    def compressed_tile(self, x, bits, group_size, outlier_ratio, rank, axis):
        cfg = self.config
        comp = gear.compress(x, bits, group_size, outlier_ratio, rank, axis=axis)
        return gear.to_fixed(comp, self.fmt, out_group=cfg.group_size)


def share_groups(fixed: gear.GearFixed, group_size: int) -> gear.GearFixed:
    """``fixed`` with S and Z equal across each group of ``group_size`` lanes (what a unit
    with that group size can run)."""
    if group_size == 1:
        return fixed
    g = group_size
    return gear.GearFixed(fixed.source, fixed.fmt, fixed.out_scale, fixed.codes,
                          np.repeat(fixed.scale[..., ::g], g, axis=-1),
                          np.repeat(fixed.zero[..., ::g], g, axis=-1),
                          fixed.a, fixed.b, fixed.outlier_pos, fixed.outlier_val)


def synthetic_kv(rng, tokens, head_dim, heads=1):
    """Keys with a few large-magnitude, offset channels and plain values."""
    k = rng.standard_normal((1, heads, tokens, head_dim))
    big = rng.choice(head_dim, size=max(1, head_dim // 8), replace=False)
    k[..., big] = k[..., big] * 8 + 3
    v = rng.standard_normal((1, heads, tokens, head_dim)) * 0.5
    return k, v


@cocotb.test()
async def random_tiles_with_stalls(dut):
    """Random integer tiles at 2 and 4 bits (typical and full-range fields, crowded
    outlier rows), back to back, with idle inputs and back-pressure."""
    tb = GearUnitTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    bit_choices = [b for b in (2, 4) if b <= tb.config.max_bits]
    for n, (tokens, extreme) in enumerate([(1, False), (5, False), (7, True), (3, True), (9, False)]):
        bits = bit_choices[n % len(bit_choices)]
        fixed = tb.random_tile(tokens, bits, extreme=extreme, heads=2)
        await tb.check(fixed, bits, f"random tile {n} ({tokens} tokens, {bits} bits, extreme={extreme})")


@cocotb.test()
async def compressed_tiles(dut):
    """Real GEAR/KIVI compression of synthetic K (outlier channels) and V, in the unit's
    fixed-point formats, with back-pressure."""
    tb = GearUnitTB(dut, idle=0.2, backpressure=0.3)
    await tb.reset()
    cfg = tb.config
    d = cfg.head_dim
    k, v = synthetic_kv(tb.rng, 16, d)
    rank = min(cfg.rank, 2)
    ratio = 0.05 if cfg.outlier_slots else 0.0
    for bits in [b for b in (4, 2) if b <= cfg.max_bits]:
        if cfg.group_size == 1:
            await tb.check(tb.compressed_tile(k, bits, 8, ratio, rank, "channel"), bits,
                           f"K GEAR {bits}-bit")
            await tb.check(tb.compressed_tile(k, bits, 8, 0.0, 0, "channel"), bits,
                           f"K KIVI {bits}-bit")
        await tb.check(tb.compressed_tile(v, bits, d, ratio, rank, "token"), bits,
                       f"V GEAR {bits}-bit")


@cocotb.test()
async def full_rate_cycles(dut):
    """Without stalls the unit takes one row beat per cycle, across tile boundaries:
    measured cycles equal ``golden.gear.cycles`` exactly, and the rows are right."""
    tb = GearUnitTB(dut)
    await tb.reset()
    cfg = tb.config
    fixed = tb.random_tile(12, 4, heads=3)
    start_in, start_out = len(tb.rows.transfer_edges), len(tb.sink.transfer_edges)
    await tb.check(fixed, 4, "full rate")
    first = tb.rows.transfer_edges[start_in]
    last = tb.sink.transfer_edges[-1]
    measured = last - first + 1
    want = gear.cycles(cfg, fixed.outliers_per_row().ravel())
    dut._log.info("full rate: %d cycles measured, %d predicted", measured, want)
    assert len(tb.sink.transfer_edges) - start_out == 3 * 12
    assert measured == want, f"measured {measured} cycles, golden.gear.cycles predicts {want}"


if in_simulation() and current().param(TILES_PARAM, None):
    @cocotb.test()
    async def file_tiles(dut):
        """Tiles stored in the job's tiles file (real MiniLM K/V under pytest)."""
        tb = GearUnitTB(dut, idle=0.1, backpressure=0.2)
        await tb.reset()
        path = tb.job.param(TILES_PARAM)
        tiles = load_tiles(path, tb.fmt)
        assert tiles, f"no tiles in {path}"
        for label, bits, fixed in tiles:
            await tb.check(fixed, bits, label)
        dut._log.info("checked %d stored tiles", len(tiles))
