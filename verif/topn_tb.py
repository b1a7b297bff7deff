"""cocotb bench of the activation top-N unit's Verilog against ``golden.tasd.decompose``.

Random int8 groups (with many ties and zeros, where the tie rule matters), the edge
values, random idle input and back-pressure; every term of every group is compared
exactly. A back-to-back run checks line rate: one group per cycle.
"""

import cocotb
import numpy as np

from golden import tasd
from spec.topn import TopNConfig, topn_in_layout, topn_out_layout

from .bench import ClockedBench
from .scoreboard import Scoreboard

__all__ = ["TopNScoreboard", "TopNTB"]


class TopNScoreboard(Scoreboard):
    """The unit's output stream against ``golden.tasd.decompose`` of each input group:
    one transaction per group, every term's values and indices and the ``last`` flag."""

    def __init__(self, config: TopNConfig, name: str = ""):
        super().__init__(name, topn_out_layout(config))
        self.config = config

    def expect_groups(self, groups: np.ndarray, lasts, label: str) -> None:
        cfg = self.config
        terms = tasd.decompose(groups, cfg.series)
        for g in range(len(groups)):
            word = {}
            for t, (n, m) in enumerate(cfg.terms):
                if n < m:
                    word[f"t{t}"] = {"values": terms[t].values[g, 0].tolist(),
                                     "indices": terms[t].indices[g, 0].tolist()}
                else:   # a dense term has the core's dense group layout: element j in slot j
                    word[f"t{t}"] = {"values": terms[t].dense()[g].tolist()}
            self.expect({"terms": word, "last": int(lasts[g])},
                        f"{label}: group {g} = {groups[g].tolist()}")


class TopNTB(ClockedBench):
    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, TopNConfig)
        cfg = self.config
        self.source = self.make_source("i", topn_in_layout(cfg), k=1, idle=idle)
        self.sink = self.make_sink("o", topn_out_layout(cfg), k=2, backpressure=backpressure)
        self.scoreboard = TopNScoreboard(cfg).attach(self.sink)

    async def check(self, groups: np.ndarray, label: str):
        lasts = self.rng.integers(0, 2, len(groups))
        self.scoreboard.expect_groups(groups, lasts, label)
        self.source.extend({"act": [int(v) for v in g], "last": int(last)} for g, last in zip(groups, lasts))
        await self.scoreboard.drain(20 * len(groups) + 100, what=f"{label} groups")


@cocotb.test()
async def random_groups_with_stalls(dut):
    """Uniform int8 groups and groups drawn from a few values (many ties), stalls both ways."""
    tb = TopNTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    m = tb.config.m
    await tb.check(tb.rng.integers(-128, 128, (300, m)), "uniform")
    await tb.check(tb.rng.choice([-3, -1, 0, 1, 3], size=(300, m)), "ties")


@cocotb.test()
async def edge_values(dut):
    """-128 (magnitude 128), 127, all-zero groups, all-equal groups, single non-zeros."""
    tb = TopNTB(dut, idle=0.1, backpressure=0.1)
    await tb.reset()
    m = tb.config.m
    groups = [np.zeros(m, int), np.full(m, -128), np.full(m, 127), np.full(m, 5), np.full(m, -5)]
    for k in range(m):
        one = np.zeros(m, int)
        one[k] = -128
        groups.append(one)
        alternating = np.where(np.arange(m) % 2 == k % 2, 127, -128)
        groups.append(alternating)
    groups += list(tb.rng.choice([-128, 127, 0, -127, 128 - 1], size=(100, m)))
    await tb.check(np.array(groups), "edges")


@cocotb.test()
async def line_rate(dut):
    """Back to back, N groups take N + latency cycles: one group per cycle."""
    tb = TopNTB(dut)
    await tb.reset()
    count = 200
    await tb.check(tb.rng.integers(-128, 128, (count, tb.config.m)), "line rate")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[0] + 1
    assert measured == count + tb.config.latency, f"{count} groups took {measured} cycles"
