"""Pieces the accelerator's units share: a small sequential multiplier, token FIFOs, and
scratchpads whose ports two units share with a fixed priority."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["Scratchpad", "SeqMul", "TokenFIFO"]


class SeqMul(wiring.Component):
    """Unsigned ``p = a * b``, two bits of ``b`` per cycle (radix 4, one adder).

    Members
    -------
    start : In(1)
        Latch ``a`` and ``b`` and begin (ignored while ``busy``).
    a : In(a_width); b : In(b_width)
    busy : Out(1)
        High from the cycle after ``start`` until ``p`` holds the product.
    p : Out(a_width + b_width)
        The product, valid when ``busy`` falls: ``ceil(b_width / 2)`` cycles after ``start``.
    """

    def __init__(self, a_width: int, b_width: int):
        self.a_width, self.b_width = a_width, b_width
        super().__init__({"start": In(1), "a": In(a_width), "b": In(b_width), "busy": Out(1),
                          "p": Out(a_width + b_width)})

    def elaborate(self, platform):
        m = Module()
        steps = -(-self.b_width // 2)
        a = Signal(self.a_width + self.b_width + 2)
        b = Signal(2 * steps)
        count = Signal(range(steps + 1))
        digit = b[:2]
        term = Signal.like(a)
        m.d.comb += term.eq(Mux(digit[0], a, 0) + Mux(digit[1], a << 1, 0))
        with m.If(self.busy):
            m.d.sync += [self.p.eq(self.p + term), a.eq(a << 2), b.eq(b >> 2), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += self.busy.eq(0)
        with m.Elif(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.p.eq(0), count.eq(steps), self.busy.eq(1)]
        return m


class TokenFIFO(wiring.Component):
    """A dependency-token FIFO: tokens carry no data, so it is a counter ``0..depth``.

    Members
    -------
    push, pop : In(1)
        Add / take one token this cycle (the caller checks ``space`` / ``avail`` first).
    clear : In(1)
        Empty the FIFO (a new run).
    avail, space : Out(1)
        A token can be taken; a token can be added.
    empty : Out(1)
    """

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__({"push": In(1), "pop": In(1), "clear": In(1), "avail": Out(1),
                          "space": Out(1), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.depth + 1))
        m.d.comb += [self.avail.eq(count != 0), self.space.eq(count != self.depth),
                     self.empty.eq(count == 0)]
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(self.push & ~self.pop):
            m.d.sync += count.eq(count + 1)
        with m.Elif(self.pop & ~self.push):
            m.d.sync += count.eq(count - 1)
        return m


class Scratchpad(wiring.Component):
    """An SRAM (``amaranth.lib.memory.Memory``: one read port, one write port, so it maps
    onto block RAM) shared by two units: port ``a`` (the compute unit) always wins, port
    ``b`` is granted only in cycles ``a`` does not use.

    Members
    -------
    a_raddr, a_ren : In; b_raddr, b_ren : In
        Read requests; the data appears on ``rdata`` the next cycle for the granted one.
    b_rgrant : Out(1)
        ``b``'s read request is served this cycle.
    a_waddr, a_wdata, a_wen : In; b_waddr, b_wdata, b_wen : In
        Writes; ``wen`` has one bit per ``granularity`` bits of a row.
    b_wgrant : Out(1)
    rdata : Out(width)
    """

    def __init__(self, depth: int, width: int, granularity: int | None = None, name: str = "sram"):
        self.depth, self.width = depth, width
        self.granularity = granularity or width
        if width % self.granularity:
            raise ValueError(f"width {width} is not a multiple of granularity {self.granularity}")
        lanes = width // self.granularity
        abits = max(1, ceil_log2(depth))
        self.name = name
        super().__init__({
            "a_raddr": In(abits), "a_ren": In(1), "b_raddr": In(abits), "b_ren": In(1),
            "b_rgrant": Out(1), "rdata": Out(width),
            "a_waddr": In(abits), "a_wdata": In(width), "a_wen": In(lanes),
            "b_waddr": In(abits), "b_wdata": In(width), "b_wen": In(lanes), "b_wgrant": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # No read-write collision check: port a and port b never touch one row in the same
        # cycle except in a program the ISS rejects as a RACE, and the compute engine's own
        # read-modify-write reads row r+1 while it writes row r. Without the attribute,
        # Yosys builds read-old-data bypass logic around every BRAM (about 2 FFs and 1 LUT4
        # per bit of the row).
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[],
                                        attrs={"no_rw_check": 1})
        rd = mem.read_port()
        wr = mem.write_port(granularity=self.granularity)
        a_writes = self.a_wen.any()
        m.d.comb += [
            self.b_rgrant.eq(self.b_ren & ~self.a_ren),
            rd.addr.eq(Mux(self.a_ren, self.a_raddr, self.b_raddr)),
            rd.en.eq(self.a_ren | self.b_ren),
            self.rdata.eq(rd.data),
            self.b_wgrant.eq(self.b_wen.any() & ~a_writes),
            wr.addr.eq(Mux(a_writes, self.a_waddr, self.b_waddr)),
            wr.data.eq(Mux(a_writes, self.a_wdata, self.b_wdata)),
            wr.en.eq(Mux(a_writes, self.a_wen, self.b_wen)),
        ]
        return m


class UnitShell(wiring.Component):
    """The part every unit of the machine shares: take the next instruction from its queue,
    wait for the tokens it pops, start the unit's engine, and push its tokens after.

    States: IDLE (no instruction), POP (held, waiting for tokens), EXEC (the engine runs),
    PUSH (waiting for room in a token FIFO). ``prev``/``next`` are the neighbouring queues
    in token order; a unit without one ties its inputs to 0 (decode rejects the flags).

    Members
    -------
    q_valid : In(1); q_data : In(entry_bits); q_take : Out(1)
        The queue's head entry (FIFO read port); taken in IDLE.
    go : Out(1)
        One cycle: the engine starts on ``insn`` (all tokens popped).
    done : In(1)
        The engine has finished (one cycle).
    gate : In(1)
        Extra condition for leaving POP (FINISH's barrier); 1 for the other units.
    insn : Out(entry_bits)
        The held entry (word and index).
    prev_avail, next_avail, prev_space, next_space : In(1)
    pop_prev, pop_next, push_prev, push_next : Out(1)
    busy : Out(1)      in EXEC
    stall : Out(1)     holding an instruction but waiting (POP without tokens, or PUSH)
    held : Out(1)      holding an instruction (POP, EXEC or PUSH)
    blocked : Out(1)   held and cannot progress this cycle (for deadlock detection)
    clear : In(1)      drop the held instruction (abort or a new run)
    """

    def __init__(self, entry_bits: int):
        self.entry_bits = entry_bits
        super().__init__({
            "q_valid": In(1), "q_data": In(entry_bits), "q_take": Out(1),
            "go": Out(1), "done": In(1), "gate": In(1), "insn": Out(entry_bits),
            "prev_avail": In(1), "next_avail": In(1), "prev_space": In(1), "next_space": In(1),
            "pop_prev": Out(1), "pop_next": Out(1), "push_prev": Out(1), "push_next": Out(1),
            "busy": Out(1), "stall": Out(1), "held": Out(1), "blocked": Out(1), "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        flags = self.insn[4:8]          # spec.isa.HEADER: pop_prev, pop_next, push_prev, push_next
        want_pp, want_pn, want_sp, want_sn = flags[0], flags[1], flags[2], flags[3]
        tokens_ok = (~want_pp | self.prev_avail) & (~want_pn | self.next_avail)
        room_ok = (~want_sp | self.prev_space) & (~want_sn | self.next_space)
        with m.FSM(name="unit"):
            with m.State("IDLE"), m.If(~self.clear & self.q_valid):
                m.d.comb += self.q_take.eq(1)
                m.d.sync += self.insn.eq(self.q_data)
                m.next = "POP"
            with m.State("POP"):
                m.d.comb += [self.held.eq(1), self.stall.eq(1)]
                with m.If(self.clear):
                    m.next = "IDLE"
                with m.Elif(tokens_ok & self.gate):
                    m.d.comb += [self.pop_prev.eq(want_pp), self.pop_next.eq(want_pn), self.go.eq(1)]
                    m.next = "EXEC"
                with m.Else():
                    m.d.comb += self.blocked.eq(1)
            with m.State("EXEC"):
                m.d.comb += [self.held.eq(1), self.busy.eq(1)]
                with m.If(self.done):
                    m.next = "PUSH"
                with m.Elif(self.clear):
                    m.next = "IDLE"
            with m.State("PUSH"):
                m.d.comb += [self.held.eq(1), self.stall.eq(1)]
                with m.If(self.clear):
                    m.next = "IDLE"
                with m.Elif(room_ok):
                    m.d.comb += [self.push_prev.eq(want_sp), self.push_next.eq(want_sn)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.blocked.eq(1)
        return m
