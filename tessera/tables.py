"""How the CLI and the benchmarks print what the golden searches return: the TASDER
summary (:func:`golden.tasder_search.evaluate`) as a layer table and its JSON file."""

import contextlib
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["quality", "layer_table", "write_json", "lpq_layer_table", "progress_bar"]


@contextlib.contextmanager
def progress_bar(label: str, total: int, show: bool = True):
    """A rich progress bar on stderr; yields ``report(done, status_text)``."""
    if not show:
        yield lambda done, status="": None
        return
    columns = [TextColumn(label), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, status="")
        yield lambda done, status="": bar.update(task, completed=done, status=status)


def lpq_layer_table(result, model) -> str:
    """Per layer of an LPQ result: weights, (n, es, rs, sf), the input scale and the PE's."""
    mods = dict(model.named_modules())
    rows = [f"{'layer':8} {'weights':>8} {'n':>3} {'es':>3} {'rs':>3} {'sf':>4} {'sf_a':>5} {'PE sf':>6}"]
    for name, g in result.genes.items():
        rows.append(f"{name:8} {mods[name].weight.numel():8d} {g.n:3d} {g.es:3d} {g.rs:3d} {g.sf:4d} "
                    f"{g.sf_a:5d} {g.sf + g.sf_a:6d}")
    return "\n".join(rows)


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
