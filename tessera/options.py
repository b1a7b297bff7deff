"""click parameter types every ``tessera`` command shares, so that a bad value is refused
in one line while the command line is parsed, before any work:

* :class:`OutputDir`, :class:`OutputFile`: output paths checked with
  :func:`spec.outputs.check_output_dir` / :func:`spec.outputs.check_output_file` (a file
  where a folder is wanted, an unwritable place, an empty name);
* :data:`SEED`: a seed is an integer >= 0 (numpy's generators refuse negative ones);
* :class:`FiniteFloat`: a float that is not NaN or infinite, optionally bounded below
  (click's ``FloatRange`` lets NaN through: every comparison with NaN is false).

:func:`provenance` is :func:`spec.outputs.provenance` for the running command: its name
and every parameter it was given or defaulted, as click parsed them.
"""

import math

import click

from spec import SpecError, outputs
from spec.outputs import check_output_dir, check_output_file

__all__ = ["OutputDir", "OutputFile", "SEED", "FiniteFloat", "provenance"]


class OutputDir(click.ParamType):
    """A folder the command will create (or write into)."""

    name = "folder"

    def convert(self, value, param, ctx):
        try:
            return check_output_dir(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)


class OutputFile(click.ParamType):
    """A file the command will write; a folder (``-o results/``) means ``default_name``
    inside it."""

    name = "file"

    def __init__(self, default_name: str | None = None):
        self.default_name = default_name

    def convert(self, value, param, ctx):
        try:
            return check_output_file(value, self.default_name)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)


#: A random seed: numpy's ``default_rng`` and torch's generators take integers >= 0.
SEED = click.IntRange(min=0)


class FiniteFloat(click.ParamType):
    """A finite float, ``>= min`` (or ``> min`` with ``min_open``) when ``min`` is given."""

    name = "float"

    def __init__(self, min: float | None = None, min_open: bool = False):
        self.min, self.min_open = min, min_open

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (number <= self.min if self.min_open else number < self.min):
            self.fail(f"{number:g} is not {'>' if self.min_open else '>='} {self.min:g}", param, ctx)
        return number


def provenance(*, seed: int | None = None, calibration: int | None = None) -> dict:
    """The ``"provenance"`` record of a report the running command writes: the command
    (``"generate nm-core"``), all its parameters (defaults included), ``seed`` and
    ``calibration`` (see :func:`spec.outputs.provenance`)."""
    ctx = click.get_current_context()
    command = " ".join(ctx.command_path.split()[1:])
    return outputs.provenance(command, dict(ctx.params), seed=seed, calibration=calibration)
