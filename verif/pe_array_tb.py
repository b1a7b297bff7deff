"""cocotb bench of the dot-product arrays (``lp-array``, ``int8-array``, ``fp8-array``)
against ``golden.pe_array``; the config's ``block`` field picks the array.

Bit-exact, every output of every row:

* ``code_pairs``: every (weight, activation) code pair for codes of n <= 6 bits (all
  of them, each product alone: a weight tile is loaded, then each column is driven
  with every code while the other columns hold zero), with a random ``sf`` per beat for
  LP; for 8-bit codes the special codes against all codes and 2,048 random pairs.
* ``random_dot_products_with_stalls``: several weight tiles (loads between dot
  products), dot products of 1..9 beats, random idle cycles on both inputs and
  back-pressure on the output.
* ``full_rate_cycles``: back to back, one beat per cycle: the measured cycles equal
  ``golden.pe_array.array_cycles``.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from golden import lp
from golden.pe_array import array_cycles, array_outputs
from spec.pe_array import (FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig, array_beat_layout,
                           array_load_layout, array_out_layout)

from .bench import ClockedBench
from .job import current

CONFIGS = {"lp-array": LPArrayConfig, "int8-array": Int8ArrayConfig, "fp8-array": FP8ArrayConfig}
#: Largest code width whose code pairs are checked exhaustively.
EXHAUSTIVE_BITS = 6


class ArrayBench(ClockedBench):
    def __init__(self, dut, idle=0.0, backpressure=0.0):
        super().__init__(dut, CONFIGS[current().block])
        cfg = self.config
        self.is_lp = isinstance(cfg, LPArrayConfig)
        self.beat, self.load, self.out = (array_beat_layout(cfg), array_load_layout(cfg),
                                          array_out_layout(cfg))
        self.source = self.make_source("i", k=1, idle=idle, sideband=dut.sf if self.is_lp else None)
        self.loader = self.make_source("wl", k=3, idle=idle)
        self.sink = self.make_sink("o", k=2, backpressure=backpressure)
        if self.is_lp:
            dut.sf.value = 0

    def random_sf(self, size):
        """LP: scales that keep products mostly inside the window, plus the range's ends."""
        if not self.is_lp:
            return np.zeros(size, np.int64)
        pe = self.config.pe()
        reach = 2 * pe.rs * (1 << pe.es) + pe.acc_frac
        lo, hi = max(pe.sf_range.start, -reach), min(pe.sf_range.stop - 1, reach)
        sf = self.rng.integers(lo, hi + 1, size)
        ends = self.rng.random(size) < 0.05
        sf[ends] = self.rng.choice([pe.sf_range.start, pe.sf_range.stop - 1], ends.sum())
        return sf

    async def load_weights(self, weights):
        """Load ``weights[rows, cols]``, one row per transfer, and wait until all are in."""
        words = [self.load.const({"row": r, "w": [int(v) for v in weights[r]]}).as_bits()
                 for r in range(self.config.rows)]
        start = len(self.loader.transfer_edges)
        self.loader.extend(words)
        for _ in range(50 * len(words) + 100):
            if len(self.loader.transfer_edges) >= start + len(words):
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError("timeout loading weights")

    async def run(self, weights, acts, sf=None, last=None, label=""):
        """Load ``weights``, stream ``acts[beats, cols]`` and check every output."""
        cfg = self.config
        acts = np.asarray(acts, np.int64)
        beats = len(acts)
        sf = np.zeros(beats, np.int64) if sf is None else np.broadcast_to(np.asarray(sf, np.int64), (beats,))
        last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
        want_acc, want_nar = array_outputs(cfg, weights, acts, sf, last)
        await self.load_weights(weights)
        a_off, l_off = self.beat["a"].offset, self.beat["last"].offset
        words = [0] * beats
        for c in range(cfg.cols):
            for b, v in enumerate(acts[:, c].tolist()):
                words[b] |= v << (a_off + c * cfg.width)
        for b in np.flatnonzero(last).tolist():
            words[b] |= 1 << l_off
        ref = self.beat.const({"a": acts[0].tolist(), "last": int(last[0])}).as_bits()
        assert words[0] == ref, "beat packing disagrees with the layout"
        self.source.extend(list(zip(words, sf.tolist())) if self.is_lp else words)
        got = await self.sink.collect(len(want_acc), timeout_cycles=20 * (beats + 50), what=f"{label} outputs")
        for k, tx in enumerate(got):
            view = self.out.from_bits(tx.bits)
            g_acc = [int(view.acc[r]) for r in range(cfg.rows)]
            g_nar = [bool(view.nar[r]) for r in range(cfg.rows)]
            assert g_acc == want_acc[k].tolist() and g_nar == want_nar[k].tolist(), (
                f"{label}: output {k} of {len(want_acc)} differs: got acc={g_acc} nar={g_nar}, "
                f"want acc={want_acc[k].tolist()} nar={want_nar[k].tolist()}")
        self.dut._log.info("%s: %d outputs x %d rows (%d beats) match", label, len(got), cfg.rows, beats)


def _specials(cfg):
    if isinstance(cfg, LPArrayConfig):
        fmt = lp.LPFormat(cfg.n, cfg.es, cfg.rs)
        neg = lambda c: (1 << cfg.n) - c  # noqa: E731
        one = int(fmt.encode(1.0))
        return [0, fmt.nar_code, 1, neg(1), fmt.maxpos_code, neg(fmt.maxpos_code), one, neg(one)]
    if isinstance(cfg, FP8ArrayConfig):
        return [0, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x01, 0x81, 0x07, 0x08, 0x38, 0xB8]
    return [0, 1, 0xFF, 0x7F, 0x80, 0x81, 0x40]


async def _pairs(tb, wcodes, acodes, label):
    """Each weight code against each activation code, every product alone: tiles of
    ``rows * cols`` weights; column c driven with the codes while the others hold 0."""
    cfg = tb.config
    tile = cfg.rows * cfg.cols
    wcodes = np.asarray(wcodes, np.int64)
    pad = (-len(wcodes)) % tile
    wcodes = np.concatenate([wcodes, np.zeros(pad, np.int64)])
    acodes = np.asarray(acodes, np.int64)
    for t in range(0, len(wcodes), tile):
        weights = wcodes[t:t + tile].reshape(cfg.rows, cfg.cols)
        acts = np.zeros((cfg.cols * len(acodes), cfg.cols), np.int64)
        for c in range(cfg.cols):
            acts[c * len(acodes):(c + 1) * len(acodes), c] = acodes
        await tb.run(weights, acts, tb.random_sf(len(acts)), label=f"{label}, tile {t // tile}")


@cocotb.test()
async def code_pairs(dut):
    """Every code pair for codes of <= 6 bits; specials x all and random pairs for 8 bits."""
    tb = ArrayBench(dut)
    cfg = tb.config
    await tb.reset()
    codes = np.arange(1 << cfg.width)
    if cfg.width <= EXHAUSTIVE_BITS:
        await _pairs(tb, codes, codes, "all pairs")
    else:
        specials = np.array(_specials(cfg))
        await _pairs(tb, specials, codes, "specials x all")
        await _pairs(tb, codes, specials, "all x specials")
        await _pairs(tb, tb.rng.integers(0, 1 << cfg.width, 64), tb.rng.integers(0, 1 << cfg.width, 32),
                     "random pairs")


@cocotb.test()
async def random_dot_products_with_stalls(dut):
    """Three weight tiles; dot products of 1..9 beats; stalls on every stream."""
    tb = ArrayBench(dut, idle=0.3, backpressure=0.3)
    cfg = tb.config
    await tb.reset()
    for tile in range(3):
        weights = tb.rng.integers(0, 1 << cfg.width, (cfg.rows, cfg.cols))
        lengths = tb.rng.integers(1, 10, 20)
        beats = int(lengths.sum())
        acts = tb.rng.integers(0, 1 << cfg.width, (beats, cfg.cols))
        last = np.zeros(beats, bool)
        last[np.cumsum(lengths) - 1] = True
        await tb.run(weights, acts, tb.random_sf(beats), last, label=f"random dots, tile {tile}")


@cocotb.test()
async def full_rate_cycles(dut):
    """Back to back: measured cycles equal golden.pe_array.array_cycles."""
    tb = ArrayBench(dut)
    cfg = tb.config
    await tb.reset()
    beats, dots = 40, 8
    weights = tb.rng.integers(0, 1 << cfg.width, (cfg.rows, cfg.cols))
    acts = tb.rng.integers(0, 1 << cfg.width, (beats, cfg.cols))
    last = (np.arange(beats) % (beats // dots)) == beats // dots - 1
    first = len(tb.source.transfer_edges)
    await tb.run(weights, acts, 0, last, label="full rate")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[first] + 1
    want = array_cycles(cfg, beats, dots)
    dut._log.info("full rate: %d cycles measured, %d predicted", measured, want)
    assert measured == want, f"measured {measured} cycles, golden.pe_array.array_cycles predicts {want}"
