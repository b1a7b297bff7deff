"""One matrix product lowered onto the machine (compiler/gemm.py), run on the ISS: tiled
over rows, columns and K with double buffering, equal to the integer reference."""

import numpy as np
import pytest

from compiler.gemm import GemmShape, lower_gemm, p_rows, padded_rows, plan_tiles, product_pack, w_rows, x_rows
from compiler.program import Program, unpack_acc_rows, unpack_act_rows
from golden import nm
from golden.iss import Machine
from spec.accel import AcceleratorConfig
from spec.isa import Opcode
from spec.numerics import saturate, shift_round_half_up, wrap


def reference(w, x, bias, mult, shift, relu):
    acc = w.astype(np.int64) @ x.astype(np.int64)
    out = np.empty_like(acc)
    for r in range(acc.shape[0]):
        for c in range(acc.shape[1]):
            y = shift_round_half_up(wrap(int(acc[r, c]) + int(bias[r]), 32) * int(mult[r]), int(shift[r]))
            out[r, c] = saturate(max(y, 0) if relu else y, 8)
    return acc, out


def run(cfg, rows, k, cols, n, seed, *, acc_out=False, relu=True):
    rng = np.random.default_rng(seed)
    w = nm.prune(rng.integers(-128, 128, (rows, k)), n, cfg.m)
    values, indices = nm.compress(w, n, cfg.m)
    x = rng.integers(-128, 128, (k, cols))
    bias = rng.integers(-3000, 3000, rows)
    mult = rng.integers(1, 1 << 10, rows)
    shift = rng.integers(8, 20, rows)
    pack = product_pack(cfg, n)             # a packing machine packs N' = n >> pack
    br = cfg.block_rows(pack)
    p = Program(cfg)
    xr = p.put("x", x_rows(cfg, x))
    if cfg.core.sparse:
        wr = p.put("w", w_rows(cfg, values, indices, pack))
    else:
        wr = p.put("w", w_rows(cfg, w.reshape(rows, k // cfg.m, cfg.m), None))
    pr = p.put("p", p_rows(cfg, bias, mult, shift, rows, pack))
    r_pad = padded_rows(cfg, rows, pack)
    y = p.alloc("y", cols * -(-rows // br) * cfg.pitch("acc") if acc_out else cols * r_pad)
    tiling = lower_gemm(p, GemmShape(rows, k, cols), x=xr, w=wr, params=pr, y=y, n_active=n, relu=relu,
                        acc_out=acc_out, pack=pack)
    p.emit(Opcode.FINISH)
    dram, addr, length = p.image()
    result = Machine(cfg, dram).run(addr, length)
    acc, out = reference(w, x, bias, mult, shift, relu)
    blob = result.dram[y.addr:y.end].tobytes()
    if acc_out:
        blocks = -(-rows // br)
        got = unpack_acc_rows(cfg, blob, blocks * cols)[:, :br].reshape(blocks, cols, br)
        got = got.transpose(0, 2, 1).reshape(blocks * br, cols)[:rows]
        assert np.array_equal(got, wrap(acc, 32))
    else:
        per_col = -(-rows // cfg.m) * cfg.m                # whole m-groups of channels per column
        got = unpack_act_rows(cfg, blob, cols * per_col // cfg.m).reshape(cols, per_col)[:, :rows]
        assert np.array_equal(got.T, out)
    return tiling, result


SMALL = AcceleratorConfig(act_rows=64, wgt_rows=32, acc_rows=16, param_rows=16)
PACKING = AcceleratorConfig(n=4, m=8, rows=2, packing=True, act_rows=64, wgt_rows=32, acc_rows=16, param_rows=32,
                            axi_data_width=128)


@pytest.mark.parametrize("cfg, rows, k, cols, n", [
    (AcceleratorConfig(), 8, 16, 5, 2),
    (SMALL, 20, 64, 13, 2),          # tiles over rows, columns and K
    (SMALL, 6, 8, 3, 1),             # N' < N, partial blocks and groups
    (AcceleratorConfig(n=4, m=4, rows=4, act_rows=64, wgt_rows=32, acc_rows=16, param_rows=16), 12, 40, 9, 4),
    (AcceleratorConfig(n=1, m=4, rows=2, act_rows=64, wgt_rows=16, acc_rows=16, param_rows=16), 10, 24, 7, 1),
    (AcceleratorConfig(packing=True, act_rows=64, wgt_rows=32, acc_rows=16, param_rows=32), 20, 64, 13, 1),
    (PACKING, 22, 64, 9, 2),          # pack 1: 2 logical rows per core row, tiled
    (PACKING, 22, 64, 9, 1),          # pack 2: 4
    (PACKING, 10, 32, 5, 3),          # N' = 3 does not divide n = 4: unpacked on a packing machine
    # row tiles of 4 blocks (16 channels), the last one of 2 blocks: its output columns
    # are 2 rows apart, not 4 (POST's out_stride is the STORE's x_size)
    (AcceleratorConfig(act_rows=64, wgt_rows=16, acc_rows=16, param_rows=32), 22, 8, 9, 2),
], ids=["one-tile", "all-tiled", "n1", "dense", "rows2", "packed-1of4", "packed-2of8", "packed-1of8", "3of8-unpacked",
        "short-last-row-tile"])
def test_tiled_product_equals_the_reference(cfg, rows, k, cols, n):
    """Packing machines pack where n_active divides n: a block is rows << pack rows, so the
    beats fall by 2^pack."""
    tiling, result = run(cfg, rows, k, cols, n, seed=rows + k)
    br = cfg.block_rows(product_pack(cfg, n))
    assert result.counters["core_beats"] == -(-rows // br) * cols * (k // cfg.m)


@pytest.mark.parametrize("cfg, n", [(SMALL, 2), (PACKING, 1)], ids=["2of4", "packed-1of8"])
def test_accumulators_out_for_the_last_layer(cfg, n):
    tiling, _ = run(cfg, 20, 64, 13, n, seed=3, acc_out=True)
    assert tiling.tiles > 2


def test_plan_fills_the_scratchpads():
    t = plan_tiles(AcceleratorConfig(), GemmShape(256, 256, 256))
    assert t.gt == 64 and t.rb * t.ct * 2 <= 256 and t.n_gt == 1
