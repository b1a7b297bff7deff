"""Design-space sweeps on Dask distributed, with a resumable results store (the Pareto
report of a store is :mod:`verif.sweep_report`).

A sweep runs every point of a parameter grid (or a random sample of it) through some of
the steps ``generate`` (Verilog), ``lint`` (``verilator -Wall``), ``verify`` (the block's
cocotb bench) and ``synth`` (Yosys + nextpnr on iCE40 or ECP5), each point one Dask task:
on a :class:`distributed.LocalCluster` of this machine by default, or on an existing
cluster (``scheduler="tcp://host:8786"``). It lives in ``verif`` because a point needs
``hw`` (generate), ``verif`` (lint, verify) and ``synth``; only ``verif`` may import all
three. The block registry (``tessera.blocks``) is above this package: callers pass it in
as a mapping of block name to an object with ``config`` (the config class), ``top``,
``build(config)`` and ``bench`` (a cocotb module) or ``verify`` (``module:function``, a
block verified by programs, as the accelerator), so any registered block can be swept.

Spec (YAML or JSON)
-------------------
::

    name: nm-core-48            # names the output folder (default: the file's stem)
    block: nm-core              # a registered block
    params:                     # every parameter left out takes its default
      "n,m": [[1, 4], [2, 4], [4, 4], [2, 8]]   # zipped: values that go together
      rows: [1, 2, 4]           # a list: one axis of the grid
      pipeline: {min: 0, max: 3}                # an integer range (step: optional)
      width: 8                  # a scalar: fixed
    sample: {count: 10, seed: 0}  # optional: 10 distinct grid points drawn at random
    steps: [generate, synth]    # any of generate, lint, verify, synth (run in that order;
                                # default: generate, lint)
    target: {family: ice40, device: hx8k, package: ct256, freq_mhz: 100, seed: 1,
             pnr: true, generic: false}       # or just "ecp5"; synth only
    sim: icarus                 # verify only: icarus or verilator
    reset_only: false           # generate/lint/verify: Verilog without power-up values
    timeout_s: 3600             # limit of each synthesis tool run

YAML numbers are read the YAML 1.2 way (``2:4`` is the string ``"2:4"``, not PyYAML's
base-60 integer 124). Every point is validated (its config built) before anything runs;
an unknown key, block or parameter, a value out of range or a repeated point is a
:class:`VerifError` naming it. Nothing is dropped silently.

Results store (SQLite)
----------------------
One SQLite file, one row per finished point, keyed by the config's JSON, the task (steps
and the options that shape the result), the Tessera version and the tool versions.
SQLite rather than Parquet: it is in the standard library, each row is written in its
own transaction the moment its point finishes (so Ctrl-C, a killed worker or a killed
client loses nothing already finished, and no file is ever half-written), a rerun looks
points up by key, and a report can read while a sweep writes (WAL journal). Parquet is
a column format for bulk writes: appending one row per point would mean one file per
point or rewriting the file. Rows are written only by the client, as results arrive.

A rerun skips every point already in the store (ok or failed): ``retry_failed`` redoes
the failed ones, ``force`` redoes all. A point that fails (a tool error, lint findings, a
failing bench, a worker that died on it three times) is stored with its error and the
sweep goes on. A store written with another schema version is refused.
"""

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from spec import ConfigError

from . import VerifError

__all__ = ["STEPS", "SCHEMA_VERSION", "SweepSpec", "PointTask", "SweepSummary", "ResultStore",
           "load_spec", "parse_spec", "plan", "run_point", "run_sweep", "step_tools"]

#: The steps a point can run, in the order they run.
STEPS = ("generate", "lint", "verify", "synth")

#: Version of the results store's tables; a store of another version is refused.
SCHEMA_VERSION = 1

_SPEC_KEYS = ("name", "block", "params", "sample", "steps", "target", "sim", "reset_only", "timeout_s")
_TARGET_KEYS = ("family", "device", "package", "freq_mhz", "seed", "pnr", "generic")


# -- the spec -----------------------------------------------------------------------------

def _yaml_loader():
    """PyYAML's safe loader with YAML 1.2 numbers: no base-60 integers or floats, so an
    N:M value such as ``2:4`` stays a string."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+)$"),
                                 list("-+0123456789"))
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."))
    return Loader


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the block, its points (full parameter dicts), what to run."""

    name: str
    block: str
    points: tuple[dict, ...] = field(repr=False)
    steps: tuple[str, ...]
    synth: object = None          # synth.flow.SynthOptions when "synth" is a step
    sim: str | None = None        # when "verify" is a step
    reset_only: bool = False
    source: str = ""

    @property
    def task(self) -> dict:
        """What shapes a point's result besides its config (part of the store key)."""
        task = {"steps": list(self.steps)}
        if {"generate", "lint", "verify"} & set(self.steps):
            task["reset_only"] = self.reset_only
        if "verify" in self.steps:
            task["sim"] = self.sim
        if self.synth is not None:
            task["synth"] = self.synth.to_dict()
        return task


def load_spec(path: str | Path, blocks: Mapping) -> SweepSpec:
    """Read a sweep spec (``.yaml``/``.yml`` or ``.json``) and validate every point."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise VerifError(f"cannot read the sweep spec {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VerifError(f"{path}: not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_yaml_loader())
        except yaml.YAMLError as exc:
            raise VerifError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_spec(data, blocks, source=str(path), default_name=path.stem)


def _axis(source: str, key: str, value) -> list:
    """The values of one ``params`` entry: a scalar, a list, or ``{min, max, step}``."""
    if isinstance(value, list):
        if not value:
            raise VerifError(f"{source}: params.{key}: an empty list has no values to sweep")
        return value
    if isinstance(value, dict):
        extra = sorted(set(value) - {"min", "max", "step"})
        if extra or not {"min", "max"} <= set(value):
            raise VerifError(f"{source}: params.{key}: a range is {{min: INT, max: INT, step: INT}}, "
                             f"not {value!r}")
        lo, hi, step = value["min"], value["max"], value.get("step", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step)) or step < 1:
            raise VerifError(f"{source}: params.{key}: range bounds and step must be integers "
                             f"(step >= 1), not {value!r}")
        if hi < lo:
            raise VerifError(f"{source}: params.{key}: max={hi} is below min={lo}")
        return list(range(lo, hi + 1, step))
    return [value]


def _target(source: str, value, timeout_s):
    from synth import SynthError
    from synth.flow import SynthOptions

    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"family": value}
    if not isinstance(value, dict):
        raise VerifError(f"{source}: target must be a family name or a mapping, not {value!r}")
    unknown = sorted(set(value) - set(_TARGET_KEYS))
    if unknown:
        raise VerifError(f"{source}: target: unknown key {unknown[0]!r}; known: {', '.join(_TARGET_KEYS)}")
    options = {"target" if k == "family" else k: v for k, v in value.items()}
    options.setdefault("generic", False)
    if timeout_s is not None:
        options["timeout_s"] = timeout_s
    for flag in ("pnr", "generic"):
        if not isinstance(options.get(flag, True), bool):
            raise VerifError(f"{source}: target.{flag} must be true or false, not {options[flag]!r}")
    try:
        return SynthOptions(**options)
    except SynthError as exc:
        raise VerifError(f"{source}: target: {exc}") from None


def parse_spec(data, blocks: Mapping, *, source: str = "spec", default_name: str = "sweep") -> SweepSpec:
    """Validate a spec given as a dict (see the module docstring)."""
    if not isinstance(data, dict):
        raise VerifError(f"{source}: a sweep spec is a mapping of {', '.join(_SPEC_KEYS)}, "
                         f"not {type(data).__name__}")
    unknown = sorted(set(data) - set(_SPEC_KEYS))
    if unknown:
        raise VerifError(f"{source}: unknown key {unknown[0]!r}; known: {', '.join(_SPEC_KEYS)}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise VerifError(f"{source}: name must be a file-name-safe string, not {name!r}")
    block_name = data.get("block")
    if block_name not in blocks:
        raise VerifError(f"{source}: unknown block {block_name!r}; known: {', '.join(sorted(blocks))}")
    block = blocks[block_name]

    steps = data.get("steps", ["generate", "lint"])
    if isinstance(steps, str):
        steps = [steps]
    if not isinstance(steps, list) or not steps:
        raise VerifError(f"{source}: steps must be a non-empty list of {', '.join(STEPS)}, not {steps!r}")
    for step in steps:
        if step not in STEPS:
            raise VerifError(f"{source}: unknown step {step!r}; known: {', '.join(STEPS)}")
    steps = tuple(s for s in STEPS if s in steps)
    if "verify" in steps and not (getattr(block, "bench", None) or getattr(block, "verify", None)):
        raise VerifError(f"{source}: block {block_name!r} has no bench to verify with")

    timeout_s = data.get("timeout_s")
    if "synth" in steps:
        synth = _target(source, data.get("target"), timeout_s)
    else:
        for key in ("target", "timeout_s"):
            if key in data:
                raise VerifError(f"{source}: {key} is given but synth is not among the steps {list(steps)}")
        synth = None
    sim = data.get("sim", "icarus")
    if "verify" in steps:
        if sim not in ("icarus", "verilator"):
            raise VerifError(f"{source}: sim must be icarus or verilator, not {sim!r}")
    elif "sim" in data:
        raise VerifError(f"{source}: sim is given but verify is not among the steps {list(steps)}")
    reset_only = data.get("reset_only", False)
    if not isinstance(reset_only, bool):
        raise VerifError(f"{source}: reset_only must be true or false, not {reset_only!r}")

    points = _points(source, block, data.get("params", {}), data.get("sample"))
    return SweepSpec(name=name, block=block_name, points=tuple(points), steps=steps, synth=synth,
                     sim=sim if "verify" in steps else None, reset_only=reset_only, source=source)


def _points(source: str, block, params, sample) -> list[dict]:
    if not isinstance(params, dict):
        raise VerifError(f"{source}: params must be a mapping of parameter names to values, not {params!r}")
    known = [f.name for f in block.config.params()]
    axes = []                                  # (names, list of value tuples)
    seen = set()
    for key, value in params.items():
        names = tuple(n.strip() for n in str(key).split(","))
        for n in names:
            if n not in known:
                raise VerifError(f"{source}: params: unknown {block.config.block} parameter {n!r}; "
                                 f"known: {', '.join(known)}")
            if n in seen:
                raise VerifError(f"{source}: params: parameter {n!r} is given twice")
            seen.add(n)
        values = _axis(source, key, value)
        if len(names) > 1:
            for v in values:
                if not isinstance(v, list) or len(v) != len(names):
                    raise VerifError(f"{source}: params.{key}: each value must be a list of "
                                     f"{len(names)} ({', '.join(names)}), not {v!r}")
            axes.append((names, [tuple(v) for v in values]))
        else:
            axes.append((names, [(v,) for v in values]))

    sizes = [len(values) for _, values in axes]
    total = math.prod(sizes)
    if sample is None:
        indices = range(total)
    else:
        if not isinstance(sample, dict) or set(sample) - {"count", "seed"} or "count" not in sample:
            raise VerifError(f"{source}: sample is {{count: INT, seed: INT}}, not {sample!r}")
        count, seed = sample["count"], sample.get("seed", 0)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= total:
            raise VerifError(f"{source}: sample.count must be in 1..{total} (the grid's size), "
                             f"not {count!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise VerifError(f"{source}: sample.seed must be an integer >= 0, not {seed!r}")
        import numpy as np

        indices = sorted(int(i) for i in np.random.default_rng(seed).choice(total, count, replace=False))

    points, by_json = [], {}
    for index in indices:
        values = {}
        for (names, choices), size in zip(reversed(axes), reversed(sizes)):
            index, digit = divmod(index, size)
            values.update(zip(names, choices[digit]))
        values = {n: values[n] for n in known if n in values}
        try:
            config = block.config(**values)
        except ConfigError as exc:
            raise VerifError(f"{source}: point {_brief(values)}: {exc}") from None
        text = config.to_json()
        if text in by_json:
            raise VerifError(f"{source}: points {_brief(by_json[text])} and {_brief(values)} are the same "
                             f"configuration ({text})")
        by_json[text] = values
        points.append(config.to_dict())
    return points


def _brief(values: dict) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + "}"


# -- one point (runs on a worker) ----------------------------------------------------------

def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _icarus_version() -> str:
    if not shutil.which("iverilog"):
        return "not installed"
    proc = subprocess.run(["iverilog", "-V"], capture_output=True, text=True)
    first = (proc.stdout or proc.stderr).splitlines()[:1]
    match = re.search(r"version (\S+)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def step_tools(task: dict) -> dict[str, str]:
    """Versions of the tools a task's steps use (part of the store key)."""
    steps = task["steps"]
    tools = {"amaranth": _version("amaranth")}
    if "lint" in steps or task.get("sim") == "verilator":
        tools["verilator"] = _version("verilator")
    if "verify" in steps:
        tools["cocotb"] = _version("cocotb")
        if task.get("sim") == "icarus":
            tools["icarus"] = _icarus_version()
    if "synth" in steps:
        from synth.flow import tool_versions

        tools |= tool_versions(task["synth"]["target"])
    return dict(sorted(tools.items()))


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point (pickled to it by Dask)."""

    block: object
    config_json: str
    task: dict
    work_dir: str
    tools: dict


def run_point(point: PointTask) -> dict:
    """Run one point's steps; return its result record (never raises for a point's own
    failure: the record has ``status`` "failed", the failing ``step`` and the ``error``)."""
    started, cpu_started = time.monotonic(), _cpu_seconds()
    block, task = point.block, point.task
    record = {"status": "ok", "error": None, "step": None, "worker": f"{socket.gethostname()}:{os.getpid()}",
              "work_dir": point.work_dir, "step_seconds": {}}
    step = "setup"
    try:
        tools = step_tools(task)
        if tools != point.tools:
            raise VerifError(f"this worker's tools {tools} differ from the client's {point.tools}")
        config = block.config.from_json(point.config_json)
        record["ops_per_cycle"] = config.ops_per_cycle
        record["ops_unit"] = config.ops_unit
        work = Path(point.work_dir)
        reset_only = task.get("reset_only", False)
        for step in task["steps"]:
            t0 = time.monotonic()
            if step == "generate":
                from hw import write_verilog

                path = write_verilog(block.build(config), block.top, work, reset_only=reset_only)
                record["verilog_lines"] = len(path.read_text().splitlines())
            elif step == "lint":
                from .lint import lint

                path = work / f"{block.top}.v"
                findings = lint(path, block.top, waive_init=not reset_only)
                record["lint_findings"] = findings
                if findings:
                    raise VerifError(f"{len(findings)} lint finding(s), first: {findings[0]}")
            elif step == "verify":
                record["verify"] = _verify(block, config, task["sim"], work / "sim", reset_only)
            elif step == "synth":
                from synth.flow import SynthOptions, area, synthesize

                report = synthesize(block.build(config), block.top, work / "synth",
                                    SynthOptions(**task["synth"]), config=config)
                figures, pnr = area(report), report["pnr"] or {}
                record["synth"] = {
                    "target": report["target"], "part": report["part"],
                    **{k: figures[k] for k in ("lut4", "carry", "ff", "bram", "dsp")},
                    "fits": pnr.get("fits"), "fmax_mhz": pnr.get("fmax_mhz"),
                    "lc_used": pnr.get("lc_used"), "pnr_error": pnr.get("error")}
            record["step_seconds"][step] = round(time.monotonic() - t0, 2)
    except Exception as exc:  # a point's failure is its result; the sweep goes on
        message = str(exc) if isinstance(exc, (ConfigError, VerifError)) or type(exc).__module__.startswith(
            ("synth", "verif", "spec", "golden", "compiler")) else f"{type(exc).__name__}: {exc}"
        record.update(status="failed", step=step, error=f"{step}: {message}")
    record["seconds"] = round(time.monotonic() - started, 2)
    record["cpu_seconds"] = round(_cpu_seconds() - cpu_started, 2)
    return record


def _verify(block, config, sim: str, build_root: Path, reset_only: bool) -> dict:
    """The verify step: the block's cocotb bench, or (a block verified by programs, as the
    accelerator) its ``verify`` function ``module:function``."""
    if getattr(block, "verify", None):
        import importlib

        if reset_only:
            raise VerifError(f"{block.name} is verified by programs, which run on its default Verilog; "
                             "reset_only applies to bench-verified blocks")
        module, function = block.verify.split(":")
        cases = getattr(importlib.import_module(module), function)(config, sim=sim, build_root=build_root, seed=1)
        failed = sum(not ok for _, ok in cases)
        if not cases or failed:
            raise VerifError(f"{failed} of {len(cases)} {block.name} programs failed on {sim}")
        return {"sim": sim, "tests": len(cases), "failed": failed}
    from .runner import run_bench

    result = run_bench(config, block.build(config), block.top, block.bench, sim=sim, build_root=build_root,
                       quiet=True, reset_only=reset_only)
    return {"sim": sim, "tests": result.tests, "failed": result.failed}


def _cpu_seconds() -> float:
    """CPU time of this process and of the tool processes it has waited for."""
    import resource

    own, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + tools.ru_utime + tools.ru_stime


# -- the store -------------------------------------------------------------------------------

class ResultStore:
    """The results store: one SQLite file, one row per finished point (see module docstring).

    Rows are keyed by (config JSON, task JSON, Tessera version, tool versions JSON) and
    written each in its own transaction.
    """

    _COLUMNS = ("config", "task", "tessera", "tools", "block", "sweep", "status", "error", "result",
                "seconds", "worker", "finished")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            exists = self.path.exists() and self.path.stat().st_size > 0
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            if exists:
                self._check_schema()
            else:
                self._create()
        except sqlite3.DatabaseError as exc:
            raise VerifError(f"{self.path} is not a Tessera results store ({exc})") from None
        except OSError as exc:
            raise VerifError(f"cannot open the results store {self.path}: {exc.strerror or exc}") from None

    def _create(self):
        with self._db:
            self._db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute(
                "CREATE TABLE points (config TEXT NOT NULL, task TEXT NOT NULL, tessera TEXT NOT NULL, "
                "tools TEXT NOT NULL, block TEXT NOT NULL, sweep TEXT, "
                "status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), error TEXT, result TEXT NOT NULL, "
                "seconds REAL, worker TEXT, finished TEXT NOT NULL, "
                "PRIMARY KEY (config, task, tessera, tools))")

    def _check_schema(self):
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise VerifError(f"{self.path} is an SQLite file but not a Tessera results store (no schema version)")
        if row[0] != str(SCHEMA_VERSION):
            raise VerifError(f"{self.path} was written with results-store schema version {row[0]}; this "
                             f"Tessera reads version {SCHEMA_VERSION}: give another store (-o) or move it away")

    def statuses(self, tessera: str, task: str, tools: str) -> dict[str, str]:
        """config JSON -> status of the points stored for this task and these versions."""
        rows = self._db.execute("SELECT config, status FROM points WHERE tessera = ? AND task = ? AND tools = ?",
                                (tessera, task, tools))
        return dict(rows.fetchall())

    def record(self, *, config: str, task: str, tessera: str, tools: str, block: str, sweep: str,
               result: dict) -> None:
        """Store one finished point (replacing an earlier row of the same key)."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config, task, tessera, tools, block, sweep, result["status"], result.get("error"),
                 json.dumps(result, sort_keys=True), result.get("seconds"), result.get("worker"),
                 time.strftime("%Y-%m-%dT%H:%M:%S")))

    def rows(self) -> list[dict]:
        """Every stored point, oldest first, with ``config``, ``task``, ``tools`` and
        ``result`` decoded."""
        cursor = self._db.execute(f"SELECT {', '.join(self._COLUMNS)} FROM points ORDER BY finished, rowid")
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(self._COLUMNS, values))
            for key in ("config", "task", "tools", "result"):
                row[key] = json.loads(row[key])
            rows.append(row)
        return rows

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def close(self):
        self._db.close()


# -- running a sweep --------------------------------------------------------------------------

@dataclass
class SweepSummary:
    """What a :func:`run_sweep` call did."""

    name: str
    store: Path
    total: int
    skipped: int = 0
    ran: int = 0
    ok: int = 0
    failed: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    #: (config JSON, error) of the points that failed in this run.
    failures: list = field(default_factory=list)
    #: Seconds each finished point took on its worker.
    task_seconds: list = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Points neither stored before nor finished now (after an interruption)."""
        return self.total - self.skipped - self.ran


def tessera_version() -> str:
    return _version("tessera-hw")


def _client(scheduler: str | None, workers: int, connect_timeout: float):
    """A Dask client: connected to ``scheduler``, or to a new LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{connect_timeout}s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise VerifError(f"cannot reach the Dask scheduler at {scheduler!r}: "
                             f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    if workers < 1:
        raise VerifError(f"workers must be >= 1, not {workers}")
    # Workers ignore SIGINT (inherited by the processes they start), so Ctrl-C reaches only
    # this client, which stops the sweep cleanly; the workers end with the cluster.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # The scheduler always serves HTTP (health, metrics); on a free loopback port.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
    finally:
        signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster


def plan(spec: SweepSpec, store: ResultStore, blocks: Mapping, *, force: bool = False,
         retry_failed: bool = False, tools: dict | None = None) -> list[str]:
    """The config JSONs of the points a run must (re)do: those not in ``store`` for this
    task, Tessera version and tool versions; with ``retry_failed`` also those stored as
    failed; with ``force`` all of them."""
    task_json = json.dumps(spec.task, sort_keys=True)
    tools_json = json.dumps(tools if tools is not None else step_tools(spec.task), sort_keys=True)
    stored = store.statuses(tessera_version(), task_json, tools_json)
    configs = [blocks[spec.block].config(**p).to_json() for p in spec.points]
    return [c for c in configs if force or c not in stored or (retry_failed and stored[c] == "failed")]


def run_sweep(spec: SweepSpec, out_dir: str | Path, blocks: Mapping, *, scheduler: str | None = None,
              workers: int = 2, force: bool = False, retry_failed: bool = False, progress: bool = True,
              connect_timeout: float = 10.0, on_result: Callable | None = None) -> SweepSummary:
    """Run ``spec``'s points not yet in ``<out_dir>/results.sqlite`` on Dask.

    Each point works in ``<out_dir>/points/<block>-<hash>/``. ``connect_timeout`` bounds
    the wait for ``scheduler`` (an unreachable one is a :class:`VerifError`). ``on_result(result,
    client)`` is called on the client after each point is stored. Ctrl-C stops the sweep
    (``summary.interrupted``): finished points are stored, a rerun runs the rest.
    """
    out = Path(out_dir).resolve()
    store = ResultStore(out / "results.sqlite")
    started = time.monotonic()
    summary = SweepSummary(spec.name, store.path, total=len(spec.points))
    block = blocks[spec.block]
    task = spec.task
    task_json = json.dumps(task, sort_keys=True)
    tools = step_tools(task)
    tools_json = json.dumps(tools, sort_keys=True)
    version = tessera_version()
    todo = plan(spec, store, blocks, force=force, retry_failed=retry_failed, tools=tools)
    summary.skipped = len(spec.points) - len(todo)
    if not todo:
        store.close()
        summary.seconds = time.monotonic() - started
        return summary

    from distributed import as_completed
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), disable=not progress)
    # SIGINT stops the sweep cleanly even when this process inherited it ignored (a job
    # started in the background of a script): Python then installs no handler of its own.
    interruptible = threading.current_thread() is threading.main_thread()
    if interruptible:
        previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    client, cluster = _client(scheduler, workers, connect_timeout)
    futures = {}
    try:
        with bar:
            bar_task = bar.add_task(f"{spec.name}: {len(todo)} to run", total=len(todo))
            for config in todo:
                digest = hashlib.sha256(f"{config}\n{task_json}".encode()).hexdigest()[:12]
                point = PointTask(block, config, task, str(out / "points" / f"{spec.block}-{digest}"), tools)
                future = client.submit(run_point, point, key=f"sweep-{spec.name}-{digest}-{time.time_ns()}",
                                       pure=False)
                futures[future] = config
            try:
                for future in as_completed(futures):
                    config = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # the task itself could not run (e.g. KilledWorker)
                        result = {"status": "failed", "step": "dask", "seconds": None, "worker": None,
                                  "error": f"dask: {type(exc).__name__}: {' '.join(str(exc).split())}"}
                    store.record(config=config, task=task_json, tessera=version, tools=tools_json,
                                 block=spec.block, sweep=spec.name, result=result)
                    summary.ran += 1
                    if result["status"] == "ok":
                        summary.ok += 1
                    else:
                        summary.failed += 1
                        summary.failures.append((config, result["error"]))
                    if result.get("seconds") is not None:
                        summary.task_seconds.append(result["seconds"])
                    bar.update(bar_task, advance=1, description=f"{spec.name}: {summary.ok} ok, "
                                                                f"{summary.failed} failed")
                    if on_result is not None:
                        on_result(result, client)
            except KeyboardInterrupt:
                summary.interrupted = True
    finally:
        try:
            client.cancel(list(futures))
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # closing after Ctrl-C or a lost scheduler: nothing left to save
            pass
        store.close()
        if interruptible:
            signal.signal(signal.SIGINT, previous_sigint)
    summary.seconds = time.monotonic() - started
    return summary
