"""The accelerator's front end: instruction fetch over AXI, decode with the static checks
of :func:`spec.isa.check_static`, and dispatch to the three instruction queues.

Fetch reads one 128-bit instruction per AXI burst into a one-word buffer (an error
response is kept with the word); decode takes it, checks it and dispatches it, while
fetch reads the next. The checks need up to four products of instruction fields (row
counts, the last row a strided access reaches); one radix-4 sequential multiplier
(:class:`hw.accel.common.SeqMul`) computes them in turn, so decoding takes
``4..8 * ceil(16 / 2) + 3`` cycles: small next to the instructions it feeds.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from spec.accel import AcceleratorConfig
from spec.isa import LAYOUTS, WORD_BITS, ErrorCode, Mem, Opcode, Queue

from .common import SeqMul

__all__ = ["QUEUE_ENTRY_BITS", "Frontend"]

#: A queue entry: the instruction word and its 16-bit program index.
QUEUE_ENTRY_BITS = WORD_BITS + 16


class Frontend(wiring.Component):
    """Fetch, decode and dispatch.

    Members
    -------
    start : In(1)
        Begin a run at ``prog_addr`` for ``prog_len`` instructions (both sampled now).
    abort : In(1)
        Stop: finish the AXI burst in flight, dispatch nothing more.
    prog_addr : In(addr_width); prog_len : In(16)
    ar_valid, ar_addr, ar_len : Out; ar_ready : In
        Read requests (one burst of one instruction at a time).
    r_valid, r_data, r_resp, r_last : In; r_ready : Out
        The burst's data beats.
    q_data : Out(QUEUE_ENTRY_BITS); q_we : Out(3); q_ready : In(3)
        Dispatch to the load, compute and store queues (``q_we[k]`` when ``q_ready[k]``).
    err_valid : Out(1); err_code : Out(8); err_index : Out(16)
        A one-cycle report of the first error decode met.
    dispatched : Out(1)
        Every instruction of the run has been dispatched.
    blocked : Out(1)
        Decode holds a checked instruction whose queue is full.
    busy : Out(1)
        An AXI burst is in flight or decode is working.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        aw = config.axi_addr_width
        super().__init__({
            "start": In(1), "abort": In(1), "prog_addr": In(aw), "prog_len": In(16),
            "ar_valid": Out(1), "ar_addr": Out(aw), "ar_len": Out(8), "ar_ready": In(1),
            "r_valid": In(1), "r_data": In(config.axi_data_width), "r_resp": In(2), "r_last": In(1),
            "r_ready": Out(1),
            "q_data": Out(QUEUE_ENTRY_BITS), "q_we": Out(3), "q_ready": In(3),
            "err_valid": Out(1), "err_code": Out(8), "err_index": Out(16),
            "dispatched": Out(1), "blocked": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        bus = cfg.axi_data_width
        bus_bytes = bus // 8

        # ------------------------------------------------------------------ fetch
        running = Signal()
        prog_addr = Signal.like(self.prog_addr)
        prog_len = Signal(16)
        fetch_index = Signal(16)
        buf = Signal(WORD_BITS)
        buf_valid = Signal()
        buf_error = Signal()
        buf_index = Signal(16)
        take = Signal()                        # decode takes the buffered word this cycle
        word_beats = max(1, WORD_BITS // bus)
        half = Signal(range(max(2, bus // WORD_BITS)))
        addr = Signal.like(self.ar_addr)
        m.d.comb += addr.eq(prog_addr + (fetch_index << 4))
        in_burst = Signal()
        burst_error = Signal()
        with m.FSM(name="fetch"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [running.eq(1), prog_addr.eq(self.prog_addr), prog_len.eq(self.prog_len),
                                 fetch_index.eq(0)]
                    m.next = "REQ"
            with m.State("REQ"):
                m.d.comb += [self.ar_addr.eq(addr & ~(bus_bytes - 1)), self.ar_len.eq(word_beats - 1)]
                with m.If(self.abort | (fetch_index == prog_len)):
                    m.next = "IDLE"
                with m.Elif(~buf_valid | take):
                    m.d.comb += self.ar_valid.eq(1)
                    with m.If(self.ar_ready):
                        if bus > WORD_BITS:
                            m.d.sync += half.eq(addr[4:exact_log2(bus_bytes)])
                        m.d.sync += [in_burst.eq(1), burst_error.eq(0)]
                        m.next = "RECV"
            with m.State("RECV"):
                m.d.comb += self.r_ready.eq(1)
                with m.If(self.r_valid):
                    bad = self.r_resp != 0
                    if bus >= WORD_BITS:
                        word = self.r_data.word_select(half, WORD_BITS) if bus > WORD_BITS else self.r_data
                        m.d.sync += buf.eq(word)
                    else:
                        m.d.sync += buf.eq(Cat(buf[bus:], self.r_data))
                    with m.If(self.r_last):
                        m.d.sync += [buf_valid.eq(~self.abort), buf_error.eq(burst_error | bad),
                                     buf_index.eq(fetch_index), fetch_index.eq(fetch_index + 1),
                                     in_burst.eq(0)]
                        m.next = "REQ"
                        with m.If(self.abort):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += burst_error.eq(burst_error | bad)
        with m.If(take):
            m.d.sync += buf_valid.eq(0)
        with m.If(self.abort):
            m.d.sync += [buf_valid.eq(0), running.eq(0)]

        # ----------------------------------------------------------------- decode
        word = Signal(WORD_BITS)
        index = Signal(16)
        op = Signal(4)
        m.d.comb += op.eq(word[:4])
        views = {o: data.View(LAYOUTS[o], word) for o in LAYOUTS}
        ld, gm, po, tp = views[Opcode.LOAD], views[Opcode.GEMM], views[Opcode.POST], views[Opcode.TOPN]
        decoded = Signal(16)                   # instructions dispatched
        m.d.comb += self.dispatched.eq(running & (decoded == prog_len))

        # Products saturate: at 2^aw for product 1 (a load's or store's DRAM span; also an
        # SRAM span), at the power of two above the deepest scratchpad for the others
        # (scratchpad spans): any saturated value fails its check exactly as the true one.
        sram_sat = 1 << max(cfg.depth(x) for x in ("act", "wgt", "acc", "param")).bit_length()
        sats = [sram_sat, max(sram_sat, 1 << cfg.axi_addr_width), sram_sat, sram_sat]
        products = [Signal(range(sat + 1), name=f"p{k}") for k, sat in enumerate(sats)]
        mul = m.submodules.mul = SeqMul(max(32, len(products[1]) + 1), 16)
        step = Signal(range(5))
        rows_log2 = exact_log2(cfg.rows)

        # Operands of each product, per opcode (spec.isa._ranges is the rule).
        def operands(k):
            y_minus = Mux(ld.y_size != 0, ld.y_size - 1, 0)
            c_minus = Mux(gm.cols != 0, gm.cols - 1, 0)
            pc_minus = Mux(po.cols != 0, po.cols - 1, 0)
            tc_minus = Mux(tp.cols != 0, tp.cols - 1, 0)
            lanes_all = Signal(28, name="post_lanes_all")
            m.d.comb += lanes_all.eq(self._block_lanes(po))
            lanes_eff = Mux(lanes_all < po.lanes, lanes_all, po.lanes)
            lanes_minus = Mux(lanes_eff != 0, lanes_eff - 1, 0)
            table = {
                Opcode.LOAD: [(ld.x_size, ld.y_size), (ld.y_stride, y_minus)],
                Opcode.STORE: [(ld.x_size, ld.y_size), (ld.y_stride, y_minus)],
                Opcode.GEMM: [(gm.row_blocks, gm.passes), (products[0], gm.k_groups),
                              (gm.act_stride, c_minus), (gm.row_blocks, gm.cols)],
                Opcode.POST: [(po.row_blocks, po.cols),
                              (po.out_stride, Mux(po.transpose, lanes_minus, pc_minus))],
                Opcode.TOPN: [(tp.act_stride, tc_minus), (tc_minus >> rows_log2, tp.passes),
                              (products[1] + tp.term, tp.k_groups)],
            }
            a, b = Signal(len(mul.a), name=f"mul_a{k}"), Signal(16, name=f"mul_b{k}")
            with m.Switch(op):
                for o, pairs in table.items():
                    if k < len(pairs):
                        with m.Case(o.value):
                            m.d.comb += [a.eq(pairs[k][0]), b.eq(pairs[k][1])]
            return a, b

        mul_ops = [operands(k) for k in range(4)]
        steps_of = {Opcode.LOAD: 2, Opcode.STORE: 2, Opcode.GEMM: 4, Opcode.POST: 2, Opcode.TOPN: 3}
        nsteps = Signal(range(5))
        with m.Switch(op):
            for o, k in steps_of.items():
                with m.Case(o.value):
                    m.d.comb += nsteps.eq(k)
            with m.Default():
                m.d.comb += nsteps.eq(0)

        error = Signal(8)
        self._checks(m, word, op, index, prog_len, products, error)

        target = Signal(3)
        with m.Switch(op):
            with m.Case(Opcode.LOAD.value):
                m.d.comb += target.eq(1 << Queue.LOAD)
            with m.Case(Opcode.STORE.value):
                m.d.comb += target.eq(1 << Queue.STORE)
            with m.Default():
                m.d.comb += target.eq(1 << Queue.COMPUTE)
        m.d.comb += self.q_data.eq(Cat(word, index))

        with m.FSM(name="decode"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += decoded.eq(0)
                with m.Elif(buf_valid & running & ~self.abort):
                    m.d.comb += take.eq(1)
                    m.d.sync += [word.eq(buf), index.eq(buf_index), step.eq(0)]
                    with m.If(buf_error):
                        m.d.comb += [self.err_valid.eq(1), self.err_code.eq(ErrorCode.AXI_READ),
                                     self.err_index.eq(buf_index)]
                    with m.Else():
                        m.next = "MUL"
            with m.State("MUL"):
                with m.If(self.abort):
                    m.next = "IDLE"
                with m.Elif(step == nsteps):
                    m.next = "CHECK"
                with m.Elif(~mul.busy):
                    with m.Switch(step):
                        for k in range(4):
                            with m.Case(k):
                                m.d.comb += [mul.a.eq(mul_ops[k][0]), mul.b.eq(mul_ops[k][1])]
                    m.d.comb += mul.start.eq(1)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(~mul.busy):
                    with m.Switch(step):
                        for k in range(4):
                            with m.Case(k):
                                m.d.sync += products[k].eq(Mux(mul.p > sats[k], sats[k], mul.p))
                    m.d.sync += step.eq(step + 1)
                    m.next = "MUL"
            with m.State("CHECK"):
                with m.If(self.abort):
                    m.next = "IDLE"
                with m.Elif(error != 0):
                    m.d.comb += [self.err_valid.eq(1), self.err_code.eq(error), self.err_index.eq(index)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.blocked.eq((target & ~self.q_ready).any())
                with m.If(self.abort):
                    m.next = "IDLE"
                with m.Elif((target & self.q_ready).any()):
                    m.d.comb += self.q_we.eq(target)
                    m.d.sync += decoded.eq(decoded + 1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(in_burst)
        return m

    def _block_lanes(self, po):
        """A POST's ``row_blocks * (rows << pack)``: the lanes its row blocks hold."""
        cfg = self.config
        lanes = po.row_blocks << exact_log2(cfg.rows)
        return lanes << po.pack if cfg.packing else lanes

    def _checks(self, m, word, op, index, prog_len, products, error):
        """``error`` = the :class:`ErrorCode` of :func:`spec.isa.check_static` (then the
        NO_FINISH rule), combinationally from the word and the products."""
        cfg = self.config
        views = {o: data.View(LAYOUTS[o], word) for o in LAYOUTS}
        ld, gm, po, tp = views[Opcode.LOAD], views[Opcode.GEMM], views[Opcode.POST], views[Opcode.TOPN]
        head = views[Opcode.FINISH]
        ops = {o.value for o in LAYOUTS if o != Opcode.TOPN or cfg.topn}
        legal = Signal(name="op_legal")
        m.d.comb += legal.eq(0)
        with m.Switch(op):
            for v in ops:
                with m.Case(v):
                    m.d.comb += legal.eq(1)
        is_ = {o: Signal(name=f"is_{o.name.lower()}") for o in LAYOUTS}
        for o, s in is_.items():
            m.d.comb += s.eq(op == o.value)
        transfer = is_[Opcode.LOAD] | is_[Opcode.STORE]

        bad_token = Signal(name="bad_token")
        m.d.comb += bad_token.eq((is_[Opcode.LOAD] & (head.pop_prev | head.push_prev)) |
                                 (is_[Opcode.STORE] & (head.pop_next | head.push_next)))

        # Fields.
        mem = ld.mem.as_value()
        load_mems = Cat(*[(mem == x.value) for x in (Mem.ACT, Mem.WGT, Mem.PARAM)]).any()
        store_mems = Cat(*[(mem == x.value) for x in (Mem.ACT, Mem.ACC)]).any()
        mem_ok = Mux(is_[Opcode.LOAD], load_mems, store_mems)
        rows = products[0]
        nonempty_xfer = (ld.x_size != 0) & (ld.y_size != 0)
        pitch_log2 = Signal(4, name="pitch_log2")
        depth = Signal(18, name="xfer_depth")
        with m.Switch(mem):
            for x in Mem:
                with m.Case(x.value):
                    name = x.name.lower()
                    m.d.comb += [pitch_log2.eq(exact_log2(cfg.pitch(name))), depth.eq(cfg.depth(name))]
        pitch_mask = Signal(32, name="pitch_mask")
        m.d.comb += pitch_mask.eq((Const(1, 32) << pitch_log2) - 1)
        misaligned = ((ld.dram & pitch_mask) != 0) | ((ld.y_stride & pitch_mask) != 0)
        end = Signal(cfg.axi_addr_width + 2, name="xfer_end")
        m.d.comb += end.eq(ld.dram + products[1] + (ld.x_size << pitch_log2))
        beyond = end > (1 << cfg.axi_addr_width)
        xfer_field = transfer & (~mem_ok | (nonempty_xfer & (misaligned | beyond)))
        if cfg.packing:      # pack k needs n_active << k == n; POST's pack at most log2(n)
            bad_pack = (gm.pack != 0) & ((gm.n_active << gm.pack) != cfg.n)
            post_field = is_[Opcode.POST] & (po.pack > cfg.max_pack)
        else:
            bad_pack = gm.pack != 0
            post_field = is_[Opcode.POST] & (po.pack != 0)
        bad_unit = (gm.unit > 1) if cfg.lp else (gm.unit != 0)     # unit 1: the LP array
        gemm_field = is_[Opcode.GEMM] & (bad_unit | (gm.n_active > cfg.n) | bad_pack)
        if cfg.topn:
            terms = len(cfg.topn_config.terms)
            topn_field = is_[Opcode.TOPN] & ((tp.term >= terms) |
                                             (tp.term >= Mux(tp.passes != 0, tp.passes, 1)))
        else:
            topn_field = Const(0)
        bad_field = Signal(name="bad_field")
        m.d.comb += bad_field.eq(xfer_field | gemm_field | post_field | topn_field)

        # Scratchpad ranges (the last row each access reaches must be < depth).
        def over(last_plus_one, mem_name):
            return last_plus_one > cfg.depth(mem_name)

        xfer_range = transfer & mem_ok & nonempty_xfer & ((ld.sram + rows) > depth)
        g_nonempty = (gm.row_blocks != 0) & (gm.cols != 0) & (gm.k_groups != 0) & (gm.passes != 0)
        weights = over(gm.wgt + products[1], "wgt")
        if cfg.lp:          # unit 1 reads its weight tiles (rows act rows each) from act
            weights = Mux(gm.unit == 1, over(gm.wgt + (products[1] << exact_log2(cfg.rows)), "act"), weights)
        gemm_range = is_[Opcode.GEMM] & g_nonempty & (
            weights | over(gm.act + products[2] + gm.k_groups, "act") |
            over(gm.acc + products[3], "acc"))
        lanes_all = Signal(28, name="chk_lanes_all")
        m.d.comb += lanes_all.eq(self._block_lanes(po))
        lanes_eff = Signal(28, name="chk_lanes_eff")
        m.d.comb += lanes_eff.eq(Mux(lanes_all < po.lanes, lanes_all, po.lanes))
        p_nonempty = (po.row_blocks != 0) & (po.cols != 0) & (po.lanes != 0)
        m_log2 = exact_log2(cfg.m)
        post_act_last = Mux(po.transpose, po.act + products[1] + ((po.cols - 1) >> m_log2),
                            po.act + products[1] + ((lanes_eff - 1) >> m_log2))
        post_param_end = Mux(po.transpose, po.param + po.cols, po.param + lanes_eff)
        post_range = is_[Opcode.POST] & p_nonempty & (
            over(po.acc + products[0], "acc") | (post_act_last >= cfg.depth("act")) |
            over(post_param_end, "param"))
        t_nonempty = (tp.cols != 0) & (tp.k_groups != 0)
        topn_range = is_[Opcode.TOPN] & t_nonempty & (
            over(tp.act + products[0] + tp.k_groups, "act") | over(tp.wgt + products[2] + tp.k_groups, "wgt"))
        sram_range = Signal(name="sram_range")
        m.d.comb += sram_range.eq(xfer_range | gemm_range | post_range | (topn_range if cfg.topn else 0))

        last = index == prog_len - 1
        no_finish = (is_[Opcode.FINISH] & ~last) | (last & ~is_[Opcode.FINISH])
        with m.If(~legal):
            m.d.comb += error.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(bad_token):
            m.d.comb += error.eq(ErrorCode.BAD_TOKEN)
        with m.Elif(bad_field):
            m.d.comb += error.eq(ErrorCode.BAD_FIELD)
        with m.Elif(sram_range):
            m.d.comb += error.eq(ErrorCode.SRAM_RANGE)
        with m.Elif(no_finish):
            m.d.comb += error.eq(ErrorCode.NO_FINISH)
        with m.Else():
            m.d.comb += error.eq(0)
