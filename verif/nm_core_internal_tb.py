"""Monitors on the internal streams of a larger design: the N:M core inside a wrapper.

:class:`NMCoreBehindFifo` is a two-block design with the core's own ports: the input
stream ``i`` goes through a two-entry FIFO (``buf``) into an :class:`hw.nm_core.NMCore`
instance named ``core``, whose output is the wrapper's ``o``. The bench drives the
wrapper's top-level ports, and attaches passive :class:`~verif.streams.StreamMonitor` s
to ``dut.core.i`` and ``dut.core.o``, the streams between the two blocks:

* :class:`~verif.nm_core_tb.NMCoreScoreboard` (the golden product) checks ``core.o``;
* a plain :class:`~verif.scoreboard.Scoreboard` checks that ``core.i`` carries exactly
  the beats the source sent (the FIFO loses, reorders and alters none);
* the monitors' edge numbers show the FIFO's latency between ``i`` and ``core.i``.

This is the pattern a top-level bench follows for any block inside the accelerator
(docs/verification.md). ``flip`` XORs a mask into the wrapper's output payload after
the core, a fault the failure-reporting tests inject (the inner scoreboard stays clean,
the top level's does not).
"""

import cocotb
from amaranth.hdl import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.nm_stream import lower_matmul
from spec.nm_core import NMCoreConfig, beat_layout, out_layout

from . import VerifError
from .nm_core_tb import NMCoreScoreboard, NMCoreTB
from .scoreboard import Scoreboard
from .streams import StreamBus, StreamMonitor

__all__ = ["NMCoreBehindFifo"]


class NMCoreBehindFifo(wiring.Component):
    """An :class:`hw.nm_core.NMCore` behind a two-entry FIFO, with the core's ports.

    Parameters
    ----------
    config : NMCoreConfig
    flip : int
        Mask XORed into the output payload (0: none; a fault for tests).

    Members
    -------
    i, o, n_active
        As :class:`hw.nm_core.NMCore`'s. Latency: the core's plus one cycle (FIFO).
    """

    def __init__(self, config: NMCoreConfig, *, flip: int = 0):
        self.config, self.flip = config, flip
        members = {"i": In(stream.Signature(beat_layout(config))),
                   "o": Out(stream.Signature(out_layout(config)))}
        if config.sparse:
            members["n_active"] = In(range(config.n + 1), init=config.n)
        super().__init__(members)

    def elaborate(self, platform):
        from hw.nm_core import NMCore

        m = Module()
        m.submodules.core = core = NMCore(self.config)
        m.submodules.buf = buf = fifo.SyncFIFOBuffered(width=len(self.i.payload.as_value()), depth=2)
        m.d.comb += [
            buf.w_data.eq(self.i.payload), buf.w_en.eq(self.i.valid), self.i.ready.eq(buf.w_rdy),
            core.i.payload.eq(buf.r_data), core.i.valid.eq(buf.r_rdy), buf.r_en.eq(core.i.ready),
            self.o.payload.eq(core.o.payload.as_value() ^ self.flip),
            self.o.valid.eq(core.o.valid), core.o.ready.eq(self.o.ready),
        ]
        if self.config.sparse:
            m.d.comb += core.n_active.eq(self.n_active)
        return m


class InternalStreamsTB(NMCoreTB):
    """:class:`NMCoreTB`'s drivers and scoreboard on the wrapper's ports, plus monitors
    and scoreboards on the core's own streams inside it."""

    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, idle=idle, backpressure=backpressure)
        cfg = self.config
        # The pattern: a bus by prefix on an instance, a passive monitor, a scoreboard.
        self.core_in = StreamMonitor(StreamBus.from_prefix(dut, "core.i"), self.clk, beat_layout(cfg))
        self.core_out = StreamMonitor(StreamBus.from_prefix(dut.core, "o"), self.clk, out_layout(cfg))
        self.inner = NMCoreScoreboard(cfg).attach(self.core_out)
        self.passed_through = Scoreboard().attach(self.core_in)

    async def check(self, values, indices, x, n, label):
        program = lower_matmul(self.config, values, indices, x, n=n, filler=self.rng)
        self.inner.expect_matmul(program, values, indices, x, n, label)
        self.scoreboard.expect_matmul(program, values, indices, x, n, label)
        self.passed_through.expect_many(program.packed_beats(), f"{label}: beat into the core")
        self.drive(program)
        await self.passed_through.drain(20 * (len(program.beats) + 50), what=f"{label} beats")
        await self.inner.drain(20 * (len(program.beats) + 50), what=f"{label} outputs")
        await self.finish(program, label)


@cocotb.test()
async def monitors_on_internal_streams(dut):
    """Products of several shapes with stalls both ways, checked on the core's own
    streams inside the wrapper (and at its ports); the FIFO adds one cycle."""
    tb = InternalStreamsTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    cfg, gen = tb.config, tb.stimulus
    for out_rows, groups, cols in [(cfg.rows, 1, 1), (2 * cfg.rows + 1, 3, 2), (1, 5, 3)]:
        values, indices = gen.weights(out_rows, groups * cfg.m, cfg.n)
        await tb.check(values, indices, gen.acts(groups * cfg.m, cols), cfg.n,
                       f"{out_rows}x{groups * cfg.m}x{cols}")
    sent, seen = tb.source.transfer_edges, tb.core_in.transfer_edges
    assert tb.source.sent == tb.core_in.received == tb.passed_through.matched > 0
    # Every beat reaches the core at least one edge after it entered the wrapper.
    lags = [b - a for a, b in zip(sent, seen)]
    assert min(lags) >= 1, f"a beat reached core.i {min(lags)} edges after entering i"
    assert tb.core_out.received == tb.sink.received == tb.inner.matched == tb.scoreboard.matched
    dut._log.info("%d beats, %d outputs checked on core.i/core.o; FIFO lag %d..%d edges",
                  tb.source.sent, tb.inner.matched, min(lags), max(lags))


@cocotb.test()
async def bus_lookup_names_what_exists(dut):
    """A wrong prefix is one clear error naming the instance's streams or children."""
    for prefix, words in (("core.x", ["no x__valid", "i, o"]), ("nocore.i", ["no instance 'nocore'", "core"])):
        try:
            StreamBus.from_prefix(dut, prefix)
        except VerifError as exc:
            assert all(w in str(exc) for w in words), f"{prefix}: {exc}"
        else:
            raise AssertionError(f"StreamBus.from_prefix(dut, {prefix!r}) found a stream")
