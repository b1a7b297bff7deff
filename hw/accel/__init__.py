"""The Tessera accelerator: the N:M core and its scratchpads behind an instruction stream.

::

     host --AXI4-Lite--> [CSRs] --start--> [fetch -> decode] --> load | compute | store queues
     DRAM <==AXI4==> [read arbiter: fetch, load] [store]          (+ four token FIFOs)
         load unit  --> act / wgt / param scratchpads
         compute    --> GEMM (N:M core) -> acc, POST (requant) -> act, TOPN (top-N unit) -> wgt
         store unit <-- act / acc scratchpads

The instruction set, the scratchpads and the CSRs are :mod:`spec.isa` and
:mod:`spec.accel`; the semantics, bit for bit, are :mod:`golden.iss`. docs/isa.md is the
page for both.

Ports
-----
m_axi : Out(AXI4Signature)      DRAM (fetch and loads read with IDs 0 and 1, stores write ID 2)
s_axil : In(AXI4LiteSignature)  the host's registers (``spec.isa.CSR``)
irq : Out(1)                    done or error, while ``IRQ_ENABLE`` bit 0 is set

Errors stop the machine (it finishes any AXI burst in flight, drops its queues) with
``STATUS.error`` and ``ERROR_INDEX`` set; writing CTRL bit 1 clears them and a new start
runs again. Deadlock (every unit waits for a token nothing can give) is detected when no
unit, queue or decode can progress for two cycles.
"""

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from spec import ConfigError
from spec.accel import AcceleratorConfig
from spec.isa import COUNTERS, CSR, ID_WORD, ErrorCode, Mem, Queue
from spec.nm_core import weight_group_layout

from ..axi import BURST_INCR, AXI4LiteSignature, AXI4Signature
from .common import Scratchpad, TokenFIFO, UnitShell
from .compute import ComputeEngine
from .dma import LoadEngine, StoreEngine
from .frontend import QUEUE_ENTRY_BITS, Frontend

__all__ = ["Accelerator"]

ID_FETCH, ID_LOAD, ID_STORE = 0, 1, 2
CSR_ADDR_WIDTH = 8


class Accelerator(wiring.Component):
    """The accelerator (see the module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise ConfigError(f"Accelerator needs an AcceleratorConfig, not {config!r}")
        if config.rows & (config.rows - 1):
            raise ConfigError(f"the accelerator needs a power-of-two number of core rows, not rows={config.rows}")
        self.config = config
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=config.axi_addr_width, data_width=config.axi_data_width,
                                       id_width=2)),
            "s_axil": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        axi, lite = self.m_axi, self.s_axil
        bus_log2 = exact_log2(cfg.bus_bytes)

        # ------------------------------------------------------------ registers
        busy, done, error_flag = Signal(), Signal(), Signal()
        error_code, error_index = Signal(8), Signal(16)
        irq_enable = Signal()
        prog_addr, prog_len = Signal(cfg.axi_addr_width), Signal(16)
        counters = {name: Signal(32, name=f"cnt_{name}") for name in COUNTERS}
        start = Signal()                  # a run starts this cycle
        stopping = Signal()               # an error or FINISH: wind down
        flush = Signal()                  # drop queues and held instructions
        m.d.comb += self.irq.eq(irq_enable & (done | error_flag))

        # AXI4-Lite: a write takes AW and W together; one read at a time.
        b_pending, r_pending = Signal(), Signal()
        rdata = Signal(32)
        m.d.comb += [lite.bvalid.eq(b_pending), lite.bresp.eq(0), lite.rvalid.eq(r_pending),
                     lite.rdata.eq(rdata), lite.rresp.eq(0)]
        write = lite.awvalid & lite.wvalid & ~b_pending
        m.d.comb += [lite.awready.eq(write), lite.wready.eq(write)]
        with m.If(b_pending & lite.bready):
            m.d.sync += b_pending.eq(0)
        clear_status = Signal()
        with m.If(write):
            m.d.sync += b_pending.eq(1)
            reg = lite.awaddr[:CSR_ADDR_WIDTH]
            with m.Switch(reg):
                with m.Case(CSR.CTRL):
                    with m.If(lite.wdata[0] & ~busy):
                        m.d.comb += start.eq(1)
                    with m.If(lite.wdata[1]):
                        m.d.comb += clear_status.eq(1)
                with m.Case(CSR.IRQ_ENABLE):
                    m.d.sync += irq_enable.eq(lite.wdata[0])
                with m.Case(CSR.PROG_ADDR):
                    m.d.sync += prog_addr.eq(lite.wdata)
                with m.Case(CSR.PROG_LEN):
                    m.d.sync += prog_len.eq(lite.wdata)
        m.d.comb += lite.arready.eq(~r_pending)
        with m.If(r_pending & lite.rready):
            m.d.sync += r_pending.eq(0)
        with m.If(lite.arvalid & ~r_pending):
            m.d.sync += r_pending.eq(1)
            with m.Switch(lite.araddr[:CSR_ADDR_WIDTH]):
                with m.Case(CSR.STATUS):
                    m.d.sync += rdata.eq(Cat(busy, done, error_flag, Const(0, 5), error_code))
                with m.Case(CSR.ERROR_INDEX):
                    m.d.sync += rdata.eq(error_index)
                with m.Case(CSR.IRQ_ENABLE):
                    m.d.sync += rdata.eq(irq_enable)
                with m.Case(CSR.PROG_ADDR):
                    m.d.sync += rdata.eq(prog_addr)
                with m.Case(CSR.PROG_LEN):
                    m.d.sync += rdata.eq(prog_len)
                with m.Case(CSR.ID):
                    m.d.sync += rdata.eq(ID_WORD)
                for k, name in enumerate(COUNTERS):
                    with m.Case(CSR.COUNTERS + 4 * k):
                        m.d.sync += rdata.eq(counters[name])
                with m.Default():
                    m.d.sync += rdata.eq(0)

        # ------------------------------------------------------------- datapath
        m.submodules.front = front = Frontend(cfg)
        m.submodules.load = load = LoadEngine(cfg)
        m.submodules.store = store = StoreEngine(cfg)
        m.submodules.compute = compute = ComputeEngine(cfg)
        queues, shells = {}, {}
        for q in Queue:
            name = q.name.lower()
            fifo = ResetInserter(flush)(SyncFIFO(width=QUEUE_ENTRY_BITS, depth=cfg.queue_depth))
            m.submodules[f"{name}_queue"] = queues[q] = fifo
            m.submodules[f"{name}_unit"] = shells[q] = shell = UnitShell(QUEUE_ENTRY_BITS)
            m.d.comb += [fifo.w_data.eq(front.q_data), fifo.w_en.eq(front.q_we[q]),
                         front.q_ready[q].eq(fifo.w_rdy),
                         shell.q_valid.eq(fifo.r_rdy), shell.q_data.eq(fifo.r_data), fifo.r_en.eq(shell.q_take),
                         shell.clear.eq(flush)]
        fifos = {}
        for a, b in ((Queue.LOAD, Queue.COMPUTE), (Queue.COMPUTE, Queue.LOAD),
                     (Queue.COMPUTE, Queue.STORE), (Queue.STORE, Queue.COMPUTE)):
            key = f"{a.name.lower()}_to_{b.name.lower()}"
            m.submodules[key] = fifos[(a, b)] = fifo = TokenFIFO(cfg.token_depth)
            m.d.comb += fifo.clear.eq(start)
        for q in Queue:
            shell = shells[q]
            if q > Queue.LOAD:
                prev = Queue(q - 1)
                m.d.comb += [shell.prev_avail.eq(fifos[(prev, q)].avail), fifos[(prev, q)].pop.eq(shell.pop_prev),
                             shell.prev_space.eq(fifos[(q, prev)].space), fifos[(q, prev)].push.eq(shell.push_prev)]
            if q < Queue.STORE:
                nxt = Queue(q + 1)
                m.d.comb += [shell.next_avail.eq(fifos[(nxt, q)].avail), fifos[(nxt, q)].pop.eq(shell.pop_next),
                             shell.next_space.eq(fifos[(q, nxt)].space), fifos[(q, nxt)].push.eq(shell.push_next)]
        for q, engine in ((Queue.LOAD, load), (Queue.STORE, store), (Queue.COMPUTE, compute)):
            m.d.comb += [engine.go.eq(shells[q].go), engine.insn.eq(shells[q].insn[:128]),
                         shells[q].done.eq(engine.done)]
        # FINISH's barrier: the load and store queues are empty and idle.
        m.d.comb += [shells[Queue.LOAD].gate.eq(1), shells[Queue.STORE].gate.eq(1),
                     shells[Queue.COMPUTE].gate.eq(
                         (shells[Queue.COMPUTE].insn[:4] != 6) |
                         (~shells[Queue.LOAD].held & ~queues[Queue.LOAD].r_rdy & load.idle &
                          ~shells[Queue.STORE].held & ~queues[Queue.STORE].r_rdy & store.idle))]
        m.d.comb += [front.start.eq(start), front.prog_addr.eq(prog_addr), front.prog_len.eq(prog_len),
                     front.abort.eq(stopping), load.abort.eq(stopping), store.abort.eq(stopping)]

        # Scratchpads: port a = the compute unit, port b = the load / store unit.
        group_bits = weight_group_layout(cfg.core).size
        pads = {
            "act": Scratchpad(cfg.act_rows, cfg.row_bits("act"), 8, "act"),
            "wgt": Scratchpad(cfg.wgt_rows, cfg.row_bits("wgt"), group_bits, "wgt"),
            "acc": Scratchpad(cfg.acc_rows, cfg.row_bits("acc"), None, "acc"),
            "param": Scratchpad(cfg.param_rows, cfg.row_bits("param"), None, "param"),
        }
        for name, pad in pads.items():
            m.submodules[f"{name}_sram"] = pad
            lanes = len(pad.b_wen)
            m.d.comb += [getattr(compute, f"{name}_rdata").eq(pad.rdata),
                         pad.a_raddr.eq(getattr(compute, f"{name}_raddr")),
                         pad.a_ren.eq(getattr(compute, f"{name}_ren"))]
            if name != "param":
                m.d.comb += [pad.a_waddr.eq(getattr(compute, f"{name}_waddr")),
                             pad.a_wdata.eq(getattr(compute, f"{name}_wdata"))]
                wen = getattr(compute, f"{name}_wen")
                m.d.comb += pad.a_wen.eq(wen if len(wen) == lanes else wen.replicate(lanes))
            if name in ("act", "wgt", "param"):
                sel = load.w_mem == getattr(Mem, name.upper()).value
                m.d.comb += [pad.b_waddr.eq(load.w_addr), pad.b_wdata.eq(load.w_data[:pad.width]),
                             pad.b_wen.eq(Mux(sel & load.w_en, (1 << lanes) - 1, 0))]
            if name in ("act", "acc"):
                sel = store.r_mem == getattr(Mem, name.upper()).value
                m.d.comb += [pad.b_raddr.eq(store.r_addr), pad.b_ren.eq(sel & store.r_en)]
        m.d.comb += [load.w_grant.eq(Mux(load.w_mem == Mem.ACT.value, pads["act"].b_wgrant,
                                         Mux(load.w_mem == Mem.WGT.value, pads["wgt"].b_wgrant,
                                             pads["param"].b_wgrant))),
                     store.r_grant.eq(Mux(store.r_mem == Mem.ACT.value, pads["act"].b_rgrant,
                                          pads["acc"].b_rgrant)),
                     store.r_data.eq(Mux(store.r_mem == Mem.ACT.value, pads["act"].rdata, pads["acc"].rdata))]

        # ------------------------------------------------------------------ AXI
        # Reads: fetch (ID 0) and load (ID 1), one burst each in flight; the grant holds
        # while a presented request waits, so ARADDR never changes under ARVALID.
        holding, held_sel, prefer_load = Signal(), Signal(), Signal()
        sel_load = Signal()
        m.d.comb += sel_load.eq(Mux(holding, held_sel,
                                    Mux(load.ar_valid & front.ar_valid, prefer_load, load.ar_valid)))
        m.d.comb += [
            axi.arvalid.eq(Mux(sel_load, load.ar_valid, front.ar_valid)),
            axi.araddr.eq(Mux(sel_load, load.ar_addr, front.ar_addr)),
            axi.arlen.eq(Mux(sel_load, load.ar_len, front.ar_len)),
            axi.arid.eq(Mux(sel_load, ID_LOAD, ID_FETCH)),
            axi.arsize.eq(bus_log2), axi.arburst.eq(BURST_INCR),
            load.ar_ready.eq(sel_load & axi.arready), front.ar_ready.eq(~sel_load & axi.arready),
        ]
        with m.If(axi.arvalid & ~axi.arready):
            m.d.sync += [holding.eq(1), held_sel.eq(sel_load)]
        with m.Else():
            m.d.sync += holding.eq(0)
            with m.If(axi.arvalid):
                m.d.sync += prefer_load.eq(~sel_load)       # the other requester goes next
        to_load = axi.rid == ID_LOAD
        m.d.comb += [
            load.r_valid.eq(axi.rvalid & to_load), front.r_valid.eq(axi.rvalid & ~to_load),
            load.r_data.eq(axi.rdata), front.r_data.eq(axi.rdata),
            load.r_resp.eq(axi.rresp), front.r_resp.eq(axi.rresp),
            load.r_last.eq(axi.rlast), front.r_last.eq(axi.rlast),
            # RID means nothing (a model may drive X) unless RVALID is high.
            axi.rready.eq(axi.rvalid & Mux(to_load, load.r_ready, front.r_ready)),
            axi.awvalid.eq(store.aw_valid), axi.awaddr.eq(store.aw_addr), axi.awlen.eq(store.aw_len),
            axi.awid.eq(ID_STORE), axi.awsize.eq(bus_log2), axi.awburst.eq(BURST_INCR),
            store.aw_ready.eq(axi.awready),
            axi.wvalid.eq(store.w_valid), axi.wdata.eq(store.w_data), axi.wstrb.eq(store.w_strb),
            axi.wlast.eq(store.w_last), store.w_ready.eq(axi.wready),
            store.b_valid.eq(axi.bvalid), store.b_resp.eq(axi.bresp), axi.bready.eq(store.b_ready),
        ]

        # ------------------------------------------------------- errors and end
        report = Signal()
        code, index = Signal(8), Signal(16)
        deadlock = Signal()
        tokens_left = Signal()
        m.d.comb += tokens_left.eq(~Cat(*[f.empty for f in fifos.values()]).all())
        held_index = [shells[q].insn[128:144] for q in Queue]
        waiting_index = Signal(16)
        candidates = [Mux(shells[q].held, held_index[q], 0xFFFF) for q in Queue]
        lowest = candidates[0]
        for c in candidates[1:]:
            lowest = Mux(c < lowest, c, lowest)
        m.d.comb += waiting_index.eq(lowest)
        with m.If(front.err_valid):
            m.d.comb += [report.eq(1), code.eq(front.err_code), index.eq(front.err_index)]
        with m.Elif(load.err):
            m.d.comb += [report.eq(1), code.eq(ErrorCode.AXI_READ), index.eq(held_index[Queue.LOAD])]
        with m.Elif(store.err):
            m.d.comb += [report.eq(1), code.eq(ErrorCode.AXI_WRITE), index.eq(held_index[Queue.STORE])]
        with m.Elif(compute.finish & tokens_left):
            m.d.comb += [report.eq(1), code.eq(ErrorCode.TOKENS_LEFT), index.eq(held_index[Queue.COMPUTE])]
        with m.Elif(deadlock):
            m.d.comb += [report.eq(1), code.eq(ErrorCode.DEADLOCK), index.eq(waiting_index)]

        # Deadlock: nothing can move (two cycles in a row, so no token is in flight).
        unit_stuck = Cat(*[(shells[q].held & shells[q].blocked) | (~shells[q].held & ~queues[q].r_rdy)
                           for q in Queue]).all()
        any_held = Cat(*[shells[q].held for q in Queue]).any()
        front_stuck = front.dispatched | front.blocked
        still = Signal()
        m.d.sync += still.eq(busy & ~stopping & unit_stuck & any_held & front_stuck & load.idle & store.idle
                             & compute.idle)
        m.d.comb += deadlock.eq(still & unit_stuck & any_held & front_stuck & load.idle & store.idle & compute.idle)

        quiet = Signal()
        m.d.comb += quiet.eq(~front.busy & load.idle & store.idle & compute.idle)
        with m.If(start):
            m.d.sync += [busy.eq(1), done.eq(0), error_flag.eq(0), error_code.eq(0), error_index.eq(0),
                         stopping.eq(0)]
            m.d.sync += [c.eq(0) for c in counters.values()]
            with m.If(prog_len == 0):
                m.d.sync += [stopping.eq(1), error_code.eq(ErrorCode.NO_FINISH), error_index.eq(0),
                             error_flag.eq(1)]
        with m.Elif(busy & ~stopping & report):
            m.d.sync += [stopping.eq(1), error_flag.eq(1), error_code.eq(code), error_index.eq(index)]
        with m.Elif(busy & ~stopping & compute.finish):
            m.d.sync += [stopping.eq(1), done.eq(1)]
        with m.Elif(stopping & quiet):
            m.d.sync += [busy.eq(0), stopping.eq(0)]
        m.d.comb += flush.eq(stopping | start)
        with m.If(clear_status & ~busy):
            m.d.sync += [done.eq(0), error_flag.eq(0), error_code.eq(0), error_index.eq(0)]

        # -------------------------------------------------------------- counters
        running = busy & ~stopping
        events = {
            "cycles": running,
            "load_busy": shells[Queue.LOAD].busy, "compute_busy": shells[Queue.COMPUTE].busy,
            "store_busy": shells[Queue.STORE].busy,
            "load_stall": shells[Queue.LOAD].stall, "compute_stall": shells[Queue.COMPUTE].stall,
            "store_stall": shells[Queue.STORE].stall,
            "core_beats": compute.beat,
            "insns": Cat(*[shells[q].go for q in Queue]),
        }
        with m.If(running):
            for name, ev in events.items():
                if name == "insns":
                    m.d.sync += counters[name].eq(counters[name] + sum(ev[k] for k in range(3)))
                else:
                    m.d.sync += counters[name].eq(counters[name] + ev)
            with m.If(axi.rvalid & axi.rready):
                m.d.sync += counters["bytes_read"].eq(counters["bytes_read"] + cfg.bus_bytes)
            m.d.sync += counters["bytes_written"].eq(counters["bytes_written"] + store.strobed)
        return m
