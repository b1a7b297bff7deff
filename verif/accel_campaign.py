"""Fuzzing campaigns: many random programs on the accelerator's RTL against the ISS.

:func:`run_campaign` generates ``programs`` legal programs (and, per batch, one illegal
program of every error class), runs them in batches through one simulator build
(:func:`verif.accel_run.run_programs`), and saves every mismatching program for replay
(``<out>/<name>.npz``: the DRAM image, the program address and length, poisoned ranges;
``<name>.s``: its disassembly). :func:`replay` runs a saved program again.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.asm import disassemble
from spec.accel import AcceleratorConfig
from spec.isa import WORD_BYTES, bytes_to_words

from . import VerifError
from .accel_fuzz import ILLEGAL_CLASSES, illegal_program, legal_program
from .accel_run import AccelProgram, run_programs

__all__ = ["CampaignReport", "run_campaign", "save_program", "load_program", "replay"]


@dataclass
class CampaignReport:
    """What a campaign ran and found."""

    config: AcceleratorConfig
    sim: str
    programs: int = 0
    legal: int = 0
    illegal: int = 0
    instructions: int = 0
    simulated_cycles: int = 0
    seconds: float = 0.0
    mismatches: list = field(default_factory=list)      # (program name, problems, saved path)

    @property
    def cycles_per_second(self) -> float:
        return self.simulated_cycles / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"{self.sim}: {self.programs} programs ({self.legal} legal, {self.illegal} illegal, "
                f"{self.instructions} instructions), {len(self.mismatches)} mismatches; "
                f"{self.simulated_cycles} cycles simulated in {self.seconds:.1f} s "
                f"({self.cycles_per_second:,.0f} cycles/s, builds included)")

    def to_json(self) -> dict:
        return {"config": self.config.to_dict(), "sim": self.sim, "programs": self.programs,
                "legal": self.legal, "illegal": self.illegal, "instructions": self.instructions,
                "simulated_cycles": self.simulated_cycles, "seconds": round(self.seconds, 2),
                "cycles_per_second": round(self.cycles_per_second, 1),
                "mismatches": [{"program": n, "problems": p, "saved": s} for n, p, s in self.mismatches]}


def save_program(prog: AccelProgram, config: AcceleratorConfig, folder: Path) -> Path:
    """Save ``prog`` for replay; returns the ``.npz`` path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prog.name}.npz"
    meta = {"config": config.to_json(), "name": prog.name, "prog_addr": prog.prog_addr,
            "prog_len": prog.prog_len, "poisoned": [list(p) for p in prog.poisoned]}
    tmp = folder / f".{prog.name}.tmp.npz"
    np.savez(tmp, dram=np.frombuffer(prog.dram, np.uint8), meta=np.array(json.dumps(meta)))
    tmp.replace(path)
    words = bytes_to_words(prog.dram[prog.prog_addr:prog.prog_addr + prog.prog_len * WORD_BYTES])
    (folder / f"{prog.name}.s").write_text(disassemble(words))
    return path


def load_program(path: Path) -> tuple[AcceleratorConfig, AccelProgram]:
    """A program saved by :func:`save_program`."""
    try:
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        prog = AccelProgram(meta["name"], data["dram"].tobytes(), meta["prog_addr"], meta["prog_len"],
                            [tuple(p) for p in meta["poisoned"]])
        return AcceleratorConfig.from_json(meta["config"]), prog
    except (OSError, KeyError, ValueError) as exc:
        raise VerifError(f"{path} is not a saved fuzz program: {exc}") from None


def replay(path: Path, *, sim: str, build_root="sim_build") -> list[dict]:
    """Run a saved program on ``sim`` and the ISS again."""
    config, prog = load_program(path)
    return run_programs(config, [prog], sim=sim, build_root=build_root)


def run_campaign(config: AcceleratorConfig, programs: int, *, sim: str, seed: int = 0, batch: int = 50,
                 illegal: bool = True, out: Path | None = None, build_root="sim_build",
                 pause: float = 0.2, progress=None) -> CampaignReport:
    """Run ``programs`` random legal programs (seeds ``seed..``) and, per batch, one of every
    illegal class; ``progress(done, total)`` after each batch."""
    if programs < 1:
        raise VerifError(f"--programs must be >= 1, not {programs}")
    report = CampaignReport(config, sim)
    started = time.monotonic()
    done = 0
    batch_no = 0
    while done < programs:
        count = min(batch, programs - done)
        cases = [legal_program(config, seed + done + k) for k in range(count)]
        if illegal:
            cases += [illegal_program(config, seed + done + k, code) for k, code in enumerate(ILLEGAL_CLASSES)]
        progs = [c.program for c in cases]
        results = run_programs(config, progs, sim=sim, build_root=build_root, seed=seed + batch_no,
                               pause=pause, check=False)
        by_name = {p.name: p for p in progs}
        for r in results:
            report.programs += 1
            report.legal += r["name"].startswith("legal")
            report.illegal += not r["name"].startswith("legal")
            report.simulated_cycles += r["counters"].get("cycles", 0)
            report.instructions += by_name[r["name"]].prog_len
            if r["problems"]:
                saved = str(save_program(by_name[r["name"]], config, out)) if out else None
                report.mismatches.append((r["name"], r["problems"], saved))
        done += count
        batch_no += 1
        if progress:
            progress(done, programs)
    report.seconds = time.monotonic() - started
    return report



#: Legal programs in the smoke set (``tessera verify accel``, ``make test``).
SMOKE_LEGAL = 8


def verify_smoke(config: AcceleratorConfig, *, sim: str, build_root="sim_build", seed: int = 1,
                 legal: int = SMOKE_LEGAL, reset_only: bool = False) -> list[tuple[str, bool]]:
    """The accelerator's smoke set: ``legal`` random legal programs and one program of every
    error class, on ``sim`` (``reset_only``: on the Verilog without power-up values);
    returns ``(program, passed)`` per program (a mismatch does not raise here: the caller
    prints the table, then fails)."""
    cases = [legal_program(config, seed * 1000 + k) for k in range(legal)]
    cases += [illegal_program(config, seed * 1000 + k, code) for k, code in enumerate(ILLEGAL_CLASSES)]
    results = run_programs(config, [c.program for c in cases], sim=sim, build_root=build_root, seed=seed,
                           check=False, reset_only=reset_only)
    return [(r["name"], not r["problems"]) for r in results]
