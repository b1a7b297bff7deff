"""Constrained-random programs for the accelerator, legal and illegal.

:func:`legal_program` builds a program of ``tiles`` rounds of load -> compute -> store
with random shapes, scratchpad addresses, DRAM layouts (2-D transfers with gaps),
strides, edge values (-128/127 activations and weights, extreme POST parameters), empty
instructions that only carry tokens, optional TOPN, packed GEMMs and POSTs on a packing
machine (``pack`` > 0, beside unpacked ones accumulating into the same rows), GEMMs on
the LP unit on a machine with one (``unit = 1``, random ``sf``; its weight tiles loaded
into ``act`` beside the activations, random bytes of which the unit takes the low ``n``
bits as codes, NaR and zero included), and single or double buffering whose
dependency tokens let the three queues overlap. Its token pattern is race-free and
balanced by construction: every buffer a queue hands to another is handed over with a
token, and every token pushed is popped. The ISS checks each program (a data race, a
deadlock or an error in a "legal" program is a generator bug and raises).

:func:`illegal_program` mutates a legal program into one with exactly one error of a
given :class:`spec.isa.ErrorCode` class, and :data:`ILLEGAL_CLASSES` lists the classes.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from compiler.program import Program, act_rows, param_rows, wgt_rows
from golden.iss import Machine, ProgramError
from spec.accel import AcceleratorConfig
from spec.isa import WORD_BYTES, ErrorCode, Insn, Mem, Opcode, encode, words_to_bytes

from . import VerifError
from .accel_run import AccelProgram

__all__ = ["legal_program", "illegal_program", "ILLEGAL_CLASSES", "FuzzCase"]

ILLEGAL_CLASSES = (ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_FIELD, ErrorCode.SRAM_RANGE,
                   ErrorCode.BAD_TOKEN, ErrorCode.DEADLOCK, ErrorCode.TOKENS_LEFT,
                   ErrorCode.NO_FINISH, ErrorCode.AXI_READ, ErrorCode.AXI_WRITE)


@dataclass
class FuzzCase:
    """A generated program with what built it (for replay)."""

    program: AccelProgram
    seed: int
    kind: str
    insns: list = field(default_factory=list)


def _values(rng, shape, extreme: bool):
    if extreme:
        return rng.choice([-128, 127, -1, 0, 1], size=shape)
    return rng.integers(-128, 128, shape)


def legal_program(config: AcceleratorConfig, seed: int, *, tiles: int | None = None) -> FuzzCase:
    """A random legal program (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cfg = config
    m, rows, n = cfg.m, cfg.rows, cfg.n
    extreme = bool(rng.random() < 0.25)
    tiles = int(rng.integers(1, 5)) if tiles is None else tiles
    buffers = int(rng.choice([1, 2]))
    # Each buffer gets an equal slice of every scratchpad.
    slice_rows = {mem: cfg.depth(mem) // buffers for mem in ("act", "wgt", "acc")}
    prog = Program(cfg)
    topn_terms = len(cfg.topn_config.terms) if cfg.topn else 0

    # Parameters: one region, loaded once at the start (push to compute).
    channels = min(cfg.param_rows, 64)
    if extreme:
        bias = rng.choice([-(1 << 31), (1 << 31) - 1, 0, -1], size=channels)
        mult = rng.choice([0, 1, 65535], size=channels)
        shift = rng.choice([0, 1, 47, 63], size=channels)
    else:
        bias = rng.integers(-5000, 5000, channels)
        mult = rng.integers(0, 1 << 12, channels)
        shift = rng.integers(0, 24, channels)
    params = prog.put("params", param_rows(cfg, bias, mult, shift))
    prog.emit(Opcode.LOAD, mem=Mem.PARAM, sram=0, dram=params.addr, y_size=1, x_size=channels, push_next=1)
    prog.emit(Opcode.GEMM, pop_prev=1)                       # an empty GEMM takes the params token

    acc_written = {}                                          # accumulator ranges this run has written
    pending_free = {b: 0 for b in range(buffers)}            # compute -> load tokens owed to buffer b
    pending_out = {b: 0 for b in range(buffers)}             # store -> compute tokens owed to buffer b
    for tile in range(tiles):
        b = tile % buffers
        act_base, wgt_base, acc_base = (b * slice_rows["act"], b * slice_rows["wgt"], b * slice_rows["acc"])
        # POST must write every byte of the rows the STORE takes (a strict ISS run refuses
        # to store bytes this run did not write): whole m-groups of channels per column, or
        # with `transpose` whole m-groups of columns per token.
        transpose = int(rng.random() < 0.25)
        lp_tile = bool(cfg.lp) and rng.random() < 0.5       # this tile's GEMMs on the LP unit
        min_rb = -(-m // rows)
        rb = int(rng.integers(min_rb, min_rb + 3))
        cols = m if transpose else int(rng.integers(1, 7))
        groups = int(rng.integers(1, 5))
        passes = int(rng.integers(1, 4)) if not topn_terms else max(int(rng.integers(1, 4)), topn_terms)
        stride = int(rng.integers(1, groups + 3))
        act_need = (cols - 1) * stride + groups
        lp_need = lambda: rb * passes * groups * rows if lp_tile else 0        # noqa: E731 (weights in act)
        # Keep the rows a tile needs inside its buffer slice (half of act for POST output).
        while act_need + lp_need() > slice_rows["act"] // 2 or rb * passes * groups > slice_rows["wgt"] or \
                rb * cols > slice_rows["acc"]:
            if transpose and rb == min_rb and groups == 1:    # m columns do not fit: not transposed
                transpose = 0
            rb, groups, passes = max(min_rb, rb - 1), max(1, groups - 1), max(1, passes - 1)
            cols = cols if transpose else max(1, cols - 1)
            stride = max(1, min(stride - 1, groups + 2))
            act_need = (cols - 1) * stride + groups
        act_off = int(rng.integers(0, slice_rows["act"] // 2 - act_need - lp_need() + 1))
        wgt_rows_n = rb * passes * groups
        wgt_off = int(rng.integers(0, slice_rows["wgt"] - wgt_rows_n + 1))
        if lp_tile:             # the weight tiles go into act, after the activations
            wgt_rows_n = lp_need()
            wgt_off = act_off + act_need + int(rng.integers(0, slice_rows["act"] // 2 - act_off - act_need
                                                            - wgt_rows_n + 1))
        acc_off = int(rng.integers(0, slice_rows["acc"] - rb * cols + 1))

        # ---- load queue: activations and weights of the tile into buffer b
        groups_data = _values(rng, (act_need, m), extreme)
        values = _values(rng, (wgt_rows_n, rows, n), extreme)
        indices = rng.integers(0, m, (wgt_rows_n, rows, n))
        wait_free = pending_free[b] > 0
        weights = (Mem.WGT, wgt_rows(cfg, values, indices), wgt_base + wgt_off)
        if lp_tile:
            weights = (Mem.ACT, act_rows(cfg, _values(rng, (wgt_rows_n, m), extreme)), act_base + wgt_off)
        for name, (mem, data_rows, base), count in (("act", (Mem.ACT, act_rows(cfg, groups_data), act_base + act_off),
                                                     act_need), ("wgt", weights, wgt_rows_n)):
            pitch = cfg.pitch(mem.name.lower())
            # A 2-D layout in DRAM: lines of x rows with a random gap between them.
            divisors = [d for d in range(1, count + 1) if count % d == 0]
            x = int(rng.choice(divisors))
            y = count // x
            gap = int(rng.integers(0, 3)) * pitch
            line = x * pitch + gap
            blob = bytearray(y * line)
            for k in range(y):
                blob[k * line:k * line + x * pitch] = data_rows[k * x * pitch:(k + 1) * x * pitch]
            region = prog.put(f"t{tile}_{name}", bytes(blob), align=max(pitch, 16))
            prog.emit(Opcode.LOAD, mem=mem, sram=base, dram=region.addr, y_size=y, x_size=x, y_stride=line,
                      pop_next=int(wait_free))
            wait_free = False
        if pending_free[b]:
            pending_free[b] -= 1
        if rng.random() < 0.2:
            prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=0, dram=0, y_size=0, x_size=int(rng.integers(0, 3)))
        prog.emit(Opcode.LOAD, mem=Mem.WGT, sram=0, dram=0, y_size=0, x_size=0, push_next=1)   # tile ready

        # ---- compute: GEMM(s), optional TOPN, POST
        act_addr, wgt_addr, acc_addr = act_base + act_off, wgt_base + wgt_off, acc_base + acc_off
        unit = {}
        if lp_tile:             # n_active is ignored by the LP unit: left random
            wgt_addr = act_base + wgt_off
            unit = {"unit": 1, "sf": int(rng.integers(-32, 32)) if rng.random() < 0.3 else int(rng.integers(-6, 7))}
        out_base = act_base + slice_rows["act"] // 2
        waits_out = pending_out[b] > 0
        n_active = int(rng.integers(0, n + 1)) if rng.random() < 0.3 else n
        # A packing machine runs half its GEMMs packed: 2^pack logical rows per core row.
        pack = int(rng.integers(1, cfg.max_pack + 1)) if cfg.packing and rng.random() < 0.5 else 0
        if pack:
            n_active = n >> pack
        block = cfg.block_rows(pack)
        prog.emit(Opcode.GEMM, wgt=wgt_addr, act=act_addr, acc=acc_addr, row_blocks=rb, cols=cols,
                  k_groups=groups, passes=passes, act_stride=stride, n_active=n_active, pack=pack,
                  accumulate=int(tile > 0 and acc_written.get((acc_addr, rb * cols)) is not None and rng.random() < 0.5),
                  pop_prev=1, pop_next=int(waits_out), **unit)
        acc_written[(acc_addr, rb * cols)] = tile
        if pending_out[b]:
            pending_out[b] -= 1
        if rng.random() < 0.4:
            prog.emit(Opcode.GEMM, wgt=wgt_addr, act=act_addr, acc=acc_addr, row_blocks=rb, cols=cols,
                      k_groups=groups, passes=passes, act_stride=stride, n_active=n, accumulate=1, **unit)
        if topn_terms and not lp_tile and rng.random() < 0.6:
            tcols = min(cols, rows * rb)
            for term in range(topn_terms):
                prog.emit(Opcode.TOPN, act=act_addr, wgt=wgt_addr, cols=tcols, k_groups=groups,
                          act_stride=stride, term=term, passes=passes)
            prog.emit(Opcode.GEMM, wgt=wgt_addr, act=act_addr, acc=acc_addr, row_blocks=-(-tcols // rows),
                      cols=cols, k_groups=groups, passes=passes, act_stride=stride, n_active=n, accumulate=0)
            pack = 0                 # the POST below reads this unpacked GEMM's rows
            block = cfg.block_rows(pack)
        if transpose:
            lanes = int(rng.integers(1, rb * block + 1))          # tokens
            out_stride = cols // m
            out_rows = lanes * out_stride
        else:
            lanes = m * int(rng.integers(1, min(rb * block, channels) // m + 1))   # channels, whole groups
            out_stride = lanes // m
            out_rows = cols * out_stride
        if out_rows > slice_rows["act"] // 2 or (lanes if not transpose else cols) > channels:
            raise VerifError(f"generator bug: seed {seed} tile {tile} needs {out_rows} output rows")
        last_use = tile + buffers < tiles                    # a later tile reloads this buffer
        prog.emit(Opcode.POST, acc=acc_addr, act=out_base, param=0, row_blocks=rb, cols=cols,
                  out_stride=out_stride, lanes=lanes, relu=int(rng.random() < 0.5), transpose=transpose, pack=pack,
                  push_prev=int(last_use), push_next=1)
        if last_use:
            pending_free[b] += 1

        # ---- store queue: the POST output (act rows) and sometimes the accumulators
        store_acc = rng.random() < 0.3
        out = prog.alloc(f"t{tile}_out", out_rows * cfg.pitch("act"), align=16)
        prog.emit(Opcode.STORE, mem=Mem.ACT, sram=out_base, dram=out.addr, y_size=1, x_size=out_rows, pop_prev=1,
                  push_prev=int(last_use and not store_acc))
        if store_acc:
            accs = prog.alloc(f"t{tile}_acc", rb * cols * cfg.pitch("acc"), align=cfg.pitch("acc"))
            y = int(rng.choice([d for d in range(1, rb * cols + 1) if (rb * cols) % d == 0]))
            x = rb * cols // y
            prog.emit(Opcode.STORE, mem=Mem.ACC, sram=acc_addr, dram=accs.addr, y_size=y, x_size=x,
                      y_stride=x * cfg.pitch("acc"), push_prev=int(last_use))
        if last_use:
            pending_out[b] += 1
    prog.emit(Opcode.FINISH)
    dram, prog_addr, prog_len = prog.image(extra=int(rng.integers(0, 3)) * 4096)
    case = FuzzCase(AccelProgram(f"legal-{seed}", dram, prog_addr, prog_len), seed, "legal", list(prog.insns))
    _check_legal(cfg, case)
    return case


def _check_legal(cfg, case: FuzzCase) -> None:
    try:
        Machine(cfg, case.program.dram).run(case.program.prog_addr, case.program.prog_len)
    except ProgramError as exc:
        raise VerifError(f"generator bug: legal program {case.program.name} fails on the ISS: {exc}") from None


def _rebuild(cfg, case: FuzzCase, insns: list, kind: str, poisoned=()) -> FuzzCase:
    """The case's DRAM with its program words replaced by ``insns`` (same address)."""
    dram = bytearray(case.program.dram)
    words = words_to_bytes(encode(i) if isinstance(i, Insn) else i for i in insns)
    start = case.program.prog_addr
    end = start + len(words)
    if end > len(dram):
        dram.extend(bytes(-(-(end - len(dram)) // 4096) * 4096))
    dram[start:start + case.program.prog_len * WORD_BYTES] = bytes(case.program.prog_len * WORD_BYTES)
    dram[start:end] = words
    prog = AccelProgram(f"{kind}-{case.seed}", bytes(dram), start, len(insns), list(poisoned))
    return FuzzCase(prog, case.seed, kind, [i for i in insns if isinstance(i, Insn)])


def _set(insn: Insn, **fields) -> Insn:
    return replace(insn, fields={**insn.fields, **fields})


def illegal_program(config: AcceleratorConfig, seed: int, code: ErrorCode) -> FuzzCase:
    """A legal program of ``seed`` mutated to show exactly the error ``code``."""
    cfg = config
    base = legal_program(cfg, seed)
    rng = np.random.default_rng(seed + 7919)
    insns = list(base.insns)
    idx = {op: [k for k, i in enumerate(insns) if i.opcode == op] for op in Opcode}
    kind = f"illegal-{code.name.lower()}"
    poisoned = []
    if code == ErrorCode.ILLEGAL_OPCODE:
        k = int(rng.integers(0, len(insns) - 1))
        raw = int(rng.choice([0, 7, 9, 15] + ([Opcode.TOPN.value] if not cfg.topn else [])))
        word = (encode(insns[k]) & ~0xF) | raw
        insns[k] = word
    elif code == ErrorCode.BAD_FIELD:
        choice = rng.integers(0, 5)
        if choice == 0:
            k = int(rng.choice(idx[Opcode.LOAD]))
            insns[k] = _set(insns[k], mem=Mem.ACC, x_size=max(1, insns[k].fields.get("x_size", 1)),
                            y_size=max(1, insns[k].fields.get("y_size", 1)))
        elif choice == 1:
            k = int(rng.choice(idx[Opcode.GEMM]))
            insns[k] = _set(insns[k], n_active=cfg.n + 1 + int(rng.integers(0, 15 - cfg.n)))
        elif choice == 2:
            k = int(rng.choice(idx[Opcode.GEMM]))
            insns[k] = _set(insns[k], unit=int(rng.integers(cfg.units, 4)))     # 1 is the LP unit, if any
        elif choice == 3:       # a pack the machine cannot run (GEMM: n_active << pack != n)
            k = int(rng.choice(idx[Opcode.GEMM] + idx[Opcode.POST]))
            if insns[k].opcode == Opcode.POST:
                insns[k] = _set(insns[k], pack=cfg.max_pack + 1 + int(rng.integers(0, 7 - cfg.max_pack)))
            else:
                pack = int(rng.integers(1, 8))
                wrong = [v for v in range(min(cfg.n, 15) + 1) if v << pack != cfg.n or not cfg.packing]
                insns[k] = _set(insns[k], pack=pack, n_active=int(rng.choice(wrong)))
        else:
            loads = [k for k in idx[Opcode.LOAD] if insns[k].fields.get("x_size", 0) * insns[k].fields.get("y_size", 0)
                     and cfg.pitch(Mem(insns[k].fields["mem"]).name.lower()) > 1]
            k = int(rng.choice(loads))
            insns[k] = _set(insns[k], dram=insns[k].fields["dram"] + 1)
    elif code == ErrorCode.SRAM_RANGE:
        k = int(rng.choice(idx[Opcode.GEMM][1:] or idx[Opcode.GEMM]))
        insns[k] = _set(insns[k], row_blocks=max(1, insns[k].fields.get("row_blocks", 1)),
                        cols=max(1, insns[k].fields.get("cols", 1)), k_groups=max(1, insns[k].fields.get("k_groups", 1)),
                        passes=max(1, insns[k].fields.get("passes", 1)), acc=cfg.acc_rows - 1 + int(rng.integers(0, 4)))
        insns[k] = _set(insns[k], cols=insns[k].fields["cols"] + 1)
    elif code == ErrorCode.BAD_TOKEN:
        if rng.random() < 0.5:
            k = int(rng.choice(idx[Opcode.LOAD]))
            insns[k] = _set(insns[k], **{str(rng.choice(["pop_prev", "push_prev"])): 1})
        else:
            k = int(rng.choice(idx[Opcode.STORE]))
            insns[k] = _set(insns[k], **{str(rng.choice(["pop_next", "push_next"])): 1})
    elif code == ErrorCode.DEADLOCK:
        # One pop more from the store queue than the stores push: some GEMM waits forever.
        gemms = [k for k in idx[Opcode.GEMM] if not insns[k].fields.get("pop_next")]
        k = int(rng.choice(gemms))
        insns[k] = _set(insns[k], pop_next=1)
    elif code == ErrorCode.TOKENS_LEFT:
        # The last store pushes a token no instruction after it takes.
        k = idx[Opcode.STORE][-1]
        insns[k] = _set(insns[k], push_prev=1)
    elif code == ErrorCode.NO_FINISH:
        if rng.random() < 0.5:
            insns = insns[:-1] + [Insn(Opcode.LOAD, {})]
        else:
            k = int(rng.integers(0, len(insns) - 1))
            insns = insns[:k] + [Insn(Opcode.FINISH, {})] + insns[k:]
    elif code == ErrorCode.AXI_READ:
        loads = [k for k in idx[Opcode.LOAD] if insns[k].fields.get("x_size", 0) * insns[k].fields.get("y_size", 0)]
        k = int(rng.choice(loads))
        lo = insns[k].fields["dram"]
        poisoned = [(lo, lo + 1)]
    elif code == ErrorCode.AXI_WRITE:
        k = int(rng.choice(idx[Opcode.STORE]))
        lo = insns[k].fields["dram"]
        poisoned = [(lo, lo + 1)]
    else:
        raise VerifError(f"no generator for error class {code!r}")
    case = _rebuild(cfg, base, insns, kind, poisoned)
    machine = Machine(cfg, case.program.dram)
    for lo, hi in poisoned:
        machine.poison(lo, hi)
    try:
        machine.run(case.program.prog_addr, case.program.prog_len)
    except ProgramError as exc:
        if exc.code != code:
            raise VerifError(f"generator bug: {kind} seed {seed} gives {exc}") from None
        return case
    raise VerifError(f"generator bug: {kind} seed {seed} runs without error on the ISS")

