"""cocotb drivers for ``amaranth.lib.stream`` ports in generated Verilog.

Amaranth flattens a stream member ``x`` into the ports ``x__valid``, ``x__ready`` and
``x__payload``. Both drivers follow one discipline per clock cycle: they write their
outputs just after the rising edge and sample the handshake in the read-only phase
before the next edge, so a transfer seen there happens at that next edge. This is
independent of coroutine ordering and of combinational valid/ready paths in the DUT.

Both take a ``numpy.random.Generator`` for random idle cycles (source) or back-pressure
(sink), so a run is reproducible from its seed.
"""

from collections import deque

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink"]


def _high(handle) -> bool:
    """A 1-bit handle's value as a bool; X/Z (Icarus leaves combinational outputs
    unevaluated until their inputs first change) counts as low."""
    value = handle.value
    return value.is_resolvable and bool(value)


class _Stream:
    def __init__(self, dut, name, clk, rng, probability):
        if not 0 <= probability < 1:
            raise ValueError(f"probability must be in [0, 1), not {probability!r}")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.rng = rng
        self.probability = probability
        #: Clock edges counted since the driver started (edge 1 is the first).
        self.edge = 0
        #: Edge numbers at which transfers happened, in order.
        self.transfer_edges = []


class StreamSource(_Stream):
    """Drive ``name__valid``/``name__payload``; ``idle`` is the chance of withholding a beat.

    With ``sideband`` (a DUT input handle, e.g. a per-beat scale that is not part of the
    payload), queued items are ``(payload, sideband_value)`` pairs and the side-band
    input is driven together with each beat.
    """

    def __init__(self, dut, name, clk, rng, idle=0.0, sideband=None):
        super().__init__(dut, name, clk, rng, idle)
        self.sideband = sideband
        self.queue = deque()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, items):
        """Queue payloads (or ``(payload, sideband_value)`` pairs with a side-band)."""
        self.queue.extend(items)

    @property
    def empty(self) -> bool:
        return not self.queue

    async def _run(self):
        fired = False
        while True:
            await RisingEdge(self.clk)
            self.edge += 1
            if fired:
                self.queue.popleft()
                self.transfer_edges.append(self.edge)
            offer = bool(self.queue) and self.rng.random() >= self.probability
            self.valid.value = int(offer)
            if offer:
                if self.sideband is None:
                    self.payload.value = self.queue[0]
                else:
                    self.payload.value, self.sideband.value = self.queue[0]
            await ReadOnly()
            fired = offer and _high(self.ready)


class StreamSink(_Stream):
    """Take transfers from ``name__*``; ``backpressure`` is the chance of ready low."""

    def __init__(self, dut, name, clk, rng, backpressure=0.0):
        super().__init__(dut, name, clk, rng, backpressure)
        self.received = []
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        pending = None
        while True:
            await RisingEdge(self.clk)
            self.edge += 1
            if pending is not None:
                self.received.append(pending)
                self.transfer_edges.append(self.edge)
                pending = None
            ready = self.rng.random() >= self.probability
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and _high(self.valid):
                pending = self.payload.value.to_unsigned()
