"""cocotb replay of a whole request stream on the SGS buffer, for the benchmark.

Not part of the functional bench: ``tessera bench sushi`` runs it through
:func:`replay_on_buffer`, whose job description carries the commands of a schedule
(``commands``: :meth:`golden.sushi.Command.to_json` lists) and the off-chip memory image (``memory``:
block id -> packed words). No idle cycles or back-pressure; the checks are the
functional bench's (every word read, the counters and the fetched blocks against
:class:`golden.sushi.SGSCacheModel`), and the cycles from the first request accepted to
the last word read are written to the job's output with the counters.
"""

import cocotb

from compiler.sgs_stream import pack_requests
from golden import sushi
from spec.sgs_buffer import Op, SGSBufferConfig, word_layout

from .sgs_buffer_tb import SGSBufferTB

__all__ = ["replay_on_buffer"]


def replay_on_buffer(config: SGSBufferConfig, commands: list, memory: dict[int, list[int]], build_root,
                     sim: str = "verilator") -> dict:
    """Replay ``commands`` (:class:`golden.sushi.Command`) on the buffer's RTL with
    ``memory`` behind it; returns what the bench measured (cycles, counters, words read)."""
    from hw.sgs_buffer import SGSBuffer

    from .runner import run_bench

    params = {"commands": [c.to_json() for c in commands],
              "memory": {str(b): list(words) for b, words in memory.items()}}
    return run_bench(config, SGSBuffer(config), "sgs_buffer", "verif.sgs_buffer_replay", sim=sim,
                     build_root=build_root, quiet=True, params=params, output=True).output


@cocotb.test()
async def replay_request_stream(dut):
    tb = SGSBufferTB(dut)
    await tb.reset()
    cfg = tb.config
    commands = [sushi.Command.from_json(c) for c in tb.job.param("commands")]
    tb.memory = {int(b): words for b, words in tb.job.param("memory").items()}
    layout = word_layout(cfg)
    weights = {b: [v for w in words for v in layout.from_bits(w)] for b, words in tb.memory.items()}
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words, len(tb.memory))
    model.replay(commands)
    await tb.run(pack_requests(cfg, commands), [c.block for c in commands if c.op is Op.READ],
                 weights.__getitem__, "replay")
    tb.check_counts(model, 0, "replay")
    # Edge numbers are shared by every stream component: first request to last word read.
    tb.job.write_output({"requests": len(commands), "words_read": tb.rd.received, "counters": tb.counters(),
                         "pins": model.pins,
                         "cycles": tb.rd.transfer_edges[-1] - tb.req.transfer_edges[0] + 1})
