"""``tessera bench tasd``: TASD/TASDER on real models, and passes vs parallel term units.

1. For the digits CNN (dense and 50/75/90 % pruned, no fine-tuning after TASD), on an
   8-row 2:4 core and an 8-row 2:8 core, for accuracy budgets of 0.5 and 1 point on the
   calibration batch: the series TASDER picks per layer, effective density, core cycles
   against dense on the same core, test top-1, and the EDP proxy.
2. all-MiniLM-L6-v2 (when the optional ``minilm`` extra is installed): its 36 linear
   layers on an 8-row 2:4 core and an 8-row 6:8 core, with output-error budgets on the
   calibration sentences of :mod:`golden.corpus`; the figure is the cosine similarity of
   the test sentences' embeddings to the FP32 model's (:func:`golden.models.load_model`).
3. Executing a series: two passes of 2:8 on a 2:8 core against one pass on a 4:8 core
   (two term units in parallel), by LUT4 x cycles from synthesis.

Results go to ``<out>/tasd_bench.json`` and ``.md``. ``--only digits|minilm|parallel``
runs those sections alone (:data:`SECTIONS`).
"""

from pathlib import Path

import click

from golden import minilm, tasd
from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from synth.flow import synthesize

from golden.models import load_model
from golden.tasder import default_menu
from golden.tasder_search import evaluate

from spec import outputs

from ..tables import rich_progress

#: The sections ``tessera bench tasd --only`` can pick.
SECTIONS = ("digits", "minilm", "parallel")
MODELS = ["digits", "digits-p50", "digits-p75", "digits-p90"]
CORES = [NMCoreConfig(n=2, m=4, rows=8), NMCoreConfig(n=2, m=4, rows=8, packing=True),
         NMCoreConfig(n=2, m=8, rows=8)]
BUDGETS = [0.5, 1.0]
#: MiniLM: (core, relative output-error budget; ~0.14 is a mean cosine of 0.99).
MINILM_RUNS = [(NMCoreConfig(n=2, m=4, rows=8), 0.14)] + [
    (NMCoreConfig(n=2, m=4, rows=8, packing=True), budget) for budget in (0.12, 0.14)] + [
    (NMCoreConfig(n=6, m=8, rows=8), budget) for budget in (0.10, 0.12, 0.13, 0.14)]


def _core(core: dict) -> str:
    """``2:4 x8``, with `` packing`` for a packing core (a packed pass costs 1 / factor)."""
    return f"{core['n']}:{core['m']} x{core['rows']}" + (" packing" if core.get("packing") else "")


def _compact(summary) -> str:
    parts = []
    for layer in summary["search"]["layers"]:
        if layer["weights"] != "dense":
            parts.append(f"{layer['name']}=W{layer['weights']}")
        elif layer["activations"] != "dense":
            parts.append(f"{layer['name']}=A{layer['activations']}")
        else:
            parts.append(f"{layer['name']}=dense")
    return " ".join(parts)


def _minilm_table(rows) -> str:
    lines = ["| core | budget (output error) | layers: W / A / dense | eff. density | cycles | dense cycles "
             "| cycles saved | mean cosine | min cosine | EDP proxy saved |", "|" + "---|" * 10]
    for s in rows:
        layers = s["search"]["layers"]
        w = sum(l["weights"] != "dense" for l in layers)
        a = sum(l["activations"] != "dense" for l in layers)
        c = s["test_cosine"]
        lines.append(f"| {_core(s['core'])} ({', '.join(s['menu'])}) "
                     f"| {s['search']['budget']} | {w} / {a} / {len(layers) - w - a} "
                     f"| {s['effective_density']:.3f} | {s['search']['cycles']} | {s['search']['dense_cycles']} "
                     f"| {100 * s['cycle_reduction']:.1f}% | {c['mean']:.4f} | {c['min']:.4f} "
                     f"| {100 * s['edp_reduction']:.1f}% |")
    return "\n".join(lines)


def _model_table(rows) -> str:
    lines = ["| model | core | budget (pts) | series per layer | eff. density | cycles | dense cycles "
             "| cycles saved | top-1 dense | top-1 TASD | drop | EDP proxy saved |",
             "|" + "---|" * 12]
    for s in rows:
        t = s["test_top1"]
        lines.append(
            f"| {s['model']} | {_core(s['core'])} | {s['search']['budget']} "
            f"| {_compact(s)} | {s['effective_density']:.3f} | {s['search']['cycles']} "
            f"| {s['search']['dense_cycles']} | {100 * s['cycle_reduction']:.1f}% | {t['reference']:.2f} "
            f"| {t['tasd']:.2f} | {t['drop']:+.2f} | {100 * s['edp_reduction']:.1f}% |")
    return "\n".join(lines)


def _passes_vs_parallel(out: Path) -> tuple[str, dict]:
    """2:8+2:8: two passes on a 2:8 core vs one pass on a 4:8 core, per LUT4 x cycles."""
    lines = ["| rows | 2:8 core LUT4 | x 2 passes | 4:8 core LUT4 | x 1 pass | better per area-time |",
             "|---|---|---|---|---|---|"]
    data = {}
    for rows in (1, 8):
        luts = {}
        for n in (2, 4):
            cfg = NMCoreConfig(n=n, m=8, rows=rows)
            rep = synthesize(NMCore(cfg), "nm_core", out / "synth" / cfg.tag, config=cfg)
            luts[n] = rep["ice40"]["lut4"]
        passes = tasd.series_passes("2:8+2:8", NMCoreConfig(n=2, m=8))
        two, one = luts[2] * passes, luts[4] * tasd.series_passes("2:8+2:8", NMCoreConfig(n=4, m=8))
        better = "parallel (4:8)" if one < two else "passes (2:8)"
        lines.append(f"| {rows} | {luts[2]} | {two} | {luts[4]} | {one} | {better} ({100 * abs(two - one) / max(two, one):.1f}% less) |")
        data[rows] = {"lut4_2of8": luts[2], "lut4_4of8": luts[4], "passes_cost": two, "parallel_cost": one}
    return "\n".join(lines), data


def run_bench(out: Path, jobs: int = 2, only: tuple[str, ...] = SECTIONS) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    runs = [(m, c, b) for m in MODELS for c in CORES for b in BUDGETS] if "digits" in only else []
    summaries, sections, calib = [], [], None
    if runs:
        with rich_progress() as progress:
            task = progress.add_task("TASDER searches", total=len(runs))
            for model, core, budget in runs:
                bundle = load_model(model)
                summaries.append(evaluate(bundle, core, default_menu(core), max_drop=budget))
                progress.advance(task)
        calib = len(bundle.x_calib)
        table = _model_table(summaries)
        click.echo(table)
        p75 = [s for s in summaries if s["model"] == "digits-p75" and s["search"]["budget"] == 1.0]
        target = "; ".join(f"{_core(s['core'])} core: {100 * s['cycle_reduction']:.1f}% fewer cycles "
                           f"at {s['test_top1']['drop']:+.2f} points" for s in p75)
        target_line = f"75%-pruned digits, 1-point budget (target >= 50% fewer cycles at <= 1 point): {target}"
        click.echo(target_line)
        sections = [table, target_line]
    shown = len(sections)

    minilm_rows = []
    if "minilm" in only:
        missing = minilm.available()
        if missing:
            sections.append(f"MiniLM: skipped: {missing}")
        else:
            bundle = load_model("minilm")
            corpus_line = minilm.corpus().line()
            sections.append(f"MiniLM: {bundle.data['calibration_sentences']} calibration and "
                            f"{bundle.data['test_sentences']} test sentences; {corpus_line}")
            with rich_progress() as progress:
                task = progress.add_task("TASDER on MiniLM", total=len(MINILM_RUNS))
                for core, budget in MINILM_RUNS:
                    minilm_rows.append(evaluate(bundle, core, default_menu(core), max_error=budget))
                    progress.advance(task)
            sections.append(_minilm_table(minilm_rows))
            best = [s for s in minilm_rows if s["test_cosine"]["mean"] >= 0.99]
            verdict = (max(best, key=lambda s: s["cycle_reduction"]) if best else None)
            sections.append("MiniLM (target: mean cosine >= 0.99 with >= 30% fewer cycles): " + (
                f"best {100 * verdict['cycle_reduction']:.1f}% fewer cycles at mean cosine "
                f"{verdict['test_cosine']['mean']:.4f} on a {_core(verdict['core'])} core"
                if verdict else "no run reached a mean cosine of 0.99"))
    click.echo("\n\n".join(sections[shown:]))

    parallel = None
    if "parallel" in only:
        parallel_table, parallel = _passes_vs_parallel(out)
        click.echo(parallel_table)
        sections.append(parallel_table)
    result = {"models": summaries, "minilm": minilm_rows, "passes_vs_parallel": parallel}
    result["provenance"] = outputs.provenance(
        "bench tasd", {"models": MODELS, "cores": [c.to_dict() for c in CORES], "budgets": BUDGETS,
                       "minilm_runs": [[c.to_dict(), b] for c, b in MINILM_RUNS], "out": out,
                       "sections": list(only)},
        seed=0, calibration=calib)
    outputs.write_json(out / "tasd_bench.json", result)
    outputs.write_text(out / "tasd_bench.md", "\n\n".join(sections) + "\n")
    return result
