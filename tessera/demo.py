"""``tessera demo``: the whole flow on the built-in default, a 4-row 2:4 tensor core.

golden model -> Amaranth generator -> Verilog -> cocotb on Verilator and Icarus ->
Yosys/nextpnr report, printed as it goes.
"""

import re
from pathlib import Path

import click

from hw import write_verilog
from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from synth.flow import synthesize
from verif import VerifError
from verif.runner import SIMULATORS, run_bench, simulator_missing

#: The demo's core: 2:4 sparsity, four output rows, int8 x int8 -> int32.
DEMO_CONFIG = NMCoreConfig(n=2, m=4, rows=4)


def _ports(verilog: str) -> list[str]:
    return re.findall(r"^\s*(?:input|output)\b[^;]*;", verilog, flags=re.M)


def run_demo(out: Path) -> None:
    cfg = DEMO_CONFIG
    click.secho(f"== 1. generate: {cfg.n}:{cfg.m} core, {cfg.rows} rows ({cfg.multipliers} "
                f"multipliers, {cfg.effective_macs_per_cycle} effective MACs/cycle)", bold=True)
    path = write_verilog(NMCore(cfg), "nm_core", out / "verilog")
    text = path.read_text()
    click.echo(f"{path}: {len(text.splitlines())} lines; ports:")
    for port in _ports(text):
        click.echo(f"  {port.strip()}")

    click.secho("== 2. verify: cocotb bench against golden.nm.matmul", bold=True)
    for sim in SIMULATORS:
        missing = simulator_missing(sim)
        if missing:
            click.echo(f"{sim}: skipped: {missing}")
            continue
        result = run_bench(cfg, NMCore(cfg), "nm_core", "verif.nm_core_tb", sim=sim,
                           build_root=out / "sim_build", quiet=True, check=False)
        for line in result.table():
            click.echo(f"  {line}")
        if not result.passed:
            raise VerifError(result.summary("nm_core"))

    click.secho("== 3. synthesize: Yosys (generic + iCE40) and nextpnr-ice40 (HX8K)", bold=True)
    report = synthesize(NMCore(cfg), "nm_core", out / "synth", config=cfg)
    click.echo((out / "synth" / "report.md").read_text())
    fmax = report["pnr"]["fmax_mhz"]
    click.echo(f"{cfg.effective_macs_per_cycle} effective MACs/cycle x {fmax} MHz = "
               f"{cfg.effective_macs_per_cycle * fmax / 1000:.2f} effective GMAC/s "
               f"on {report['ice40']['lut4']} LUT4")
    click.echo(f"all outputs in {out}/")
