"""The compute unit's engines: GEMM through the N:M core, POST (requantization), TOPN
(activations through the top-N unit) and FINISH. Semantics: :mod:`golden.iss`.

Every engine has priority on the scratchpad ports it uses and never stalls, so its
duration is exact (``golden.iss.Timing``), counted from the cycle after ``go`` to the
cycle of ``done``, inclusive:

* GEMM: ``beats + pipeline + 3`` (one beat per cycle: scratchpad read, the core's
  ``pipeline + 1`` stages, then the accumulator read-modify-write in two cycles);
* GEMM on the LP unit (``unit = 1``): ``tiles * (rows + cols + product_stages + 1) + 3``
  with ``tiles = row_blocks * passes * k_groups``: per weight tile, ``rows`` cycles
  reading it from ``act`` into the array (decoded at load), ``cols`` beats, and the
  array's ``product_stages + 1`` cycles of drain before it takes the next tile (a
  weight-stationary array loads only when idle); then the array's latency
  (``product_stages + 2``) and the accumulator write;
* POST: ``row_blocks * cols * (rows << pack) + 4`` (one lane per cycle: read, add bias,
  multiply, round/shift/saturate, write the byte);
* TOPN: ``cols * k_groups + terms + 1`` (read, the unit's one stage per term, write);
* FINISH and any instruction with a zero size: 1.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from spec.accel import AcceleratorConfig
from spec.isa import LAYOUTS, Opcode
from spec.nm_core import group_layout, weight_group_layout

from ..arith import booth_multiply
from ..nm_core import NMCore
from ..pe_array import LPArray
from ..topn import TopN

__all__ = ["ComputeEngine"]


class ComputeEngine(wiring.Component):
    """GEMM, POST, TOPN and FINISH (``go`` with the instruction on ``insn``).

    Members
    -------
    go : In(1); insn : In(128); done : Out(1)
    act_raddr, act_ren, act_waddr, act_wdata, act_wen : Out    (port a of the act scratchpad)
    wgt_raddr, wgt_ren, wgt_waddr, wgt_wdata, wgt_wen : Out
    acc_raddr, acc_ren, acc_waddr, acc_wdata, acc_wen : Out
    param_raddr, param_ren : Out
    act_rdata, wgt_rdata, acc_rdata, param_rdata : In
    beat : Out(1)      the core accepted a beat this cycle (``core_beats``)
    finish : Out(1)    a FINISH executed (one cycle)
    idle : Out(1)
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        cfg = config
        self.wgt_lanes = cfg.rows
        self.group_bits = weight_group_layout(cfg.core).size
        abits = {mem: 16 for mem in ("act", "wgt", "acc", "param")}
        super().__init__({
            "go": In(1), "insn": In(128), "done": Out(1),
            "act_raddr": Out(abits["act"]), "act_ren": Out(1), "act_waddr": Out(16),
            "act_wdata": Out(cfg.row_bits("act")), "act_wen": Out(cfg.m),
            "wgt_raddr": Out(16), "wgt_ren": Out(1), "wgt_waddr": Out(16),
            "wgt_wdata": Out(cfg.row_bits("wgt")), "wgt_wen": Out(cfg.rows),
            "acc_raddr": Out(16), "acc_ren": Out(1), "acc_waddr": Out(16),
            "acc_wdata": Out(cfg.row_bits("acc")), "acc_wen": Out(1),
            "param_raddr": Out(16), "param_ren": Out(1),
            "act_rdata": In(cfg.row_bits("act")), "wgt_rdata": In(cfg.row_bits("wgt")),
            "acc_rdata": In(cfg.row_bits("acc")), "param_rdata": In(cfg.row_bits("param")),
            "beat": Out(1), "finish": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        held = self.insn                 # the unit shell holds it until done: no copy
        m.submodules.core = core = NMCore(cfg.core)
        go_op = self.insn[:4]
        rows_log2, m_log2 = exact_log2(cfg.rows), exact_log2(cfg.m)

        g = data.View(LAYOUTS[Opcode.GEMM], held)
        p = data.View(LAYOUTS[Opcode.POST], held)
        t = data.View(LAYOUTS[Opcode.TOPN], held)

        # ------------------------------------------------------------------- GEMM
        rb, col, pas, grp = (Signal(12, name="g_rb"), Signal(12, name="g_col"), Signal(4, name="g_pass"),
                             Signal(12, name="g_grp"))
        col_base = Signal(17, name="g_col_base")      # act + col * act_stride
        blk_base = Signal(17, name="g_blk_base")      # wgt + rb * passes * k_groups
        wgt_addr = Signal(17, name="g_wgt_addr")
        in_valid = Signal(name="g_in_valid")          # the scratchpad data of last cycle's beat is here
        in_last = Signal(name="g_in_last")
        dots_pending = Signal(25, name="g_pending")   # dots issued whose result is not yet written
        acc_out = Signal(17, name="g_acc_out")
        rmw_valid = Signal(name="g_rmw_valid")
        rmw_result = Signal(cfg.row_bits("acc"), name="g_rmw_result")
        rmw_addr = Signal(17, name="g_rmw_addr")
        beat = core.i.payload
        m.d.comb += [
            beat.act.as_value().eq(self.act_rdata),
            beat.weights.as_value().eq(self.wgt_rdata),
            beat.last.eq(in_last),
            core.i.valid.eq(in_valid),
            core.o.ready.eq(1),
            self.beat.eq(core.i.valid & core.i.ready),
        ]
        if cfg.core.sparse:
            m.d.comb += core.n_active.eq(g.n_active)

        if cfg.lp:
            lp = self._lp_unit(m, g)
            m.d.comb += self.beat.eq((core.i.valid & core.i.ready) | lp["beat"])
        # The core's results in accumulator-row order (lane l = logical row l of the block).
        out_lanes = self._acc_lanes(m, core.o.payload.as_value(), g.pack)
        # The accumulator read-modify-write: read at the core's output, write a cycle later.
        with m.If(core.o.valid):
            m.d.comb += [self.acc_raddr.eq(acc_out), self.acc_ren.eq(1)]
            m.d.sync += [rmw_valid.eq(1), rmw_result.eq(out_lanes), rmw_addr.eq(acc_out),
                         acc_out.eq(acc_out + 1)]
        if cfg.lp:          # the LP unit's outputs: address and accumulate from its delay line
            with m.Elif(lp["o"].valid):
                m.d.comb += [self.acc_raddr.eq(lp["addr"]), self.acc_ren.eq(1)]
                m.d.sync += [rmw_valid.eq(1), rmw_result.eq(lp["lanes"]), rmw_addr.eq(lp["addr"]),
                             lp["rmw_acc"].eq(lp["acc"])]
        with m.Else():
            m.d.sync += rmw_valid.eq(0)
        accumulate = Mux(g.unit == 1, lp["rmw_acc"], g.accumulate) if cfg.lp else g.accumulate
        total = []
        for lane in range(cfg.acc_lanes):
            old = self.acc_rdata.word_select(lane, 32)
            new = rmw_result.word_select(lane, 32)
            s = Signal(32, name=f"g_sum{lane}")
            m.d.comb += s.eq(Mux(accumulate, old, 0) + new)
            total.append(s)
        with m.If(rmw_valid):
            m.d.comb += [self.acc_waddr.eq(rmw_addr), self.acc_wdata.eq(Cat(*total)), self.acc_wen.eq(1)]
        dot_issued = Signal(name="g_dot_issued")
        m.d.sync += dots_pending.eq(dots_pending + dot_issued - rmw_valid)

        # ------------------------------------------------------------------- POST
        # Lane j of block b and column c; pipeline S0 (read) .. S4 (write the byte).
        lanes_log2 = exact_log2(cfg.acc_lanes)
        pb, pc = Signal(12, name="p_rb"), Signal(12, name="p_col")
        pj = Signal(range(cfg.acc_lanes), name="p_lane")
        p_acc = Signal(17, name="p_acc")              # acc + b*cols + c
        p_lane = Signal(13 + lanes_log2, name="p_L")  # b*R + j, R = rows << pack
        p_last_j = Signal(range(cfg.acc_lanes), name="p_last_j")    # R - 1
        if cfg.packing:
            with m.Switch(p.pack):
                for k in range(cfg.max_pack + 1):
                    with m.Case(k):
                        m.d.comb += p_last_j.eq(cfg.block_rows(k) - 1)
        else:
            m.d.comb += p_last_j.eq(cfg.rows - 1)
        # Row offsets kept as running sums (no multiplier): p_lane * out_stride, its value
        # at the block's first lane, and c * out_stride. Modulo 2^17 like the row itself:
        # decode's range check bounds every row that is written.
        p_lane_off = Signal(17, name="p_lane_off")
        p_blk_off = Signal(17, name="p_blk_off")
        p_col_off = Signal(17, name="p_col_off")
        s1 = {"valid": Signal(name="p1_valid"), "j": Signal(range(cfg.acc_lanes), name="p1_j"),
              "first": Signal(name="p1_first"), "keep": Signal(name="p1_keep"),
              "row": Signal(17, name="p1_row"), "byte": Signal(range(cfg.m), name="p1_byte")}
        acc_row = Signal(cfg.row_bits("acc"), name="p_acc_row")
        param_v = data.View(cfg.row_layout("param"), self.param_rdata)
        s2 = {"valid": Signal(name="p2_valid"), "keep": Signal(name="p2_keep"), "row": Signal(17, name="p2_row"),
              "byte": Signal(range(cfg.m), name="p2_byte"), "s": Signal(signed(32), name="p2_s"),
              "mult": Signal(16, name="p2_mult"), "shift": Signal(6, name="p2_shift")}
        s3 = {"valid": Signal(name="p3_valid"), "keep": Signal(name="p3_keep"), "row": Signal(17, name="p3_row"),
              "byte": Signal(range(cfg.m), name="p3_byte"), "prod": Signal(signed(49), name="p3_prod"),
              "shift": Signal(6, name="p3_shift")}
        s4 = {"valid": Signal(name="p4_valid"), "keep": Signal(name="p4_keep"), "row": Signal(17, name="p4_row"),
              "byte": Signal(range(cfg.m), name="p4_byte"), "y": Signal(signed(8), name="p4_y")}
        post_issue = Signal(name="p_issue")
        post_pending = Signal(4, name="p_pending")    # lanes in the pipeline (S1..S4)
        # S1: the accumulator lane and the channel's parameters are here.
        lane_value = Signal(signed(32), name="p1_value")
        row_now = Mux(s1["first"], self.acc_rdata, acc_row)
        m.d.comb += lane_value.eq(row_now.word_select(s1["j"], 32))
        with m.If(s1["valid"] & s1["first"]):
            m.d.sync += acc_row.eq(self.acc_rdata)
        m.d.sync += [s2["valid"].eq(s1["valid"]), s2["keep"].eq(s1["keep"]), s2["row"].eq(s1["row"]),
                     s2["byte"].eq(s1["byte"]), s2["s"].eq(lane_value + param_v.bias),
                     s2["mult"].eq(param_v.mult), s2["shift"].eq(param_v.shift)]
        # S2: multiply (signed 32 x unsigned 16, radix-4 Booth: about 600 LUT4 less than $mul).
        product = booth_multiply(m, s2["s"], s2["mult"], "p2_mul")
        m.d.sync += [s3["valid"].eq(s2["valid"]), s3["keep"].eq(s2["keep"]), s3["row"].eq(s2["row"]),
                     s3["byte"].eq(s2["byte"]), s3["prod"].eq(product),
                     s3["shift"].eq(s2["shift"])]
        # S3: round half up, shift, ReLU, saturate (spec.numerics: shift_round_half_up, saturate).
        # |prod| < 2^47, so for shift >= 49 the rounded result is 0 (prod + 2^(shift-1) is
        # in (0, 2^shift)): 50-bit arithmetic and a shift of 0..48 are exact.
        rounded = Signal(signed(50), name="p3_rounded")
        shift_minus = Signal(6, name="p3_shift_minus")
        m.d.comb += shift_minus.eq(s3["shift"] - 1)
        half = Signal(50, name="p3_half")
        m.d.comb += half.eq(Mux((s3["shift"] != 0) & (s3["shift"] < 49), Const(1, 50) << shift_minus[:6], 0))
        small_shift = Signal(range(49), name="p3_small_shift")
        m.d.comb += small_shift.eq(Mux(s3["shift"] < 49, s3["shift"], 0))
        m.d.comb += rounded.eq(Mux(s3["shift"] < 49, (s3["prod"] + half.as_signed()) >> small_shift, 0))
        relu = Signal(signed(50), name="p3_relu")
        m.d.comb += relu.eq(Mux(p.relu & (rounded < 0), 0, rounded))
        sat = Mux(relu > 127, 127, Mux(relu < -128, -128, relu[:8].as_signed()))
        m.d.sync += [s4["valid"].eq(s3["valid"]), s4["keep"].eq(s3["keep"]), s4["row"].eq(s3["row"]),
                     s4["byte"].eq(s3["byte"]), s4["y"].eq(sat)]
        post_writing = s4["valid"] & s4["keep"]
        with m.If(post_writing):
            m.d.comb += [self.act_waddr.eq(s4["row"]),
                         self.act_wdata.eq(Cat(*([s4["y"]] * cfg.m))),
                         self.act_wen.eq(Const(1, cfg.m) << s4["byte"])]
        m.d.sync += post_pending.eq(post_pending + post_issue - s4["valid"])

        # ------------------------------------------------------------------- TOPN
        if cfg.topn:
            tcfg = cfg.topn_config
            m.submodules.topn = topn = TopN(tcfg)
            tc, tg = Signal(12, name="t_col"), Signal(12, name="t_grp")
            t_col_base = Signal(17, name="t_col_base")        # act + c * act_stride
            t_dst_base = Signal(17, name="t_dst_base")        # wgt + ((c >> r) * passes + term) * k_groups
            t_pg = Signal(17, name="t_pg")
            m.d.comb += t_pg.eq(t.passes * t.k_groups)
            t_in_valid = Signal(name="t_in_valid")
            # Destination of the group in each stage of the unit: (row, lane).
            depth = tcfg.latency + 1
            t_rows = [Signal(17, name=f"t_dst{k}") for k in range(depth)]
            t_lanes = [Signal(range(cfg.rows), name=f"t_lane{k}") for k in range(depth)]
            t_valid = [Signal(name=f"t_v{k}") for k in range(depth)]
            m.d.comb += [topn.i.payload.act.as_value().eq(self.act_rdata), topn.i.payload.last.eq(0),
                         topn.i.valid.eq(t_in_valid), topn.o.ready.eq(1)]
            for k in range(1, depth):
                m.d.sync += [t_rows[k].eq(t_rows[k - 1]), t_lanes[k].eq(t_lanes[k - 1]),
                             t_valid[k].eq(t_valid[k - 1])]
            out = topn.o.payload
            group = Signal(group_layout(cfg.n, cfg.m, 8), name="t_group")
            with m.Switch(t.term):
                for k, (n_t, _) in enumerate(tcfg.terms):
                    with m.Case(k):
                        term = out.terms[f"t{k}"]
                        if cfg.core.sparse:
                            for s in range(n_t):
                                m.d.comb += [group.values[s].eq(term.values[s]),
                                             group.indices[s].eq(term.indices[s] if n_t < cfg.m else s)]
                        else:      # a dense core takes the term's dense group
                            for s in range(n_t):
                                pos = term.indices[s] if n_t < cfg.m else s
                                for e in range(cfg.m):
                                    with m.If(pos == e):
                                        m.d.comb += group.values[e].eq(term.values[s])
            last = depth - 1
            with m.If(topn.o.valid):
                m.d.comb += [self.wgt_waddr.eq(t_rows[last]),
                             self.wgt_wdata.eq(Cat(*([group.as_value()] * cfg.rows))),
                             self.wgt_wen.eq(Const(1, cfg.rows) << t_lanes[last])]
            t_issue = Signal(name="t_issue")
            t_pending = Signal(range(depth + 2), name="t_pending")
            m.d.sync += t_pending.eq(t_pending + t_issue - topn.o.valid)

        # ------------------------------------------------------------- sequencing
        m.d.sync += in_valid.eq(0)
        if cfg.lp:
            m.d.sync += [lp["wl_valid"].eq(0), lp["in_valid"].eq(0)]
        with m.FSM(name="compute"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.go):
                    gv = data.View(LAYOUTS[Opcode.GEMM], self.insn)
                    pv = data.View(LAYOUTS[Opcode.POST], self.insn)
                    tv = data.View(LAYOUTS[Opcode.TOPN], self.insn)
                    g_empty = (gv.row_blocks == 0) | (gv.cols == 0) | (gv.k_groups == 0) | (gv.passes == 0)
                    p_empty = (pv.row_blocks == 0) | (pv.cols == 0) | (pv.lanes == 0)
                    t_empty = (tv.cols == 0) | (tv.k_groups == 0)
                    with m.Switch(go_op):
                        with m.Case(Opcode.GEMM.value):
                            m.d.sync += [rb.eq(0), col.eq(0), pas.eq(0), grp.eq(0), col_base.eq(gv.act),
                                         blk_base.eq(gv.wgt), wgt_addr.eq(gv.wgt), acc_out.eq(gv.acc)]
                            m.next = "GEMM"
                            if cfg.lp:
                                with m.If(gv.unit == 1):
                                    m.d.sync += [lp["row"].eq(0), lp["wgt"].eq(gv.wgt), lp["accb"].eq(gv.acc),
                                                 lp["acc_addr"].eq(gv.acc)]
                                    m.next = "LP_LOAD"
                            with m.If(g_empty):
                                m.next = "EMPTY"
                        with m.Case(Opcode.POST.value):
                            m.d.sync += [pb.eq(0), pc.eq(0), pj.eq(0), p_acc.eq(pv.acc), p_lane.eq(0),
                                         p_lane_off.eq(0), p_blk_off.eq(0), p_col_off.eq(0)]
                            m.next = "POST"
                            with m.If(p_empty):
                                m.next = "EMPTY"
                        if cfg.topn:
                            with m.Case(Opcode.TOPN.value):
                                m.d.sync += [tc.eq(0), tg.eq(0), t_col_base.eq(tv.act),
                                             t_dst_base.eq(tv.wgt + tv.term * tv.k_groups)]
                                m.next = "TOPN"
                                with m.If(t_empty):
                                    m.next = "EMPTY"
                        with m.Default():           # FINISH
                            m.next = "FINISH"
            with m.State("EMPTY"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.finish.eq(1)]
                m.next = "IDLE"
            with m.State("GEMM"):
                # Issue one beat per cycle: read act[col_base + grp] and wgt[wgt_addr].
                m.d.comb += [self.act_raddr.eq(col_base + grp), self.act_ren.eq(1),
                             self.wgt_raddr.eq(wgt_addr), self.wgt_ren.eq(1)]
                end_pass = grp == g.k_groups - 1
                end_dot = end_pass & (pas == g.passes - 1)
                end_blk = end_dot & (col == g.cols - 1)
                m.d.sync += [in_valid.eq(1), in_last.eq(end_dot)]
                m.d.comb += dot_issued.eq(end_dot)
                with m.If(~end_pass):
                    m.d.sync += [grp.eq(grp + 1), wgt_addr.eq(wgt_addr + 1)]
                with m.Elif(~end_dot):
                    m.d.sync += [grp.eq(0), pas.eq(pas + 1), wgt_addr.eq(wgt_addr + 1)]
                with m.Elif(~end_blk):
                    m.d.sync += [grp.eq(0), pas.eq(0), col.eq(col + 1), col_base.eq(col_base + g.act_stride),
                                 wgt_addr.eq(blk_base)]
                with m.Else():
                    m.d.sync += [grp.eq(0), pas.eq(0), col.eq(0), col_base.eq(g.act), rb.eq(rb + 1),
                                 blk_base.eq(wgt_addr + 1), wgt_addr.eq(wgt_addr + 1)]
                    with m.If(rb == g.row_blocks - 1):
                        m.next = "GEMM_DRAIN"
            if cfg.lp:
                self._lp_states(m, lp, g, {"rb": rb, "col": col, "pas": pas, "grp": grp, "col_base": col_base,
                                           "dot_issued": dot_issued})
            with m.State("GEMM_DRAIN"):
                with m.If(rmw_valid & (dots_pending == 1)):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("POST"):
                # S0: read the accumulator row (first lane of a column) and the channel's params.
                lane_all = p_lane
                with m.If(p.transpose):
                    m.d.comb += self.param_raddr.eq(p.param + pc)
                with m.Else():
                    m.d.comb += self.param_raddr.eq(p.param + lane_all)
                m.d.comb += [self.param_ren.eq(1), self.acc_raddr.eq(p_acc), self.acc_ren.eq(pj == 0)]
                with m.If(p.transpose):
                    m.d.sync += [s1["row"].eq(p.act + p_lane_off + (pc >> m_log2)),
                                 s1["byte"].eq(pc[:m_log2] if m_log2 else 0)]
                with m.Else():
                    m.d.sync += [s1["row"].eq(p.act + p_col_off + (lane_all >> m_log2)),
                                 s1["byte"].eq(lane_all[:m_log2] if m_log2 else 0)]
                m.d.sync += [s1["valid"].eq(1), s1["j"].eq(pj), s1["first"].eq(pj == 0),
                             s1["keep"].eq(lane_all < p.lanes)]
                m.d.comb += post_issue.eq(1)
                last_lane = pj == p_last_j
                next_lane_off = p_lane_off + p.out_stride
                with m.If(~last_lane):
                    m.d.sync += [pj.eq(pj + 1), p_lane.eq(p_lane + 1), p_lane_off.eq(next_lane_off)]
                with m.Elif(pc != p.cols - 1):
                    m.d.sync += [pj.eq(0), pc.eq(pc + 1), p_lane.eq(p_lane - p_last_j), p_acc.eq(p_acc + 1),
                                 p_lane_off.eq(p_blk_off), p_col_off.eq(p_col_off + p.out_stride)]
                with m.Else():
                    m.d.sync += [pj.eq(0), pc.eq(0), pb.eq(pb + 1), p_lane.eq(p_lane + 1), p_acc.eq(p_acc + 1),
                                 p_lane_off.eq(next_lane_off), p_blk_off.eq(next_lane_off), p_col_off.eq(0)]
                    with m.If(pb == p.row_blocks - 1):
                        m.next = "POST_DRAIN"
            with m.State("POST_DRAIN"):
                m.d.sync += s1["valid"].eq(0)
                with m.If(s4["valid"] & (post_pending == 1)):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            if cfg.topn:
                with m.State("TOPN"):
                    m.d.comb += [self.act_raddr.eq(t_col_base + tg), self.act_ren.eq(1)]
                    m.d.sync += [t_in_valid.eq(1), t_valid[0].eq(1), t_rows[0].eq(t_dst_base + tg),
                                 t_lanes[0].eq(tc[:rows_log2] if rows_log2 else 0)]
                    m.d.comb += t_issue.eq(1)
                    with m.If(tg != t.k_groups - 1):
                        m.d.sync += tg.eq(tg + 1)
                    with m.Else():
                        m.d.sync += [tg.eq(0), tc.eq(tc + 1), t_col_base.eq(t_col_base + t.act_stride)]
                        if rows_log2:
                            with m.If(tc[:rows_log2] == cfg.rows - 1):
                                m.d.sync += t_dst_base.eq(t_dst_base + t_pg)
                        else:
                            m.d.sync += t_dst_base.eq(t_dst_base + t_pg)
                        with m.If(tc == t.cols - 1):
                            m.next = "TOPN_DRAIN"
                with m.State("TOPN_DRAIN"):
                    m.d.sync += [t_in_valid.eq(0), t_valid[0].eq(0)]
                    with m.If(topn.o.valid & (t_pending == 1)):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
        return m

    def _lp_unit(self, m, g):
        """The LP array (``hw.pe_array.LPArray``, ``rows`` x ``m``) and its glue: weight
        loads and activation beats from the ``act`` read data (the low ``n`` bits of each
        byte), ``sf`` from the held GEMM, and a delay line carrying each beat's
        accumulator row and accumulate flag to the array's output (its latency is fixed:
        the compute unit never back-pressures it)."""
        cfg = self.config
        arr = cfg.lp_array
        m.submodules.lp = array = LPArray(arr)
        lp = {"o": array.o,
              "row": Signal(range(cfg.rows), name="l_row"),            # tile row being read
              "wgt": Signal(17, name="l_wgt"),                         # next weight row (act)
              "accb": Signal(17, name="l_accb"),                       # acc + b * cols
              "acc_addr": Signal(17, name="l_acc"),                    # acc + b * cols + c
              "wait": Signal(range(arr.product_stages + 1), name="l_wait"),
              "wl_valid": Signal(name="l_wl_valid"), "wl_row": Signal(range(cfg.rows), name="l_wl_row"),
              "in_valid": Signal(name="l_in_valid"),
              "rmw_acc": Signal(name="l_rmw_acc")}
        codes = [self.act_rdata.word_select(c, 8)[:arr.n] for c in range(cfg.m)]
        m.d.comb += [array.wl.valid.eq(lp["wl_valid"]), array.wl.payload.row.eq(lp["wl_row"]),
                     array.i.valid.eq(lp["in_valid"]), array.i.payload.last.eq(1),
                     array.o.ready.eq(1), array.sf.eq(g.sf)]
        for c in range(cfg.m):
            m.d.comb += [array.wl.payload.w[c].eq(codes[c]), array.i.payload.a[c].eq(codes[c])]
        # Beat issued (act read) at cycle k -> accepted at k + 1 -> output at k + 1 + latency.
        depth = arr.latency + 1
        addrs = [Signal(17, name=f"l_dl_addr{k}") for k in range(depth)]
        flags = [Signal(name=f"l_dl_acc{k}") for k in range(depth)]
        for k in range(1, depth):
            m.d.sync += [addrs[k].eq(addrs[k - 1]), flags[k].eq(flags[k - 1])]
        lp.update({"dl_addr": addrs[0], "dl_acc": flags[0], "addr": addrs[-1], "acc": flags[-1]})
        lanes = []
        for r in range(cfg.acc_lanes):
            lane = Signal(signed(32), name=f"l_lane{r}")
            if r < cfg.rows:
                m.d.comb += lane.eq(array.o.payload.acc[r])          # sign-extended
            lanes.append(lane)
        lp["lanes"] = Cat(*lanes)
        lp["beat"] = array.i.valid & array.i.ready
        return lp

    def _lp_states(self, m, lp, g, c):
        """GEMM ``unit = 1``: per weight tile (block, pass, group) LP_LOAD reads its
        ``rows`` act rows into the array, LP_STREAM issues one beat per column, LP_WAIT
        lets the array drain (``product_stages + 1`` cycles) before the next tile."""
        cfg = self.config
        stages = cfg.lp_array.product_stages
        with m.State("LP_LOAD"):
            m.d.comb += [self.act_raddr.eq(lp["wgt"]), self.act_ren.eq(1)]
            m.d.sync += [lp["wl_valid"].eq(1), lp["wl_row"].eq(lp["row"]), lp["wgt"].eq(lp["wgt"] + 1),
                         lp["row"].eq(lp["row"] + 1)]
            with m.If(lp["row"] == cfg.rows - 1):
                m.d.sync += lp["row"].eq(0)
                m.next = "LP_STREAM"
        with m.State("LP_STREAM"):
            m.d.comb += [self.act_raddr.eq(c["col_base"] + c["grp"]), self.act_ren.eq(1), c["dot_issued"].eq(1)]
            m.d.sync += [lp["in_valid"].eq(1), lp["dl_addr"].eq(lp["acc_addr"]),
                         lp["dl_acc"].eq(g.accumulate | (c["grp"] != 0) | (c["pas"] != 0))]
            with m.If(c["col"] != g.cols - 1):
                m.d.sync += [c["col"].eq(c["col"] + 1), c["col_base"].eq(c["col_base"] + g.act_stride),
                             lp["acc_addr"].eq(lp["acc_addr"] + 1)]
            with m.Else():
                m.d.sync += [c["col"].eq(0), c["col_base"].eq(g.act), lp["wait"].eq(0)]
                m.next = "LP_WAIT"
                with m.If(c["grp"] != g.k_groups - 1):
                    m.d.sync += [c["grp"].eq(c["grp"] + 1), lp["acc_addr"].eq(lp["accb"])]
                with m.Elif(c["pas"] != g.passes - 1):
                    m.d.sync += [c["grp"].eq(0), c["pas"].eq(c["pas"] + 1), lp["acc_addr"].eq(lp["accb"])]
                with m.Else():
                    m.d.sync += [c["grp"].eq(0), c["pas"].eq(0), c["rb"].eq(c["rb"] + 1),
                                 lp["accb"].eq(lp["acc_addr"] + 1), lp["acc_addr"].eq(lp["acc_addr"] + 1)]
                    with m.If(c["rb"] == g.row_blocks - 1):
                        m.next = "GEMM_DRAIN"
        with m.State("LP_WAIT"):
            m.d.sync += lp["wait"].eq(lp["wait"] + 1)
            with m.If(lp["wait"] == stages):
                m.next = "LP_LOAD"

    def _acc_lanes(self, m, raw, pack):
        """The core's output ``raw`` (accumulator ``q`` of core row ``r`` at ``r * out_slots
        + q``) as an accumulator row: lane ``l`` is logical row ``l`` at the GEMM's ``pack``
        (``spec.nm_core.out_index``); lanes the GEMM does not compute are 0. Without packing
        the two orders are the same."""
        cfg = self.config
        if not cfg.packing:
            return raw
        n, lanes = cfg.n, []
        for lane in range(cfg.acc_lanes):
            value = Signal(32, name=f"g_lane{lane}")
            with m.Switch(pack):
                for k in range(cfg.max_pack + 1):
                    if lane < cfg.block_rows(k):
                        with m.Case(k):
                            src = (lane >> k) * n + (lane & ((1 << k) - 1))
                            m.d.comb += value.eq(raw.word_select(src, 32))
            lanes.append(value)
        return Cat(*lanes)
