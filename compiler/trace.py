"""A compiled program as a Chakra execution trace (:mod:`compiler.chakra`).

Every instruction becomes a node: LOAD a MEM_LOAD and STORE a MEM_STORE of the bytes they
move, GEMM, POST and TOPN a COMP node with the operations they perform (GEMM: two per
dense-equivalent MAC, ``2 * beats * rows * m``; POST and TOPN: one per element) and the
bytes they read, its duration from the ISS's cycle model at ``clock_mhz``. Dependencies:
each instruction depends (control) on the one before it in its queue, and (data) on the
instruction whose token it pops: the k-th pop from a token FIFO takes the k-th push into
it, whatever the timing. Host ops between segments are COMP nodes of their estimated
cycles; the next segment's instructions depend on them.
"""

from spec.isa import WORD_BYTES, Mem, Opcode, Queue, bytes_to_words, decode

from . import CompileError
from .chakra import Trace

__all__ = ["program_trace", "model_trace", "insn_cost", "host_node"]

FIFO_OF = {("pop_prev", Queue.COMPUTE): (Queue.LOAD, Queue.COMPUTE),
           ("pop_next", Queue.COMPUTE): (Queue.STORE, Queue.COMPUTE),
           ("pop_next", Queue.LOAD): (Queue.COMPUTE, Queue.LOAD),
           ("pop_prev", Queue.STORE): (Queue.COMPUTE, Queue.STORE),
           ("push_next", Queue.LOAD): (Queue.LOAD, Queue.COMPUTE),
           ("push_prev", Queue.COMPUTE): (Queue.COMPUTE, Queue.LOAD),
           ("push_next", Queue.COMPUTE): (Queue.COMPUTE, Queue.STORE),
           ("push_prev", Queue.STORE): (Queue.STORE, Queue.COMPUTE)}


def insn_cost(config, insn) -> tuple[int, int, int]:
    """``(operations, bytes, cycles)`` of one instruction by the ISS's cycle model."""
    from golden.iss import Timing

    t = Timing.for_config(config)
    f = insn.fields
    op = insn.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        rows = f["x_size"] * f["y_size"]
        mem = Mem(f["mem"]).name.lower() if isinstance(f["mem"], Mem) else "act"
        size = rows * config.row_bytes(mem)
        return 0, size, t.insn_overhead + rows + f["y_size"] * t.line_overhead
    if op == Opcode.GEMM:
        beats = f["row_blocks"] * f["cols"] * f["k_groups"] * f["passes"]
        size = beats * (config.m + config.row_bytes("wgt"))
        return 2 * beats * config.rows * config.m, size, (beats + t.gemm_overhead) if beats else 1
    if op == Opcode.POST:
        elements = f["row_blocks"] * f["cols"] * config.rows
        return elements, elements * 4, (elements + t.post_overhead) if elements else 1
    if op == Opcode.TOPN:
        groups = f["cols"] * f["k_groups"]
        return groups * config.m, groups * config.m, (groups + t.topn_overhead) if groups else 1
    return 0, 0, 1


def program_trace(config, words: list[int], trace: Trace, *, clock_mhz: float = 100.0, prefix: str = "",
                  after: tuple[int, ...] = ()) -> list[int]:
    """Append ``words`` to ``trace`` as nodes (module docstring); the first node of each
    queue also waits for ``after``. Returns the ids of each queue's last node."""
    last = {q: None for q in Queue}
    pushes = {key: [] for key in set(FIFO_OF.values())}
    pops = {key: 0 for key in pushes}
    for index, word in enumerate(words):
        insn = decode(word)
        if insn.opcode in (Opcode.FINISH, Opcode.ILLEGAL):
            continue
        q = insn.queue
        deps = []
        for flag in ("pop_prev", "pop_next"):
            if insn.fields[flag]:
                fifo = FIFO_OF[(flag, q)]
                k = pops[fifo]
                if k >= len(pushes[fifo]):
                    raise CompileError(f"instruction {index} pops a token that an instruction later in the "
                                       "program pushes: the trace writer needs pushes before their pops")
                deps.append(pushes[fifo][k])
                pops[fifo] = k + 1
        ctrl = [last[q]] if last[q] is not None else list(after)
        ops, size, cycles = insn_cost(config, insn)
        name = f"{prefix}{index}:{insn.opcode.name}"
        micros = max(1, round(cycles / clock_mhz))
        if insn.opcode == Opcode.LOAD:
            node = trace.add_mem_load(name, size, deps=deps, ctrl_deps=ctrl)
        elif insn.opcode == Opcode.STORE:
            node = trace.add_mem_store(name, size, deps=deps, ctrl_deps=ctrl)
        else:
            node = trace.add_comp(name, ops, size, deps=deps, ctrl_deps=ctrl, duration_micros=micros)
        for flag in ("push_prev", "push_next"):
            if insn.fields[flag]:
                pushes[FIFO_OF[(flag, q)]].append(node)
        last[q] = node
    return [n for n in last.values() if n is not None]


def host_node(model, op, trace: Trace, *, clock_mhz: float = 100.0, after: tuple[int, ...] = ()) -> int:
    """Append host op ``op`` of ``model`` (a COMP node of its estimated cycles, after
    ``after``) to ``trace``; returns its id."""
    cycles = next(h["estimated_cycles"] for h in model.manifest["host_ops"] if h["name"] == op.name)
    return trace.add_comp(f"host:{op.name}:{op.kind}", cycles, int(sum(op.shape)),
                          ctrl_deps=after, duration_micros=max(1, round(cycles / clock_mhz)))


def model_trace(model, npu: int = 0, *, clock_mhz: float = 100.0) -> Trace:
    """The trace of one run of a compiled model (:class:`compiler.model.CompiledModel`)."""
    trace = Trace(npu)
    after: tuple[int, ...] = ()
    for kind, item in model.steps:
        if kind == "host":
            after = (host_node(model, item, trace, clock_mhz=clock_mhz, after=after),)
            continue
        seg = model.segments[item]
        words = bytes_to_words(seg.dram[seg.prog_addr:seg.prog_addr + seg.prog_len * WORD_BYTES])
        after = tuple(program_trace(model.config, words, trace, clock_mhz=clock_mhz, prefix=f"seg{item}:",
                                    after=after))
    return trace
