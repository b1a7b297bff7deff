"""TASDER on the built-in models: the ``tessera tasder`` command and the TASD benchmark
share these helpers."""

import json
from pathlib import Path

import torch

from golden import GoldenError, tasd, tasder
from spec.nm_core import NMCoreConfig

from .models import ModelBundle

__all__ = ["STANDARD_MENU", "default_menu", "parse_core", "run_tasder", "layer_table", "effective_density"]

#: Series worth supporting (REFERENCE.md); a core runs the ones whose terms fit it.
STANDARD_MENU = ["1:2", "1:4", "2:4", "2:4+1:4", "1:8", "2:8", "4:8", "2:8+2:8", "2:4+2:8", "4:8+2:8"]


def parse_core(text: str, rows: int) -> NMCoreConfig:
    """``"2:4"`` -> the NMCoreConfig of a 2:4 core with ``rows`` rows."""
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise GoldenError(f"core {text!r} is not of the form n:m") from None
    return NMCoreConfig(n=n, m=m, rows=rows)


def _density(series: str) -> float:
    return sum(n / m for n, m in tasd.parse_series(series))


def _rank(series: str) -> tuple[float, int, int]:
    ms = [m for _, m in tasd.parse_series(series)]
    return _density(series), min(ms), max(ms)


def default_menu(core) -> list[str]:
    """For every pass count below dense, the standard series that keeps the most: the
    largest density (sum of n/m), ties to the larger groups (fewer constraints). At equal
    cost a series that keeps the top-k of a group is never worse for the tensor than
    one that keeps fewer or more constrained elements, so the others are left out.
    ``--menu`` gives the search any list instead."""
    best: dict[int, str] = {}
    for series in STANDARD_MENU:
        terms = tasd.parse_series(series)
        if not all(tasd.term_fits_core(n, m, core) for n, m in terms):
            continue
        passes = tasd.series_passes(series, core)
        if passes >= tasd.dense_passes(core):
            continue
        if passes not in best or _rank(series) > _rank(best[passes]):
            best[passes] = series
    if not best:
        raise GoldenError(f"no standard series runs faster than dense on a {core.n}:{core.m} core")
    return [best[p] for p in sorted(best)]


def effective_density(result: tasder.TasderResult) -> float:
    """Fraction of the dense MACs the chosen terms keep: per layer sum(n_i / m_i) over the
    decomposed operand's series (1 for dense layers), weighted by the layer's MACs."""
    kept = total = 0.0
    for layer in result.layers:
        macs = layer["out"] * layer["k"] * layer["cols"]
        series = layer["weights"] if layer["weights"] != "dense" else layer["activations"]
        density = 1.0 if series == "dense" else min(1.0, sum(n / m for n, m in tasd.parse_series(series)))
        kept += macs * density
        total += macs
    return kept / total


def top1(model, choices, x, y) -> float:
    out = tasder.approximate(model, choices, x)
    return 100.0 * (out.argmax(1) == y).float().mean().item()


def cosines(model, choices, x) -> list[float]:
    """Cosine similarity of each output row (an embedding) to the unapproximated model's."""
    with torch.no_grad():
        reference = model(x)
    out = tasder.approximate(model, choices, x)
    return torch.nn.functional.cosine_similarity(out, reference, dim=-1).tolist()


def run_tasder(bundle: ModelBundle, core: NMCoreConfig, menu: list[str], *,
               max_drop: float | None = None, max_error: float | None = None) -> dict:
    """Search on the calibration batch, then evaluate on the test inputs: top-1 for a
    labelled model, embedding cosine similarity otherwise. A JSON-able summary."""
    if not bundle.labelled and max_drop is not None:
        raise GoldenError(f"model {bundle.name!r} has no labels: give an output-error budget, "
                          "not an accuracy drop")
    result = tasder.search(bundle.model, bundle.x_calib, core, menu, y=bundle.y_calib,
                           max_accuracy_drop=max_drop, max_output_error=max_error)
    cycle_ratio = result.cycles / result.dense_cycles
    summary = {
        "model": bundle.name, "core": core.to_dict(), "menu": menu,
        "search": result.to_json(),
        "effective_density": effective_density(result),
        "cycle_reduction": 1 - cycle_ratio,
        # Energy ~ cycles x (the core's power, unchanged), delay ~ cycles.
        "edp_reduction": 1 - cycle_ratio ** 2,
    }
    if bundle.labelled:
        reference = top1(bundle.model, {}, bundle.x_test, bundle.y_test)
        approximated = top1(bundle.model, result.choices, bundle.x_test, bundle.y_test)
        summary["test_top1"] = {"reference": reference, "tasd": approximated,
                                "drop": reference - approximated}
    else:
        values = cosines(bundle.model, result.choices, bundle.x_test)
        summary["test_cosine"] = {"mean": sum(values) / len(values), "min": min(values)}
    return summary


def quality(summary: dict) -> str:
    """One phrase for the test-set quality of a summary."""
    if "test_top1" in summary:
        t = summary["test_top1"]
        return f"test top-1 {t['tasd']:.2f}% vs {t['reference']:.2f}% ({t['drop']:+.2f} points drop)"
    c = summary["test_cosine"]
    return f"embedding cosine to FP32: mean {c['mean']:.4f}, min {c['min']:.4f}"


def layer_table(summary: dict) -> str:
    lines = ["| layer | kind | out x K x cols | weights | activations | cycles | dense cycles |",
             "|---|---|---|---|---|---|---|"]
    for layer in summary["search"]["layers"]:
        lines.append(f"| {layer['name']} | {layer['kind']} | {layer['out']} x {layer['k']} x {layer['cols']} "
                     f"| {layer['weights']} | {layer['activations']} | {layer['cycles']} | {layer['dense_cycles']} |")
    s = summary["search"]
    lines.append(f"| total | | | | | {s['cycles']} | {s['dense_cycles']} |")
    lines.append("")
    lines.append(f"{summary['model']} on a {summary['core']['n']}:{summary['core']['m']} core "
                 f"({summary['core']['rows']} rows): {100 * summary['cycle_reduction']:.1f}% fewer cycles "
                 f"than dense, effective density {summary['effective_density']:.3f}, "
                 f"{quality(summary)}, EDP proxy {100 * summary['edp_reduction']:.1f}% lower")
    return "\n".join(lines)


def write_json(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
