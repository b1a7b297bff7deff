"""The common part of every cocotb bench: clock, reset, seeded randomness, and waiting
for a stream sink to collect its transfers."""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .runner import bench_config

__all__ = ["ClockedBench", "PERIOD_NS"]

PERIOD_NS = 10


class ClockedBench:
    """Starts a ``PERIOD_NS`` clock on ``dut.clk``; ``config`` is the block's config, or
    its class to read the config the runner passed in. ``rng`` is seeded from cocotb's
    seed; :meth:`driver_rng` gives each stream driver its own seeded generator, so stalls
    are reproducible."""

    def __init__(self, dut, config):
        self.dut = dut
        self.config = bench_config(config) if isinstance(config, type) else config
        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())

    def driver_rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng(self.seed + k)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def collect(self, sink, start: int, count: int, limit: int, what: str = "transfers") -> list[int]:
        """Wait (at most ``limit`` cycles) until ``sink`` holds ``count`` transfers after
        index ``start``; return them. A timeout fails the test saying how many came."""
        for _ in range(limit):
            if len(sink.received) >= start + count:
                return sink.received[start:start + count]
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"timeout: {len(sink.received) - start} of {count} {what} "
                             f"after {limit} cycles")
