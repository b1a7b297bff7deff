"""The dot-product arrays without a simulator: configs refuse bad input with one clear
error each, the golden model equals a product-by-product reference, the per-row
arithmetic is the single PE's, the benchmark's tables, and the CLI."""

import numpy as np
import pytest

from golden import GoldenError, lp
from golden.pe_array import array_cycles, array_outputs, array_products
from hw import to_verilog
from hw.pe_array import FP8Array, Int8Array, LPArray
from spec import ConfigError
from spec.numerics import wrap
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig, stored_weight_bits
from tessera.cli import main


@pytest.mark.parametrize("make, message", [
    (lambda: LPArrayConfig(rows=0), "rows must be in 1..64, not rows=0"),
    (lambda: Int8ArrayConfig(cols=65), "cols must be in 1..64, not cols=65"),
    (lambda: LPArrayConfig(n=11), "n must be in 3..10, not n=11"),
    (lambda: LPArrayConfig(es=4), "es must be in 0..3, not es=4"),
    (lambda: LPArrayConfig(n=6, rs=6), "rs must be in 1..n-1=5, not rs=6"),
    (lambda: LPArrayConfig(table_bits=0), "table_bits must be in 1..16, not table_bits=0"),
    (lambda: LPArrayConfig(prod_width=3), "prod_width must be 0 or in 4..acc_width=24, not prod_width=3"),
    (lambda: LPArrayConfig(acc_width=10), "prod_width must be 0 or in 4..acc_width=10, not prod_width=12"),
    (lambda: FP8ArrayConfig(acc_frac=32), "acc_frac must be in 0..acc_width-1=31, not acc_frac=32"),
    (lambda: LPArrayConfig(rows=4, cols=4).check_layer(10, 16), "out_features=10 does not divide into the array's rows=4"),
    (lambda: LPArrayConfig(rows=4, cols=8).check_layer(8, 12), "in_features=12 does not divide into the array's cols=8"),
    (lambda: LPArray(Int8ArrayConfig()), "LPArray needs an LPArrayConfig"),
])
def test_bad_config_is_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_codes_wider_than_n_are_refused():
    cfg = LPArrayConfig(rows=1, cols=2)
    with pytest.raises(GoldenError, match="activations holds 64, wider than the 6-bit codes"):
        array_products(cfg, [[1, 2]], [[64, 0]])
    with pytest.raises(GoldenError, match="sf=40 is outside"):
        array_products(cfg, [[1, 2]], [[3, 0]], 40)


def _reference(cfg, weights, acts, sf, last):
    """Product by product, with the single PE's golden function."""
    fmt = lp.LPFormat(cfg.n, cfg.es, cfg.rs)
    outs, acc, flags = [], [0] * cfg.rows, [False] * cfg.rows
    for b in range(len(acts)):
        s = int(sf[b])
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                p, f = lp.fixed_products(fmt.with_sf(s // 2), weights[r, c], fmt.with_sf(s - s // 2), acts[b, c],
                                         table_bits=cfg.table_bits, acc_width=cfg.acc_width,
                                         acc_frac=cfg.acc_frac, prod_width=cfg.pe().product_width)
                acc[r] = wrap(acc[r] + int(p), cfg.acc_width)
                flags[r] |= bool(f)
        if last[b]:
            outs.append((list(acc), list(flags)))
            acc, flags = [0] * cfg.rows, [False] * cfg.rows
    return outs


def test_lp_golden_equals_the_pe_product_by_product():
    cfg = LPArrayConfig(rows=3, cols=2, acc_width=14)           # narrow: the sums wrap
    rng = np.random.default_rng(3)
    weights = rng.integers(0, 64, (3, 2))
    weights[0, 1] = 32                                          # NaR
    acts = rng.integers(0, 64, (30, 2))
    sf = rng.integers(-8, 8, 30)
    last = rng.random(30) < 0.3
    last[-1] = True
    acc, nar = array_outputs(cfg, weights, acts, sf, last)
    want = _reference(cfg, weights, acts, sf, last)
    assert [(a.tolist(), f.tolist()) for a, f in zip(acc, nar)] == want
    assert nar[:, 0].all() and not nar[:, 1:].any()


def test_int8_and_fp8_golden_are_the_exact_products():
    w = np.array([[0x80, 0x7F], [0xFF, 0x01]])
    a = np.array([[0x80, 0x80]])
    acc, nar = array_outputs(Int8ArrayConfig(rows=2, cols=2), w, a)
    assert acc.tolist() == [[128 * 128 - 127 * 128, 128 - 128]] and not nar.any()
    acc, nar = array_outputs(FP8ArrayConfig(rows=2, cols=2), np.array([[0x38, 0x7F], [0x40, 0x38]]),
                             np.array([[0x38, 0x38]]))          # 1.0, NaN; 2.0, 1.0 times 1.0
    assert acc.tolist() == [[1 << 16, 3 << 16]] and nar.tolist() == [[True, False]]


def test_cycles_and_stored_bits():
    assert array_cycles(LPArrayConfig(), 40, 8) == 45
    assert array_cycles(Int8ArrayConfig(), 1) == 4
    assert [stored_weight_bits(c) for c in (LPArrayConfig(), LPArrayConfig(n=8, rs=4),
                                              Int8ArrayConfig(), FP8ArrayConfig())] == [8, 11, 12, 10]
    with pytest.raises(GoldenError, match="need beats >= 1"):
        array_cycles(LPArrayConfig(), 0)


@pytest.mark.parametrize("component, cfg", [
    (LPArray, LPArrayConfig(rows=1, cols=2)),
    pytest.param(Int8Array, Int8ArrayConfig(rows=1, cols=2), marks=pytest.mark.wide),
    pytest.param(FP8Array, FP8ArrayConfig(rows=2, cols=1), marks=pytest.mark.wide)])
def test_units_split_into_modules_with_the_same_ports(component, cfg):
    flat, split = component(cfg), component(cfg, units=True)
    assert flat.signature == split.signature
    top = cfg.block.replace("-", "_")
    flat_v, split_v = to_verilog(flat, top), to_verilog(split, top)
    assert flat_v.count("\nmodule ") == 1
    assert split_v.count("\nmodule ") == 1 + cfg.rows * cfg.cols * (1 if component is Int8Array else 2) + \
        cfg.cols * (1 if component is Int8Array else 2)


def test_cli_generate_and_bad_input(tmp_path, capsys):
    assert main(["generate", "lp-array", "--rows", "2", "--cols", "3", "-o", str(tmp_path)]) == 0
    assert "module lp_array" in (tmp_path / "lp_array.v").read_text()
    capsys.readouterr()
    assert main(["generate", "lp-array", "--table-bits", "17", "-o", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err == "tessera: error: table_bits must be in 1..16, not table_bits=17\n"


def test_bench_lp_tables():
    from tessera.bench.lp import HARDWARE, _markdown

    acc = [{"format": "FP32", "top1": 0.98, "mean_weight_bits": 32.0, "inputs": "32"},
           {"format": "LPQ", "top1": 0.975, "mean_weight_bits": 6.0, "inputs": "LP"}]
    hw = [{"array": label, "block": block, "shape": f"{p['rows']}x{p['cols']}", "lut4": 1000, "carry": 1, "ff": 1,
           "fmax_mhz": 50.0 * (k + 1), "products_per_cycle": p["rows"] * p["cols"],
           "products_per_cycle_per_klut": 4.0, "mproducts_per_s_per_klut": 200.0 * (k + 1),
           "units_lut4": {"shift": 160, "rest": 40}}
          for k, (label, block, p) in enumerate(HARDWARE)]
    text = _markdown(acc, hw, 360)
    assert "| LPQ | 97.50 | +0.50 | 6.00 | LP |" in text
    int8 = next(r for r in hw if r["block"] == "int8-array" and r["shape"] == "4x4")
    assert f"| {200.0 / int8['mproducts_per_s_per_klut']:.2f}x |" in next(
        line for line in text.splitlines() if line.startswith(f"| {hw[0]['array']} | 1000"))
    assert f"| {hw[0]['array']} | shift + sign (LP: the coarse shift) | 160 | 10.0 |" in text
