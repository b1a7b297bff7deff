"""cocotb bench of the activation top-N unit's Verilog against ``golden.tasd.decompose``.

Random int8 groups (with many ties and zeros, where the tie rule matters), the edge
values, random idle input and back-pressure; every term of every group is compared
exactly. A back-to-back run checks line rate: one group per cycle.
"""

import cocotb
import numpy as np

from golden import tasd
from spec.packing import pack
from spec.topn import TopNConfig, topn_in_layout, topn_out_layout

from .bench import ClockedBench
from .streams import StreamSink, StreamSource


class TopNTB(ClockedBench):
    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, TopNConfig)
        self.source = StreamSource(dut, "i", dut.clk, self.driver_rng(1), idle)
        self.sink = StreamSink(dut, "o", dut.clk, self.driver_rng(2), backpressure)

    async def check(self, groups: np.ndarray, label: str):
        cfg = self.config
        in_layout, out_layout = topn_in_layout(cfg), topn_out_layout(cfg)
        lasts = self.rng.integers(0, 2, len(groups))
        start = len(self.sink.received)
        self.source.send(pack(in_layout, {"act": [int(v) for v in g], "last": int(l)})
                         for g, l in zip(groups, lasts))
        got = await self.collect(self.sink, start, len(groups), 20 * len(groups) + 100,
                                 f"{label} groups")
        terms = tasd.decompose(groups, cfg.series)
        for g, bits in enumerate(got):
            word = out_layout.from_bits(bits)
            assert word.last == lasts[g], f"{label}: group {g} lost its last flag"
            for t, (n, _) in enumerate(cfg.terms):
                term = word.terms[f"t{t}"]
                values = [term.values[j] for j in range(n)]
                # A dense term (n_t = m) has the core's dense group layout: no indices.
                indices = [term.indices[j] for j in range(n)] if n < cfg.m else list(range(n))
                want = (terms[t].values[g, 0].tolist(), terms[t].indices[g, 0].tolist())
                assert (values, indices) == want, (
                    f"{label}: group {g} = {groups[g].tolist()}, term {t}: got values {values} "
                    f"at {indices}, want {want[0]} at {want[1]}")


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
