"""``tessera bench train-nm``: N:M training recipes on the digits CNN.

Top-1 on the digits test split, mean and spread (sample standard deviation) over seeds,
for dense, SR-STE, MDGF-linear, MDGF-exp and SDGF at 2:4, 1:8 and 1:16, all with the
same epochs (hence the same training FLOPs: every recipe computes dense products; the
masks only change values). conv1 stays dense (K = 9 has no room for N:M groups).
Then one layer (fc1, 64 x 512) of the seed-0 SDGF 1:8 model, quantized to int8, runs
through the N:M core's RTL on Verilator, every output checked against golden.nm.matmul.
"""

import statistics
from pathlib import Path

import click

from golden import digits
from golden.sparse_train import Recipe
from spec.nm_core import NMCoreConfig
from verif.nm_core_layer import run_layer_on_core

from spec import outputs

from ..tables import rich_progress
from ..train_tools import layer_operands, train_digits

RECIPES = ["srste", "mdgf-linear", "mdgf-exp", "sdgf"]
TARGETS = [(2, 4), (1, 8), (1, 16)]
SEEDS = [0, 1, 2]
EPOCHS = dict(epochs=30, warmup=5, finetune=5)


def run_bench(out: Path, jobs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    data = digits.load_data()
    runs = [("dense", 4, 4)] + [(r, n, m) for (n, m) in TARGETS for r in RECIPES]
    results = {}
    models = {}
    with rich_progress() as progress:
        task = progress.add_task("training", total=len(runs) * len(SEEDS))
        for kind, n, m in runs:
            accs = []
            for seed in SEEDS:
                model = train_digits(Recipe(kind=kind, n=n, m=m, **EPOCHS), seed)
                accs.append(digits.accuracy(model, data.x_test, data.y_test))
                if (kind, n, m, seed) == ("sdgf", 1, 8, 0):
                    models["sdgf-1:8"] = model
                progress.advance(task)
            results[(kind, n, m)] = accs

    lines = ["| target | recipe | top-1 mean | spread (std) | per seed |", "|---|---|---|---|---|"]
    for (kind, n, m), accs in results.items():
        target = "dense" if kind == "dense" else f"{n}:{m}"
        lines.append(f"| {target} | {kind} | {statistics.mean(accs):.2f} | {statistics.stdev(accs):.2f} "
                     f"| {', '.join(f'{a:.2f}' for a in accs)} |")
    table = "\n".join(lines)
    click.echo(table)
    verdicts = []
    for n, m in TARGETS:
        srste = statistics.mean(results[("srste", n, m)])
        best_kind = max(("mdgf-linear", "mdgf-exp", "sdgf"), key=lambda k: statistics.mean(results[(k, n, m)]))
        best = statistics.mean(results[(best_kind, n, m)])
        verdicts.append(f"{n}:{m}: best decay recipe {best_kind} {best:.2f} vs SR-STE {srste:.2f} "
                        f"({best - srste:+.2f} points)")
    click.echo("\n".join(verdicts))

    w, x = layer_operands(models["sdgf-1:8"], "fc1")
    layer = run_layer_on_core(w, x, NMCoreConfig(n=1, m=8, rows=8), out / "layer", name="fc1")
    layer_line = (f"fc1 of the SDGF 1:8 model (seed 0), int8, {layer['shape'][0]}x{layer['shape'][1]} "
                  f"@ {layer['shape'][1]}x{layer['shape'][2]} on an 8-row 1:8 core (Verilator): "
                  f"{layer['outputs']} outputs, {layer['mismatches']} mismatches against golden.nm.matmul "
                  f"({layer['nonzero_weights']} non-zero weights)")
    click.echo(layer_line)
    summary = {"epochs": EPOCHS, "seeds": SEEDS,
               "top1": {f"{k}-{n}:{m}": accs for (k, n, m), accs in results.items()},
               "verdicts": verdicts, "layer_on_core": layer}
    summary["provenance"] = outputs.provenance("bench train-nm", {"epochs": EPOCHS, "seeds": SEEDS, "out": out},
                                               seed=SEEDS)
    outputs.write_json(out / "train_bench.json", summary)
    outputs.write_text(out / "train_bench.md", "\n\n".join([table, "\n".join(verdicts), layer_line]) + "\n")
    return summary
