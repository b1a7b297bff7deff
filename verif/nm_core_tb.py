"""cocotb bench of the N:M tensor core's emitted Verilog against ``golden.nm.matmul``.

Three parts, each usable on its own (a larger design's bench attaches the scoreboard to
the core's internal streams, see docs/verification.md):

* stimulus: :class:`NMCoreStimulus` draws operands; the compiler (``compiler.nm_stream``)
  lowers them into the core's input stream;
* driving: :class:`NMCoreTB` binds a source and a sink to the DUT's ``i``/``o`` streams;
* checking: :class:`NMCoreScoreboard` turns the golden model's product into the expected
  output transactions and compares every one exactly.

Run it through :func:`verif.runner.run_bench` (or ``tessera verify nm-core``), which
passes the core's config in the job description.
"""

import cocotb
import numpy as np

from compiler.nm_stream import NMProgram, lower_matmul, lower_series_parts
from golden import nm, tasd
from spec.nm_core import NMCoreConfig, beat_layout, out_index, out_layout
from spec.numerics import int_range, wrap

from .bench import ClockedBench
from .scoreboard import Scoreboard

__all__ = ["NMCoreStimulus", "NMCoreScoreboard", "NMCoreTB"]


class NMCoreStimulus:
    """Random operands for a core (no DUT involved): int8 weights pruned to n:m and
    compressed, activations, optionally drawn from the extremes only."""

    def __init__(self, config: NMCoreConfig, rng: np.random.Generator):
        self.config, self.rng = config, rng
        self.lo, self.hi = int_range(config.width)

    def weights(self, out_rows: int, k: int, n: int, extreme: bool = False):
        """``(values, indices)`` of a random ``W[out_rows, k]`` pruned to ``n:m``."""
        if extreme:
            w = self.rng.choice([self.lo, self.hi, 0, 1, -1], size=(out_rows, k))
        else:
            w = self.rng.integers(self.lo, self.hi + 1, (out_rows, k))
        return nm.compress(nm.prune(w, n, self.config.m), n, self.config.m)

    def acts(self, k: int, cols: int, extreme: bool = False) -> np.ndarray:
        if extreme:
            return self.rng.choice([self.lo, self.hi, 0], size=(k, cols))
        return self.rng.integers(self.lo, self.hi + 1, (k, cols))


class NMCoreScoreboard(Scoreboard):
    """The core's output stream against the golden product, transaction by transaction.

    Each ``expect_*`` call queues one output transaction per (row block, column) of a
    lowered program (:class:`compiler.nm_stream.NMProgram`), in the program's order,
    with the note ``"<label>: row block b, column c"``.
    """

    def __init__(self, config: NMCoreConfig, name: str = ""):
        super().__init__(name, out_layout(config))
        self.config = config

    def expect_result(self, program: NMProgram, y, label: str) -> None:
        """Expect ``y[out_rows, cols]`` (rows of the last block past ``out_rows`` are 0,
        as the compiler pads them with zero weights)."""
        cfg = self.config
        rows = cfg.rows * program.pack                 # logical rows per block
        # Where each logical row's result sits in the output (spec.nm_core.out_index); the
        # entries no logical row uses (a packing core in a mode with fewer rows) are 0.
        where = [out_index(cfg, program.n_active, r) if cfg.sparse else r for r in range(rows)]
        entries = out_layout(cfg).length
        y = np.asarray(y, dtype=np.int64).reshape(program.out_rows, program.cols)
        padded = np.zeros((-(-program.out_rows // rows) * rows, program.cols), dtype=np.int64)
        padded[:program.out_rows] = y
        for block, col in program.outputs:
            value = [0] * entries
            for r, k in enumerate(where):
                value[k] = int(padded[block * rows + r, col])
            self.expect(value, f"{label}: row block {block}, column {col}")

    def expect_matmul(self, program: NMProgram, values, indices, x, n: int, label: str) -> np.ndarray:
        """Expect ``golden.nm.matmul`` of compressed ``W`` (``n:m``) and ``x``; returns it."""
        cfg = self.config
        y = nm.matmul(values, indices, x, n, cfg.m, width=cfg.width, acc_width=cfg.acc_width)
        self.expect_result(program, y, label)
        return np.asarray(y)

    def expect_series(self, program: NMProgram, terms, x, label: str) -> np.ndarray:
        """Expect the sum of every TASD term's golden product, wrapped to the accumulator."""
        cfg = self.config
        total = sum(nm.matmul(t.values, t.indices, x, t.n, t.m, acc_width=cfg.acc_width).astype(np.int64)
                    for t in terms)
        y = wrap(total, cfg.acc_width)
        self.expect_result(program, y, label)
        return y


class NMCoreTB(ClockedBench):
    """Source on ``i``, sink on ``o`` (its scoreboard attached), ``n_active`` driven."""

    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, NMCoreConfig)
        cfg = self.config
        self.stimulus = NMCoreStimulus(cfg, self.rng)
        self.source = self.make_source("i", beat_layout(cfg), k=1, idle=idle)
        self.sink = self.make_sink("o", out_layout(cfg), k=2, backpressure=backpressure)
        self.scoreboard = NMCoreScoreboard(cfg).attach(self.sink)

    def drive(self, program: NMProgram) -> None:
        """Queue ``program``'s beats (and set ``n_active`` on a sparse core)."""
        if self.config.sparse:
            self.dut.n_active.value = program.n_active
        self.source.extend(program.packed_beats())

    async def finish(self, program: NMProgram, label: str, check: bool = True) -> None:
        """Wait until every expected output of ``program`` came (and compared)."""
        await self.scoreboard.drain(20 * (len(program.beats) + 50), what=f"{label} outputs", check=check)

    async def check(self, values, indices, x, n: int, label: str) -> np.ndarray:
        """Lower ``W @ x`` (random filler in unused slots), expect the golden product,
        drive it, and wait for every output; returns the golden product."""
        program = lower_matmul(self.config, values, indices, x, n=n, filler=self.rng)
        want = self.scoreboard.expect_matmul(program, values, indices, x, n, label)
        self.drive(program)
        await self.finish(program, label)
        return want


@cocotb.test()
async def random_matrices_with_stalls(dut):
    """Random n:m products of several shapes, with random idle input and back-pressure."""
    tb = NMCoreTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    cfg, gen = tb.config, tb.stimulus
    shapes = [(cfg.rows, 1, 1), (2 * cfg.rows + 1, 3, 2), (cfg.rows, 16, 3), (1, 5, 4),
              (cfg.rows + 1, 1, 6)]
    shapes += [(int(tb.rng.integers(1, 3 * cfg.rows + 1)), int(tb.rng.integers(1, 9)),
                int(tb.rng.integers(1, 5))) for _ in range(6)]
    for out_rows, groups, cols in shapes:
        values, indices = gen.weights(out_rows, groups * cfg.m, cfg.n)
        x = gen.acts(groups * cfg.m, cols)
        await tb.check(values, indices, x, cfg.n, f"{out_rows}x{groups * cfg.m}x{cols}")


@cocotb.test()
async def edge_values(dut):
    """-128/127 extremes, all-zero groups and matrices, K = m, and a long accumulation."""
    tb = NMCoreTB(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    cfg, gen = tb.config, tb.stimulus
    lo, hi = gen.lo, gen.hi
    rows = cfg.rows
    # Extremes everywhere, random sparsity pattern.
    values, indices = gen.weights(2 * rows, 8 * cfg.m, cfg.n, extreme=True)
    await tb.check(values, indices, gen.acts(8 * cfg.m, 3, extreme=True), cfg.n, "extremes")
    # The largest products: -128 * -128 in every slot for a long dot product (K = 64 m).
    k = 64 * cfg.m
    w = np.full((rows, k), lo)
    values, indices = nm.compress(nm.prune(w, cfg.n, cfg.m), cfg.n, cfg.m)
    await tb.check(values, indices, np.full((k, 1), lo), cfg.n, "max positive sum")
    await tb.check(values, indices, np.full((k, 1), hi), cfg.n, "max negative sum")
    # All-zero groups between non-zero ones, and an all-zero matrix.
    w = tb.rng.integers(lo, hi + 1, (rows, 4 * cfg.m))
    w[:, cfg.m:3 * cfg.m] = 0
    values, indices = nm.compress(nm.prune(w, cfg.n, cfg.m), cfg.n, cfg.m)
    await tb.check(values, indices, gen.acts(4 * cfg.m, 2), cfg.n, "zero groups")
    values, indices = nm.compress(np.zeros((rows, cfg.m), dtype=int), cfg.n, cfg.m)
    await tb.check(values, indices, gen.acts(cfg.m, 2), cfg.n, "all zero")


@cocotb.test()
async def runtime_sparsity_modes(dut):
    """Every N' <= N on the same core, with random garbage in the disabled slots."""
    tb = NMCoreTB(dut, idle=0.2, backpressure=0.2)
    await tb.reset()
    cfg, gen = tb.config, tb.stimulus
    for n in range(1, cfg.n + 1):
        values, indices = gen.weights(cfg.rows + 1, 6 * cfg.m, n)
        await tb.check(values, indices, gen.acts(6 * cfg.m, 2), n, f"N'={n}")
    if cfg.sparse:
        # n_active = 0 disables every slot: the results must be zero.
        values, indices = gen.weights(cfg.rows, 2 * cfg.m, cfg.n)
        program = lower_matmul(cfg, values, indices, gen.acts(2 * cfg.m, 1))
        program = NMProgram(cfg, program.beats, program.outputs, program.out_rows, program.cols, 0)
        tb.scoreboard.expect_result(program, np.zeros((program.out_rows, program.cols)), "n_active=0")
        tb.drive(program)
        await tb.finish(program, "n_active=0")


async def _measure(tb, n, out_rows, k, cols, label):
    """One back-to-back product at N' = n: results checked, cycles equal ``golden.nm.cycles``."""
    cfg = tb.config
    values, indices = tb.stimulus.weights(out_rows, k, n)
    start_in, start_out = len(tb.source.transfer_edges), len(tb.sink.transfer_edges)
    await tb.check(values, indices, tb.stimulus.acts(k, cols), n, label)
    first = tb.source.transfer_edges[start_in]
    last = tb.sink.transfer_edges[-1]
    # Both drivers count edges from the same first edge after they started.
    measured = last - first + 1
    n_active = n if cfg.sparse else None
    want = nm.cycles(cfg, out_rows, k, cols, n_active=n_active)
    tb.dut._log.info("%s: %d cycles measured, %d predicted", label, measured, want)
    pack = cfg.pack_factor(n) if cfg.sparse else 1
    assert len(tb.sink.transfer_edges) - start_out == -(-out_rows // (cfg.rows * pack)) * cols
    assert measured == want, f"{label}: measured {measured} cycles, golden.nm.cycles predicts {want}"


@cocotb.test()
async def full_rate_cycles(dut):
    """Back to back, the core takes one M-group per cycle: measured cycles equal
    ``golden.nm.cycles`` exactly, and the results are right."""
    tb = NMCoreTB(dut)
    await tb.reset()
    cfg = tb.config
    await _measure(tb, cfg.n, 2 * cfg.rows, 16 * cfg.m, 4, "full rate")


@cocotb.test()
async def rate_at_every_n_active(dut):
    """Back to back at every N' <= N: measured cycles equal ``golden.nm.cycles(...,
    n_active=N')``; on a packing core a packed mode (N' dividing N) covers N/N' times
    the rows per beat, on any other core or mode the rate is the full-N one."""
    tb = NMCoreTB(dut)
    await tb.reset()
    cfg = tb.config
    for n in range(1, cfg.n + 1):
        pack = cfg.pack_factor(n) if cfg.sparse else 1
        # Two whole packed blocks plus a partial one, so the padding rows are exercised.
        await _measure(tb, n, 2 * cfg.rows * pack + 1, 8 * cfg.m, 3, f"N'={n} (x{pack} rows)")


#: TASD series tried on every core; those the core cannot run are left out.
SERIES = ["1:2", "1:4", "2:4", "2:4+1:4", "2:4+2:4", "1:8", "2:8", "4:8", "2:8+2:8", "2:4+2:8"]


@cocotb.test()
async def tasd_series(dut):
    """A random dense int8 layer decomposed with every series the core runs, each streamed
    as one product; results equal the golden integer product of the same terms."""
    tb = NMCoreTB(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    cfg = tb.config
    runnable = [s for s in SERIES
                if all(tasd.term_fits_core(n, m, cfg) for n, m in tasd.parse_series(s))]
    assert runnable, f"no series runs on a {cfg.n}:{cfg.m} core"
    k = 4 * cfg.m * max(1, 8 // cfg.m)
    w = tb.rng.integers(-128, 128, (cfg.rows + 1, k))
    x = tb.stimulus.acts(k, 2)
    for series in runnable:
        terms = tasd.decompose(w, series)
        parts = lower_series_parts(cfg, terms, x, filler=tb.rng)
        groups = tasd.pass_groups(series, cfg)
        assert len(parts) == len(groups)
        # Each part is one product (one pass group's terms at its n_active); the parts'
        # results add up to the series' product.
        for k, (part, (_, passes)) in enumerate(zip(parts, groups)):
            members = [terms[i] for members in passes for i in members]
            tb.scoreboard.expect_series(part, members, x, f"series {series} part {k}")
            tb.drive(part)
            await tb.finish(part, f"series {series} part {k}")
        total = sum(nm.matmul(t.values, t.indices, x, t.n, t.m, acc_width=cfg.acc_width).astype(np.int64)
                    for t in terms)
        want = wrap(total, cfg.acc_width)
        if cfg.acc_width >= 32:   # no wrap-around here: also equal to (sum of terms) @ x
            approx = tasd.reconstruct(terms).astype(np.int64) @ x
            assert np.array_equal(want, approx), f"series {series}: sum of terms differs from A~ @ x"
