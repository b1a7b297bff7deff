"""Run accelerator programs on the RTL (Verilator or Icarus) and on the ISS, and compare.

:func:`run_programs` takes programs (DRAM image, program address and length), runs each on
:class:`golden.iss.Machine`, writes one job file for the cocotb bench
(:mod:`verif.accel_tb`), runs the bench, and returns the RTL's results next to the ISS's.
The bench fails (and this raises :class:`verif.VerifError`) when any program differs.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.iss import RACE, UNINIT, Machine, ProgramError
from hw.accel import Accelerator
from spec.accel import AcceleratorConfig
from spec.isa import ErrorCode

from . import VerifError
from .runner import run_bench

__all__ = ["AccelProgram", "iss_expectation", "run_programs"]


@dataclass
class AccelProgram:
    """One program for the bench: a name, its DRAM image and where its words are."""

    name: str
    dram: bytes
    prog_addr: int
    prog_len: int
    poisoned: list = field(default_factory=list)      # byte ranges that answer SLVERR


def iss_expectation(config: AcceleratorConfig, prog: AccelProgram) -> tuple[dict, bytes | None]:
    """The ISS's verdict on ``prog``: ``({"error", "index", "counters", "cycles"}, final DRAM)``."""
    dram = bytearray(prog.dram)
    machine = Machine(config, bytes(dram))
    for lo, hi in prog.poisoned:
        machine.poison(lo, hi)
    try:
        result = machine.run(prog.prog_addr, prog.prog_len)
    except ProgramError as exc:
        if exc.code in (RACE, UNINIT):
            raise VerifError(f"program {prog.name!r} is not deterministic ({exc}): its result on "
                             "the RTL would depend on timing or on earlier runs") from None
        return {"error": int(exc.code), "index": exc.index, "reason": exc.reason, "counters": {},
                "cycles": None}, None
    return {"error": int(ErrorCode.NONE), "index": 0, "counters": result.counters,
            "cycles": result.cycles}, result.dram.tobytes()


def run_programs(config: AcceleratorConfig, programs: list[AccelProgram], *, sim: str,
                 build_root="sim_build", seed: int = 1, pause: float = 0.2,
                 timeout: int = 2_000_000, quiet: bool = True, check: bool = True,
                 keep_dram: bool = False, reset_only: bool = False) -> list[dict]:
    """Run ``programs`` on the RTL and the ISS; return per program the RTL's error, index
    and counters, the ISS's cycle estimate (``iss_cycles``) and the ``problems`` found.
    With ``check`` a mismatch raises :class:`VerifError`; without, it is only reported.
    With ``keep_dram`` each result also holds the RTL's final DRAM image (``"dram"``);
    ``reset_only`` runs the Verilog without power-up values (``tessera generate --reset-only``)."""
    if not programs:
        raise VerifError("no programs to run")
    build_dir = Path(build_root).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    job = build_dir / f"accel-job-{config.tag}-{sim}.npz"
    result_file = job.with_suffix(".json")
    arrays, metas = {}, []
    for k, prog in enumerate(programs):
        want, final = iss_expectation(config, prog)
        arrays[f"dram{k}"] = np.frombuffer(prog.dram, np.uint8)
        if final is not None:
            arrays[f"final{k}"] = np.frombuffer(final, np.uint8)
        metas.append({"name": prog.name, "prog_addr": prog.prog_addr, "prog_len": prog.prog_len,
                      "poisoned": [list(p) for p in prog.poisoned], "iss": want})
    dram_out = job.with_name(job.stem + "-dram.npz")
    meta = {"config": config.to_json(), "seed": seed, "pause": pause, "timeout": timeout,
            "result": str(result_file), "programs": metas, "dram_out": str(dram_out) if keep_dram else ""}
    tmp = job.with_name(job.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(job)
    result_file.unlink(missing_ok=True)
    failure = None
    try:
        run_bench(config, Accelerator(config), "accel", "verif.accel_tb", sim=sim, build_root=build_root,
                  seed=seed, quiet=quiet, params={"programs": str(job)}, waves=None if check else False,
                  reset_only=reset_only)
    except VerifError as exc:
        failure = exc
    results = json.loads(result_file.read_text()) if result_file.exists() else None
    if results is None:
        raise failure or VerifError(f"the accelerator bench wrote no results ({result_file})")
    if failure is not None and (check or not any(r["problems"] for r in results)):
        raise failure
    if keep_dram:
        finals = np.load(dram_out)
        for k, r in enumerate(results):
            r["dram"] = finals[f"dram{k}"].tobytes()
    return results
