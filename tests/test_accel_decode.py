"""The front end's decode checks (hw/accel/frontend.py) against spec.isa.check_static,
one instruction at a time, on Amaranth's simulator.

The fuzzer's programs are legal or break one rule near its edge; these words are random
in every field, with field values drawn towards the boundaries the checks compare
against (0, 1, the scratchpad depths, the top of each field and of the address space),
and log-uniform otherwise, so the checks' saturating products and wide sums fall on both
sides of every bound.
Each word is fetched as instruction 0 of a two-word program whose second word is
FINISH: a legal word is dispatched to its queue unchanged, an illegal one reports the
error check_static gives (FINISH at index 0 is NO_FINISH).
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accel.frontend import Frontend
from spec.accel import AcceleratorConfig
from spec.isa import (
    LAYOUTS,
    QUEUE_OF,
    WORD_BITS,
    ErrorCode,
    Opcode,
    check_static,
    decode,
)

PROG_ADDR = 0x4000
CASES = 300

CONFIGS = [
    AcceleratorConfig(),
    AcceleratorConfig(n=1, m=8, rows=2, topn="1:8+1:8", act_rows=64, wgt_rows=32, acc_rows=16,
                      param_rows=8, axi_addr_width=20, axi_data_width=128),
    AcceleratorConfig(n=4, m=8, rows=2, packing=True, act_rows=128, wgt_rows=64, acc_rows=32, param_rows=64,
                      axi_data_width=128),
    # the LP unit: GEMM unit 1 reads rows act rows per weight tile (its own range check)
    AcceleratorConfig(lp="6,1,2", rows=8, act_rows=512, wgt_rows=32, acc_rows=64, param_rows=32),
]


def _field_value(rng, name, width, cfg):
    top = (1 << width) - 1
    depths = [cfg.depth(x) for x in ("act", "wgt", "acc", "param")]
    edges = [0, 1, 2, top, top - 1, *depths, *(d - 1 for d in depths), *(d + 1 for d in depths)]
    if name in ("dram", "y_stride"):
        edges += [1 << cfg.axi_addr_width, (1 << cfg.axi_addr_width) - 16, 16, 64, 1 << (cfg.axi_addr_width - 4)]
    pick = rng.random()
    if pick < 0.3:
        value = int(rng.choice(edges))
    elif pick < 0.5:
        value = int(rng.integers(0, min(top, 8) + 1))
    else:       # log-uniform: products and sums land on both sides of every bound
        value = int(2 ** rng.uniform(0, width))
    return value & top


def random_words(cfg, count, seed):
    """``count`` words: each opcode (and raw illegal ones), every field drawn by
    :func:`_field_value`; token flags and ``reserved`` mostly clear."""
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(count):
        op = Opcode(int(rng.choice([o.value for o in LAYOUTS] + [Opcode.GEMM.value] * 2)))
        if rng.random() < 0.04:
            words.append(int(rng.choice([0, 7, 8, 15])) | int(rng.integers(0, 16)) << 4)
            continue
        fields = {}
        for name, field in LAYOUTS[op]:
            if name == "opcode":
                continue
            width = field.width
            if name in ("pop_prev", "pop_next", "push_prev", "push_next"):
                fields[name] = int(rng.random() < 0.08)
            elif name == "reserved":
                fields[name] = int(rng.integers(0, 1 << min(20, width))) if rng.random() < 0.05 else 0
            elif name == "pack" and cfg.packing and rng.random() < 0.5:     # a legal pack, often
                fields[name] = int(rng.integers(1, cfg.max_pack + 1))
                if op == Opcode.GEMM and rng.random() < 0.8:
                    fields["n_active"] = cfg.n >> fields[name]
            elif name == "unit" and cfg.lp and rng.random() < 0.5:      # the LP unit, often, mostly
                fields[name] = 1                                        # with legal n_active, pack
                if rng.random() < 0.8:
                    fields["n_active"] = int(rng.integers(0, cfg.n + 1))
                    fields["pack"] = 0
            elif name == "pack" and fields.get("unit") == 1 and "pack" in fields:
                pass
            elif name == "mem":
                fields[name] = int(rng.integers(0, 8)) if rng.random() < 0.15 else int(rng.choice([0, 1, 3, 2]))
            else:
                fields[name] = _field_value(rng, name, width, cfg)
        word = _raw(op, fields)
        words.append(word)
    return words


def _raw(op, fields):
    """Pack fields without encode()'s own range checks (a mem value may name nothing)."""
    word = op.value
    for name, field in LAYOUTS[op]:
        if name in fields:
            value = fields[name]
            word |= (int(value.value) if hasattr(value, "value") else int(value)) << field.offset
    return word


def expected(word, cfg):
    insn = decode(word)
    found = check_static(insn, cfg)
    if found:
        return found[0]
    if insn.opcode == Opcode.FINISH:
        return ErrorCode.NO_FINISH
    return None


def run_frontend(cfg, words):
    """Each word as instruction 0 of [word, FINISH]; returns (error code or None, the
    queue it went to, the dispatched entry) per word."""
    dut = Frontend(cfg)
    bus = cfg.axi_data_width
    beats = max(1, WORD_BITS // bus)
    results = []

    async def axi(ctx):
        """Answer each read burst from ``axi.program`` (the words at PROG_ADDR)."""
        ctx.set(dut.ar_ready, 1)
        while True:
            _, _, valid, addr = await ctx.tick().sample(dut.ar_valid, dut.ar_addr)
            if not valid:
                continue
            blob = b"".join(w.to_bytes(16, "little") for w in axi.program)
            for beat in range(beats):
                lo = addr + beat * (bus // 8) - PROG_ADDR
                ctx.set(dut.r_data, int.from_bytes(blob[lo:lo + bus // 8].ljust(bus // 8, b"\0"), "little"))
                ctx.set(dut.r_last, beat == beats - 1)
                ctx.set(dut.r_valid, 1)
                await ctx.tick().until(dut.r_ready)
                ctx.set(dut.r_valid, 0)

    async def bench(ctx):
        ctx.set(dut.q_ready, 0b111)
        for word in words:
            axi.program = [word, Opcode.FINISH.value]
            ctx.set(dut.prog_addr, PROG_ADDR)
            ctx.set(dut.prog_len, 2)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            outcome = None
            for _ in range(400):
                _, _, err, code, we, entry = await ctx.tick().sample(dut.err_valid, dut.err_code, dut.q_we, dut.q_data)
                if err:
                    outcome = (ErrorCode(code), None, None)
                    break
                if we:
                    outcome = (None, int(we).bit_length() - 1, int(entry))
                    break
            assert outcome is not None, f"word {word:#034x}: neither dispatched nor an error"
            results.append(outcome)
            ctx.set(dut.abort, 1)
            await ctx.tick()
            await ctx.tick().repeat(beats + 3)
            ctx.set(dut.abort, 0)
            await ctx.tick().repeat(2)

    axi.program = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(axi)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "1of8x2-small", "4of8x2-packing", "lp612-2of4x8"])
def test_decode_reports_exactly_what_check_static_reports(cfg):
    words = random_words(cfg, CASES, seed=cfg.rows)
    results = run_frontend(cfg, words)
    seen = set()
    for word, (code, queue, entry) in zip(words, results):
        want = expected(word, cfg)
        assert code == want, f"{decode(word)}: the front end says {code!r}, check_static {want!r}"
        if want is None:
            assert queue == QUEUE_OF[decode(word).opcode], f"{decode(word)} went to queue {queue}"
            assert entry == word, "the queue entry is not the word as fetched (index 0)"
        seen.add(want)
    # The draw reaches every class decode can report on its own, and legal words.
    assert {None, ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_TOKEN, ErrorCode.BAD_FIELD,
            ErrorCode.SRAM_RANGE, ErrorCode.NO_FINISH} <= seen
