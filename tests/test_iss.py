"""The instruction-set simulator (golden/iss.py): each instruction against the block golden
models, the error classes, and the checks only a simulator can make (races, reads of
unwritten data)."""

import numpy as np
import pytest

from compiler.program import Program, act_rows, param_rows, unpack_acc_rows, unpack_act_rows, wgt_rows
from golden import nm, tasd
from golden.iss import RACE, UNINIT, Machine, ProgramError, Timing
from spec.accel import AcceleratorConfig
from spec.isa import ErrorCode, Mem, Opcode
from spec.nm_core import logical_slot
from spec.numerics import saturate, shift_round_half_up, wrap
from verif.accel_fuzz import ILLEGAL_CLASSES, illegal_program, legal_program


def _gemm_program(cfg, w_values, w_indices, x_groups, *, rb, cols, groups, passes=1, n_active=None,
                  store_acc=True, pack=0):
    p = Program(cfg)
    a = p.put("act", act_rows(cfg, x_groups))
    w = p.put("wgt", wgt_rows(cfg, w_values, w_indices))
    out = p.alloc("acc_out", rb * cols * cfg.pitch("acc"))
    p.emit(Opcode.LOAD, mem=Mem.ACT, dram=a.addr, y_size=1, x_size=len(x_groups))
    p.emit(Opcode.LOAD, mem=Mem.WGT, dram=w.addr, y_size=1, x_size=len(w_values), push_next=1)
    p.emit(Opcode.GEMM, row_blocks=rb, cols=cols, k_groups=groups, passes=passes, act_stride=groups,
           n_active=cfg.n if n_active is None else n_active, pack=pack, pop_prev=1, push_next=1)
    p.emit(Opcode.STORE, mem=Mem.ACC, dram=out.addr, y_size=1, x_size=rb * cols, pop_prev=1, push_prev=1)
    p.emit(Opcode.FINISH, pop_next=1)
    return p, out


@pytest.mark.parametrize("cfg", [AcceleratorConfig(), AcceleratorConfig(n=1, m=4, rows=2),
                                 AcceleratorConfig(n=4, m=8, rows=8, axi_data_width=128)],
                         ids=lambda c: f"{c.n}of{c.m}x{c.rows}")
def test_gemm_is_the_cores_product(cfg):
    """GEMM of a random N:M matrix equals golden.nm.matmul, row block by row block,
    with the activations laid out one group per row, columns one after the other."""
    rng = np.random.default_rng(1)
    rb, cols, groups = 3, 5, 4
    out_rows, k = rb * cfg.rows, groups * cfg.m
    w = nm.prune(rng.integers(-128, 128, (out_rows, k)), cfg.n, cfg.m)
    values, indices = nm.compress(w, cfg.n, cfg.m)                 # [R, G, n]
    x = rng.integers(-128, 128, (k, cols))
    wv = values.reshape(rb, cfg.rows, groups, cfg.n).transpose(0, 2, 1, 3).reshape(-1, cfg.rows, cfg.n)
    wi = indices.reshape(rb, cfg.rows, groups, cfg.n).transpose(0, 2, 1, 3).reshape(-1, cfg.rows, cfg.n)
    p, out = _gemm_program(cfg, wv, wi, x.T.reshape(cols * groups, cfg.m), rb=rb, cols=cols, groups=groups)
    dram, addr, length = p.image()
    result = Machine(cfg, dram).run(addr, length)
    got = unpack_acc_rows(cfg, result.dram[out.addr:out.end].tobytes(), rb * cols)     # [(b, c), lane]
    got = got.reshape(rb, cols, cfg.rows).transpose(0, 2, 1).reshape(out_rows, cols)
    assert np.array_equal(got, nm.matmul(values, indices, x, cfg.n, cfg.m))
    assert result.counters["core_beats"] == rb * cols * groups
    assert result.counters["compute_busy"] == rb * cols * groups + cfg.pipeline + 3 + 1


@pytest.mark.parametrize("cfg", [AcceleratorConfig(packing=True),
                                 AcceleratorConfig(n=4, m=8, rows=2, packing=True, axi_data_width=128)],
                         ids=lambda c: f"{c.n}of{c.m}x{c.rows}")
def test_packed_gemm_runs_rows_shl_pack_logical_rows_in_the_beats_of_its_row_blocks(cfg):
    """A packed GEMM (pack k, n_active = n >> k) of a random N':M matrix equals
    golden.nm.matmul at N', with logical row l of a block in core row l >> k's slots as
    spec.nm_core.logical_slot places them, its result in accumulator lane l; the beats
    are those of rb row blocks of rows << k rows (2^k times fewer than unpacked)."""
    rng = np.random.default_rng(3)
    rb, cols, groups = 2, 3, 3
    for k in range(1, cfg.max_pack + 1):
        n_act, br = cfg.n >> k, cfg.block_rows(k)
        out_rows, depth = rb * br, groups * cfg.m
        w = nm.prune(rng.integers(-128, 128, (out_rows, depth)), n_act, cfg.m)
        values, indices = nm.compress(w, n_act, cfg.m)                 # [R, G, n_act]
        wv = np.zeros((rb * groups, cfg.rows, cfg.n), np.int64)
        wi = np.zeros_like(wv)
        for row in range(out_rows):
            b, logical = divmod(row, br)
            core_row, first = logical_slot(cfg.core, n_act, logical)
            wv[b * groups:(b + 1) * groups, core_row, first:first + n_act] = values[row]
            wi[b * groups:(b + 1) * groups, core_row, first:first + n_act] = indices[row]
        x = rng.integers(-128, 128, (depth, cols))
        p, out = _gemm_program(cfg, wv, wi, x.T.reshape(cols * groups, cfg.m), rb=rb, cols=cols, groups=groups,
                               n_active=n_act, pack=k)
        dram, addr, length = p.image()
        result = Machine(cfg, dram).run(addr, length)
        got = unpack_acc_rows(cfg, result.dram[out.addr:out.end].tobytes(), rb * cols)  # [(b, c), lane]
        assert not got[:, br:].any(), "lanes beyond the packed block must be 0"
        got = got[:, :br].reshape(rb, cols, br).transpose(0, 2, 1).reshape(out_rows, cols)
        assert np.array_equal(got, nm.matmul(values, indices, x, n_act, cfg.m))
        assert result.counters["core_beats"] == rb * cols * groups


def test_gemm_passes_accumulate_a_tasd_series_and_n_active_switches_slots_off():
    cfg = AcceleratorConfig()
    rng = np.random.default_rng(2)
    groups, cols = 3, 2
    a = rng.integers(-128, 128, (cfg.rows, groups * cfg.m))
    terms = tasd.decompose(a, "2:4+2:4")                           # exact for m = 4
    vals = np.stack([t.values for t in terms], 1)                   # [rows, passes, G, n]
    idxs = np.stack([t.indices for t in terms], 1)
    wv = vals.transpose(1, 2, 0, 3).reshape(2 * groups, cfg.rows, cfg.n)
    wi = idxs.transpose(1, 2, 0, 3).reshape(2 * groups, cfg.rows, cfg.n)
    x = rng.integers(-128, 128, (groups * cfg.m, cols))
    p, out = _gemm_program(cfg, wv, wi, x.T.reshape(cols * groups, cfg.m), rb=1, cols=cols, groups=groups,
                           passes=2)
    dram, addr, length = p.image()
    got = unpack_acc_rows(cfg, Machine(cfg, dram).run(addr, length).dram[out.addr:out.end].tobytes(), cols)
    assert np.array_equal(got.T, a @ x)                            # the series is exact: A @ x
    p, out = _gemm_program(cfg, wv, wi, x.T.reshape(cols * groups, cfg.m), rb=1, cols=cols, groups=groups,
                           passes=2, n_active=1)
    dram, addr, length = p.image()
    got = unpack_acc_rows(cfg, Machine(cfg, dram).run(addr, length).dram[out.addr:out.end].tobytes(), cols)
    first = [nm.matmul(t.values[..., :1], t.indices[..., :1], x, 1, cfg.m) for t in terms]
    assert np.array_equal(got.T, first[0] + first[1])


def test_post_requantizes_with_the_documented_rounding():
    """POST: saturate8(relu(round_half_up(wrap32(acc + bias) * mult >> shift))), per channel."""
    cfg = AcceleratorConfig()
    rng = np.random.default_rng(3)
    channels, cols = 8, 3
    acc = rng.integers(-(1 << 31), 1 << 31, (cols, channels))
    acc[0, :4] = [(1 << 31) - 1, -(1 << 31), 12345, -12345]
    bias = rng.integers(-(1 << 31), 1 << 31, channels)
    mult = rng.integers(0, 1 << 16, channels)
    shift = rng.integers(0, 64, channels)
    shift[:3] = [0, 1, 63]
    for relu in (0, 1):
        p = Program(cfg)
        # Accumulators come from a GEMM of identity-like weights? Simpler: STORE needs acc rows
        # written by GEMM: use k = m activations of 1 at position 0 and weights = the values.
        rb = channels // cfg.rows
        ones = np.zeros((cols, cfg.m), np.int64)
        ones[:, 0] = 1
        # acc = w[., 0] * 1 with int8 weights can't reach int32 extremes: accumulate passes.
        values = np.zeros((rb, cfg.rows, cfg.n), np.int64)
        indices = np.zeros((rb, cfg.rows, cfg.n), np.int64)
        indices[..., 1] = 1
        values[..., 0] = np.clip(acc[0].reshape(rb, cfg.rows), -128, 127)
        a = p.put("act", act_rows(cfg, ones))
        w = p.put("wgt", wgt_rows(cfg, values, indices))
        prm = p.put("param", param_rows(cfg, bias, mult, shift))
        out = p.alloc("out", cols * cfg.pitch("act") * channels // cfg.m)
        p.emit(Opcode.LOAD, mem=Mem.ACT, dram=a.addr, y_size=1, x_size=cols)
        p.emit(Opcode.LOAD, mem=Mem.PARAM, dram=prm.addr, y_size=1, x_size=channels)
        p.emit(Opcode.LOAD, mem=Mem.WGT, dram=w.addr, y_size=1, x_size=rb, push_next=1)
        p.emit(Opcode.GEMM, row_blocks=rb, cols=cols, k_groups=1, passes=1, act_stride=1, n_active=2, pop_prev=1)
        p.emit(Opcode.POST, row_blocks=rb, cols=cols, act=64, out_stride=channels // cfg.m, lanes=channels,
               relu=relu, push_next=1)
        p.emit(Opcode.STORE, mem=Mem.ACT, sram=64, dram=out.addr, y_size=1, x_size=cols * channels // cfg.m,
               pop_prev=1, push_prev=1)
        p.emit(Opcode.FINISH, pop_next=1)
        dram, addr, length = p.image()
        got = unpack_act_rows(cfg, Machine(cfg, dram).run(addr, length).dram[out.addr:out.end].tobytes(),
                              cols * channels // cfg.m).reshape(cols, channels)
        acc_values = np.tile(values[..., 0].reshape(-1), (cols, 1))
        want = np.empty((cols, channels), np.int64)
        for c in range(cols):
            for ch in range(channels):
                y = shift_round_half_up(wrap(int(acc_values[c, ch]) + int(bias[ch]), 32) * int(mult[ch]),
                                        int(shift[ch]))
                want[c, ch] = saturate(max(y, 0) if relu else y, 8)
        assert np.array_equal(got, want), relu


def test_topn_writes_the_terms_the_top_n_unit_makes():
    cfg = AcceleratorConfig(topn="1:4+1:4")
    rng = np.random.default_rng(4)
    cols, groups = 6, 2
    x = rng.integers(-128, 128, (cols * groups, cfg.m))
    machine = Machine(cfg, bytes(4096))
    p = Program(cfg)
    a = p.put("act", act_rows(cfg, x))
    p.emit(Opcode.LOAD, mem=Mem.ACT, dram=a.addr, y_size=1, x_size=len(x), push_next=1)
    for term in range(2):
        p.emit(Opcode.TOPN, cols=cols, k_groups=groups, act_stride=groups, term=term, passes=2,
               pop_prev=int(term == 0))
    p.emit(Opcode.FINISH)
    dram, addr, length = p.image()
    machine = Machine(cfg, dram, strict=False)
    machine.run(addr, length)
    terms = tasd.decompose(x.reshape(cols, groups, cfg.m), "1:4+1:4")
    for c in range(cols):
        for g in range(groups):
            for t in range(2):
                row = ((c // cfg.rows) * 2 + t) * groups + g
                lane = c % cfg.rows
                assert machine.wgt_values[row, lane, 0] == terms[t].values[c, g, 0]
                assert machine.wgt_indices[row, lane, 0] == terms[t].indices[c, g, 0]
                assert machine.wgt_values[row, lane, 1] == 0


@pytest.mark.parametrize("code", ILLEGAL_CLASSES, ids=lambda c: c.name)
def test_every_error_class_names_its_instruction(code):
    cfg = AcceleratorConfig()
    case = illegal_program(cfg, 5, code)          # raises unless the ISS reports exactly `code`
    machine = Machine(cfg, case.program.dram)
    for lo, hi in case.program.poisoned:
        machine.poison(lo, hi)
    with pytest.raises(ProgramError) as info:
        machine.run(case.program.prog_addr, case.program.prog_len)
    assert info.value.code == code and 0 <= info.value.index < case.program.prog_len
    assert f"instruction {info.value.index}: {code.name}" in str(info.value)


def test_races_and_unwritten_reads_are_reported():
    cfg = AcceleratorConfig()
    p = Program(cfg)
    a = p.put("act", act_rows(cfg, np.ones((4, cfg.m), np.int64)))
    w = p.put("wgt", wgt_rows(cfg, np.ones((1, cfg.rows, cfg.n), np.int64), np.zeros((1, cfg.rows, cfg.n), np.int64)))
    p.emit(Opcode.LOAD, mem=Mem.ACT, dram=a.addr, y_size=1, x_size=4)
    p.emit(Opcode.LOAD, mem=Mem.WGT, dram=w.addr, y_size=1, x_size=1)
    p.emit(Opcode.GEMM, row_blocks=1, cols=1, k_groups=1, passes=1, act_stride=1, n_active=2)  # no token: a race
    p.emit(Opcode.FINISH)
    dram, addr, length = p.image()
    with pytest.raises(ProgramError) as info:
        Machine(cfg, dram).run(addr, length)
    assert info.value.code in (RACE, UNINIT) and info.value.index == 2
    p = Program(cfg)
    p.emit(Opcode.POST, row_blocks=1, cols=1, lanes=4)
    p.emit(Opcode.FINISH)
    dram, addr, length = p.image()
    with pytest.raises(ProgramError, match="UNINIT: POST reads acc row 0"):
        Machine(cfg, dram).run(addr, length)
    Machine(cfg, dram, strict=False).run(addr, length)       # the hardware would run it


def test_legal_random_programs_run_and_are_deterministic():
    cfg = AcceleratorConfig(topn="2:4")
    for seed in range(6):
        case = legal_program(cfg, seed)
        first = Machine(cfg, case.program.dram).run(case.program.prog_addr, case.program.prog_len)
        again = Machine(cfg, case.program.dram).run(case.program.prog_addr, case.program.prog_len)
        assert np.array_equal(first.dram, again.dram) and first.counters == again.counters
        assert first.counters["insns"] == case.program.prog_len


def test_timing_overheads_follow_the_config():
    t = Timing.for_config(AcceleratorConfig(pipeline=1, topn="2:4+1:4"))
    assert (t.gemm_overhead, t.post_overhead, t.topn_overhead) == (4, 4, 3)
