"""Shared cocotb harness of the dot-product PEs (``lp-pe``, ``int8-pe``, ``fp8-pe``).

A :class:`PEBench` streams beats (``w[lanes]``, ``a[lanes]`` codes, ``last``) through
the DUT with the stream drivers of :mod:`verif.streams` (plus the LP PE's ``sf`` input,
driven together with each beat so it can change from beat to beat), and compares every
output with the golden products the caller supplies, exactly.

``golden(w, a, sf) -> (products, nar)`` takes int arrays ``w[beats, lanes]``,
``a[beats, lanes]``, ``sf[beats]`` and returns the per-lane products (already wrapped
to ``acc_width`` bits) and NaR flags; a dot product's expected output is the wrapped
sum of its beats' products and the OR of their flags.
"""

import numpy as np

from spec.pe import pe_beat_layout, pe_out_layout

from .bench import ClockedBench
from .streams import StreamSink, StreamSource

__all__ = ["PEBench"]


def _wrap(x, bits):
    u = np.asarray(x).astype(np.uint64)
    low = np.uint64((1 << bits) - 1)
    u = u & low
    return np.where(u >> np.uint64(bits - 1) == 1, u | ~low, u).astype(np.int64)


class PEBench(ClockedBench):
    """Drivers and the run-and-compare helper for one PE."""

    def __init__(self, dut, config, golden, *, idle=0.0, backpressure=0.0, has_sf=False):
        super().__init__(dut, config)
        self.golden = golden
        self.beat_layout = pe_beat_layout(config.lanes, config.width)
        self.out_layout = pe_out_layout(config.acc_width)
        self.source = StreamSource(dut, "i", dut.clk, self.driver_rng(1), idle,
                                   sideband=dut.sf if has_sf else None)
        self.sink = StreamSink(dut, "o", dut.clk, self.driver_rng(2), backpressure)
        if has_sf:
            dut.sf.value = 0

    def set_stalls(self, idle, backpressure):
        self.source.probability = idle
        self.sink.probability = backpressure

    def pack(self, w, a, last) -> list[int]:
        """Payload bits of each beat, at the field offsets of ``pe_beat_layout`` (the same
        bits ``layout.const(...).as_bits()`` gives, checked on the first beat, faster)."""
        layout = self.beat_layout
        width = self.config.width
        words = [0] * len(w)
        for field, values in (("w", w), ("a", a)):
            offset = layout[field].offset
            for lane in range(self.config.lanes):
                shift = offset + lane * width
                for b, v in enumerate(values[:, lane].tolist()):
                    words[b] |= v << shift
        for b in np.flatnonzero(last).tolist():
            words[b] |= 1 << layout["last"].offset
        if len(w):
            ref = layout.const({"w": w[0].tolist(), "a": a[0].tolist(), "last": int(last[0])}).as_bits()
            assert words[0] == ref, f"packing disagrees with the layout: {words[0]:#x} != {ref:#x}"
        return words

    def expected(self, w, a, sf, last):
        """Expected (acc, nar) of every dot product the beats form."""
        prods, nar = self.golden(w, a, sf)
        ends = np.flatnonzero(last) + 1
        starts = np.concatenate([[0], ends[:-1]])
        accs, nars = [], []
        for s, e in zip(starts, ends):
            total = prods[s:e].astype(np.uint64).sum(dtype=np.uint64)
            accs.append(int(_wrap(total, self.config.acc_width)))
            nars.append(bool(nar[s:e].any()))
        return accs, nars

    async def run(self, w, a, sf=None, last=None, label="", timeout_cycles=None):
        """Stream beats ``w[beats, lanes]``, ``a[beats, lanes]`` (with ``sf[beats]`` and
        ``last[beats]``, default: every beat ends a dot product) and check every output."""
        w, a = np.asarray(w, np.int64), np.asarray(a, np.int64)
        beats = len(w)
        sf = np.zeros(beats, np.int64) if sf is None else np.broadcast_to(np.asarray(sf, np.int64), (beats,))
        last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
        assert last[-1], "the last beat must end a dot product"
        want_acc, want_nar = self.expected(w, a, sf, last)
        words = self.pack(w, a, last)
        items = list(zip(words, (int(v) for v in sf))) if self.source.sideband is not None else words
        start = len(self.sink.received)
        self.source.send(items)
        words = await self.collect(self.sink, start, len(want_acc), timeout_cycles or 20 * (beats + 50),
                                   f"{label} outputs")
        got = [self.out_layout.from_bits(bits) for bits in words]
        got_acc = [int(g.acc) for g in got]
        got_nar = [bool(g.nar) for g in got]
        for k, (ga, gn, wa, wn) in enumerate(zip(got_acc, got_nar, want_acc, want_nar)):
            assert (ga, gn) == (wa, wn), (
                f"{label}: output {k} of {len(want_acc)} differs: got acc={ga} nar={gn}, "
                f"want acc={wa} nar={wn}")
        self.dut._log.info("%s: %d outputs (%d beats) match", label, len(want_acc), beats)
        return got_acc

    async def isolated_pairs(self, wc, ac, sf=None, label="pairs", zero=0):
        """Check each product alone: pair p sits in lane ``p % lanes`` of its own beat,
        the other lanes hold the zero code, and every beat ends a dot product."""
        lanes = self.config.lanes
        count = len(wc)
        w = np.full((count, lanes), zero, np.int64)
        a = np.full((count, lanes), zero, np.int64)
        idx = np.arange(count)
        w[idx, idx % lanes] = wc
        a[idx, idx % lanes] = ac
        return await self.run(w, a, sf, label=label)
