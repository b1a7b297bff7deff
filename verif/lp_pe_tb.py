"""cocotb bench of the LP PE's emitted Verilog against ``golden.lp.fixed_products``.

Bit-exact, every output: all code pairs (each product alone in its lane) for
``n <= 6``, with a random ``sf`` per beat (0 for a fifth of them, the ends of the sf
range for some); for larger ``n``, every code against the special ones (zero, NaR,
±minpos, ±maxpos, ±1) at ``sf = 0`` and 2,048 random pairs at random ``sf``. Then random multi-beat dot products with random idle cycles and back-pressure,
the extremes (accumulator wrap-around, NaR propagation, the sf range's ends), and a
full-rate run whose measured cycles must equal ``golden.mac.pe_cycles``. Run it
through :func:`verif.runner.run_bench` (or ``tessera verify lp-pe``).
"""

import cocotb
import numpy as np

from golden import lp
from golden.mac import pe_cycles
from spec.lp_pe import LPPEConfig

from .job import current
from .pe_bench import PEBench

#: Largest n whose code pairs are checked exhaustively.
EXHAUSTIVE_N = 6


def make_golden(cfg: LPPEConfig):
    fmt = lp.LPFormat(cfg.n, cfg.es, cfg.rs)

    def golden(w, a, sf):
        prods = np.zeros(w.shape, np.int64)
        nar = np.zeros(w.shape, bool)
        for s in np.unique(sf):
            rows = sf == s
            s = int(s)
            # sf = sf_w + sf_a; each half stays within golden.lp.MAX_SF.
            p, f = lp.fixed_products(fmt.with_sf(s // 2), w[rows], fmt.with_sf(s - s // 2), a[rows],
                                     table_bits=cfg.table_bits, acc_width=cfg.acc_width,
                                     acc_frac=cfg.acc_frac, prod_width=cfg.product_width)
            prods[rows], nar[rows] = p, f
        return prods, nar

    return fmt, golden


def bench(dut, idle=0.0, backpressure=0.0):
    cfg = current().block_config(LPPEConfig)
    fmt, golden = make_golden(cfg)
    return cfg, fmt, PEBench(dut, cfg, golden, idle=idle, backpressure=backpressure, has_sf=True)


def special_codes(fmt):
    neg = lambda c: (1 << fmt.n) - c  # noqa: E731
    one = int(fmt.encode(1.0))
    return [0, fmt.nar_code, 1, neg(1), fmt.maxpos_code, neg(fmt.maxpos_code), one, neg(one)]


def random_sf(cfg, rng, size):
    """Scales that keep products inside the accumulator's window, plus the range's ends."""
    reach = 2 * cfg.rs * (1 << cfg.es) + cfg.acc_width
    lo, hi = max(cfg.sf_range.start, -reach), min(cfg.sf_range.stop - 1, reach)
    sf = rng.integers(lo, hi + 1, size)
    ends = rng.random(size) < 0.05
    sf[ends] = rng.choice([cfg.sf_range.start, cfg.sf_range.stop - 1], ends.sum())
    return sf


@cocotb.test()
async def all_code_pairs(dut):
    """Every (w, a) code pair for n <= 6, each product alone; random pairs for larger n."""
    cfg, fmt, tb = bench(dut)
    await tb.reset()
    codes = np.arange(1 << cfg.n)
    if cfg.n <= EXHAUSTIVE_N:
        w, a = (x.ravel() for x in np.meshgrid(codes, codes, indexing="ij"))
        sf = random_sf(cfg, tb.rng, len(w))
        sf[tb.rng.random(len(w)) < 0.2] = 0
        await tb.isolated_pairs(w, a, sf, label="all pairs, random sf (20% sf=0)")
    else:
        specials = np.array(special_codes(fmt))
        w, a = (x.ravel() for x in np.meshgrid(specials, codes, indexing="ij"))
        await tb.isolated_pairs(np.concatenate([w, a]), np.concatenate([a, w]), 0,
                                label="specials x all codes")
        w, a = tb.rng.integers(0, 1 << cfg.n, (2, 2048))
        await tb.isolated_pairs(w, a, random_sf(cfg, tb.rng, len(w)), label="2048 random pairs")


@cocotb.test()
async def random_dot_products_with_stalls(dut):
    """Dot products of 1..9 beats, all lanes busy, sf changing per beat, stalls both ways."""
    cfg, fmt, tb = bench(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    lengths = tb.rng.integers(1, 10, 60)
    beats = int(lengths.sum())
    w = tb.rng.integers(0, 1 << cfg.n, (beats, cfg.lanes))
    a = tb.rng.integers(0, 1 << cfg.n, (beats, cfg.lanes))
    # NaR is rare in random codes for n = 8: put a few in.
    w[tb.rng.random(w.shape) < 0.01] = fmt.nar_code
    last = np.zeros(beats, bool)
    last[np.cumsum(lengths) - 1] = True
    await tb.run(w, a, random_sf(cfg, tb.rng, beats), last, label="random dot products")


@cocotb.test()
async def extremes_and_wraparound(dut):
    """maxpos x maxpos for 64 beats at the smallest sf (the accumulator wraps), minpos
    products at the largest sf (shifted out), NaR in one lane, alternating signs."""
    cfg, fmt, tb = bench(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    neg = (1 << cfg.n) - fmt.maxpos_code
    big = np.full((64, cfg.lanes), fmt.maxpos_code)
    last = np.zeros(64, bool)
    last[-1] = True
    for sf in (cfg.sf_range.start, 0, -cfg.acc_frac, cfg.sf_range.stop - 1):
        await tb.run(big, big, sf, last, label=f"maxpos^2 x {64 * cfg.lanes}, sf={sf}")
        await tb.run(big, np.where(np.arange(cfg.lanes) % 2, neg, big), sf, last,
                     label=f"alternating signs, sf={sf}")
        small = np.full((8, cfg.lanes), 1)
        await tb.run(small, small, sf, label=f"minpos^2, sf={sf}")
    w = tb.rng.integers(0, 1 << cfg.n, (4, cfg.lanes))
    w[1, 0] = fmt.nar_code
    await tb.run(w, w, 0, [False, True, False, True], label="NaR in the first dot product only")


@cocotb.test()
async def full_rate_cycles(dut):
    """Back to back, one beat per cycle: measured cycles equal golden.mac.pe_cycles."""
    cfg, fmt, tb = bench(dut)
    await tb.reset()
    dots, k = 12, 5 * cfg.lanes
    beats = dots * 5
    w = tb.rng.integers(0, 1 << cfg.n, (beats, cfg.lanes))
    a = tb.rng.integers(0, 1 << cfg.n, (beats, cfg.lanes))
    last = (np.arange(beats) % 5) == 4
    first_in = len(tb.source.transfer_edges)
    await tb.run(w, a, 0, last, label="full rate")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[first_in] + 1
    want = pe_cycles(cfg, k, dots)
    dut._log.info("full rate: %d cycles measured, %d predicted", measured, want)
    assert measured == want, f"measured {measured} cycles, golden.mac.pe_cycles predicts {want}"
