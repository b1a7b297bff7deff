"""The load and store units: 2-D strided moves between DRAM (AXI4) and the scratchpads.

LOAD ``for y, x: mem[sram + y*x_size + x] = row at dram + y*y_stride + x*pitch`` and STORE,
its inverse, move one line (``x_size`` rows, contiguous in DRAM) at a time, in AXI4 INCR
bursts of at most ``max_burst`` beats that never cross a 4 KiB boundary, one burst in
flight. A row of ``pitch`` bytes either shares a beat with others (``pitch <= bus``:
``bus / pitch`` lanes per beat) or spans ``pitch / bus`` beats. Scratchpad writes (loads)
and reads (stores) move at most one row per cycle, on the scratchpad port the compute
unit does not have priority on.

An AXI error response is reported (``err``) when it arrives; the burst is finished all
the same (a store sends its remaining beats with no byte strobed), then the unit stops.
"""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from spec.accel import AcceleratorConfig
from spec.isa import LAYOUTS, Mem, Opcode

__all__ = ["LoadEngine", "StoreEngine"]


def _burst_len(m, addr, beats_left, cfg, name):
    """Beats of the next burst from byte ``addr``: at most max_burst, beats_left, and the
    beats to the next 4 KiB boundary."""
    bus_log2 = exact_log2(cfg.bus_bytes)
    to_page = Signal(13 - bus_log2 + 1, name=f"{name}_to_page")
    m.d.comb += to_page.eq((4096 - addr[:12]) >> bus_log2)
    n = Signal(range(cfg.max_burst + 1), name=f"{name}_len")
    limit = Mux(to_page < cfg.max_burst, to_page, cfg.max_burst)
    m.d.comb += n.eq(Mux(beats_left < limit, beats_left, limit))
    return n


class _Line:
    """Line bookkeeping both engines share: the line's DRAM start, its beats and rows."""

    def __init__(self, m, cfg, view, pitch_log2, name):
        aw = cfg.axi_addr_width
        self.y = Signal(16, name=f"{name}_y")
        self.line_addr = Signal(aw + 1, name=f"{name}_line_addr")
        self.addr = Signal(aw + 1, name=f"{name}_addr")           # next burst's first beat (aligned)
        self.beats_left = Signal(22, name=f"{name}_beats_left")    # beats of the line still to move
        self.rows_left = Signal(17, name=f"{name}_rows_left")      # rows of the line still to move
        self.sram = Signal(16, name=f"{name}_sram")
        bus_log2 = exact_log2(cfg.bus_bytes)
        # Beats covering [line_addr, line_addr + x_size * pitch).
        first = self.line_addr >> bus_log2
        last = (self.line_addr + (view.x_size << pitch_log2) - 1) >> bus_log2
        self.line_beats = Signal(22, name=f"{name}_line_beats")
        m.d.comb += self.line_beats.eq(last - first + 1)
        self._view, self._pitch_log2, self._bus_log2 = view, pitch_log2, bus_log2

    def idle_and_line_states(self, m, engine, go_view, aborting, lane, resets, next_state):
        """The IDLE and LINE states of an engine's FSM (call inside ``with m.FSM()``): IDLE
        takes ``go``; LINE ends the instruction after its last line (or on an abort), or
        sets up the next line (``resets``: the engine's own per-line registers to clear)
        and goes to ``AR`` (load) or ``AW`` (store)."""
        v, bus_log2 = self._view, self._bus_log2
        with m.State("IDLE"):
            m.d.comb += engine.idle.eq(1)
            with m.If(engine.go):
                m.d.sync += [self.y.eq(0), self.line_addr.eq(go_view.dram), self.sram.eq(go_view.sram),
                             aborting.eq(0)]
                m.next = "LINE"
        with m.State("LINE"):
            with m.If((v.x_size == 0) | (self.y == v.y_size) | aborting | engine.abort):
                m.d.comb += engine.done.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [self.addr.eq(self.line_addr & ~((1 << bus_log2) - 1)),
                             self.beats_left.eq(self.line_beats), self.rows_left.eq(v.x_size),
                             lane.eq(self.line_addr[:bus_log2] >> self._pitch_log2),
                             *[r.eq(0) for r in resets]]
                m.next = next_state


class LoadEngine(wiring.Component):
    """Executes LOAD instructions (``go`` with the instruction word on ``insn``).

    Members
    -------
    go : In(1); insn : In(128); done : Out(1); abort : In(1)
        ``done`` is one cycle, after the last row is written (or the abort is complete).
    ar_valid, ar_addr, ar_len : Out; ar_ready : In
    r_valid, r_data, r_resp, r_last : In; r_ready : Out
    w_mem : Out(3)          the scratchpad written (a spec.isa.Mem value)
    w_addr : Out(16); w_data : Out(row bits); w_en : Out(1); w_grant : In(1)
        One row write per cycle when granted (the row is held until then).
    err : Out(1)            an AXI read error (one cycle)
    beats : Out(1)          a data beat was accepted (for ``bytes_read``)
    idle : Out(1)
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.row_width = max(config.row_bits(m) for m in ("act", "wgt", "param"))
        self.max_pitch = max(config.pitch(m) for m in ("act", "wgt", "param"))
        super().__init__({
            "go": In(1), "insn": In(128), "done": Out(1), "abort": In(1),
            "ar_valid": Out(1), "ar_addr": Out(config.axi_addr_width), "ar_len": Out(8), "ar_ready": In(1),
            "r_valid": In(1), "r_data": In(config.axi_data_width), "r_resp": In(2), "r_last": In(1),
            "r_ready": Out(1),
            "w_mem": Out(3), "w_addr": Out(16), "w_data": Out(self.row_width), "w_en": Out(1),
            "w_grant": In(1), "err": Out(1), "beats": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        bus, bus_bytes = cfg.axi_data_width, cfg.bus_bytes
        bus_log2 = exact_log2(bus_bytes)
        # The unit shell holds the instruction until the engine is done: no copy here.
        v = data.View(LAYOUTS[Opcode.LOAD], self.insn)
        go_view = data.View(LAYOUTS[Opcode.LOAD], self.insn)
        mem = v.mem.as_value()
        pitch_log2 = Signal(4)
        with m.Switch(mem):
            for x in (Mem.ACT, Mem.WGT, Mem.PARAM):
                with m.Case(x.value):
                    m.d.comb += pitch_log2.eq(exact_log2(cfg.pitch(x.name.lower())))
        line = _Line(m, cfg, v, pitch_log2, "ld")
        burst = _burst_len(m, line.addr, line.beats_left, cfg, "ld")
        m.d.comb += [self.w_mem.eq(mem), self.w_addr.eq(line.sram)]
        aborting = Signal()
        m.d.comb += self.beats.eq(self.r_valid & self.r_ready & ~aborting)

        # pitch <= bus: a beat holds `lanes` rows; pitch > bus: a row is `row_beats` beats.
        small = Signal()
        m.d.comb += small.eq(pitch_log2 <= bus_log2)
        lanes = Signal(range(bus_bytes + 1))
        m.d.comb += lanes.eq(Const(bus_bytes, bus_log2 + 2) >> pitch_log2)
        row_beats_log2 = Signal(4)
        m.d.comb += row_beats_log2.eq(Mux(small, 0, pitch_log2 - bus_log2))
        beat = Signal(bus)
        beat_full = Signal()
        lane = Signal(range(max(2, bus_bytes)))
        big_words = max(1, self.max_pitch // bus_bytes)
        row = Signal(bus * big_words)
        word = Signal(range(big_words + 1))
        row_ready = Signal()
        last_in_burst = Signal()
        lane_shift = Signal(range(bus))
        m.d.comb += lane_shift.eq(lane << (pitch_log2 + 3))
        m.d.comb += self.w_data.eq(Mux(small, beat >> lane_shift, row))

        burst_left = Signal(range(cfg.max_burst + 1))     # beats of the burst in flight still to come
        with m.If(self.r_valid & self.r_ready):
            m.d.sync += burst_left.eq(burst_left - 1)
        with m.If(self.abort & ~self.idle):
            m.d.sync += aborting.eq(1)

        release = Signal()              # the buffered beat (small) / assembled row (big) leaves
        with m.If(small):
            m.d.comb += release.eq(beat_full & self.w_grant &
                                   ((lane + 1 == lanes) | (line.rows_left == 1)))
        with m.Else():
            m.d.comb += release.eq(row_ready & self.w_grant)

        with m.FSM(name="load"):
            line.idle_and_line_states(m, self, go_view, aborting, lane, [word, beat_full, row_ready], "AR")
            with m.State("AR"):
                m.d.comb += [self.ar_addr.eq(line.addr), self.ar_len.eq(burst - 1)]
                with m.If(aborting | self.abort):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.ar_valid.eq(1)
                    with m.If(self.ar_ready):
                        m.d.sync += [line.addr.eq(line.addr + (burst << bus_log2)),
                                     line.beats_left.eq(line.beats_left - burst), burst_left.eq(burst)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(aborting):
                    # Finish the burst in flight, keeping nothing.
                    m.d.comb += self.r_ready.eq(burst_left != 0)
                    with m.If((burst_left == 0) | (self.r_valid & (burst_left == 1))):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                with m.Else():
                    with m.If(small):
                        m.d.comb += self.r_ready.eq(~beat_full | release)
                    with m.Else():
                        m.d.comb += self.r_ready.eq(~row_ready | release)
                    with m.If(self.r_valid & self.r_ready):
                        with m.If(self.r_resp != 0):
                            m.d.comb += self.err.eq(1)
                            m.d.sync += [aborting.eq(1), beat_full.eq(0), row_ready.eq(0)]
                            with m.If(self.r_last):
                                m.d.comb += self.done.eq(1)
                                m.next = "IDLE"
                        with m.Else():
                            m.d.sync += last_in_burst.eq(self.r_last)
                            with m.If(small):
                                m.d.sync += [beat.eq(self.r_data), beat_full.eq(1)]
                            with m.Else():
                                m.d.sync += [row.word_select(word, bus).eq(self.r_data), word.eq(word + 1)]
                                with m.If(word + 1 == (Const(1, 8) << row_beats_log2)):
                                    m.d.sync += [row_ready.eq(1), word.eq(0)]
                                with m.Elif(self.r_last):
                                    m.next = "AR"        # the row continues in the next burst
                    with m.If(small & beat_full):
                        m.d.comb += self.w_en.eq(1)
                        with m.If(self.w_grant):
                            m.d.sync += [line.sram.eq(line.sram + 1), line.rows_left.eq(line.rows_left - 1),
                                         lane.eq(lane + 1)]
                            with m.If(release):
                                m.d.sync += lane.eq(0)
                                with m.If(~(self.r_valid & self.r_ready)):
                                    m.d.sync += beat_full.eq(0)
                                with m.If(line.rows_left == 1):
                                    m.next = "NEXT_LINE"
                                with m.Elif(last_in_burst & ~(self.r_valid & self.r_ready)):
                                    m.next = "AR"
                    with m.If(~small & row_ready):
                        m.d.comb += self.w_en.eq(1)
                        with m.If(self.w_grant):
                            m.d.sync += [line.sram.eq(line.sram + 1), line.rows_left.eq(line.rows_left - 1)]
                            with m.If(~(self.r_valid & self.r_ready &
                                        (word + 1 == (Const(1, 8) << row_beats_log2)))):
                                m.d.sync += row_ready.eq(0)
                            with m.If(line.rows_left == 1):
                                m.next = "NEXT_LINE"
                            with m.Elif(last_in_burst & ~(self.r_valid & self.r_ready)):
                                m.next = "AR"
            with m.State("NEXT_LINE"):
                m.d.sync += [line.y.eq(line.y + 1), line.line_addr.eq(line.line_addr + v.y_stride)]
                m.next = "LINE"
        return m


class StoreEngine(wiring.Component):
    """Executes STORE instructions (``act`` or ``acc`` rows to DRAM).

    Members
    -------
    go : In(1); insn : In(128); done : Out(1); abort : In(1)
    aw_valid, aw_addr, aw_len : Out; aw_ready : In
    w_valid, w_data, w_strb, w_last : Out; w_ready : In
    b_valid, b_resp : In; b_ready : Out
    r_mem : Out(3); r_addr : Out(16); r_en : Out(1); r_grant : In(1); r_data : In(row bits)
        Scratchpad reads (the data arrives the cycle after a granted request).
    err : Out(1)            an AXI write error (one cycle)
    strobed : Out(range(bus_bytes + 1))   bytes strobed by the beat sent this cycle
    idle : Out(1)
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.row_width = max(config.row_bits(m) for m in ("act", "acc"))
        self.max_pitch = max(config.pitch(m) for m in ("act", "acc"))
        bus_bytes = config.bus_bytes
        super().__init__({
            "go": In(1), "insn": In(128), "done": Out(1), "abort": In(1),
            "aw_valid": Out(1), "aw_addr": Out(config.axi_addr_width), "aw_len": Out(8), "aw_ready": In(1),
            "w_valid": Out(1), "w_data": Out(config.axi_data_width), "w_strb": Out(bus_bytes),
            "w_last": Out(1), "w_ready": In(1),
            "b_valid": In(1), "b_resp": In(2), "b_ready": Out(1),
            "r_mem": Out(3), "r_addr": Out(16), "r_en": Out(1), "r_grant": In(1),
            "r_data": In(self.row_width),
            "err": Out(1), "strobed": Out(range(bus_bytes + 1)), "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        bus, bus_bytes = cfg.axi_data_width, cfg.bus_bytes
        bus_log2 = exact_log2(bus_bytes)
        v = data.View(LAYOUTS[Opcode.STORE], self.insn)       # held by the unit shell
        go_view = data.View(LAYOUTS[Opcode.STORE], self.insn)
        mem = v.mem.as_value()
        pitch_log2 = Signal(4)
        row_bytes = Signal(range(self.max_pitch + 1))
        with m.Switch(mem):
            for x in (Mem.ACT, Mem.ACC):
                with m.Case(x.value):
                    name = x.name.lower()
                    m.d.comb += [pitch_log2.eq(exact_log2(cfg.pitch(name))), row_bytes.eq(cfg.row_bytes(name))]
        line = _Line(m, cfg, v, pitch_log2, "st")
        burst = _burst_len(m, line.addr, line.beats_left, cfg, "st")
        m.d.comb += [self.r_mem.eq(mem), self.r_addr.eq(line.sram)]
        aborting = Signal()
        with m.If(self.abort & ~self.idle):
            m.d.sync += aborting.eq(1)

        small = Signal()
        m.d.comb += small.eq(pitch_log2 <= bus_log2)
        # Rows that share a beat are at most half a beat wide (a full-beat row is "small"
        # too, with one lane): only that many row bits ever need the lane shift.
        small_bits = min(self.row_width, bus)
        lanes = Signal(range(bus_bytes + 1))
        m.d.comb += lanes.eq(Const(bus_bytes, bus_log2 + 2) >> pitch_log2)
        row_strb = Signal(max(bus_bytes, self.max_pitch))       # the strobes of one row
        m.d.comb += row_strb.eq((Const(1, row_strb.shape().width + 1) << row_bytes) - 1)
        beat = Signal(bus)
        strb = Signal(bus_bytes)
        lane = Signal(range(max(2, bus_bytes)))
        byte_shift = Signal(range(bus_bytes))          # lane * pitch, bounded so shifts stay narrow
        lane_shift = Signal(range(bus))
        m.d.comb += [byte_shift.eq(lane << pitch_log2), lane_shift.eq(byte_shift << 3)]
        big_words = max(1, self.max_pitch // bus_bytes)
        row = Signal(bus * big_words)
        row_strbs = Signal(bus_bytes * big_words)
        row_valid = Signal()
        word = Signal(range(big_words + 1))
        row_beats_log2 = Signal(4)
        m.d.comb += row_beats_log2.eq(Mux(small, 0, pitch_log2 - bus_log2))
        row_beats = Signal(8)
        m.d.comb += row_beats.eq(Const(1, 8) << row_beats_log2)
        burst_left = Signal(range(cfg.max_burst + 1))
        m.d.comb += [self.w_data.eq(beat), self.w_strb.eq(Mux(aborting, 0, strb)),
                     self.w_last.eq(burst_left == 1)]
        strobed = Signal(range(bus_bytes + 1))
        m.d.comb += strobed.eq(sum(strb[k] for k in range(bus_bytes)))
        m.d.comb += self.strobed.eq(Mux(self.w_valid & self.w_ready & ~aborting, strobed, 0))

        with m.FSM(name="store"):
            line.idle_and_line_states(m, self, go_view, aborting, lane, [row_valid, word, strb], "AW")
            with m.State("AW"):
                m.d.comb += [self.aw_addr.eq(line.addr), self.aw_len.eq(burst - 1)]
                with m.If(aborting | self.abort):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.aw_valid.eq(1)
                    with m.If(self.aw_ready):
                        m.d.sync += [line.addr.eq(line.addr + (burst << bus_log2)),
                                     line.beats_left.eq(line.beats_left - burst), burst_left.eq(burst)]
                        m.next = "FILL"
            with m.State("FILL"):
                # Gather the next beat: rows for its lanes (small), or the row's next word (big).
                with m.If(aborting):
                    m.next = "SEND"
                with m.Elif(small):
                    with m.If((line.rows_left == 0) | (lane == lanes)):
                        m.next = "SEND"
                    with m.Else():
                        m.d.comb += self.r_en.eq(1)
                        with m.If(self.r_grant):
                            m.next = "CAPTURE"
                with m.Else():
                    with m.If(row_valid):
                        m.d.sync += [beat.eq(row.word_select(word, bus)),
                                     strb.eq(row_strbs.word_select(word, bus_bytes)), word.eq(word + 1)]
                        with m.If(word + 1 == row_beats):
                            m.d.sync += [row_valid.eq(0), word.eq(0), line.rows_left.eq(line.rows_left - 1),
                                         line.sram.eq(line.sram + 1)]
                        m.next = "SEND"
                    with m.Else():
                        m.d.comb += self.r_en.eq(1)
                        with m.If(self.r_grant):
                            m.next = "CAPTURE"
            with m.State("CAPTURE"):
                with m.If(small):
                    m.d.sync += [beat.eq(beat | (self.r_data[:small_bits] << lane_shift)[:bus]),
                                 strb.eq(strb | (row_strb << byte_shift)[:bus_bytes]),
                                 lane.eq(lane + 1), line.rows_left.eq(line.rows_left - 1),
                                 line.sram.eq(line.sram + 1)]
                with m.Else():
                    m.d.sync += [row.eq(self.r_data), row_strbs.eq(row_strb), row_valid.eq(1)]
                m.next = "FILL"
            with m.State("SEND"):
                m.d.comb += self.w_valid.eq(1)
                with m.If(self.w_ready):
                    m.d.sync += [burst_left.eq(burst_left - 1), beat.eq(0), strb.eq(0), lane.eq(0)]
                    with m.If(burst_left == 1):
                        m.next = "RESP"
                    with m.Else():
                        m.next = "FILL"
            with m.State("RESP"):
                m.d.comb += self.b_ready.eq(1)
                with m.If(self.b_valid):
                    with m.If((self.b_resp != 0) & ~aborting):
                        m.d.comb += self.err.eq(1)
                        m.d.sync += aborting.eq(1)
                    with m.If(aborting | (self.b_resp != 0)):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(line.beats_left == 0):
                        m.next = "NEXT_LINE"
                    with m.Else():
                        m.next = "AW"
            with m.State("NEXT_LINE"):
                m.d.sync += [line.y.eq(line.y + 1), line.line_addr.eq(line.line_addr + v.y_stride)]
                m.next = "LINE"
        return m
