"""``tessera bench nm-core``: the N:M core's area, speed and utilisation figures.

1. Synthesis (Yosys ``synth_ice40`` for LUT4, nextpnr-ice40 HX8K for Fmax) of 4:4 (dense),
   2:4, 1:4, 8:8 (dense), 2:8 and 4:8 cores with 1 and 8 output rows. Every core does M
   effective MACs per row per cycle, so the efficiency columns compare equal rates:
   effective MACs/cycle per 1,000 LUT4 and effective GMAC/s (x Fmax) per 1,000 LUT4,
   each also as a ratio to the dense core of the same M.
2. Utilisation: a 64x256 by 256x64 product on the 8-row 2:4 core, run on the RTL
   (Verilator, every output checked against golden.nm.matmul), cycles measured against
   the ideal K/M cycles per row block and column.

Results go to ``<out>/nm_core_bench.json`` and ``.md``; the tables are printed.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from hw.nm_core import NMCore
from spec import outputs
from spec.nm_core import NMCoreConfig
from synth.flow import SynthOptions, synthesize
from verif.nm_core_perf import measure_utilisation

from ..tables import rich_progress

NM_PAIRS = [(4, 4), (2, 4), (1, 4), (8, 8), (2, 8), (4, 8)]
ROWS = (1, 8)
PERF_CONFIG = NMCoreConfig(n=2, m=4, rows=8)
PERF_SHAPE = (64, 256, 64)


def _synth_all(out: Path, jobs: int) -> dict[tuple[int, int, int], dict]:
    configs = [NMCoreConfig(n=n, m=m, rows=rows) for rows in ROWS for (n, m) in NM_PAIRS]
    reports = {}
    with rich_progress() as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("synthesis + place-and-route", total=len(configs))
        futures = {pool.submit(synthesize, NMCore(c), "nm_core", out / "synth" / c.tag, config=c): c
                   for c in configs}
        for future, cfg in futures.items():
            reports[(cfg.n, cfg.m, cfg.rows)] = future.result()
            progress.advance(task)
    return reports


def _rows(reports) -> list[dict]:
    rows = []
    for (n, m, r), rep in reports.items():
        lut = rep["ice40"]["lut4"]
        fmax = rep["pnr"]["fmax_mhz"]
        macs = r * m
        rows.append({
            "nm": f"{n}:{m}", "n": n, "m": m, "rows": r, "multipliers": r * n,
            "eff_macs_per_cycle": macs, "lut4": lut, "carry": rep["ice40"]["carry"],
            "ff": rep["ice40"]["ff"], "lc": rep["pnr"]["lc_used"], "fits": rep["pnr"]["fits"],
            "fmax_mhz": fmax,
            "macs_per_cycle_per_klut": 1000 * macs / lut,
            "gmacs_per_klut": (1000 * macs * fmax / 1000 / lut) if fmax else None,
        })
    for row in rows:
        dense = next(d for d in rows if d["n"] == d["m"] == row["m"] and d["rows"] == row["rows"])
        row["area_eff_vs_dense"] = row["macs_per_cycle_per_klut"] / dense["macs_per_cycle_per_klut"]
        row["fmax_vs_dense"] = (row["fmax_mhz"] / dense["fmax_mhz"]
                                if row["fmax_mhz"] and dense["fmax_mhz"] else None)
    return rows


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _table(rows) -> str:
    lines = ["| N:M | rows | mults | eff MACs/cycle | LUT4 | carry | FF | LC (placed) | Fmax MHz "
             "| eff MACs/cycle per 1k LUT4 | eff GMAC/s per 1k LUT4 | x dense (MACs/LUT) | x dense (Fmax) |",
             "|" + "---|" * 13]
    for r in rows:
        lc = r["lc"] if r["fits"] else f"{r['lc']} (> 7680, does not fit)"
        lines.append(
            f"| {r['nm']} | {r['rows']} | {r['multipliers']} | {r['eff_macs_per_cycle']} | {r['lut4']} "
            f"| {r['carry']} | {r['ff']} | {lc} | {_fmt(r['fmax_mhz'], '.1f')} "
            f"| {r['macs_per_cycle_per_klut']:.2f} | {_fmt(r['gmacs_per_klut'], '.3f')} "
            f"| {r['area_eff_vs_dense']:.2f} | {_fmt(r['fmax_vs_dense'], '.2f')} |")
    return "\n".join(lines)


def _utilisation(out: Path) -> dict:
    return measure_utilisation(PERF_CONFIG, PERF_SHAPE, out / "sim_build")


def run_bench(out: Path, jobs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(_synth_all(out, jobs))
    table = _table(rows)
    click.echo(table)
    by_key = {(r["nm"], r["rows"]): r for r in rows}
    summary = []
    for rows_ in ROWS:
        s, d = by_key[("2:4", rows_)], by_key[("4:4", rows_)]
        summary.append(f"2:4 vs 4:4, {rows_} row(s): {s['area_eff_vs_dense']:.2f}x effective MACs/cycle "
                       f"per LUT4 (target >= 1.8x); Fmax {_fmt(s['fmax_mhz'], '.1f')} vs "
                       f"{_fmt(d['fmax_mhz'], '.1f')} MHz (target: no lower than dense)")
    click.echo("\n".join(summary))

    click.echo(f"running {PERF_SHAPE[0]}x{PERF_SHAPE[1]} by {PERF_SHAPE[1]}x{PERF_SHAPE[2]} on the "
               f"{PERF_CONFIG.rows}-row {PERF_CONFIG.n}:{PERF_CONFIG.m} core (Verilator)...")
    perf = _utilisation(out)
    perf_line = (f"{PERF_SHAPE[0]}x{PERF_SHAPE[1]} @ {PERF_SHAPE[1]}x{PERF_SHAPE[2]} on the "
                 f"{PERF_CONFIG.rows}-row {PERF_CONFIG.n}:{PERF_CONFIG.m} core: "
                 f"{perf['measured_cycles']} cycles measured, {perf['ideal_cycles']} ideal "
                 f"-> {100 * perf['utilisation']:.3f}% utilisation (target >= 95%); all outputs bit-exact")
    click.echo(perf_line)
    record = outputs.provenance("bench nm-core", {"jobs": jobs, "out": out, "rows": ROWS},
                                seed=SynthOptions().seed)
    outputs.write_json(out / "nm_core_bench.json", {"rows": rows, "utilisation": perf, "provenance": record})
    outputs.write_text(out / "nm_core_bench.md", "\n\n".join([table, "\n".join(summary), perf_line]) + "\n")
    return {"rows": rows, "utilisation": perf}
