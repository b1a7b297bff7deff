"""Run a compiled model (``compiler.model``) on the accelerator's RTL.

Each segment runs for all inputs in one simulator run (:func:`verif.accel_run.run_programs`:
every program also runs on the ISS, and the run fails unless the RTL's DRAM and exact
counters equal the ISS's); host ops run in between, exactly as
:meth:`compiler.model.CompiledModel.run_many` runs them for the ISS.
"""

from pathlib import Path

from compiler.model import CompiledModel

from . import VerifError
from .accel_run import AccelProgram, run_programs

__all__ = ["rtl_backend", "run_on_rtl"]


def rtl_backend(model: CompiledModel, *, sim: str, build_root="sim_build", pause: float = 0.0):
    """A backend for :meth:`CompiledModel.run_many` that runs segments on ``sim``."""
    count = [0]

    def run(seg, drams):
        programs = [AccelProgram(f"seg{model.segments.index(seg)}-in{k}", d, seg.prog_addr, seg.prog_len)
                    for k, d in enumerate(drams)]
        results = run_programs(model.config, programs, sim=sim, build_root=Path(build_root), pause=pause,
                               seed=1 + count[0], keep_dram=True)
        count[0] += 1
        bad = [r for r in results if r["problems"]]
        if bad:
            raise VerifError(f"{len(bad)} programs differ from the ISS: {bad[0]['problems'][:2]}")
        return [(r.pop("dram"), r) for r in results]
    return run


def run_on_rtl(model: CompiledModel, inputs: list, *, sim: str, build_root="sim_build") -> tuple[list, list]:
    """Outputs of ``model`` on ``inputs`` (a list of batches) computed on the RTL."""
    return model.run_many(inputs, rtl_backend(model, sim=sim, build_root=build_root))
