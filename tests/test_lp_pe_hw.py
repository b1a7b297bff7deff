"""The LP PE and baseline PE generators without an HDL simulator: config validation,
layouts, lint of the emitted Verilog, a few products
in Amaranth's own simulator (async testbenches) against the golden models, and the CLI."""

import json

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import lp, mac
from hw import write_verilog
from hw.lp_pe import LPPE
from hw.mac_pe import FP8PE, Int8PE
from spec import ConfigError
from spec.lp_pe import LPPEConfig, beat_layout, out_layout
from spec.mac_pe import FP8PEConfig, Int8PEConfig
from spec.numerics import FP8_E4M3
from tessera.cli import main
from verif.lint import lint

from .conftest import require_simulator


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=2), "n must be in 3..10, not n=2"),
    (dict(n=11), "n must be in 3..10, not n=11"),
    (dict(es=4), "es must be in 0..3, not es=4"),
    (dict(n=6, rs=6), "rs must be in 1..n-1=5, not rs=6"),
    (dict(rs=0), "rs must be in 1..n-1=7, not rs=0"),
    (dict(lanes=0), "lanes must be >= 1, not lanes=0"),
    (dict(table_bits=17), "table_bits must be in 1..16, not table_bits=17"),
    (dict(acc_width=65), "acc_width must be in 8..64, not acc_width=65"),
    (dict(acc_frac=32), "acc_frac must be in 0..acc_width-1=31, not acc_frac=32"),
    (dict(sf_width=1), "sf_width must be in 2..8, not sf_width=1"),
    (dict(prod_width=33), "prod_width must be 0 or in 4..acc_width=32, not prod_width=33"),
    (dict(prod_width=3), "prod_width must be 0 or in 4..acc_width=32, not prod_width=3"),
    (dict(n="8"), "n must be an integer, not '8'"),
])
def test_lp_config_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LPPEConfig(**kwargs)


def test_baseline_configs_and_layouts():
    with pytest.raises(ConfigError, match="acc_width must be in 16..64, not acc_width=8"):
        Int8PEConfig(acc_width=8)
    with pytest.raises(ConfigError, match="acc_frac must be in 0..acc_width-1=15, not acc_frac=16"):
        FP8PEConfig(acc_width=16, acc_frac=16)
    cfg = LPPEConfig(n=6, lanes=3)
    assert beat_layout(cfg).size == 2 * 3 * 6 + 1 and out_layout(cfg).size == 33
    assert LPPEConfig.from_json(cfg.to_json()) == cfg and cfg.latency == 5
    assert FP8_E4M3.const({"sign": 1, "exp": 7, "mant": 4}).as_bits() == 0xBC   # -1.5


@pytest.mark.parametrize("n, es, rs", [(8, 1, 4), (6, 0, 5), (8, 0, 1), (5, 3, 4)])
def test_fraction_bits_match_golden(n, es, rs):
    """The PE config's F is the golden format's (both from spec.numerics.lp_frac_bits)."""
    cfg = LPPEConfig(n=n, es=es, rs=rs, table_bits=9)
    assert cfg.frac_bits == lp.LPFormat(n, es, rs).frac_bits


@pytest.mark.parametrize("cfg", [LPPEConfig(), LPPEConfig(n=6, es=0, rs=5, lanes=1, prod_width=16),
                                 LPPEConfig(n=4, es=3, rs=1, lanes=3), LPPEConfig(n=10, es=2, rs=9),
                                 Int8PEConfig(), FP8PEConfig(lanes=2)], ids=lambda c: c.tag)
def test_generated_verilog_lints_clean(cfg, tmp_path):
    dut = {LPPEConfig: LPPE, Int8PEConfig: Int8PE, FP8PEConfig: FP8PE}[type(cfg)](cfg)
    assert lint(write_verilog(dut, "pe", tmp_path)) == []


def simulate(dut, beats, sfs):
    """Beats back to back (every beat ends a dot product); returns [(acc, nar)]."""
    layout = dut.i.payload.shape()
    out = []

    async def source(ctx):
        ctx.set(dut.o.ready, 1)
        for beat, sf in zip(beats, sfs):
            if hasattr(dut, "sf"):
                ctx.set(dut.sf, sf)
            ctx.set(dut.i.payload, layout.const(beat))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(out) < len(beats):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append((payload.acc, payload.nar))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (len(beats) + 20))
    assert len(out) == len(beats), "the PE did not deliver every output"
    return out


def test_amaranth_sim_matches_golden():
    rng = np.random.default_rng(3)
    cfg = LPPEConfig(n=6, es=1, rs=3, lanes=2)
    fmt = lp.LPFormat(6, 1, 3)
    w, a = rng.integers(0, 64, (2, 100, 2))
    w[5, 1] = fmt.nar_code
    sf = rng.integers(-10, 10, 100)
    beats = [{"w": w[k].tolist(), "a": a[k].tolist(), "last": 1} for k in range(100)]
    got = simulate(LPPE(cfg), beats, sf.tolist())
    want = [lp.fixed_dot(fmt.with_sf(int(s)), w[k], fmt, a[k], table_bits=8, acc_width=32, acc_frac=16)
            for k, s in enumerate(sf)]
    assert got == [(int(x), bool(y)) for x, y in want] and got[5][1]
    got = simulate(FP8PE(FP8PEConfig(lanes=2)), [{**b, "w": [v * 4 for v in b["w"]]} for b in beats], [0] * 100)
    assert got == [tuple(map(int, mac.fp8_dot(w[k] * 4, a[k]))) for k in range(100)]
    w8, a8 = rng.integers(0, 256, (2, 100, 2))            # codes: two's-complement int8
    beats = [{"w": w8[k].tolist(), "a": a8[k].tolist(), "last": 1} for k in range(100)]
    got = simulate(Int8PE(Int8PEConfig(lanes=2)), beats, [0] * 100)
    signed = lambda c: c.astype(np.uint8).astype(np.int8)  # noqa: E731
    assert got == [(int(mac.int8_dot(signed(w8[k]), signed(a8[k]))), 0) for k in range(100)]


def test_cli_generate_and_errors(tmp_path, capsys):
    assert main(["generate", "lp-pe", "--n", "6", "--es", "0", "--rs", "3", "-o", str(tmp_path)]) == 0
    assert "module lp_pe(" in (tmp_path / "lp_pe.v").read_text()
    for block in ("int8-pe", "fp8-pe"):
        assert main(["generate", block, "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["generate", "lp-pe", "--n", "6", "--rs", "6", "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "tessera: error: rs must be in 1..n-1=5, not rs=6\n"


def test_cli_verify_lp_pe(tmp_path, capsys):
    require_simulator("icarus")
    assert main(["verify", "lp-pe", "--n", "4", "--es", "1", "--rs", "2", "--lanes", "2",
                 "--sim", "icarus", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "icarus: 4/4 passed" in out and "all_code_pairs" in out


def test_cli_synth_lp_pe_without_pnr(tmp_path, capsys):
    assert main(["synth", "lp-pe", "--n", "4", "--es", "0", "--rs", "2", "--lanes", "1", "--no-pnr",
                 "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["block"] == "lp-pe" and report["config"]["n"] == 4
    assert 50 < report["ice40"]["lut4"] < 1000 and report["pnr"] is None
    assert "| lp_pe |" in capsys.readouterr().out


