"""``tessera bench train-nm``: N:M training recipes on the digits CNN and on MiniLM.

1. Digits (unchanged): top-1 on the digits test split, mean and spread (sample standard
   deviation) over seeds, for dense, SR-STE, MDGF-linear, MDGF-exp and SDGF at 2:4, 1:8
   and 1:16, all with the same epochs (hence the same training FLOPs: every recipe
   computes dense products; the masks only change values). conv1 stays dense (K = 9
   has no room for N:M groups).
2. Language (:mod:`golden.sparse_train.distil`): all-MiniLM-L6-v2 distilled into an N:M
   student (its 36 projections N:M along the input dimension) on the train split of the
   standard-library corpus (:mod:`golden.corpus`), SR-STE / MDGF-linear / MDGF-exp / SDGF
   at 2:4, 1:4, 1:8 and 1:16 with one budget (:data:`MINILM_RECIPE`,
   :data:`MINILM_BUDGET`); quality is the mean cosine of the test split's embeddings to
   the teacher's (the dense teacher scores 1.0), mean and spread over seeds; the FLOPs
   each recipe spent (as run, and N:M-aware); the target (at 1:8 and 1:16 the best decay
   recipe beats SR-STE by more than the seed spread) with the gradient-noise
   measurements arXiv 2402.04744 blames.
3. Hardware: fc1 of the seed-0 SDGF 1:8 digits model and one projection of the seed-0
   SDGF 1:8 MiniLM student (both int8) through the N:M core's RTL on Verilator, every
   output checked against golden.nm.matmul; every layer of that student compressed and
   decompressed with golden.nm (exactly equal).

The MiniLM runs go to ``jobs`` worker processes of one torch thread each (runs are
seeded and deterministic on one thread), the sparsest targets first, each logged to
``<out>/minilm_runs.jsonl`` as it ends; the digits CNN trains meanwhile in the main
process (one thread). Figures go to ``<out>/train_bench.json`` and ``.md``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from golden.sparse_train import Recipe
from golden.sparse_train import distil
from golden.sparse_train.distil import DistilBudget
from spec import outputs
from spec.nm_core import NMCoreConfig
from verif.nm_core_layer import run_layer_on_core

from ..tables import rich_progress

__all__ = ["run_bench", "run_minilm", "MinilmPlan", "MINILM_PLAN", "MINILM_BUDGET", "MINILM_RECIPE"]

RECIPES = ["srste", "mdgf-linear", "mdgf-exp", "sdgf"]
TARGETS = [(2, 4), (1, 8), (1, 16)]
SEEDS = [0, 1, 2]
EPOCHS = dict(epochs=30, warmup=5, finetune=5)

#: MiniLM: every recipe gets these epochs (no dense warm-up: the student starts as the
#: teacher, whose loss is 0) and this budget per epoch (:class:`DistilBudget`'s defaults:
#: 6 epochs x 10 steps x 32 sentences; 52-82 CPU-s per run on one thread).
MINILM_RECIPE = dict(distil.EPOCHS)
MINILM_BUDGET = DistilBudget()
#: The MiniLM layer run on the core: the first block's query projection (384 x 384).
MINILM_LAYER = "bert.encoder.layer.0.attention.self.query"


@dataclass(frozen=True)
class MinilmPlan:
    """The MiniLM runs: every recipe at every target, ``seeds`` each except where
    ``seeds_at`` names other seeds for a target ``(n, m, seeds)``.

    The default, 40 runs of 52-82 CPU-s (measured in the bench, one thread; about 2,500
    CPU-s, with the teacher table, the digits CNN and the core checks about 25 min on 2
    idle cores; under a load of 10 on 2 cores it took over 6 min wall per run), gives
    the targets the verdict is about, 1:8 and 1:16, three seeds, and 2:4 and 1:4
    (context: no target there) two, the fewest that give a spread. To fill an hour on
    idle cores, double ``budget.steps``."""

    recipes: tuple[str, ...] = tuple(RECIPES)
    targets: tuple[tuple[int, int], ...] = ((2, 4), (1, 4), (1, 8), (1, 16))
    seeds: tuple[int, ...] = (0, 1, 2)
    seeds_at: tuple[tuple[int, int, tuple[int, ...]], ...] = ((2, 4, (0, 1)), (1, 4, (0, 1)))
    budget: DistilBudget = MINILM_BUDGET
    recipe: tuple[tuple[str, int], ...] = tuple(MINILM_RECIPE.items())
    #: (recipe, n, m, seed) whose student is saved and checked on the core, and the simulator.
    keep: tuple[str, int, int, int] = ("sdgf", 1, 8, 0)
    sim: str = "verilator"

    def seeds_for(self, n: int, m: int) -> tuple[int, ...]:
        return next((seeds for a, b, seeds in self.seeds_at if (a, b) == (n, m)), self.seeds)

    def all_seeds(self) -> list[int]:
        return sorted({s for n, m in self.targets for s in self.seeds_for(n, m)})

    def runs(self) -> list[tuple[str, int, int, int]]:
        return [(k, n, m, s) for n, m in self.targets for k in self.recipes for s in self.seeds_for(n, m)]


MINILM_PLAN = MinilmPlan()


def _spread(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _digits(out: Path) -> tuple[list[str], dict, dict]:
    from golden import digits
    from golden.sparse_train.digits import train_digits

    data = digits.load_data()
    runs = [("dense", 4, 4)] + [(r, n, m) for (n, m) in TARGETS for r in RECIPES]
    results, models = {}, {}
    with rich_progress() as progress:
        task = progress.add_task("digits: training", total=len(runs) * len(SEEDS))
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
    verdicts = []
    for n, m in TARGETS:
        srste = statistics.mean(results[("srste", n, m)])
        best_kind = max((k for k in RECIPES if k != "srste"), key=lambda k: statistics.mean(results[(k, n, m)]))
        best = statistics.mean(results[(best_kind, n, m)])
        verdicts.append(f"{n}:{m}: best decay recipe {best_kind} {best:.2f} vs SR-STE {srste:.2f} "
                        f"({best - srste:+.2f} points)")
    summary = {"epochs": EPOCHS, "seeds": SEEDS,
               "top1": {f"{k}-{n}:{m}": accs for (k, n, m), accs in results.items()}, "verdicts": verdicts}
    return ["\n".join(lines), "\n".join(verdicts)], summary, models


# ------------------------------------------------------------------------- MiniLM

_WORKER: dict = {}


def _init_worker(teacher: dict) -> None:
    import torch

    torch.set_num_threads(1)
    distil._TEACHER.update(teacher)


def _one_run(item) -> dict:
    """One distillation run in a worker; saves the student when ``keep_dir`` is given."""
    kind, n, m, seed, budget, recipe_kw, keep_dir = item
    from golden import minilm
    from golden.sparse_train.export import save_model

    recipe = Recipe(kind=kind, n=n, m=m, **recipe_kw)
    run = distil.distil(recipe, minilm.corpus(), seed, DistilBudget(**budget))
    summary = run.summary()
    if keep_dir:
        save_model(run.model, recipe, Path(keep_dir), (), {
            "model": "minilm", "seed": seed, "budget": budget, "corpus": minilm.corpus().describe(),
            "test_cosine": run.cosine})
    return summary


def _teacher_table(plan: MinilmPlan, text) -> dict:
    """The teacher's embeddings of every sentence the runs will draw (computed once, here)."""
    steps = plan.budget.steps * dict(plan.recipe)["epochs"]
    drawn = {}
    for seed in plan.all_seeds():
        batches = distil.batches(text.train, plan.budget, seed)
        for _ in range(steps):
            drawn.update(dict.fromkeys(next(batches)))
    test = text.test[:plan.budget.test_sentences] if plan.budget.test_sentences else text.test
    distil.teacher_embeddings(list(drawn) + list(test), plan.budget.max_tokens)
    return dict(distil._TEACHER)


def run_minilm(out: Path, jobs: int = 2, plan: MinilmPlan = MINILM_PLAN, while_running=None) -> dict:
    """Every run of ``plan`` in ``jobs`` worker processes (the sparsest targets first); the
    kept student checked on the core. ``while_running()`` is called once the runs are
    under way (the digits table trains meanwhile). Returns the JSON-able summary
    (``sections``: the printed text)."""
    import torch

    from golden import minilm

    out.mkdir(parents=True, exist_ok=True)
    text = minilm.corpus()
    started = time.monotonic()
    torch.set_num_threads(max(1, jobs))
    teacher = _teacher_table(plan, text)
    teacher_seconds = time.monotonic() - started
    torch.set_num_threads(1)
    recipe_kw = dict(plan.recipe)
    keep_dir = out / "minilm-student"
    items = [(k, n, m, s, asdict(plan.budget), recipe_kw, str(keep_dir) if (k, n, m, s) == plan.keep else None)
             for k, n, m, s in sorted(plan.runs(), key=lambda r: -r[2] / r[1])]
    # An interrupted bench in the same folder left its finished runs in the log: reuse the
    # ones of this plan (same recipe, seed and steps; never the kept student's run).
    previous = _previous_runs(out / "minilm_runs.jsonl", items, plan)
    if previous:
        click.echo(f"reusing {len(previous)} finished run(s) from {out / 'minilm_runs.jsonl'} (delete it to rerun them)")
    results: dict[tuple[str, int, int], list[dict]] = {}
    reused = [(item, previous[item[:4]]) for item in items if item[:4] in previous]
    items = [item for item in items if item[:4] not in previous]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context((out / "minilm_runs.jsonl").open("w"))   # closed after the pool
        lock = threading.Lock()
        for _, summary in reused:
            log.write(json.dumps(summary) + "\n")

        def write(summary: dict) -> None:   # each run as it ends, also while the digits train
            with lock:
                log.write(json.dumps(summary) + "\n")
                log.flush()

        if jobs <= 1:                       # in this process (tests, small plans)
            _init_worker({})
            done = (write(s) or s for s in map(_one_run, items))
        else:
            pool = stack.enter_context(ProcessPoolExecutor(
                max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(teacher,)))
            futures = [pool.submit(_one_run, item) for item in items]     # every run submitted now
            for future in futures:
                future.add_done_callback(lambda f: f.exception() is None and write(f.result()))
            done = (future.result() for future in futures)
        extra = while_running() if while_running else None
        progress = stack.enter_context(rich_progress())
        task = progress.add_task("MiniLM: distilling", total=len(items) + len(reused))
        for item, summary in [*reused, *zip(items, done)]:
            results.setdefault(item[:3], []).append(summary)
            progress.advance(task)
    results = {key: results[key] for key in sorted(results, key=lambda k: (k[2] / k[1], plan.recipes.index(k[0])))}
    sections = [text.line(), _minilm_table(results, plan), *_minilm_verdicts(results, plan),
                _noise_table(results, plan)]
    wall = [s["seconds"] for runs in results.values() for s in runs]
    cpu = [s["cpu_seconds"] for runs in results.values() for s in runs]
    timing = (f"{len(wall)} runs of {plan.budget.steps * dict(plan.recipe)['epochs']} steps x "
              f"{plan.budget.batch} sentences, one torch thread each, {max(1, jobs)} at a time: "
              f"{statistics.mean(cpu):.0f} CPU-s per run (min {min(cpu):.0f}, max {max(cpu):.0f}; the wall "
              f"time on an idle core), {statistics.mean(wall):.0f} s wall per run on this machine's load; "
              f"teacher embeddings {teacher_seconds:.0f} s; MiniLM wall {time.monotonic() - started:.0f} s")
    sections.append(timing)
    hardware = _check_student(keep_dir, plan, out) if plan.keep in [tuple(r) for r in plan.runs()] else None
    if hardware:
        sections.append(hardware["line"])
    return {"corpus": text.describe(), "budget": asdict(plan.budget), "recipe": recipe_kw,
            "runs": {f"{k}-{n}:{m}": runs for (k, n, m), runs in results.items()},
            "timing": timing, "hardware": hardware, "sections": sections, "while_running": extra}


def _previous_runs(path: Path, items: list, plan: MinilmPlan) -> dict:
    """``(recipe, n, m, seed) -> summary`` of the runs in an earlier log at ``path`` that
    ``items`` would repeat exactly (the recipe's every field, the seed, the step count; an
    empty SDGF schedule is the default one the run fills in)."""
    if not path.exists():
        return {}
    steps = plan.budget.steps * dict(plan.recipe)["epochs"]
    wanted = {(k, n, m, s): json.loads(json.dumps(asdict(Recipe(kind=k, n=n, m=m, **recipe_kw))))
              for k, n, m, s, _, recipe_kw, keep in items if keep is None}
    found = {}
    for line in path.read_text().splitlines():
        try:
            summary = json.loads(line)
            r = summary["recipe"]
            key = (r["kind"], r["n"], r["m"], summary["seed"])
        except (ValueError, KeyError, TypeError):
            continue                        # a torn last line of a killed run
        want = wanted.get(key)
        if want is not None and not want.get("schedule"):     # filled in when the run starts
            r = {**r, "schedule": []}
        if want == r and summary.get("steps") == steps:
            found[key] = summary
    return found


def _cos(runs) -> list[float]:
    return [r["cosine"]["mean"] for r in runs]


def _minilm_table(results, plan: MinilmPlan) -> str:
    lines = ["| target | recipe | test cosine mean | spread (std) | per seed | train FLOPs (as run) "
             "| N:M-aware FLOPs | CPU-s/run |", "|---|---|---|---|---|---|---|---|",
             "| dense | teacher (FP32) | 1.0000 | - | - | - | - | - |"]
    for (kind, n, m), runs in results.items():
        c = _cos(runs)
        lines.append(f"| {n}:{m} | {kind} | {statistics.mean(c):.4f} | {_spread(c):.4f} "
                     f"| {', '.join(f'{v:.4f}' for v in c)} | {runs[0]['flops']['dense']:.3g} "
                     f"| {statistics.mean(r['flops']['nm_aware'] for r in runs):.3g} "
                     f"| {statistics.mean(r['cpu_seconds'] for r in runs):.0f} |")
    return "\n".join(lines)


def _minilm_verdicts(results, plan: MinilmPlan) -> list[str]:
    out = []
    decay = [k for k in plan.recipes if k != "srste"]
    for n, m in plan.targets:
        if ("srste", n, m) not in results or not decay:
            continue
        srste = _cos(results[("srste", n, m)])
        best_kind = max(decay, key=lambda k: statistics.mean(_cos(results[(k, n, m)])))
        best = _cos(results[(best_kind, n, m)])
        margin = statistics.mean(best) - statistics.mean(srste)
        spread = max(_spread(best), _spread(srste))
        target = " (target: more than the seed spread)" if (n, m) in ((1, 8), (1, 16)) else ""
        verdict = ("met" if margin > spread else "MISSED") if target else ("ahead" if margin > spread else "within spread")
        out.append(f"{n}:{m}: best decay recipe {best_kind} {statistics.mean(best):.4f} vs SR-STE "
                   f"{statistics.mean(srste):.4f}: {margin:+.4f}, seed spread {spread:.4f}{target}: {verdict}")
    return out


def _noise_table(results, plan: MinilmPlan) -> str:
    lines = ["Gradient noise in the sparse phase (mean over seeds): |grad| of the sparse layers' dense "
             "weights, its jitter (mean |step-to-step change| / mean), the share of |grad|^2 on pruned "
             "weights, and the fraction of mask positions flipping per step", "",
             "| target | recipe | mean grad norm | jitter | on pruned weights | mask flips/step |",
             "|---|---|---|---|---|---|"]
    for (kind, n, m), runs in results.items():
        mean = lambda key: statistics.mean(r["noise"][key] for r in runs)   # noqa: E731
        lines.append(f"| {n}:{m} | {kind} | {mean('grad_norm_mean'):.4f} | {mean('grad_norm_jitter'):.3f} "
                     f"| {100 * mean('pruned_grad_share'):.1f}% | {mean('mask_flip_rate'):.2e} |")
    return "\n".join(lines)


def _check_student(folder: Path, plan: MinilmPlan, out: Path) -> dict:
    """Load the kept student's checkpoint, compress every layer exactly, run one layer on the core."""
    import numpy as np

    from golden import minilm, nm
    from golden.lowering import matmul_layers, weight_matrix
    from golden.sparse_train.export import load_state

    kind, n, m, seed = plan.keep
    model, meta = load_state(distil.new_student(), folder)
    exact, dense_bytes, packed_bytes = 0, 0, 0
    layers = matmul_layers(model)
    for layer in layers:
        w = weight_matrix(layer.module)
        values, indices = nm.compress(w, n, m)
        exact += bool(np.array_equal(nm.decompress(values, indices, n, m), w.numpy()))
        dense_bytes += w.numel() * 4
        packed_bytes += values.numel() * 4 + values.numel() * max(1, (m - 1).bit_length()) / 8
    test = minilm.corpus().test
    sentence = min(test[:64], key=lambda s: (len(s), s))
    operands = distil.minilm_operands(model, MINILM_LAYER, sentence, plan.budget.max_tokens)
    result = run_layer_on_core(*operands, NMCoreConfig(n=n, m=m, rows=8), out / "layer-minilm",
                               sim=plan.sim, name="minilm_query")
    line = (f"MiniLM student ({kind} {n}:{m}, seed {seed}, test cosine {meta['test_cosine']['mean']:.4f}): "
            f"{exact}/{len(layers)} layers compress exactly with golden.nm ({dense_bytes / 2**20:.1f} MiB "
            f"fp32 -> {packed_bytes / 2**20:.1f} MiB values + indices); {MINILM_LAYER}, int8, "
            f"{result['shape'][0]}x{result['shape'][1]} @ {result['shape'][1]}x{result['shape'][2]} "
            f"(one {result['shape'][2]}-token test sentence) on an 8-row {n}:{m} core ({plan.sim}): "
            f"{result['outputs']} outputs, {result['mismatches']} mismatches against golden.nm.matmul")
    return {"layers": len(layers), "exact": exact, "layer_on_core": result, "line": line}


def run_bench(out: Path, jobs: int = 2, *, digits: bool = True, minilm_plan: MinilmPlan | None = MINILM_PLAN) -> dict:
    """Both tables; the digits CNN trains in this process while the MiniLM runs go on in
    the workers. Prints everything at the end, digits first."""
    from golden import minilm

    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sections, summary = [], {}

    def digits_part() -> dict:
        text, result, models = _digits(out)
        result["layer_on_core"] = _digits_layer(models["sdgf-1:8"], out)
        result["sections"] = [*text, result["layer_on_core"]["line"]]
        return result

    missing = minilm.available() if minilm_plan is not None else "not asked for"
    if minilm_plan is not None and not missing:
        summary["minilm"] = run_minilm(out, jobs, minilm_plan, while_running=digits_part if digits else None)
        summary["digits"] = summary["minilm"].pop("while_running")
    elif digits:
        summary["digits"] = digits_part()
    if digits:
        click.secho("== 1. Digits CNN: top-1 (%) on the test split", bold=True)
        click.echo("\n".join(summary["digits"]["sections"]))
        sections += summary["digits"].pop("sections")
    if minilm_plan is not None:
        click.secho("\n== 2. all-MiniLM-L6-v2 distilled into N:M students: test cosine to the teacher",
                    bold=True)
        more = summary["minilm"]["sections"] if "minilm" in summary else [f"MiniLM: skipped: {missing}"]
        click.echo("\n\n".join(more))
        sections += more
    summary["seconds"] = round(time.monotonic() - started, 1)
    click.echo(f"\nbenchmark wall time {summary['seconds']:.0f} s; figures: {out / 'train_bench.json'}")
    summary["provenance"] = outputs.provenance(
        "bench train-nm", {"epochs": EPOCHS, "seeds": SEEDS, "digits": digits, "jobs": jobs, "out": out,
                           "minilm_plan": asdict(minilm_plan) if minilm_plan is not None else None},
        seed=SEEDS)
    outputs.write_json(out / "train_bench.json", summary)
    outputs.write_text(out / "train_bench.md", "\n\n".join(sections) + "\n")
    return summary


def _digits_layer(model, out: Path) -> dict:
    from golden.sparse_train.digits import digits_operands

    layer = run_layer_on_core(*digits_operands(model, "fc1"), NMCoreConfig(n=1, m=8, rows=8), out / "layer",
                              name="fc1")
    layer["line"] = (f"fc1 of the SDGF 1:8 model (seed 0), int8, {layer['shape'][0]}x{layer['shape'][1]} "
                     f"@ {layer['shape'][1]}x{layer['shape'][2]} on an 8-row 1:8 core (Verilator): "
                     f"{layer['outputs']} outputs, {layer['mismatches']} mismatches against golden.nm.matmul "
                     f"({layer['nonzero_weights']} non-zero weights)")
    return layer
