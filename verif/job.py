"""One job description per bench run: a JSON file the runner writes, the bench reads.

:func:`verif.runner.run_bench` writes ``<build_dir>/job.json`` and hands its path to the
simulator as the plusarg ``+tessera_job=<path>``; inside the simulator, :func:`current`
reads it. It carries everything a bench needs beyond the DUT: the block's config, the
job's parameters (a matrix shape, a layer file, a request stream...), and where to write
results. Nothing travels in environment variables.

Fields
------
block : str
    The config's block name (``"nm-core"``).
config : dict
    The block config (:meth:`spec.BlockConfig.to_dict`).
test_module, top, sim : str
    The cocotb module, the Verilog top level, the simulator.
seed : int
params : dict
    Job parameters (JSON values), as the bench defines them.
output : str or None
    Where the bench writes its JSON results (:meth:`Job.write_output`); None when the
    runner asked for none.
"""

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import VerifError

__all__ = ["Job", "current", "in_simulation", "write_json", "PLUSARG"]

#: The plusarg that names the job file in the simulator.
PLUSARG = "tessera_job"


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` as JSON to ``path`` through a temporary file and a rename, so a
    reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Job:
    """A bench run's description (see the module docstring)."""

    block: str
    config: dict
    test_module: str
    top: str
    sim: str
    seed: int = 1
    params: dict = field(default_factory=dict)
    output: str | None = None

    def write(self, path: str | Path) -> Path:
        return write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> "Job":
        try:
            values = json.loads(Path(path).read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError) as exc:
            raise VerifError(f"cannot read the job description {path}: {exc}") from None

    def block_config(self, config_cls):
        """The job's config as an instance of ``config_cls`` (its block must match)."""
        if config_cls.block != self.block:
            raise VerifError(f"this job is for block {self.block!r}, the bench expects {config_cls.block!r}")
        return config_cls.from_dict(self.config)

    def param(self, name: str, default: Any = ...) -> Any:
        """Job parameter ``name``; without a default, a missing one is an error."""
        if name in self.params:
            return self.params[name]
        if default is ...:
            raise VerifError(f"job parameter {name!r} is missing (this {self.test_module} job has "
                             f"{', '.join(sorted(self.params)) or 'none'}); run it through verif.runner.run_bench "
                             f"with params={{{name!r}: ...}}")
        return default

    def write_output(self, value: Any) -> None:
        """Write the bench's results (JSON) where the runner expects them."""
        if self.output is None:
            raise VerifError(f"the runner asked {self.test_module} for no output (run_bench(..., output=True))")
        write_json(self.output, value)


_CURRENT: Job | None = None


def in_simulation() -> bool:
    """True inside a cocotb simulation started with a job description."""
    import cocotb

    return cocotb.is_simulation and bool(getattr(cocotb, "plusargs", {}).get(PLUSARG))


def current() -> Job:
    """Inside a cocotb test: this run's job (from the ``+tessera_job`` plusarg)."""
    global _CURRENT
    if _CURRENT is None:
        import cocotb

        path = cocotb.plusargs.get(PLUSARG)
        if not path or path is True:
            raise VerifError("no job description (+tessera_job=...): run this bench through "
                             "verif.runner.run_bench or 'tessera verify'")
        _CURRENT = Job.load(path)
    return _CURRENT
