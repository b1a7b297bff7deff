"""The SubGraph-stationary (SGS) weight buffer of SUSHI (arXiv 2306.17266).

One on-chip memory (``amaranth.lib.memory.Memory``, ``capacity_words`` words) cut into
``capacity_words / block_words`` block *slots*. The first ``tags`` slots are the
**persistent region**: they hold the resident SubGraph, each with a tag (valid bit and
block id), and are rewritten only by a ``PIN`` request -- i.e. when the scheduler says.
The remaining slots are the **streaming region**, a ring that stages the blocks that
miss, so the fill of one block overlaps the reading of another::

               req ──> [front end: tag lookup, PIN/DROP, fill FSM] ──fetch──> off-chip memory
                          │ job (slot, miss)      │ write                    │
                          v                       v                          │
   rd <── [reader: one word per cycle] <── [ persistent | streaming ] <──fill─┘

Requests (``req``, :func:`request_layout`), processed in order:

* ``READ block``: the front end looks ``block`` up in the tag table. A hit queues a read
  job for the persistent slot (``hits`` + 1). A miss waits for a free streaming slot,
  sends ``block`` on ``fetch``, writes the ``block_words`` words that come back on
  ``fill`` into that slot and then queues the job (``misses`` + 1). The reader sends the
  block's words on ``rd`` in order, ``last`` on the final one, one word per cycle while
  ``rd.ready``, back to back across blocks.
* ``PIN block slot``: waits until every earlier read has left the memory, invalidates
  the target slot and any other slot that holds ``block`` (so no block is ever tagged
  twice), fetches the block into the slot and tags it. Neither a hit nor a miss.
* ``DROP slot``: invalidates the slot's tag at once.
* ``PIN``/``DROP`` naming a slot ``>= tags``, and the reserved op code, are accepted and
  ignored.

``offchip_words`` counts every word accepted on ``fill`` (misses and pins), so it equals
``block_words x (misses + pins)``: :class:`golden.sushi.SGSCacheModel` predicts all
three counters exactly from the request stream alone.

Timing: a hit is looked up in the cycle its request is presented (one request per cycle
while the job queue, ``JOB_QUEUE_DEPTH`` jobs, has room); a miss occupies the front end
for ``block_words + 2`` cycles plus the off-chip memory's latency. The reader starts a
queued job in the cycle after it is queued and presents the first word one cycle later
(the memory's read register): with the reader idle, a hit's first word is transferred
three clock edges after its request. It then sustains one word per cycle, back to back
across blocks. Counters wrap at ``2**counter_width``.

Bit formats (in :mod:`spec.sgs_buffer`; the compiler and the bench pack with them):
``Op``, ``request_layout``, ``fetch_layout``, ``word_layout``, ``read_layout``. See
``docs/formats.md``.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from spec import ConfigError
from spec.sgs_buffer import (
    JOB_QUEUE_DEPTH,
    Op,
    SGSBufferConfig,
    fetch_layout,
    read_layout,
    request_layout,
    word_layout,
)

__all__ = ["SGSBuffer"]

class _Front(enum.Enum, shape=2):
    """States of the front end."""

    IDLE = 0
    FETCH = 1
    FILL = 2


def _wrap_inc(value, modulus):
    """``value + 1``, wrapping to 0 at ``modulus``."""
    return Mux(value == modulus - 1, 0, value + 1)


def _job_layout(config: SGSBufferConfig) -> data.StructLayout:
    return data.StructLayout({"slot": unsigned(ceil_log2(config.slots) or 1), "miss": 1})


class SGSBuffer(wiring.Component):
    """SubGraph-stationary weight buffer (see the module docstring).

    Parameters
    ----------
    config : SGSBufferConfig

    Members
    -------
    req : In(stream.Signature(request_layout(config)))
        Requests, in order. A READ hit is accepted when the job queue has room; a READ
        miss when a streaming slot is free; a PIN when every earlier read has finished.
    fetch : Out(stream.Signature(fetch_layout(config)))
        One transfer per miss and per pin: the block the off-chip memory must send next.
    fill : In(stream.Signature(word_layout(config)))
        The fetched block's ``block_words`` words, in order. Ready only while a fetch is
        being filled.
    rd : Out(stream.Signature(read_layout(config)))
        The words of every READ, in request order, one per cycle while ``rd.ready``.
    hits, misses, offchip_words : Out(counter_width)
        READ hits, READ misses, and words accepted on ``fill``; zero after reset.
    idle : Out(1)
        No request in progress, no read queued or in flight, ``rd`` empty.
    """

    def __init__(self, config: SGSBufferConfig):
        if not isinstance(config, SGSBufferConfig):
            raise ConfigError(f"SGSBuffer needs an SGSBufferConfig, not {config!r}")
        self.config = config
        super().__init__({
            "req": In(stream.Signature(request_layout(config))),
            "fetch": Out(stream.Signature(fetch_layout(config))),
            "fill": In(stream.Signature(word_layout(config))),
            "rd": Out(stream.Signature(read_layout(config))),
            "hits": Out(config.counter_width),
            "misses": Out(config.counter_width),
            "offchip_words": Out(config.counter_width),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        # Written with m.If only (no m.Switch/m.FSM/Array writes): Amaranth's Verilog for
        # those is a `casez` with only the arms that matter, which Verilator's lint flags
        # as CASEINCOMPLETE. Every signal is at least one bit wide for the same reason.
        cfg = self.config
        m = Module()
        offset_bits = exact_log2(cfg.block_words)
        slot_bits = ceil_log2(cfg.slots) or 1

        m.submodules.mem = mem = Memory(shape=cfg.word_width, depth=cfg.capacity_words, init=[])
        write = mem.write_port()
        read = mem.read_port()

        # ---- tag table: one (valid, id) per persistent slot; looked up combinationally.
        req = self.req.payload
        tag_valid = Signal(cfg.tags)
        tag_id = [Signal(cfg.id_width, name=f"tag{i}") for i in range(cfg.tags)]
        match = Signal(cfg.tags)
        m.d.comb += match.eq(Cat(tag_valid[i] & (tag_id[i] == req.block) for i in range(cfg.tags)))
        hit = Signal()
        m.d.comb += hit.eq(match.any())
        # A block is tagged at most once (PIN drops duplicates), so the match is one-hot and
        # its encoding is an OR per bit.
        hit_slot = Signal(range(max(cfg.tags, 2)))
        m.d.comb += hit_slot.eq(Cat(Cat(match[i] for i in range(cfg.tags) if i >> b & 1).any()
                                    for b in range(len(hit_slot))))
        slot_ok = Signal()
        m.d.comb += slot_ok.eq(req.slot < cfg.tags)
        slot_onehot = Signal(cfg.tags)
        m.d.comb += slot_onehot.eq(Const(1, cfg.tags) << req.slot)

        # ---- job queue (front end -> reader): a shift register, head at entry 0.
        job_layout = _job_layout(cfg)
        entries = [Signal(job_layout, name=f"job{i}") for i in range(JOB_QUEUE_DEPTH)]
        level = Signal(range(JOB_QUEUE_DEPTH + 1))
        push, pop = Signal(), Signal()
        job = Signal(job_layout)
        queue_room, queue_any = Signal(), Signal()
        m.d.comb += [queue_room.eq(level != JOB_QUEUE_DEPTH), queue_any.eq(level != 0)]
        m.d.sync += level.eq(level + push - pop)
        for i, entry in enumerate(entries):
            with m.If(push & (level - pop == i)):
                m.d.sync += entry.eq(job)
            with m.Elif(pop & (i + 1 < JOB_QUEUE_DEPTH)):
                m.d.sync += entry.eq(entries[min(i + 1, JOB_QUEUE_DEPTH - 1)])

        # ---- reader state (declared here: the front end waits on it for PIN).
        advance = Signal()
        active = Signal()
        cur_slot = Signal(slot_bits)
        cur_miss = Signal()
        count = Signal(offset_bits)
        drained = Signal()
        m.d.comb += drained.eq(~queue_any & ~active)

        # ---- streaming ring: `inflight` slots allocated and not yet read to the end.
        ring = Signal(range(max(cfg.stream_slots, 2)))
        inflight = Signal(range(cfg.stream_slots + 1))
        allocate, release = Signal(), Signal()
        m.d.sync += inflight.eq(inflight + allocate - release)

        # ---- front end: IDLE (decode a request) -> FETCH (fetch.valid) -> FILL -> IDLE.
        state = Signal(_Front)
        fill_block = Signal(cfg.id_width)
        fill_slot = Signal(slot_bits)
        fill_pin = Signal()
        fill_count = Signal(offset_bits)
        m.d.comb += self.fetch.payload.block.eq(fill_block)
        with m.If(state == _Front.IDLE):
            with m.If(self.req.valid & (req.op == Op.READ)):
                with m.If(hit):
                    m.d.comb += [job.slot.eq(hit_slot), job.miss.eq(0), push.eq(queue_room),
                                 self.req.ready.eq(queue_room)]
                    with m.If(queue_room):
                        m.d.sync += self.hits.eq(self.hits + 1)
                with m.Elif(inflight < cfg.stream_slots):
                    m.d.comb += [self.req.ready.eq(1), allocate.eq(1)]
                    m.d.sync += [self.misses.eq(self.misses + 1), self.fetch.valid.eq(1),
                                 fill_block.eq(req.block), fill_slot.eq(cfg.tags + ring),
                                 fill_pin.eq(0), ring.eq(_wrap_inc(ring, cfg.stream_slots)),
                                 state.eq(_Front.FETCH)]
            with m.Elif(self.req.valid & (req.op == Op.PIN) & slot_ok):
                with m.If(drained):
                    m.d.comb += self.req.ready.eq(1)
                    m.d.sync += [tag_valid.eq(tag_valid & ~match & ~slot_onehot),
                                 self.fetch.valid.eq(1), fill_block.eq(req.block),
                                 fill_slot.eq(req.slot), fill_pin.eq(1), state.eq(_Front.FETCH)]
            with m.Elif(self.req.valid):
                # DROP (of a slot in range), and everything ignored.
                m.d.comb += self.req.ready.eq(1)
                with m.If((req.op == Op.DROP) & slot_ok):
                    m.d.sync += tag_valid.eq(tag_valid & ~slot_onehot)
        with m.Elif(state == _Front.FETCH):
            # fetch.valid is a register, high exactly in this state.
            with m.If(self.fetch.ready):
                m.d.sync += [self.fetch.valid.eq(0), fill_count.eq(0), state.eq(_Front.FILL)]
        with m.Else():
            final = Signal()
            m.d.comb += final.eq(fill_count == cfg.block_words - 1)
            # The last word of a miss also queues its read job: it needs queue room.
            m.d.comb += self.fill.ready.eq(~final | fill_pin | queue_room)
            accept = self.fill.valid & self.fill.ready
            m.d.comb += [write.addr.eq(Cat(fill_count, fill_slot)), write.data.eq(self.fill.payload),
                         write.en.eq(accept)]
            with m.If(accept):
                m.d.sync += [fill_count.eq(fill_count + 1), self.offchip_words.eq(self.offchip_words + 1)]
                with m.If(final):
                    m.d.sync += state.eq(_Front.IDLE)
                    with m.If(fill_pin):
                        for i in range(cfg.tags):
                            with m.If(fill_slot == i):
                                m.d.sync += [tag_id[i].eq(fill_block), tag_valid[i].eq(1)]
                    with m.Else():
                        m.d.comb += [job.slot.eq(fill_slot), job.miss.eq(1), push.eq(1)]

        # ---- reader: address stage (active, cur_slot, count) -> memory -> rd.
        m.d.comb += advance.eq(~self.rd.valid | self.rd.ready)
        done = Signal()
        m.d.comb += done.eq(active & (count == cfg.block_words - 1))
        take = Signal()
        m.d.comb += [take.eq(advance & (~active | done)), pop.eq(take & queue_any)]
        m.d.comb += [read.addr.eq(Cat(count, cur_slot)), read.en.eq(advance)]
        m.d.comb += [self.rd.payload.word.eq(read.data), release.eq(advance & done & cur_miss)]
        with m.If(advance):
            m.d.sync += [self.rd.valid.eq(active), self.rd.payload.last.eq(done)]
            with m.If(active):
                m.d.sync += count.eq(count + 1)
            with m.If(take):
                m.d.sync += [active.eq(queue_any), cur_slot.eq(entries[0].slot),
                             cur_miss.eq(entries[0].miss), count.eq(0)]

        m.d.comb += self.idle.eq((state == _Front.IDLE) & drained & ~self.rd.valid)
        return m
