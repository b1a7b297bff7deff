"""cocotb replay of a whole request stream on the SGS buffer, for the benchmark.

Not part of the functional bench: ``tessera bench sushi`` runs it through
:func:`verif.runner.run_bench` with ``TESSERA_SGS_REPLAY=<in.json>`` (the commands of a
schedule and the off-chip memory image) and ``TESSERA_SGS_REPLAY_OUT=<out.json>``. No
idle cycles or back-pressure; the checks are the functional bench's (every word read,
the counters and the fetched blocks against :class:`golden.sushi.SGSCacheModel`), and
the cycles from the first request accepted to the last word read are written out with
the counters.
"""

import json
import os

import cocotb

from compiler.sgs_stream import pack_requests
from golden import sushi
from spec.sgs_buffer import word_layout

from .sgs_buffer_tb import SGSBufferTB


@cocotb.test()
async def replay_request_stream(dut):
    tb = SGSBufferTB(dut)
    await tb.reset()
    cfg = tb.config
    with open(os.environ["TESSERA_SGS_REPLAY"]) as f:
        job = json.load(f)
    commands = [sushi.Command(*c) for c in job["commands"]]
    tb.memory = {int(b): words for b, words in job["memory"].items()}
    layout = word_layout(cfg)
    weights = {b: [v for w in words for v in layout.from_bits(w)] for b, words in tb.memory.items()}
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words, len(tb.memory))
    model.replay(commands)
    await tb.run(pack_requests(cfg, commands), [c.block for c in commands if c.op == "read"],
                 weights.__getitem__, "replay")
    tb.check_counts(model, 0, "replay")
    # Both drivers count edges from the same first edge: first request to last word read.
    result = {"requests": len(commands), "words_read": len(tb.rd.received), "counters": tb.counters(),
              "pins": model.pins, "cycles": tb.rd.transfer_edges[-1] - tb.req.transfer_edges[0] + 1}
    with open(os.environ["TESSERA_SGS_REPLAY_OUT"], "w") as f:
        json.dump(result, f)
