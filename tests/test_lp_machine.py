"""The LP array as the machine's GEMM unit 1 (spec.accel lp, golden.iss, compiler.lp_model):
its semantics against the LP dot product, its errors, and a tiny LPQ-quantized model
compiled onto it and run bit-exact on the ISS and the RTL (Icarus). The fuzzed programs
on the RTL are in tests/test_accel_cocotb.py, the decode checks in test_accel_decode.py."""

import numpy as np
import pytest
import torch
from torch import nn

from compiler import CompileError
from compiler.lp_model import compile_lp_model
from compiler.program import Program, act_rows, unpack_acc_rows
from golden.iss import Machine
from golden.lp import LPFormat, fixed_dot
from golden.lpq import LayerGene
from spec import ConfigError
from spec.accel import AcceleratorConfig
from spec.isa import ErrorCode, Insn, Mem, Opcode, check_static, decode, encode

from .conftest import require_simulator

LP = AcceleratorConfig(lp="6,1,2", act_rows=64, wgt_rows=8, acc_rows=16, param_rows=8)


def _gemm_lp(cfg, w_codes, x_codes, sf, extra_bits=0):
    """Run one unit-1 GEMM of ``w_codes[R, K]`` x ``x_codes[C, K]`` on the ISS; returns
    the accumulators ``[R, C]`` and the compute cycles."""
    rows, m = cfg.rows, cfg.m
    R, K = w_codes.shape
    C = x_codes.shape[0]
    blocks, groups = R // rows, K // m
    tiles = w_codes.reshape(blocks, rows, groups, m).transpose(0, 2, 1, 3).reshape(-1, m)
    as_bytes = lambda c: ((c | extra_bits) & 0xFF).astype(np.uint8).view(np.int8).astype(np.int64)   # noqa: E731
    prog = Program(cfg)
    w = prog.put("w", act_rows(cfg, as_bytes(tiles)), align=16)
    x = prog.put("x", act_rows(cfg, as_bytes(x_codes.reshape(-1, m))), align=16)
    y = prog.alloc("y", blocks * C * cfg.pitch("acc"), align=16)
    prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=0, dram=w.addr, y_size=1, x_size=len(tiles))
    prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=len(tiles), dram=x.addr, y_size=1, x_size=C * groups, push_next=1)
    prog.emit(Opcode.GEMM, unit=1, sf=sf, wgt=0, act=len(tiles), acc=0, row_blocks=blocks, cols=C, k_groups=groups,
              passes=1, act_stride=groups, pop_prev=1, push_next=1)
    prog.emit(Opcode.STORE, mem=Mem.ACC, sram=0, dram=y.addr, y_size=1, x_size=blocks * C, pop_prev=1)
    prog.emit(Opcode.FINISH)
    dram, addr, length = prog.image()
    result = Machine(cfg, dram).run(addr, length)
    acc = unpack_acc_rows(cfg, result.dram[y.addr:y.end].tobytes(), blocks * C)
    acc = acc.reshape(blocks, C, rows).transpose(0, 2, 1).reshape(R, C)
    gemm_cycles = [e - s for i, op, q, s, e in result.trace if op == Opcode.GEMM]
    return acc, gemm_cycles[0]


def test_unit1_gemm_is_the_lp_dot_product_and_takes_the_documented_cycles():
    """Codes in the low n bits of act bytes (upper bits set here, and ignored), weights
    in act tiles: each accumulator equals golden.lp.fixed_dot over the whole K (no
    wrap at these sizes), and the GEMM takes tiles * (rows + cols + 4) + 3 cycles."""
    cfg = LP
    rng = np.random.default_rng(3)
    fmt = LPFormat(6, 1, 2)
    R, K, C, sf = 8, 12, 5, 4
    w = rng.integers(0, 64, (R, K))
    w[w == fmt.nar_code] = 0
    x = rng.integers(0, 64, (C, K))
    x[x == fmt.nar_code] = 1
    acc, cycles = _gemm_lp(cfg, w, x, sf, extra_bits=0xC0)
    arr = cfg.lp_array
    want, _ = fixed_dot(fmt.with_sf(sf // 2), w[:, None, :], fmt.with_sf(sf - sf // 2), x[None, :, :],
                        table_bits=arr.table_bits, acc_width=arr.acc_width, acc_frac=arr.acc_frac,
                        prod_width=arr.prod_width)
    np.testing.assert_array_equal(acc, want)
    tiles = (R // cfg.rows) * (K // cfg.m)
    assert cycles == tiles * (cfg.rows + C + arr.product_stages + 1) + 3


def test_lp_config_errors_name_the_value():
    for lp, needle in (("9,1,2", "n must be in 3..8"), ("6,1", "'n,es,rs'"), ("6,4,2", "es must be in 0..3"),
                       ("6,1,6", "rs must be in"), ("x,1,2", "'n,es,rs'")):
        with pytest.raises(ConfigError, match=needle):
            AcceleratorConfig(lp=lp)
    with pytest.raises(ConfigError, match="not both"):
        AcceleratorConfig(lp="6,1,2", packing=True)
    assert AcceleratorConfig(lp=" 6, 1,2".replace(" ", "")).lp == "6,1,2"
    assert AcceleratorConfig(lp="6,1,2").lp_array.rows == 4 and AcceleratorConfig(lp="6,1,2").lp_array.cols == 4


def test_unit1_without_the_array_and_bad_fields_are_bad_field():
    gemm = Insn(Opcode.GEMM, {"unit": 1, "row_blocks": 1, "cols": 1, "k_groups": 1, "passes": 1, "sf": -3})
    code, why = check_static(decode(encode(gemm)), AcceleratorConfig())
    assert code == ErrorCode.BAD_FIELD and "needs lp" in why
    assert check_static(decode(encode(gemm)), LP) is None
    for fields, needle in (({"unit": 2}, "unit 2 does not exist"), ({"pack": 1}, "pack=1"),
                           ({"n_active": 3}, "n_active=3")):
        code, why = check_static(decode(encode(Insn(Opcode.GEMM, {**gemm.fields, **fields}))), LP)
        assert code == ErrorCode.BAD_FIELD and needle in why, why
    # the weight tiles are act rows: rows per tile, checked against act's depth
    big = Insn(Opcode.GEMM, {**gemm.fields, "wgt": LP.act_rows - LP.rows + 1})
    code, why = check_static(decode(encode(big)), LP)
    assert code == ErrorCode.SRAM_RANGE and "of act" in why
    with pytest.raises(Exception, match="signed"):
        encode(Insn(Opcode.GEMM, {"sf": 32}))
    assert decode(encode(Insn(Opcode.GEMM, {"sf": -32}))).sf == -32


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


GENES = {"conv": LayerGene(6, 1, 2, 3, 2), "fc": LayerGene(6, 1, 2, 4, 1)}


def _tiny():
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(2, 1, 4, 4)


def test_compiler_refuses_layers_the_array_cannot_run():
    model, x = _tiny()
    with pytest.raises(CompileError, match="no LP array"):
        compile_lp_model(model, GENES, AcceleratorConfig(), x)
    with pytest.raises(CompileError, match=r"fc: its LP format LP<8,1,4> is not the array's LP<6,1,2>"):
        compile_lp_model(model, {**GENES, "fc": LayerGene(8, 1, 4, 4, 1)}, LP, x)
    with pytest.raises(CompileError, match=r"conv: its scale .* = 40 does not fit"):
        compile_lp_model(model, {**GENES, "conv": LayerGene(6, 1, 2, 30, 10)}, LP, x)
    with pytest.raises(CompileError, match="no LP format for layer"):
        compile_lp_model(model, {"conv": GENES["conv"]}, LP, x)


def test_tiny_lpq_model_compiles_to_unit1_bit_exact_on_iss_and_rtl(sim_root):
    """A conv + linear model in LP<6,1,2>, several tiles per layer on a small machine
    (token hand-offs of act and acc): the ISS's logits equal the golden.pe_array
    reference exactly, and each layer's program on Icarus ends with the ISS's DRAM and
    exact counters (verif.model_run.rtl_backend raises otherwise)."""
    from verif.model_run import rtl_backend

    require_simulator("icarus")
    model, x = _tiny()
    compiled = compile_lp_model(model, GENES, LP, x)
    assert all(layer.prog_len > 5 for layer in compiled.segments)      # several tiles (one is 5 words)
    iss, _ = compiled.run(x)
    assert torch.equal(iss, compiled.reference(x))
    assert torch.allclose(iss, model(x), atol=0.1)          # LP<6,1,2> stays near the float model
    rtl, results = compiled.run(x, rtl_backend(compiled, sim="icarus", build_root=sim_root))
    assert torch.equal(rtl, iss) and len(results) == 2
