"""How the CLI and the benchmarks print what the golden searches return: the TASDER
summary (:func:`golden.tasder_search.evaluate`) as a layer table and its JSON file."""

import contextlib
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from spec import outputs

__all__ = ["quality", "layer_table", "write_json", "lpq_layer_table", "progress_bar", "progress_shown",
           "rich_progress"]


def progress_shown() -> bool:
    """Whether progress bars are drawn: when stderr is a terminal, unless
    ``TESSERA_PROGRESS`` says otherwise (``1``: always, e.g. in a CI log; ``0``: never).
    Piped output never carries them: they go to stderr only."""
    forced = os.environ.get("TESSERA_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


def rich_progress() -> Progress:
    """A plain rich :class:`Progress` on stderr, drawn only when :func:`progress_shown`
    (for loops that manage their own tasks, as the benchmarks do)."""
    return Progress(console=Console(stderr=True), disable=not progress_shown())


@contextlib.contextmanager
def progress_bar(label: str, total: int | None, show: bool = True):
    """A rich progress bar on stderr (a spinner with the elapsed time when ``total`` is
    None); yields ``report(done, status_text)``. Drawn only when ``show`` and
    :func:`progress_shown`."""
    if not (show and progress_shown()):
        yield lambda done, status="": None
        return
    counter = [MofNCompleteColumn()] if total is not None else []
    columns = [SpinnerColumn(), TextColumn(label), *counter, BarColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, status="")
        yield lambda done, status="": bar.update(task, completed=done, status=status)
        if total is not None:               # the work is done: so is the bar
            bar.update(task, completed=total, status="done")


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
    """``summary`` as indented JSON, written whole (:func:`spec.outputs.write_json`)."""
    outputs.write_json(path, summary)
