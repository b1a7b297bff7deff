"""cocotb bench of the baseline PEs (``int8-pe``, ``fp8-pe``) against ``golden.mac``.

Bit-exact, every output: every code against the special ones (zero, extremes, NaN,
subnormals, ±1) and 2,048 random pairs, each product alone in its lane; random
multi-beat dot products with idle cycles and back-pressure; long accumulations of the
largest products (wrap-around); and a full-rate run timed against
``golden.mac.pe_cycles``. The config's ``block`` field picks the PE.
"""

import cocotb
import numpy as np

from golden import mac
from golden.mac import pe_cycles
from spec.mac_pe import FP8PEConfig, Int8PEConfig

from .job import current
from .pe_bench import PEBench

CONFIGS = {"int8-pe": Int8PEConfig, "fp8-pe": FP8PEConfig}


def bench(dut, idle=0.0, backpressure=0.0):
    job = current()
    if job.block not in CONFIGS:
        raise AssertionError(f"mac_pe_tb runs {', '.join(CONFIGS)}, not {job.block!r}")
    block = job.block
    cfg = job.block_config(CONFIGS[block])
    if block == "int8-pe":
        def golden(w, a, sf):
            p = w.astype(np.int8).astype(np.int64) * a.astype(np.int8).astype(np.int64)
            return p, np.zeros(p.shape, bool)
        specials = [0, 1, 0xFF, 0x7F, 0x80, 0x81, 0x40]           # 0, 1, -1, 127, -128, -127, 64
    else:
        def golden(w, a, sf):
            return mac.fp8_products(w, a, acc_width=cfg.acc_width, acc_frac=cfg.acc_frac)
        specials = [0, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x01, 0x81, 0x07, 0x08, 0x38, 0xB8]
    return cfg, specials, PEBench(dut, cfg, golden, idle=idle, backpressure=backpressure)


@cocotb.test()
async def code_pairs(dut):
    """Specials x all 256 codes both ways, and 2,048 random pairs, each product alone."""
    cfg, specials, tb = bench(dut)
    await tb.reset()
    w, a = (x.ravel() for x in np.meshgrid(np.array(specials), np.arange(256), indexing="ij"))
    await tb.isolated_pairs(np.concatenate([w, a]), np.concatenate([a, w]), label="specials x all")
    w, a = tb.rng.integers(0, 256, (2, 2048))
    await tb.isolated_pairs(w, a, label="2048 random pairs")


@cocotb.test()
async def random_dot_products_with_stalls(dut):
    cfg, specials, tb = bench(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    lengths = tb.rng.integers(1, 10, 60)
    beats = int(lengths.sum())
    w = tb.rng.integers(0, 256, (beats, cfg.lanes))
    a = tb.rng.integers(0, 256, (beats, cfg.lanes))
    last = np.zeros(beats, bool)
    last[np.cumsum(lengths) - 1] = True
    await tb.run(w, a, None, last, label="random dot products")


@cocotb.test()
async def extremes_and_wraparound(dut):
    """The largest products for 256 beats (wraps a narrow accumulator), mixed signs."""
    cfg, specials, tb = bench(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    big, neg = (0x80, 0x7F) if cfg.block == "int8-pe" else (0x7E, 0xFE)
    last = np.zeros(256, bool)
    last[-1] = True
    w = np.full((256, cfg.lanes), big)
    await tb.run(w, w, None, last, label="largest products")
    await tb.run(w, np.where(np.arange(cfg.lanes) % 2, neg, w), None, last, label="mixed signs")


@cocotb.test()
async def full_rate_cycles(dut):
    cfg, specials, tb = bench(dut)
    await tb.reset()
    dots, k = 12, 5 * cfg.lanes
    beats = dots * 5
    w = tb.rng.integers(0, 256, (beats, cfg.lanes))
    a = tb.rng.integers(0, 256, (beats, cfg.lanes))
    first_in = len(tb.source.transfer_edges)
    await tb.run(w, a, None, (np.arange(beats) % 5) == 4, label="full rate")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[first_in] + 1
    want = pe_cycles(cfg, k, dots)
    assert measured == want, f"measured {measured} cycles, golden.mac.pe_cycles predicts {want}"
