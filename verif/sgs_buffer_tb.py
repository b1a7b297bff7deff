"""cocotb bench of the SGS weight buffer's emitted Verilog against ``golden.sushi``.

An off-chip memory model sits behind the ``fetch``/``fill`` ports: for every fetch it
sends the block's words (packed by ``compiler.sgs_stream`` from the SuperNet's int8
weights), with random idle cycles; ``rd`` and ``fetch`` see random back-pressure and
``req`` random idle cycles. Checks, exactly:

* every word on ``rd`` is the right weight (compared, as int8 weights, with
  ``golden.sushi.SubNetSpace.block_data``) with ``last`` on each block's final word;
* the blocks fetched, in order, and the ``hits``/``misses``/``offchip_words`` counters
  equal :class:`golden.sushi.SGSCacheModel` replaying the same requests.

Tests: the request stream golden :class:`~golden.sushi.SushiSched` produces for a seeded
query stream on the small digits SuperNet (``golden.sushi.digits_cnn.SMALL``) cut into
this buffer's block size; random requests
(duplicate pins, drops, unknown op codes and slots outside the persistent region, which
the hardware ignores); and the read port's rate (one word per cycle, back to back).
Run it through :func:`verif.runner.run_bench` (or ``tessera verify sgs-buffer``).
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from compiler.sgs_stream import memory_image, pack_block, pack_requests
from golden import sushi
from golden.sushi import CORE
from golden.sushi.digits_cnn import small_supernet
from spec.packing import pack
from spec.sgs_buffer import (
    JOB_QUEUE_DEPTH,
    Op,
    SGSBufferConfig,
    fetch_layout,
    read_layout,
    request_layout,
    word_layout,
)

from .bench import ClockedBench
from .scoreboard import Scoreboard

__all__ = ["SGSReadScoreboard", "SGSBufferTB"]

#: The replayed stream: queries, phase length of the phased stream, and SushiSched's
#: decision period and window (short, so the SubGraph is rewritten mid-stream).
QUERIES, PHASE, PERIOD, WINDOW = 16, 3, 1, 3
#: Seeded streams tried for the replay (the one with the most SubGraph rewrites runs).
SEEDS = 8


class SGSReadScoreboard(Scoreboard):
    """The read port against the blocks' int8 weights: every word of every read block in
    order, ``last`` on each block's final word."""

    def __init__(self, config: SGSBufferConfig, name: str = ""):
        super().__init__(name, read_layout(config))
        self.config = config

    def expect_reads(self, reads: list[int], weights, label: str) -> None:
        """Expect the words of the blocks ``reads``; ``weights(block)`` gives a block's
        ``block_bytes`` int8 weights (``golden.sushi.SubNetSpace.block_data``)."""
        cfg = self.config
        for r, block in enumerate(reads):
            expected = np.asarray(weights(block)).reshape(cfg.block_words, cfg.word_bytes)
            for k in range(cfg.block_words):
                self.expect({"word": expected[k].tolist(), "last": int(k == cfg.block_words - 1)},
                            f"{label}: read {r} (block {block}) word {k}")


class SGSBufferTB(ClockedBench):
    """Sources on ``req`` and ``fill``, sinks on ``fetch`` and ``rd`` (its scoreboard
    attached), and the off-chip memory model answering every fetch."""

    def __init__(self, dut, *, idle=0.0, backpressure=0.0):
        super().__init__(dut, SGSBufferConfig)
        cfg = self.config
        self.req = self.make_source("req", request_layout(cfg), k=1, idle=idle)
        self.fill = self.make_source("fill", word_layout(cfg), k=2, idle=idle)
        self.fetch = self.make_sink("fetch", fetch_layout(cfg), k=3, backpressure=backpressure)
        self.rd = self.make_sink("rd", read_layout(cfg), k=4, backpressure=backpressure)
        self.scoreboard = SGSReadScoreboard(cfg).attach(self.rd)
        #: Off-chip memory: block id -> its packed words.
        self.memory: dict[int, list[int]] = {}
        #: Blocks fetched, in order.
        self.fetched: list[int] = []
        self.errors: list[str] = []
        cocotb.start_soon(self._memory_model())

    async def _memory_model(self):
        """Answer every fetch with the block's words on ``fill``."""
        while True:
            block = (await self.fetch.recv()).value.block
            self.fetched.append(block)
            if block not in self.memory:
                self.errors.append(f"fetch of block {block}, which the memory does not hold")
                continue
            self.fill.extend(self.memory[block])

    def counters(self) -> dict[str, int]:
        return {name: getattr(self.dut, name).value.to_unsigned()
                for name in ("hits", "misses", "offchip_words")}

    async def run(self, requests: list[int], reads: list[int], weights, label: str,
                  timeout: int | None = None):
        """Send ``requests``; check that the words of the blocks ``reads`` come out on ``rd``
        in order with the weights ``weights(block)`` and ``last`` on each block's end."""
        cfg = self.config
        want = len(reads) * cfg.block_words
        self.scoreboard.expect_reads(reads, weights, label)
        self.req.extend(requests)
        limit = timeout or 40 * (want + len(requests) * (cfg.block_words + 8)) + 200
        quiet = 0
        for _ in range(limit):
            await RisingEdge(self.clk)
            if self.scoreboard.errors:
                break
            done = self.req.empty and not self.scoreboard.pending and self.dut.idle.value == 1
            quiet = quiet + 1 if done else 0
            if quiet >= 4:
                break
        else:
            raise AssertionError(f"{label}: timeout after {limit} cycles: {want - self.scoreboard.pending} "
                                 f"of {want} words read, {self.req.count()} requests not accepted")
        assert not self.errors, f"{label}: {self.errors[0]}"
        self.scoreboard.check()

    def check_counts(self, model: sushi.SGSCacheModel, fetch_start: int, label: str):
        got = self.counters()
        want = {k: v for k, v in model.counters().items() if k != "pins"}
        assert got == want, f"{label}: counters {got}, golden cache model {want}"
        fetched = self.fetched[fetch_start:]
        assert fetched == model.fetches, (f"{label}: fetched blocks {fetched[:20]}..., golden "
                                          f"{model.fetches[:20]}...")


@cocotb.test()
async def sushi_schedule_replay(dut):
    """The requests SushiSched emits for a seeded phased query stream (SubGraph rewrites
    every few queries), on a SuperNet cut into this buffer's blocks: every weight right,
    off-chip words and hits/misses equal to the golden cache model."""
    tb = SGSBufferTB(dut, idle=0.3, backpressure=0.3)
    await tb.reset()
    cfg = tb.config
    space = sushi.SubNetSpace(small_supernet(), cfg.block_bytes, CORE)
    platform = sushi.Platform(cfg, offchip_bytes_per_cycle=cfg.word_bytes)
    # Coverage: of a few seeded streams, replay the one whose schedule rewrites the
    # SubGraph most often (PINs behind pending reads are where the buffer can go wrong).
    sched = sushi.SushiSched(space, platform, period=PERIOD, window=WINDOW)
    schedules = [sched.run(sushi.make_stream(space, platform, "phased", QUERIES, seed=int(seed), phase=PHASE))
                 for seed in tb.rng.integers(1 << 16, size=SEEDS)]
    result = max(schedules, key=lambda r: r.swaps)
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words, space.n_blocks)
    model.replay(result.commands)
    # The scheduler's own accounting is the cache model's.
    assert model.offchip_words * cfg.word_bytes == sum(r.offchip_bytes for r in result.records)
    assert model.hits and model.misses and model.pins, f"schedule exercises too little: {model.counters()}"
    dut._log.info("replaying %d requests (%d queries, %d SubGraph rewrites): %s",
                  len(result.commands), QUERIES, result.swaps, model.counters())
    tb.memory = memory_image(cfg, space)
    reads = [c.block for c in result.commands if c.op is Op.READ]
    await tb.run(pack_requests(cfg, result.commands, n_blocks=space.n_blocks), reads, space.block_data,
                 "sushi replay")
    tb.check_counts(model, 0, "sushi replay")


@cocotb.test()
async def random_requests(dut):
    """Random reads, pins (also of resident blocks: a block is never tagged twice) and drops
    over every block id, plus reserved op codes and slots outside the persistent region,
    which must change nothing."""
    tb = SGSBufferTB(dut, idle=0.2, backpressure=0.4)
    await tb.reset()
    cfg, rng = tb.config, tb.rng
    ids = sorted({0, (1 << cfg.id_width) - 1, *rng.integers(0, 1 << cfg.id_width, 2 * cfg.tags + 4).tolist()})
    data = {b: rng.integers(-128, 128, cfg.block_bytes) for b in ids}
    tb.memory = {b: pack_block(cfg, v) for b, v in data.items()}
    layout = request_layout(cfg)
    slot_limit = 1 << cfg.slot_width
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words)
    requests, reads = [], []
    for _ in range(8 * cfg.tags + 40):
        roll = rng.random()
        block, slot = int(rng.choice(ids)), int(rng.integers(0, cfg.tags))
        if roll < 0.6:
            command = sushi.Command(Op.READ, block)
        elif roll < 0.85:
            command = sushi.Command(Op.PIN, block, slot)
        elif roll < 0.93:
            command = sushi.Command(Op.DROP, 0, slot)
        else:
            # Ignored by the hardware: the reserved op, or PIN/DROP of a slot >= tags.
            if slot_limit > cfg.tags and rng.random() < 0.7:
                op = Op.PIN if rng.random() < 0.5 else Op.DROP
                bad = int(rng.integers(cfg.tags, slot_limit))
                requests.append(pack(layout, {"op": op, "block": block, "slot": bad}))
            else:
                requests.append(pack(layout, {"op": Op.RESERVED, "block": block, "slot": slot}))
            continue
        model.apply(command)
        requests += pack_requests(cfg, [command])
        if command.op is Op.READ:
            reads.append(block)
    await tb.run(requests, reads, lambda b: data[b], "random requests")
    tb.check_counts(model, 0, "random requests")


@cocotb.test()
async def slow_reader(dut):
    """With a slow reader (80 % back-pressure on ``rd``): a PIN right behind reads of the
    slot it overwrites (those reads still see the old block, later ones the new block);
    misses behind a full job queue; bursts of misses longer than the streaming ring."""
    tb = SGSBufferTB(dut, backpressure=0.8)
    await tb.reset()
    cfg, rng = tb.config, tb.rng
    data = {b: rng.integers(-128, 128, cfg.block_bytes) for b in range(2 * cfg.tags + 2 * cfg.stream_slots + 2)}
    tb.memory = {b: pack_block(cfg, v) for b, v in data.items()}
    read = lambda b: sushi.Command(Op.READ, b)
    commands = []
    for slot in range(cfg.tags):
        old, new = slot, cfg.tags + slot
        commands += [sushi.Command(Op.PIN, old, slot), read(old), read(old), read(old),
                     sushi.Command(Op.PIN, new, slot), read(new), read(old)]
    # Hits enough to fill the job queue, then a miss, repeatedly.
    resident = [cfg.tags + s for s in range(cfg.tags)]
    for _ in range(3):
        commands += [read(int(b)) for b in rng.choice(resident, JOB_QUEUE_DEPTH + 1)] + [read(0)]
    # More misses in a row than the streaming region has slots.
    commands += [read(2 * cfg.tags + k) for k in range(2 * cfg.stream_slots + 2)]
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words)
    model.replay(commands)
    await tb.run(pack_requests(cfg, commands), [c.block for c in commands if c.op is Op.READ],
                 lambda b: data[b], "slow reader")
    tb.check_counts(model, 0, "slow reader")


@cocotb.test()
async def read_rate(dut):
    """Without stalls, resident blocks stream out at one word per cycle, back to back;
    misses with an immediate memory are right too (their rate is logged)."""
    tb = SGSBufferTB(dut)
    await tb.reset()
    cfg, rng = tb.config, tb.rng
    blocks = list(range(cfg.tags + cfg.stream_slots + 2))
    data = {b: rng.integers(-128, 128, cfg.block_bytes) for b in blocks}
    tb.memory = {b: pack_block(cfg, v) for b, v in data.items()}
    pins = [sushi.Command(Op.PIN, b, b) for b in range(cfg.tags)]
    await tb.run(pack_requests(cfg, pins), [], None, "pin")
    # Hits: every resident block twice, in a shuffled order.
    order = [int(b) for b in rng.permutation(cfg.tags)] * 2
    first, first_req = len(tb.rd.transfer_edges), len(tb.req.transfer_edges)
    await tb.run(pack_requests(cfg, [sushi.Command(Op.READ, b) for b in order]), order,
                 lambda b: data[b], "hits at full rate")
    edges = tb.rd.transfer_edges[first:]
    latency = edges[0] - tb.req.transfer_edges[first_req]
    assert latency == 3, f"first word of a hit {latency} edges after its request, documented: 3"
    words = len(order) * cfg.block_words
    assert edges[-1] - edges[0] + 1 == words, (f"{words} words took {edges[-1] - edges[0] + 1} cycles "
                                               "on rd: not one word per cycle")
    # Misses: blocks that are not resident, through the streaming region.
    misses = blocks[cfg.tags:]
    first = len(tb.rd.transfer_edges)
    await tb.run(pack_requests(cfg, [sushi.Command(Op.READ, b) for b in misses]), misses,
                 lambda b: data[b], "misses")
    edges = tb.rd.transfer_edges[first:]
    dut._log.info("misses: %d words in %d cycles", len(misses) * cfg.block_words, edges[-1] - edges[0] + 1)
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words)
    model.replay([*pins, *(sushi.Command(Op.READ, b) for b in order + misses)])
    tb.check_counts(model, 0, "read rate")
