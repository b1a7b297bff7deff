"""cocotb bench of the N:M tensor core's emitted Verilog against ``golden.nm.matmul``.

Every test lowers integer matrices with the compiler (``compiler.nm_stream``), streams
them through the DUT with the stream drivers, and compares every output value exactly
with the golden model. Run it through :func:`verif.runner.run_bench` (or
``tessera verify nm-core``), which passes the core's config in ``TESSERA_CONFIG``.
"""

import cocotb
import numpy as np

from compiler.nm_stream import NMProgram, lower_matmul, lower_series_parts, unpack_output
from golden import nm, tasd
from spec.nm_core import NMCoreConfig

from .bench import ClockedBench
from .streams import StreamSink, StreamSource


class NMCoreTB(ClockedBench):
    """Stream drivers around the DUT, plus a run-and-check helper."""

    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, NMCoreConfig)
        self.source = StreamSource(dut, "i", dut.clk, self.driver_rng(1), idle)
        self.sink = StreamSink(dut, "o", dut.clk, self.driver_rng(2), backpressure)

    def set_n_active(self, n: int):
        if self.config.sparse:
            self.dut.n_active.value = n

    async def run(self, program: NMProgram, timeout_cycles: int | None = None) -> np.ndarray:
        """Stream ``program`` through the DUT and return the assembled result."""
        self.set_n_active(program.n_active)
        start = len(self.sink.received)
        self.source.send(program.packed_beats())
        words = await self.collect(self.sink, start, len(program.outputs),
                                   timeout_cycles or 20 * (len(program.beats) + 50), "outputs")
        return program.assemble([unpack_output(self.config, bits) for bits in words])

    def random_weights(self, out_rows, k, n, extreme=False):
        """Random int8 weights pruned to n:m and compressed (values, indices)."""
        cfg = self.config
        lo, hi = -(1 << (cfg.width - 1)), 1 << (cfg.width - 1)
        if extreme:
            w = self.rng.choice([lo, hi - 1, 0, 1, -1], size=(out_rows, k))
        else:
            w = self.rng.integers(lo, hi, (out_rows, k))
        return nm.compress(nm.prune(w, n, cfg.m), n, cfg.m)

    def random_acts(self, k, cols, extreme=False):
        cfg = self.config
        lo, hi = -(1 << (cfg.width - 1)), 1 << (cfg.width - 1)
        if extreme:
            return self.rng.choice([lo, hi - 1, 0], size=(k, cols))
        return self.rng.integers(lo, hi, (k, cols))

    async def check(self, values, indices, x, n, label):
        cfg = self.config
        program = lower_matmul(cfg, values, indices, x, n=n, filler=self.rng)
        got = await self.run(program)
        want = nm.matmul(values, indices, x, n, cfg.m, width=cfg.width, acc_width=cfg.acc_width)
        want = np.asarray(want).reshape(got.shape)
        bad = np.argwhere(got != want)
        assert bad.size == 0, (f"{label}: {len(bad)} of {got.size} outputs differ; first at "
                               f"{tuple(bad[0])}: got {got[tuple(bad[0])]}, want {want[tuple(bad[0])]}")
        return got


@cocotb.test()
async def random_matrices_with_stalls(dut):
    """Random n:m products of several shapes, with random idle input and back-pressure."""
    tb = NMCoreTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    cfg = tb.config
    shapes = [(cfg.rows, 1, 1), (2 * cfg.rows + 1, 3, 2), (cfg.rows, 16, 3), (1, 5, 4),
              (cfg.rows + 1, 1, 6)]
    shapes += [(int(tb.rng.integers(1, 3 * cfg.rows + 1)), int(tb.rng.integers(1, 9)),
                int(tb.rng.integers(1, 5))) for _ in range(6)]
    for out_rows, groups, cols in shapes:
        values, indices = tb.random_weights(out_rows, groups * cfg.m, cfg.n)
        x = tb.random_acts(groups * cfg.m, cols)
        await tb.check(values, indices, x, cfg.n, f"{out_rows}x{groups * cfg.m}x{cols}")


@cocotb.test()
async def edge_values(dut):
    """-128/127 extremes, all-zero groups and matrices, K = m, and a long accumulation."""
    tb = NMCoreTB(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    cfg = tb.config
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    rows = cfg.rows
    # Extremes everywhere, random sparsity pattern.
    values, indices = tb.random_weights(2 * rows, 8 * cfg.m, cfg.n, extreme=True)
    await tb.check(values, indices, tb.random_acts(8 * cfg.m, 3, extreme=True), cfg.n, "extremes")
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
    await tb.check(values, indices, tb.random_acts(4 * cfg.m, 2), cfg.n, "zero groups")
    values, indices = nm.compress(np.zeros((rows, cfg.m), dtype=int), cfg.n, cfg.m)
    await tb.check(values, indices, tb.random_acts(cfg.m, 2), cfg.n, "all zero")


@cocotb.test()
async def runtime_sparsity_modes(dut):
    """Every N' <= N on the same core, with random garbage in the disabled slots."""
    tb = NMCoreTB(dut, idle=0.2, backpressure=0.2)
    await tb.reset()
    cfg = tb.config
    for n in range(1, cfg.n + 1):
        values, indices = tb.random_weights(cfg.rows + 1, 6 * cfg.m, n)
        await tb.check(values, indices, tb.random_acts(6 * cfg.m, 2), n, f"N'={n}")
    if cfg.sparse:
        # n_active = 0 disables every slot: the results must be zero.
        values, indices = tb.random_weights(cfg.rows, 2 * cfg.m, cfg.n)
        program = lower_matmul(cfg, values, indices, tb.random_acts(2 * cfg.m, 1))
        program = NMProgram(cfg, program.beats, program.outputs, program.out_rows, program.cols, 0)
        got = await tb.run(program)
        assert not got.any(), f"n_active=0 gave non-zero results {got.ravel().tolist()}"


async def _measure(tb, n, out_rows, k, cols, label):
    """One back-to-back product at N' = n: results checked, cycles equal ``golden.nm.cycles``."""
    cfg = tb.config
    values, indices = tb.random_weights(out_rows, k, n)
    start_in, start_out = len(tb.source.transfer_edges), len(tb.sink.transfer_edges)
    await tb.check(values, indices, tb.random_acts(k, cols), n, label)
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
    x = tb.random_acts(k, 2)
    for series in runnable:
        terms = tasd.decompose(w, series)
        parts = lower_series_parts(cfg, terms, x, filler=tb.rng)
        assert len(parts) == len(tasd.pass_groups(series, cfg))
        got = sum([await tb.run(part) for part in parts])
        want = sum(nm.matmul(t.values, t.indices, x, t.n, t.m, acc_width=cfg.acc_width).astype(np.int64)
                   for t in terms)
        want = ((want + (1 << (cfg.acc_width - 1))) % (1 << cfg.acc_width)) - (1 << (cfg.acc_width - 1))
        assert np.array_equal(got, want), f"series {series}: got {got.tolist()}, want {want.tolist()}"
        if cfg.acc_width >= 32:   # no wrap-around here: also equal to (sum of terms) @ x
            approx = tasd.reconstruct(terms).astype(np.int64) @ x
            assert np.array_equal(got, approx), f"series {series}: sum of terms differs from A~ @ x"
