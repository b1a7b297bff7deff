"""The instruction-set simulator: the golden twin of the Tessera accelerator.

:class:`Machine` runs program words (:mod:`spec.isa`) on a DRAM image (bytes) with the
blocks' golden models (``golden.nm`` for the core's arithmetic, ``golden.pe_array`` for
the LP array, ``golden.tasd`` for the top-N unit, ``spec.numerics`` for POST's requantization) and returns the final DRAM, the
performance counters the hardware has, and a cycle estimate. The hardware (``hw.accel``)
must end with the same DRAM bit for bit and the same :data:`spec.isa.EXACT_COUNTERS`;
the cycle counters it measures are compared with the estimate within a stated tolerance.

Semantics (docs/isa.md is the page; this is the executable definition)
-----------------------------------------------------------------------
* Fetch decodes the program in order and dispatches each instruction to its queue
  (``queue_depth`` entries each); it stalls while that queue is full. Each instruction is
  checked on decode (:func:`spec.isa.check_static`): the first failing one stops the
  machine. FINISH must be the last instruction, and the last must be FINISH.
* Each unit takes the instruction at the head of its queue, waits until every token it
  pops is there, executes it, then pushes its tokens (waiting while a FIFO is full).
  FINISH also waits until the load and store queues are empty and idle, then requires
  every token FIFO to be empty.
* When no unit and no dispatch can progress before FINISH, the program deadlocks: the
  error names the lowest program index among the instructions the units hold. This
  outcome does not depend on timing (the queues and FIFOs form a Kahn network).
* The functional effect of each instruction (below) happens when it executes. A program
  whose result would depend on timing (a scratchpad row or a DRAM byte written by one
  queue and read or written by another without a token path between the two) is a
  *data race*; with ``strict`` (the default) the simulator reports it as a
  :class:`ProgramError` of its own (``RACE``): the hardware cannot detect it.
* Scratchpads hold what earlier runs left in them. A strict run also reports (``UNINIT``)
  any read of a scratchpad byte the run has not written: GEMM, POST, TOPN and STORE must
  read only what LOAD, GEMM, POST or TOPN wrote in the same run.

Instructions (field names of :data:`spec.isa.LAYOUTS`; ``cfg`` = the machine config)
-----------------------------------------------------------------------------------
* LOAD: ``for y, x: mem[sram + y*x_size + x] = DRAM row at dram + y*y_stride + x*pitch``.
* STORE: the inverse (``act`` or ``acc`` rows to DRAM; ``row_bytes`` bytes per row).
* GEMM: for block ``b``, column ``c``: the dot product over passes ``p`` and groups ``g``
  of ``act[act + c*act_stride + g]`` with ``wgt[wgt + (b*passes + p)*k_groups + g]``
  through the core (on a sparse core slots ``>= n_active`` count 0; a dense core ignores
  ``n_active``), into
  ``acc[acc + b*cols + c]`` (added to the old value with ``accumulate``), 32-bit wrap.
  Lane ``r`` of the accumulator row is core row ``r``; on a packing machine the other
  ``rows * (n - 1)`` lanes receive 0 (their old value with ``accumulate``).
  With ``pack = k > 0`` (``n_active = n >> k``), a block is ``rows << k`` logical rows:
  logical row ``l`` is core row ``l >> k``'s weight slots ``(l % 2^k) * n_active ...
  + n_active - 1`` and goes to lane ``l``.
* GEMM ``unit = 1`` (a machine with the LP array, ``cfg.lp``): codes are the low ``n``
  bits of ``act`` bytes; weight tile ``t = (b*passes + p)*k_groups + g`` is act rows
  ``wgt + t*rows ...``; per tile, ``golden.pe_array.array_outputs`` of the tile and the
  columns' groups at scale ``sf``, each wrapped to the array's accumulator, sign-extended
  and summed into lanes ``0 .. rows - 1`` (32-bit wrap; :meth:`Machine._gemm_lp`).
* POST: for block ``b``, column ``c``, lane ``j`` with ``L = b*R + j < lanes``
  (``R = rows << pack``, ``j < R``): the
  channel is ``L`` (``c`` when ``transpose``), the value ``acc[acc + b*cols + c][j]``,
  ``y = saturate8(relu?(round_half_up_shift(wrap32(value + bias) * mult, shift)))`` with
  the channel's ``param`` row; written to byte ``ch % m`` of activation row
  ``act + c*out_stride + ch // m`` (``act + L*out_stride + c // m`` when ``transpose``).
* TOPN: for column ``c``, group ``g``: term ``term`` of ``golden.tasd.decompose`` of
  ``act[act + c*act_stride + g]`` under the unit's series, padded with zero slots (value
  0, index 0) to the core's n (a dense core takes the term's dense group), into lane
  ``c % rows`` of ``wgt[wgt + ((c // rows)*passes + term)*k_groups + g]``.
* A size field of 0 makes an instruction move nothing (it still takes its tokens).

Timing (an estimate; :class:`Timing`)
-------------------------------------
The compute unit's durations are exact models of the hardware's (``compute_busy``):
GEMM ``beats + gemm_overhead`` (a packed GEMM takes the beats of its row blocks: packing
makes the blocks, not the beats, larger), POST ``elements + post_overhead``, TOPN ``groups +
topn_overhead`` and FINISH 1 cycle. LOAD and STORE use a DMA model: per AXI burst a
fixed latency plus one cycle per beat, and at most one scratchpad row per cycle.
Units start when their instruction is dispatched, their tokens have arrived and the
unit is free; the estimate is the time FINISH completes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from spec.accel import AcceleratorConfig
from spec.isa import (
    COUNTERS,
    WORD_BYTES,
    ErrorCode,
    Insn,
    Mem,
    Opcode,
    Queue,
    bytes_to_words,
    check_static,
    decode,
)
from spec.numerics import requantize, wrap
from spec.packing import pack_rows, unpack_rows

from . import GoldenError, tasd
from .pe_array import array_outputs

__all__ = ["ProgramError", "Timing", "RunResult", "Machine", "RACE", "UNINIT", "run_program"]

#: The error code of a data race (the simulator's own; the hardware cannot see races).
RACE = "RACE"
#: The error code of a read of scratchpad data the run has not written (the simulator's
#: own: the hardware keeps whatever an earlier run left there).
UNINIT = "UNINIT"

#: The token FIFOs as (from queue, to queue).
FIFOS = ((Queue.LOAD, Queue.COMPUTE), (Queue.COMPUTE, Queue.LOAD),
         (Queue.COMPUTE, Queue.STORE), (Queue.STORE, Queue.COMPUTE))


class ProgramError(GoldenError):
    """An illegal program: ``code`` (an :class:`spec.isa.ErrorCode`, or :data:`RACE`),
    ``index`` (the instruction) and a reason."""

    def __init__(self, code, index: int, reason: str):
        self.code, self.index, self.reason = code, index, reason
        name = code.name if isinstance(code, ErrorCode) else str(code)
        super().__init__(f"instruction {index}: {name}: {reason}")


@dataclass(frozen=True)
class Timing:
    """The cycle model. ``*_overhead``: cycles a compute instruction takes beyond one per
    beat / element / group (the hardware's pipeline fill and drain; exact); a GEMM on the
    LP unit takes ``rows + cols + lp_step_overhead`` per weight tile plus ``lp_overhead``. DMA (an
    estimate): ``read_latency`` cycles from an AXI read address to its first data beat,
    ``write_latency`` from a write burst's last beat to its response, ``insn_overhead``
    per LOAD/STORE, ``line_overhead`` per line, ``store_row_cycles`` per row a STORE reads
    and ``store_beat_cycles`` per beat it sends.
    Decode: ``decode_overhead`` plus ``decode_product`` per product its checks need;
    fetch reads each instruction in one burst (``read_latency`` plus its beats)."""

    gemm_overhead: int = 6
    lp_step_overhead: int = 4
    lp_overhead: int = 3
    post_overhead: int = 4
    topn_overhead: int = 3
    read_latency: int = 3
    write_latency: int = 3
    insn_overhead: int = 3
    line_overhead: int = 2
    store_row_cycles: int = 2
    store_beat_cycles: int = 2
    decode_overhead: int = 4
    decode_product: int = 10

    @classmethod
    def for_config(cls, config: AcceleratorConfig, **changes) -> "Timing":
        """The hardware's compute overheads for ``config`` (``hw.accel.compute``): GEMM's
        scratchpad read, the core's ``pipeline + 1`` stages and the two-cycle accumulator
        update; POST's four stages; TOPN's read, one stage per term and the write."""
        terms = len(config.topn_config.terms) if config.topn else 0
        values = {"gemm_overhead": config.pipeline + 3, "post_overhead": 4, "topn_overhead": terms + 1}
        if config.lp:       # the LP unit: per weight tile, the array's product stages + 1
            values["lp_step_overhead"] = config.lp_array.product_stages + 1
        return cls(**{**values, **changes})


@dataclass
class RunResult:
    """What a run returns: the final DRAM image, the counters (:data:`spec.isa.COUNTERS`),
    the cycle estimate, and a trace of ``(index, opcode, queue, start, end)``."""

    dram: np.ndarray
    counters: dict
    cycles: int
    trace: list = field(default_factory=list)


def _bursts(addr: int, length: int, bus: int, max_burst: int) -> list[int]:
    """Beats of each AXI burst covering bytes ``[addr, addr + length)``: aligned beats,
    at most ``max_burst`` each, never crossing a 4 KiB boundary."""
    if length <= 0:
        return []
    first, last = addr // bus, (addr + length - 1) // bus
    out, beat = [], first
    while beat <= last:
        page_end = ((beat * bus) // 4096 + 1) * 4096 // bus      # first beat of the next page
        n = min(max_burst, last - beat + 1, page_end - beat)
        out.append(n)
        beat += n
    return out


class Machine:
    """The accelerator's state (scratchpads, DRAM) and its program interpreter.

    Parameters
    ----------
    config : AcceleratorConfig
    dram : bytes-like
        The DRAM image (copied); its size is the DRAM's.
    timing : Timing, optional
        The cycle model (default: :meth:`Timing.for_config`).
    strict : bool
        Report data races (``RACE``) and reads of data the run did not write (``UNINIT``)
        as :class:`ProgramError`.
    """

    def __init__(self, config: AcceleratorConfig, dram, *, timing: Timing | None = None,
                 strict: bool = True):
        if not isinstance(config, AcceleratorConfig):
            raise GoldenError(f"Machine needs an AcceleratorConfig, not {config!r}")
        self.cfg = config
        self.timing = timing or Timing.for_config(config)
        self.check_races = strict
        self.dram = np.frombuffer(bytes(dram), dtype=np.uint8).copy()
        cfg = config
        core = cfg.core
        self.act = np.zeros((cfg.act_rows, cfg.m), np.int64)
        self.wgt_values = np.zeros((cfg.wgt_rows, cfg.rows, cfg.n), np.int64)
        self.wgt_indices = np.zeros((cfg.wgt_rows, cfg.rows, cfg.n), np.int64)
        self.acc = np.zeros((cfg.acc_rows, cfg.acc_lanes), np.int64)
        self.param = {k: np.zeros(cfg.param_rows, np.int64) for k in ("bias", "mult", "shift", "reserved")}
        self.sparse = core.sparse
        self.terms = cfg.topn_config.terms if cfg.topn else ()
        #: Byte ranges ``[lo, hi)`` whose accesses answer with an AXI error (fault injection).
        self.poisoned = []

    def poison(self, lo: int, hi: int) -> None:
        """Make every AXI access touching bytes ``[lo, hi)`` fail (SLVERR), as the bench's RAM does."""
        self.poisoned.append((int(lo), int(hi)))

    def _faulty(self, lo: int, hi: int) -> bool:
        """An access of bytes ``[lo, hi)`` fails: beyond the DRAM or touching a poisoned range."""
        return hi > len(self.dram) or any(lo < b and a < hi for a, b in self.poisoned)

    def _read_fails(self, addr: np.ndarray, length: int) -> bool:
        """Reads move whole beats: does any beat covering ``[a, a + length)`` fail?"""
        bus = self.cfg.bus_bytes
        a = np.asarray(addr, dtype=np.int64)
        lo, hi = (a // bus) * bus, -(-(a + length) // bus) * bus
        if (hi > len(self.dram)).any():
            return True
        return any(bool(((lo < b) & (p < hi)).any()) for p, b in self.poisoned)

    # --- rows <-> bytes -------------------------------------------------------------
    def _rows_to_mem(self, mem: Mem, first: int, rows: np.ndarray) -> None:
        cfg = self.cfg
        fields = unpack_rows(cfg.row_layout(mem.name.lower()), rows)
        k = slice(first, first + len(rows))
        if mem == Mem.ACT:
            self.act[k] = np.stack([fields[f"[{j}]"] for j in range(cfg.m)], axis=1)
        elif mem == Mem.WGT:
            for r in range(cfg.rows):
                for s in range(cfg.n):
                    self.wgt_values[k, r, s] = fields[f"[{r}].values[{s}]"]
                    self.wgt_indices[k, r, s] = fields[f"[{r}].indices[{s}]"] if self.sparse else s
        elif mem == Mem.PARAM:
            for name in self.param:
                self.param[name][k] = fields[name]
        else:
            raise GoldenError(f"LOAD cannot write {mem.name}")

    def _mem_to_rows(self, mem: Mem, first: int, count: int) -> np.ndarray:
        cfg = self.cfg
        k = slice(first, first + count)
        if mem == Mem.ACT:
            fields = {f"[{j}]": self.act[k, j] for j in range(cfg.m)}
        elif mem == Mem.ACC:
            fields = {f"[{j}]": self.acc[k, j] for j in range(cfg.acc_lanes)}
        else:
            raise GoldenError(f"STORE cannot read {mem.name}")
        name = mem.name.lower()
        return pack_rows(cfg.row_layout(name), fields, cfg.pitch(name))[:, :cfg.row_bytes(name)]

    # --- race detection -------------------------------------------------------------
    def _reset_races(self):
        cfg = self.cfg
        self._shadow = {}
        for mem in ("act", "wgt", "acc", "param"):
            depth = cfg.depth(mem)
            self._shadow[mem] = (np.full(depth, -1, np.int8), np.zeros(depth, np.int64),
                                 np.zeros((3, depth), np.int64))
        self._dram_shadow = None
        self._defined = {"act": np.zeros((cfg.act_rows, cfg.m), bool), "wgt": np.zeros((cfg.wgt_rows, cfg.rows), bool),
                         "acc": np.zeros(cfg.acc_rows, bool), "param": np.zeros(cfg.param_rows, bool)}

    def _define(self, mem: str, rows, lanes=None) -> None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if lanes is None:
            self._defined[mem][rows] = True
        else:
            self._defined[mem][rows, np.asarray(lanes, dtype=np.int64).reshape(-1)] = True

    def _require(self, mem: str, rows, index: int, what: str) -> None:
        """Raise UNINIT (strict runs) unless every lane of ``rows`` of ``mem`` was written."""
        if not self.check_races:
            return
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        ok = self._defined[mem][rows]
        if ok.ndim > 1:
            ok = ok.all(axis=-1)
        if not ok.all():
            row = int(rows[np.argmin(ok)])
            raise ProgramError(UNINIT, index, f"{what} reads {mem} row {row}, which this run has not "
                               "(completely) written")

    def _access(self, q: Queue, clock: np.ndarray, index: int, mem: str, rows, write: bool) -> None:
        if not self.check_races:
            return
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if not rows.size:
            return
        if mem == "dram":
            if self._dram_shadow is None:
                size = len(self.dram)
                self._dram_shadow = (np.full(size, -1, np.int8), np.zeros(size, np.int64),
                                     np.zeros((3, size), np.int64))
            wq, wseq, rseq = self._dram_shadow
        else:
            wq, wseq, rseq = self._shadow[mem]
        writer = wq[rows]
        other = (writer >= 0) & (writer != q)
        if other.any():
            seen = clock[np.maximum(writer, 0)]
            bad = other & (wseq[rows] > seen)
            if bad.any():
                row = int(rows[np.argmax(bad)])
                raise ProgramError(RACE, index, f"{'writes' if write else 'reads'} {mem} row {row} that "
                                   f"the {Queue(int(wq[row])).name.lower()} queue wrote without a token path")
        if write:
            for q2 in Queue:
                if q2 != q:
                    bad = rseq[q2, rows] > clock[q2]
                    if bad.any():
                        row = int(rows[np.argmax(bad)])
                        raise ProgramError(RACE, index, f"writes {mem} row {row} that the "
                                           f"{q2.name.lower()} queue reads without a token path")
            wq[rows] = q
            wseq[rows] = clock[q]
        else:
            rseq[q, rows] = clock[q]

    # --- the instructions -----------------------------------------------------------
    def _transfer_rows(self, f) -> tuple[np.ndarray, np.ndarray]:
        """(scratchpad rows, DRAM byte address of each row) of a LOAD/STORE."""
        count = f["y_size"] * f["x_size"]
        k = np.arange(count, dtype=np.int64)
        pitch = self.cfg.pitch(Mem(f["mem"]).name.lower())
        y, x = (k // f["x_size"], k % f["x_size"]) if count else (k, k)
        return f["sram"] + k, f["dram"] + y * f["y_stride"] + x * pitch

    def _load(self, insn: Insn, q, clock, index) -> dict:
        f, cfg = insn.fields, self.cfg
        mem = Mem(f["mem"])
        name = mem.name.lower()
        sram, addr = self._transfer_rows(f)
        stats = self._dma_stats(Opcode.LOAD, f, cfg.pitch(name))
        if not len(sram):
            return stats
        pitch = cfg.pitch(name)
        lines = f["dram"] + np.arange(f["y_size"]) * f["y_stride"]
        if self._read_fails(lines, f["x_size"] * pitch):
            raise ProgramError(ErrorCode.AXI_READ, index, "LOAD reads bytes beyond the DRAM or in a "
                               "range that answers errors")
        data = self.dram[addr[:, None] + np.arange(pitch)[None, :]]
        self._access(q, clock, index, "dram", (addr[:, None] + np.arange(pitch)).reshape(-1), write=False)
        self._access(q, clock, index, name, sram, write=True)
        self._define(name, sram)
        # Rows are consecutive in the scratchpad: decode in one go.
        self._rows_to_mem(mem, int(sram[0]), data)
        return stats

    def _store(self, insn: Insn, q, clock, index) -> dict:
        f, cfg = insn.fields, self.cfg
        mem = Mem(f["mem"])
        name = mem.name.lower()
        sram, addr = self._transfer_rows(f)
        stats = self._dma_stats(Opcode.STORE, f, cfg.pitch(name))
        if not len(sram):
            return stats
        nbytes = cfg.row_bytes(name)
        if (addr + nbytes > len(self.dram)).any() or any(
                bool(((addr < b) & (lo < addr + nbytes)).any()) for lo, b in self.poisoned):
            raise ProgramError(ErrorCode.AXI_WRITE, index, "STORE writes bytes beyond the DRAM or in a "
                               "range that answers errors")
        self._access(q, clock, index, name, sram, write=False)
        self._require(name, sram, index, "STORE")
        rows = self._mem_to_rows(mem, int(sram[0]), len(sram))
        target = (addr[:, None] + np.arange(nbytes)[None, :]).reshape(-1)
        self._access(q, clock, index, "dram", target, write=True)
        self.dram[target] = rows.reshape(-1)        # later rows win where rows overlap
        stats["bytes_written"] = len(sram) * nbytes
        return stats

    def _dma_stats(self, opcode: Opcode, f, pitch: int) -> dict:
        """Beats read (for bytes_read) and the DMA model's time of a LOAD/STORE (:class:`Timing`)."""
        cfg, t = self.cfg, self.timing
        lines = f["y_size"] if f["x_size"] else 0
        beats = 0
        cycles = t.insn_overhead
        rows = f["x_size"]
        for y in range(lines):
            start = f["dram"] + y * f["y_stride"]
            bursts = _bursts(start, rows * pitch, cfg.bus_bytes, cfg.max_burst)
            line_beats = sum(bursts)
            beats += line_beats
            if opcode == Opcode.LOAD:
                # one scratchpad row or one beat per cycle, whichever is slower, plus each
                # burst's address-to-data latency
                cycles += t.line_overhead + max(rows, line_beats) + len(bursts) * t.read_latency
            else:
                # each row read in two cycles, each beat sent in one, each burst's address
                # and its write response
                cycles += (t.line_overhead + rows * t.store_row_cycles + line_beats * t.store_beat_cycles
                           + len(bursts) * (1 + t.write_latency))
        return {"beats": beats, "cycles": cycles, "bytes_written": 0}

    def _decode_cycles(self, insn: Insn) -> int:
        """Cycles decode spends on ``insn``: the static check's products, radix-4 (spec.isa)."""
        products = {Opcode.LOAD: 2, Opcode.STORE: 2, Opcode.GEMM: 4, Opcode.POST: 2, Opcode.TOPN: 3}
        return self.timing.decode_overhead + products.get(insn.opcode, 0) * self.timing.decode_product

    def _gemm_rows(self, f, q, clock, index, wgt_mem: str, wgt_rows, what: tuple[str, str]):
        """A GEMM's activation, weight (in ``wgt_mem``) and accumulator rows, with their race
        and written-data checks; the accumulator rows become written."""
        act_rows = f["act"] + np.arange(f["cols"])[:, None] * f["act_stride"] + np.arange(f["k_groups"])[None, :]
        acc_rows = f["acc"] + np.arange(f["row_blocks"] * f["cols"])
        self._access(q, clock, index, "act", act_rows, write=False)
        self._access(q, clock, index, wgt_mem, wgt_rows, write=False)
        if f["accumulate"]:
            self._access(q, clock, index, "acc", acc_rows, write=False)
        self._access(q, clock, index, "acc", acc_rows, write=True)
        self._require("act", act_rows, index, what[0])
        self._require(wgt_mem, wgt_rows, index, what[1])
        if f["accumulate"]:
            self._require("acc", acc_rows, index, "GEMM (accumulate)")
        self._define("acc", acc_rows)
        return act_rows, wgt_rows, acc_rows

    def _gemm(self, insn: Insn, q, clock, index) -> dict:
        f, cfg = insn.fields, self.cfg
        rb, cols, groups, passes = f["row_blocks"], f["cols"], f["k_groups"], f["passes"]
        beats = rb * cols * groups * passes
        if not beats:
            return {"cycles": 1, "beats": 0}
        if f["unit"] == 1:
            return self._gemm_lp(insn, q, clock, index)
        m, rows, n = cfg.m, cfg.rows, cfg.n
        wgt_rows = f["wgt"] + np.arange(rb * passes * groups)
        act_rows, wgt_rows, acc_rows = self._gemm_rows(f, q, clock, index, "wgt", wgt_rows, ("GEMM", "GEMM"))
        x = self.act[act_rows].reshape(cols, groups * m).T.astype(np.float64)       # [G*m, C]
        values = self.wgt_values[wgt_rows].reshape(rb, passes, groups, rows, n)
        indices = self.wgt_indices[wgt_rows].reshape(rb, passes, groups, rows, n)
        # A packed GEMM: core row r's slots split into 2^pack groups of n_active, logical
        # rows r * 2^pack + q (spec.nm_core.logical_slot); every slot of them active.
        pack = f["pack"]
        lr, slots = rows << pack, n >> pack
        if pack:
            values = values.reshape(rb, passes, groups, lr, slots)
            indices = indices.reshape(rb, passes, groups, lr, slots)
        # n_active selects the slots of a sparse core; a dense core (n == m) has no slots
        # to switch off: all m positions are always active.
        active = np.arange(slots) < f["n_active"] if self.sparse else np.ones(n, bool)
        onehot = (indices[..., None] == np.arange(m)) & active[:, None]              # [.., n, m]
        dense = np.einsum("bpgrs,bpgrsk->brpgk", values, onehot.astype(np.int64))    # duplicates add
        w = dense.reshape(rb * lr, passes, groups * m).sum(axis=1).astype(np.float64)
        y = np.rint(w @ x).astype(np.int64)                                          # exact: |sum| << 2^53
        y = y.reshape(rb, lr, cols).transpose(0, 2, 1).reshape(rb * cols, lr)
        if lr < cfg.acc_lanes:          # the lanes this GEMM does not compute receive 0
            y = np.pad(y, ((0, 0), (0, cfg.acc_lanes - lr)))
        old = self.acc[acc_rows] if f["accumulate"] else 0
        self.acc[acc_rows] = wrap(old + y, 32)
        return {"cycles": beats + self.timing.gemm_overhead, "beats": beats}

    def _gemm_lp(self, insn: Insn, q, clock, index) -> dict:
        """GEMM on the LP unit (docs/isa.md): per weight tile ``t`` (block ``b``, pass ``p``,
        group ``g``), the array's outputs for every column, each wrapped to the array's
        ``acc_width`` (``golden.pe_array.array_outputs``), sign-extended and summed into
        the 32-bit accumulator lanes ``0 .. rows - 1``."""
        f, cfg, arr = insn.fields, self.cfg, self.cfg.lp_array
        rb, cols, groups, passes = f["row_blocks"], f["cols"], f["k_groups"], f["passes"]
        rows, m, steps = cfg.rows, cfg.m, passes * groups
        w_rows = f["wgt"] + np.arange(rb * steps * rows)
        act_rows, w_rows, acc_rows = self._gemm_rows(f, q, clock, index, "act", w_rows,
                                                     ("GEMM (LP activations)", "GEMM (LP weights)"))
        mask = (1 << arr.n) - 1                       # a code is the low n bits of its byte
        codes = self.act & mask
        x = codes[act_rows]                                           # [C, G, m]
        w = codes[w_rows].reshape(rb, passes, groups, rows, m)
        y = np.zeros((rb, cols, rows), np.int64)
        for b in range(rb):
            for p in range(passes):
                for g in range(groups):
                    acc, _ = array_outputs(arr, w[b, p, g], x[:, g, :], sf=f["sf"])   # [C, rows]
                    y[b] += acc
        y = y.reshape(rb * cols, rows)
        if rows < cfg.acc_lanes:
            y = np.pad(y, ((0, 0), (0, cfg.acc_lanes - rows)))
        old = self.acc[acc_rows] if f["accumulate"] else 0
        self.acc[acc_rows] = wrap(old + y, 32)
        tiles = rb * steps
        cycles = tiles * (rows + cols + self.timing.lp_step_overhead) + self.timing.lp_overhead
        return {"cycles": cycles, "beats": rb * cols * steps}

    def _post(self, insn: Insn, q, clock, index) -> dict:
        f, cfg = insn.fields, self.cfg
        rb, cols, lanes = f["row_blocks"], f["cols"], f["lanes"]
        block = cfg.block_rows(f["pack"])
        elements = rb * cols * block
        if not elements or not lanes:
            return {"cycles": 1}
        b, c, j = np.meshgrid(np.arange(rb), np.arange(cols), np.arange(block), indexing="ij")
        b, c, j = b.reshape(-1), c.reshape(-1), j.reshape(-1)        # hardware order: b, c, j
        lane = b * block + j
        keep = lane < lanes
        b, c, j, lane = b[keep], c[keep], j[keep], lane[keep]
        acc_row = f["acc"] + b * cols + c
        if f["transpose"]:
            ch = c
            row = f["act"] + lane * f["out_stride"] + c // cfg.m
            byte = c % cfg.m
        else:
            ch = lane
            row = f["act"] + c * f["out_stride"] + lane // cfg.m
            byte = lane % cfg.m
        prow = f["param"] + ch
        self._access(q, clock, index, "acc", acc_row, write=False)
        self._access(q, clock, index, "param", prow, write=False)
        self._access(q, clock, index, "act", row, write=True)
        self._require("acc", acc_row, index, "POST")
        self._require("param", prow, index, "POST")
        self._define("act", row, byte)
        out = requantize(self.acc[acc_row, j], self.param["bias"][prow], self.param["mult"][prow],
                         self.param["shift"][prow], bool(f["relu"]))
        # Later writes win on a repeated (row, byte): keep each target's last element.
        target = row * cfg.m + byte
        _, last = np.unique(target[::-1], return_index=True)
        last = len(target) - 1 - last
        flat = self.act.reshape(-1)
        flat[target[last]] = out[last]
        return {"cycles": elements + self.timing.post_overhead}

    def _topn(self, insn: Insn, q, clock, index) -> dict:
        f, cfg = insn.fields, self.cfg
        cols, groups, term = f["cols"], f["k_groups"], f["term"]
        if not cols * groups:
            return {"cycles": 1}
        act_rows = f["act"] + np.arange(cols)[:, None] * f["act_stride"] + np.arange(groups)[None, :]
        c = np.arange(cols)
        dest = f["wgt"] + (((c // cfg.rows) * f["passes"] + term) * groups)[:, None] + np.arange(groups)[None, :]
        self._access(q, clock, index, "act", act_rows, write=False)
        self._access(q, clock, index, "wgt", dest, write=True)
        self._require("act", act_rows, index, "TOPN")
        self._define("wgt", dest, np.repeat(c % cfg.rows, groups))
        groups_in = self.act[act_rows]                              # [C, G, m]
        terms = tasd.decompose(groups_in.reshape(cols * groups, 1, cfg.m), self.terms)
        n_t = self.terms[term][0]
        values = np.zeros((cols * groups, cfg.n), np.int64)
        indices = np.zeros((cols * groups, cfg.n), np.int64)
        if self.sparse:             # the term's slots, then zero slots at position 0
            values[:, :n_t] = terms[term].values.reshape(cols * groups, n_t)
            indices[:, :n_t] = terms[term].indices.reshape(cols * groups, n_t)
        else:                       # a dense core takes the term as a dense group
            values[:] = terms[term].dense().reshape(cols * groups, cfg.m)
            indices[:] = np.arange(cfg.n)
        lane = np.repeat(c % cfg.rows, groups)
        flat_dest = dest.reshape(-1)
        self.wgt_values[flat_dest, lane] = values
        self.wgt_indices[flat_dest, lane] = indices
        return {"cycles": cols * groups + self.timing.topn_overhead}

    # --- the run --------------------------------------------------------------------
    def run(self, prog_addr: int, prog_len: int) -> RunResult:
        """Run ``prog_len`` instructions from byte ``prog_addr``. Raises
        :class:`ProgramError` for an illegal program (code, index, reason)."""
        cfg, t = self.cfg, self.timing
        if prog_addr % WORD_BYTES or prog_addr < 0:
            raise GoldenError(f"the program address {prog_addr:#x} must be a multiple of {WORD_BYTES}")
        if prog_len < 1:
            raise ProgramError(ErrorCode.NO_FINISH, 0, "the program is empty")
        fetchable = max(0, min(prog_len, (len(self.dram) - prog_addr) // WORD_BYTES))
        words = bytes_to_words(self.dram[prog_addr:prog_addr + fetchable * WORD_BYTES].tobytes())
        self._reset_races()
        counters = dict.fromkeys(COUNTERS, 0)
        # Fetch reads each instruction in a burst of its own (whole beats).
        counters["bytes_read"] = prog_len * max(WORD_BYTES, cfg.bus_bytes)
        fetch_cycles = t.read_latency + max(1, WORD_BYTES // cfg.bus_bytes) + 1

        queues = {q: deque() for q in Queue}
        held = dict.fromkeys(Queue)            # (index, insn, ready time, phase) held by a unit
        fifos = {key: deque() for key in FIFOS}  # entries: (time, vector clock)
        clocks = {q: np.zeros(3, np.int64) for q in Queue}
        free = dict.fromkeys(Queue, 0)
        next_index, fetch_time = 0, t.read_latency
        trace = []
        decoded = {}

        while True:
            progress = False
            # 1. dispatch in order while the target queue has room
            while next_index < prog_len:
                if next_index not in decoded:
                    word_addr = prog_addr + next_index * WORD_BYTES
                    if next_index >= fetchable or self._read_fails(np.array([word_addr]), WORD_BYTES):
                        raise ProgramError(ErrorCode.AXI_READ, next_index, "the instruction cannot be "
                                           "fetched (beyond the DRAM or in a range that answers errors)")
                    decoded[next_index] = (decode(words[next_index]), None)
                    decoded[next_index] = (decoded[next_index][0], check_static(decoded[next_index][0], cfg))
                insn, problem = decoded[next_index]
                if problem is None:
                    last = next_index == prog_len - 1
                    if insn.opcode == Opcode.FINISH and not last:
                        problem = (ErrorCode.NO_FINISH, f"FINISH at {next_index} is not the last instruction "
                                                        f"(the program has {prog_len})")
                    elif last and insn.opcode != Opcode.FINISH:
                        problem = (ErrorCode.NO_FINISH, "the last instruction is not FINISH")
                if problem is not None:
                    raise ProgramError(problem[0], next_index, problem[1])
                q = insn.queue
                if len(queues[q]) >= cfg.queue_depth:
                    break
                fetch_time += max(fetch_cycles, self._decode_cycles(insn))
                queues[q].append((next_index, insn, fetch_time))
                next_index += 1
                progress = True
            # 2. units take their next instruction
            for q in Queue:
                if held[q] is None and queues[q]:
                    index, insn, ready = queues[q].popleft()
                    held[q] = [index, insn, max(ready, free[q]), "pop"]
                    progress = True
            # 3. the unit whose instruction can start first executes it
            best = None
            for q in Queue:
                if held[q] is None:
                    continue
                index, insn, ready, phase = held[q]
                f = insn.fields
                if phase == "pop":
                    need = []
                    if f["pop_prev"]:
                        need.append((Queue(q - 1), q))
                    if f["pop_next"]:
                        need.append((Queue(q + 1), q))
                    if any(not fifos[key] for key in need):
                        continue
                    start = max([ready] + [fifos[key][0][0] for key in need])
                    if insn.opcode == Opcode.FINISH:
                        busy = [q2 for q2 in (Queue.LOAD, Queue.STORE) if held[q2] or queues[q2]]
                        if busy:
                            continue
                        start = max(start, free[Queue.LOAD], free[Queue.STORE])
                    if best is None or start < best[0]:
                        best = (start, q, need)
                else:                                          # waiting to push
                    targets = []
                    if f["push_prev"]:
                        targets.append((q, Queue(q - 1)))
                    if f["push_next"]:
                        targets.append((q, Queue(q + 1)))
                    if all(len(fifos[key]) < cfg.token_depth for key in targets):
                        for key in targets:
                            fifos[key].append((ready, clocks[q].copy()))
                        free[q] = ready
                        held[q] = None
                        progress = True
            if best is not None:
                start, q, need = best
                index, insn, ready, _ = held[q]
                for key in need:
                    _, vc = fifos[key].popleft()
                    np.maximum(clocks[q], vc, out=clocks[q])
                clocks[q][q] += 1
                counters[f"{q.name.lower()}_stall"] += max(0, start - ready)
                if insn.opcode == Opcode.FINISH:
                    left = [f"{a.name.lower()}->{b.name.lower()}" for (a, b), fifo in fifos.items() if fifo]
                    if left:
                        raise ProgramError(ErrorCode.TOKENS_LEFT, index, f"tokens left in {', '.join(left)}")
                    counters["compute_busy"] += 1
                    counters["insns"] += 1
                    counters["cycles"] = start + 1
                    trace.append((index, insn.opcode, q, start, start + 1))
                    return RunResult(self.dram, counters, start + 1, trace)
                stats = {Opcode.LOAD: self._load, Opcode.STORE: self._store, Opcode.GEMM: self._gemm,
                         Opcode.POST: self._post, Opcode.TOPN: self._topn}[insn.opcode](insn, q, clocks[q], index)
                duration = stats["cycles"]
                counters[f"{q.name.lower()}_busy"] += duration
                counters["core_beats"] += stats.get("beats", 0) if insn.opcode == Opcode.GEMM else 0
                if insn.opcode in (Opcode.LOAD, Opcode.STORE):
                    if insn.opcode == Opcode.LOAD:
                        counters["bytes_read"] += stats["beats"] * cfg.bus_bytes
                    counters["bytes_written"] += stats["bytes_written"]
                counters["insns"] += 1
                trace.append((index, insn.opcode, q, start, start + duration))
                held[q] = [index, insn, start + duration, "push"]
                progress = True
            if not progress:
                waiting = [held[q][0] for q in Queue if held[q] is not None]
                if not waiting:
                    raise ProgramError(ErrorCode.NO_FINISH, max(next_index - 1, 0), "the program ran out")
                index = min(waiting)
                raise ProgramError(ErrorCode.DEADLOCK, index,
                                   "every unit waits for a token that no instruction still to run can give")


def run_program(config: AcceleratorConfig, dram, prog_addr: int, prog_len: int, **options) -> RunResult:
    """``Machine(config, dram, **options).run(prog_addr, prog_len)``."""
    return Machine(config, dram, **options).run(prog_addr, prog_len)
