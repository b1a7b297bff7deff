"""The common part of every cocotb bench: the job's config, the clock, reset, seeded
randomness, and stream components bound by prefix."""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .job import current
from .streams import StreamBus, StreamSink, StreamSource, random_pause

__all__ = ["ClockedBench", "PERIOD_NS"]

PERIOD_NS = 10


class ClockedBench:
    """Clock, reset and seeded randomness around a DUT.

    Parameters
    ----------
    dut : cocotb handle
    config : BlockConfig instance or class
        A class means "this run's config, from the job description" (:mod:`verif.job`).
    clock, reset : str
        Names of the clock and (active-high, synchronous) reset inputs.

    Members
    -------
    rng : numpy Generator
        Seeded from cocotb's seed (the runner's ``seed``).
    clk : cocotb handle
        The clock, running with period ``PERIOD_NS`` from construction.
    """

    def __init__(self, dut, config, *, clock: str = "clk", reset: str = "rst"):
        self.dut = dut
        self.config = current().block_config(config) if isinstance(config, type) else config
        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        self.clk = getattr(dut, clock)
        self._reset = getattr(dut, reset)
        cocotb.start_soon(Clock(self.clk, PERIOD_NS, unit="ns").start())

    @property
    def job(self):
        """This run's job description (:class:`verif.job.Job`)."""
        return current()

    def driver_rng(self, k: int) -> np.random.Generator:
        """The ``k``-th driver's own seeded generator (stalls reproducible per driver)."""
        return np.random.default_rng(self.seed + k)

    def pause(self, k: int, probability: float):
        """A seeded pause generator for driver ``k`` (None when ``probability`` is 0)."""
        return random_pause(self.driver_rng(k), probability) if probability else None

    def make_source(self, prefix: str, layout=None, *, k: int, idle: float = 0.0, **kwargs) -> StreamSource:
        """A :class:`StreamSource` on the DUT's stream ``prefix`` (``"i"``, ``"core.i"``)."""
        return StreamSource(StreamBus.from_prefix(self.dut, prefix), self.clk, layout,
                            idle=self.pause(k, idle), **kwargs)

    def make_sink(self, prefix: str, layout=None, *, k: int, backpressure: float = 0.0) -> StreamSink:
        """A :class:`StreamSink` on the DUT's stream ``prefix``."""
        return StreamSink(StreamBus.from_prefix(self.dut, prefix), self.clk, layout,
                          backpressure=self.pause(k, backpressure))

    async def reset(self):
        self._reset.value = 1
        await ClockCycles(self.clk, 2)
        self._reset.value = 0
        await RisingEdge(self.clk)
