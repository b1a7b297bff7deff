"""``tessera bench nm-core``: the N:M core's area, speed and utilisation figures.

1. Synthesis (Yosys ``synth_ice40`` for LUT4, nextpnr-ice40 HX8K for Fmax) of 4:4 (dense),
   2:4, 1:4, 8:8 (dense), 2:8 and 4:8 cores with 1 and 8 output rows. Every core does M
   effective MACs per row per cycle, so the efficiency columns compare equal rates:
   effective MACs/cycle per 1,000 LUT4 and effective GMAC/s (x Fmax) per 1,000 LUT4,
   each also as a ratio to the dense core of the same M.
   The same with row packing (``packing=True``) for 2:4, 4:8 and 2:8: the option's
   LUT4 cost, and the packed modes (1:4 on 2:4; 1:8 and 2:8 on 4:8; 1:8 on 2:8), whose
   effective rate is ``n / N'`` times the plain core's at ``N'``.
2. Utilisation: a 64x256 by 256x64 product on the 8-row 2:4 core, run on the RTL
   (Verilator, every output checked against golden.nm.matmul), cycles measured against
   the ideal K/M cycles per row block and column; then the same product at every packed
   mode of the 8-row packing cores, measured cycles = ``golden.nm.cycles(...,
   n_active=N')``.

Results go to ``<out>/nm_core_bench.json`` and ``.md``; the tables are printed.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from golden import nm
from hw.nm_core import NMCore
from spec import outputs
from spec.nm_core import NMCoreConfig
from synth.flow import SynthOptions, synthesize
from verif.nm_core_perf import measure_utilisation

from ..tables import rich_progress

NM_PAIRS = [(4, 4), (2, 4), (1, 4), (8, 8), (2, 8), (4, 8)]
PACKING_PAIRS = [(2, 4), (4, 8), (2, 8)]
ROWS = (1, 8)
PERF_CONFIG = NMCoreConfig(n=2, m=4, rows=8)
PERF_SHAPE = (64, 256, 64)
PACKED_PERF = [NMCoreConfig(n=n, m=m, rows=8, packing=True) for n, m in PACKING_PAIRS]


def _synth_all(out: Path, jobs: int) -> dict[tuple[int, int, int, bool], dict]:
    configs = [NMCoreConfig(n=n, m=m, rows=rows) for rows in ROWS for (n, m) in NM_PAIRS]
    configs += [NMCoreConfig(n=n, m=m, rows=rows, packing=True) for rows in ROWS for (n, m) in PACKING_PAIRS]
    reports = {}
    with rich_progress() as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("synthesis + place-and-route", total=len(configs))
        futures = {pool.submit(synthesize, NMCore(c), "nm_core", out / "synth" / c.tag, config=c): c
                   for c in configs}
        for future, cfg in futures.items():
            reports[(cfg.n, cfg.m, cfg.rows, cfg.packing)] = future.result()
            progress.advance(task)
    return reports


def _rows(reports) -> list[dict]:
    rows = []
    for (n, m, r, packing), rep in reports.items():
        if packing:
            continue
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


def _packed_rows(reports, plain) -> list[dict]:
    """Per packing core: its cost over the plain core, and every mode's effective rate."""
    by_key = {(r["n"], r["m"], r["rows"]): r for r in plain}
    rows = []
    for (n, m, r, packing), rep in reports.items():
        if not packing:
            continue
        cfg = NMCoreConfig(n=n, m=m, rows=r, packing=True)
        lut, fmax = rep["ice40"]["lut4"], rep["pnr"]["fmax_mhz"]
        base = by_key[(n, m, r)]
        for n_active in (n, *reversed(cfg.pack_modes)):
            pack = cfg.pack_factor(n_active)
            macs = r * m * pack
            native = by_key.get((n_active, m, r))
            rows.append({
                "core": f"{n}:{m}", "rows": r, "mode": f"{n_active}:{m}", "n_active": n_active,
                "pack": pack, "eff_macs_per_cycle": macs, "lut4": lut, "plain_lut4": base["lut4"],
                "packing_cost_lut4": lut - base["lut4"], "ff": rep["ice40"]["ff"],
                "lc": rep["pnr"]["lc_used"], "fits": rep["pnr"]["fits"], "fmax_mhz": fmax,
                "macs_per_cycle_per_klut": 1000 * macs / lut,
                "gmacs_per_klut": (macs * fmax / lut) if fmax else None,
                "vs_plain_core": (macs / lut) / (r * m / base["lut4"]),
                "vs_native_core": ((macs / lut) / native["macs_per_cycle_per_klut"] * 1000
                                   if native else None),
            })
    return rows


def _packed_table(rows) -> str:
    lines = ["| core (packing) | rows | mode | logical rows / row | eff MACs/cycle | LUT4 | packing cost LUT4 "
             "| FF | LC (placed) | Fmax MHz | eff MACs/cycle per 1k LUT4 | eff GMAC/s per 1k LUT4 "
             "| x plain core at N' | x native N':M core |", "|" + "---|" * 14]
    for r in rows:
        lc = r["lc"] if r["fits"] else f"{r['lc']} (> 7680, does not fit)"
        lines.append(
            f"| {r['core']} | {r['rows']} | {r['mode']} | {r['pack']} | {r['eff_macs_per_cycle']} | {r['lut4']} "
            f"| {r['packing_cost_lut4']:+d} ({r['plain_lut4']} plain) | {r['ff']} | {lc} "
            f"| {_fmt(r['fmax_mhz'], '.1f')} | {r['macs_per_cycle_per_klut']:.2f} "
            f"| {_fmt(r['gmacs_per_klut'], '.3f')} | {r['vs_plain_core']:.2f} | {_fmt(r['vs_native_core'], '.2f')} |")
    return "\n".join(lines)


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


def _utilisation(out: Path, config=PERF_CONFIG, n_active: tuple[int, ...] = ()):
    return measure_utilisation(config, PERF_SHAPE, out / "sim_build", n_active=list(n_active) or None)


def run_bench(out: Path, jobs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    reports = _synth_all(out, jobs)
    rows = _rows(reports)
    table = _table(rows)
    click.echo(table)
    packed = _packed_rows(reports, rows)
    packed_table = _packed_table(packed)
    click.echo(packed_table)
    by_key = {(r["nm"], r["rows"]): r for r in rows}
    summary = []
    for rows_ in ROWS:
        s, d = by_key[("2:4", rows_)], by_key[("4:4", rows_)]
        p = next(r for r in packed if r["core"] == "2:4" and r["rows"] == rows_ and r["pack"] == 1)
        summary.append(f"2:4 vs 4:4, {rows_} row(s): {s['area_eff_vs_dense']:.2f}x effective MACs/cycle "
                       f"per LUT4 (target >= 1.8x), {p['macs_per_cycle_per_klut'] / d['macs_per_cycle_per_klut']:.2f}x "
                       f"with packing on; {_fmt(s['gmacs_per_klut'], '.3f')} effective GMAC/s per 1k LUT4 "
                       f"({_fmt(p['gmacs_per_klut'], '.3f')} with packing; target >= 1.10 for one row); "
                       f"Fmax {_fmt(s['fmax_mhz'], '.1f')} vs {_fmt(d['fmax_mhz'], '.1f')} MHz")
    click.echo("\n".join(summary))

    click.echo(f"running {PERF_SHAPE[0]}x{PERF_SHAPE[1]} by {PERF_SHAPE[1]}x{PERF_SHAPE[2]} on the "
               f"{PERF_CONFIG.rows}-row {PERF_CONFIG.n}:{PERF_CONFIG.m} core (Verilator)...")
    perf = _utilisation(out)
    perf_line = (f"{PERF_SHAPE[0]}x{PERF_SHAPE[1]} @ {PERF_SHAPE[1]}x{PERF_SHAPE[2]} on the "
                 f"{PERF_CONFIG.rows}-row {PERF_CONFIG.n}:{PERF_CONFIG.m} core: "
                 f"{perf['measured_cycles']} cycles measured, {perf['ideal_cycles']} ideal "
                 f"-> {100 * perf['utilisation']:.3f}% utilisation (target >= 95%); all outputs bit-exact")
    click.echo(perf_line)
    packed_perf, packed_lines = [], []
    for cfg in PACKED_PERF:
        click.echo(f"running the same product at N' = {', '.join(map(str, cfg.pack_modes))} on the "
                   f"{cfg.rows}-row packing {cfg.n}:{cfg.m} core (Verilator)...")
        for result in _utilisation(out, cfg, cfg.pack_modes):
            packed_perf.append({"core": f"{cfg.n}:{cfg.m}", **result})
            packed_lines.append(
                f"{result['n_active']}:{cfg.m} on the {cfg.rows}-row packing {cfg.n}:{cfg.m} core "
                f"({result['pack']} logical rows per row): {result['measured_cycles']} cycles measured "
                f"= golden.nm.cycles {result['model_cycles']} ({result['ideal_cycles']} ideal; "
                f"unpacked: {nm.cycles(cfg, *PERF_SHAPE)}); all outputs bit-exact")
            click.echo(packed_lines[-1])
    doc = {"rows": rows, "packed": packed, "utilisation": perf, "packed_utilisation": packed_perf}
    record = outputs.provenance("bench nm-core", {"jobs": jobs, "out": out, "rows": ROWS,
                                                  "packing": [c.to_dict() for c in PACKED_PERF]},
                                seed=SynthOptions().seed)
    outputs.write_json(out / "nm_core_bench.json", {**doc, "provenance": record})
    outputs.write_text(out / "nm_core_bench.md", "\n\n".join([table, packed_table, "\n".join(summary), perf_line,
                                                              "\n".join(packed_lines)]) + "\n")
    return doc
