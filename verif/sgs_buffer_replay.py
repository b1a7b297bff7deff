"""cocotb replay of a whole request stream on the SGS buffer, for the benchmark.

Not part of the functional bench: ``tessera bench sushi`` runs it through
:func:`verif.runner.run_bench` with ``TESSERA_SGS_REPLAY=<in.json>`` (the packed
requests, the off-chip memory image, the blocks read in order, and the golden cache
model's counters and fetches) and ``TESSERA_SGS_REPLAY_OUT=<out.json>``. No idle cycles
or back-pressure: every word read is compared with the memory image, the counters and
the fetched blocks with the golden ones, and the cycles from the first request accepted
to the last word read are written out with the counters.
"""

import json
import os

import cocotb
from cocotb.triggers import RisingEdge

from compiler.sgs_stream import split_read

from .sgs_buffer_tb import SGSBufferTB


@cocotb.test()
async def replay_request_stream(dut):
    tb = SGSBufferTB(dut)
    await tb.reset()
    cfg = tb.config
    with open(os.environ["TESSERA_SGS_REPLAY"]) as f:
        job = json.load(f)
    memory = {int(b): words for b, words in job["memory"].items()}
    tb.memory = memory
    layout = tb._fetch_layout
    # Expected words come straight from the memory image (already checked against the
    # golden weights by the functional bench): compare bits.
    words = {b: [(w, k == cfg.block_words - 1) for k, w in enumerate(ws)] for b, ws in memory.items()}
    tb.req.send(job["requests"])
    want = len(job["reads"]) * cfg.block_words
    cycles = 0
    while not (tb.req.empty and len(tb.rd.received) >= want and dut.idle.value == 1):
        await RisingEdge(dut.clk)
        cycles += 1
        assert cycles < 20 * (want + len(job["requests"])) + 1000, "replay timed out"
    expected = [pair for b in job["reads"] for pair in words[b]]
    got = [split_read(cfg, bits) for bits in tb.rd.received]
    assert len(got) == len(expected), f"{len(got)} words read, {len(expected)} expected"
    bad = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), None)
    assert bad is None, f"word {bad}: got {got[bad]}, want {expected[bad]}"
    counters = tb.counters()
    fetched = [layout.from_bits(b).block for b in tb.fetch.received]
    assert counters == job["counters"], f"counters {counters}, golden {job['counters']}"
    assert fetched == job["fetches"], "fetched blocks differ from the golden cache model"
    # Both drivers count edges from the same first edge: first request to last word read.
    result = {"requests": len(job["requests"]), "words_read": len(got), "counters": counters,
              "cycles": tb.rd.transfer_edges[-1] - tb.req.transfer_edges[0] + 1}
    with open(os.environ["TESSERA_SGS_REPLAY_OUT"], "w") as f:
        json.dump(result, f)
