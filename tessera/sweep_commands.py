"""``tessera qor`` and ``tessera sweep``: QoR baselines and design-space sweeps on Dask
(registered on the CLI by :mod:`tessera.cli`; the work is in :mod:`synth.qor` and
:mod:`verif.sweep`)."""

from pathlib import Path

import click

from synth import SynthError

from .blocks import BLOCKS
from .tables import rich_progress

__all__ = ["qor_group", "sweep_group"]


@click.group("qor")
def qor_group():
    """QoR baselines: area and Fmax of a fixed set of small configurations, per tool version."""


def _qor_options(command):
    for option in reversed([
            click.option("--point", "points", multiple=True,
                         help="a point id (block:param=value,...@target); repeatable [default: all]"),
            click.option("--cheapest", type=int, default=None,
                         help="only the N points whose recorded synthesis was fastest"),
            click.option("-j", "--jobs", default=1, show_default=True, help="synthesis runs in parallel"),
            click.option("-o", "--out", default="qor_out", show_default=True,
                         type=click.Path(file_okay=False), help="folder for the synthesis runs"),
            click.option("--baseline", "baseline_path", default=None, type=click.Path(dir_okay=False),
                         help="baseline file [default: synth/qor_baseline.json]")]):
        command = option(command)
    return command


@qor_group.command("check")
@_qor_options
def qor_check_command(points, cheapest, jobs, out, baseline_path):
    """Synthesize the points afresh and compare them with the stored baseline."""
    from synth.qor import BASELINE_PATH, all_tool_versions, check, load_baseline

    baseline = load_baseline(baseline_path or BASELINE_PATH)
    chosen = baseline.select(points, cheapest, baseline.for_tools(all_tool_versions()))
    with rich_progress() as progress:
        task = progress.add_task("QoR check", total=len(chosen))
        checks = check(baseline, chosen, BLOCKS, Path(out), jobs=jobs,
                       on_done=lambda _id: progress.advance(task))
    click.echo("| point | LUT4 | carry | FF | BRAM | DSP | Fmax (MHz) | verdict |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for c in checks:
        cells = " | ".join(f"{c.fresh[k]} ({c.base[k]})" for k in ("lut4", "carry", "ff", "bram", "dsp",
                                                                    "fmax_mhz"))
        verdict = "; ".join(c.problems) or "; ".join(c.notes) or "within tolerance"
        click.echo(f"| {c.point.id} | {cells} | {'FAIL: ' if c.problems else ''}{verdict} |")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise SynthError(f"QoR check: {len(failed)} of {len(checks)} point(s) outside the baseline's "
                         f"tolerance (first: {failed[0].point.id}: {failed[0].problems[0]})")
    click.echo(f"QoR check: {len(checks)} point(s) within tolerance of {baseline.path} "
               "(fresh figure, baseline in parentheses)")


@qor_group.command("update")
@_qor_options
def qor_update_command(points, cheapest, jobs, out, baseline_path):
    """Record the points' figures as the baseline of the installed tool versions."""
    from importlib.metadata import version

    from synth.qor import BASELINE_PATH, load_baseline, update

    baseline = load_baseline(baseline_path or BASELINE_PATH)
    chosen = baseline.select(points, cheapest)
    with rich_progress() as progress:
        task = progress.add_task("QoR baseline", total=len(chosen))
        entry = update(baseline, chosen, BLOCKS, Path(out), jobs=jobs,
                       on_done=lambda _id: progress.advance(task), tessera_version=version("tessera-hw"))
    for point_id in (p.id for p in chosen):
        click.echo(f"{point_id}: {entry['results'][point_id]}")
    click.echo(f"wrote {baseline.path} ({len(chosen)} point(s) for {entry['tools']})")


class _SweepGroup(click.Group):
    """``tessera sweep SPEC`` runs a sweep (the ``run`` subcommand); ``tessera sweep report``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_SweepGroup)
def sweep_group():
    """Design-space sweeps on Dask: tessera sweep SPEC, then tessera sweep report OUT."""


@sweep_group.command("run")
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="folder of the results store and the points' files [default: sweep_out/NAME]")
@click.option("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786) "
                                                "[default: a LocalCluster on this machine]")
@click.option("--connect-timeout", default=10.0, show_default=True, help="seconds to wait for --scheduler")
@click.option("--workers", default=2, show_default=True, help="LocalCluster worker processes")
@click.option("--force", is_flag=True, help="redo points already in the store")
@click.option("--retry-failed", is_flag=True, help="redo the points stored as failed")
def sweep_run_command(spec_file, out, scheduler, connect_timeout, workers, force, retry_failed):
    """Run every point of a sweep spec (YAML or JSON) that the store does not hold yet."""
    try:
        from verif.sweep import load_spec, run_sweep
    except ImportError as exc:
        raise click.ClickException(f"tessera sweep needs the sweep extra ({exc.name} is missing): "
                                   "pip install -e '.[sweep]'") from None

    spec = load_spec(spec_file, BLOCKS)
    out = Path(out or f"sweep_out/{spec.name}")
    summary = run_sweep(spec, out, BLOCKS, scheduler=scheduler, workers=workers, force=force,
                        retry_failed=retry_failed, connect_timeout=connect_timeout)
    for config, error in summary.failures[:10]:
        click.echo(f"failed: {config}: {error}", err=True)
    line = (f"{spec.name}: {summary.total} point(s): {summary.skipped} already in the store, "
            f"{summary.ran} ran ({summary.ok} ok, {summary.failed} failed) in {summary.seconds:.1f} s; "
            f"store: {summary.store}")
    if summary.interrupted:
        click.echo(f"{line}\ninterrupted: {summary.missing} point(s) not run; "
                   "the same command resumes", err=True)
        return 130
    click.echo(line)
    return 0


@sweep_group.command("report")
@click.argument("out", type=click.Path(), metavar="OUT")
@click.option("--block", default=None, help="the block to report (when the store holds several)")
@click.option("--target", default=None, type=click.Choice(["ice40", "ecp5"]),
              help="the target to report (when the store holds several)")
@click.option("-o", "--report-dir", default=None, type=click.Path(file_okay=False),
              help="where to write pareto.md/.json/.png [default: OUT]")
def sweep_report_command(out, block, target, report_dir):
    """Write the Pareto front (throughput vs LUT4, Fmax) of a sweep: Markdown, JSON, PNG."""
    from verif.sweep_report import pareto_report

    report = pareto_report(out, block=block, target=target, report_dir=report_dir)
    click.echo(report["markdown"], nl=False)
    click.echo(f"wrote {report['files']['markdown']}, {report['files']['json']}, {report['files']['plot']}")
