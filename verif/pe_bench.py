"""Shared cocotb harness of the dot-product PEs (``lp-pe``, ``int8-pe``, ``fp8-pe``).

A :class:`PEBench` streams beats (``w[lanes]``, ``a[lanes]`` codes, ``last``) through
the DUT with the stream components of :mod:`verif.streams` (plus the LP PE's ``sf``
input, driven together with each beat so it can change from beat to beat), and a
:class:`PEScoreboard` compares every output with the golden products exactly.

``golden(w, a, sf) -> (products, nar)`` takes int arrays ``w[beats, lanes]``,
``a[beats, lanes]``, ``sf[beats]`` and returns the per-lane products (already wrapped
to ``acc_width`` bits) and NaR flags; a dot product's expected output is the wrapped
sum of its beats' products and the OR of their flags.
"""

import numpy as np

from spec.numerics import wrap
from spec.pe import pe_beat_layout, pe_out_layout

from .bench import ClockedBench
from .scoreboard import Scoreboard

__all__ = ["PEBench", "PEScoreboard"]


class PEScoreboard(Scoreboard):
    """A PE's output stream against the golden products: one transaction per dot product
    (``acc`` wrapped to ``acc_width``, ``nar``)."""

    def __init__(self, config, golden, name: str = ""):
        super().__init__(name, pe_out_layout(config.acc_width))
        self.config, self.golden = config, golden

    def golden_outputs(self, w, a, sf, last) -> list[tuple[int, bool]]:
        """Expected ``(acc, nar)`` of every dot product the beats form."""
        prods, nar = self.golden(w, a, sf)
        ends = np.flatnonzero(last) + 1
        starts = np.concatenate([[0], ends[:-1]])
        out = []
        for s, e in zip(starts, ends):
            total = prods[s:e].astype(np.uint64).sum(dtype=np.uint64)
            out.append((int(wrap(total, self.config.acc_width)), bool(nar[s:e].any())))
        return out

    def expect_beats(self, w, a, sf, last, label: str) -> int:
        """Expect the dot products of these beats; returns how many."""
        want = self.golden_outputs(w, a, sf, last)
        for k, (acc, nar) in enumerate(want):
            self.expect({"acc": acc, "nar": int(nar)}, f"{label}: dot product {k} of {len(want)}")
        return len(want)


class PEBench(ClockedBench):
    """Source (with ``sf`` as side-band on the LP PE), sink, scoreboard for one PE."""

    def __init__(self, dut, config, golden, *, idle=0.0, backpressure=0.0, has_sf=False):
        super().__init__(dut, config)
        self.beat_layout = pe_beat_layout(config.lanes, config.width)
        self.source = self.make_source("i", self.beat_layout, k=1, idle=idle,
                                       sideband=dut.sf if has_sf else None)
        self.sink = self.make_sink("o", pe_out_layout(config.acc_width), k=2, backpressure=backpressure)
        self.scoreboard = PEScoreboard(config, golden).attach(self.sink)
        if has_sf:
            dut.sf.value = 0

    async def run(self, w, a, sf=None, last=None, label="", timeout_cycles=None):
        """Stream beats ``w[beats, lanes]``, ``a[beats, lanes]`` (with ``sf[beats]`` and
        ``last[beats]``, default: every beat ends a dot product) and check every output."""
        w, a = np.asarray(w, np.int64), np.asarray(a, np.int64)
        beats = len(w)
        sf = np.zeros(beats, np.int64) if sf is None else np.broadcast_to(np.asarray(sf, np.int64), (beats,))
        last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
        assert last[-1], "the last beat must end a dot product"
        count = self.scoreboard.expect_beats(w, a, sf, last, label)
        beats_in = [{"w": wb, "a": ab, "last": int(lb)}
                    for wb, ab, lb in zip(w.tolist(), a.tolist(), last.tolist())]
        self.source.extend(zip(beats_in, sf.tolist()) if self.source.sideband is not None else beats_in)
        await self.scoreboard.drain(timeout_cycles or 20 * (beats + 50), what=f"{label} outputs")
        self.dut._log.info("%s: %d outputs (%d beats) match", label, count, beats)

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
