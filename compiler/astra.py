"""ASTRA-sim 2.0 (its analytical network backends) run on our Chakra traces.

ASTRA-sim has no package to install: it is found through ``$ASTRA_SIM``, then
``astra-sim`` on ``PATH``, then the shared build (``../shared/tools/astra-sim/astra-sim``
next to the checkout); :func:`find` returns None, and :func:`missing` says why, where
there is none.

:func:`run` writes the three configuration files ASTRA-sim takes (network YAML, system
JSON, remote-memory JSON) from :class:`Network`, :class:`System` and :class:`Memory`,
runs it on ``PREFIX.<npu>.et`` and returns every NPU's finish time and exposed
communication (ns: one ASTRA-sim cycle is 1 ns).

What ASTRA-sim does with a trace (measured with this build, stated in docs/scaleout.md):

- COMP nodes run one at a time per NPU; with the roofline off each takes its
  ``duration_micros`` (0: 1 ns), with it on ``max(num_ops / peak, tensor_size / local
  memory bandwidth)`` (peak in 1e12 ops/s, bandwidth in 1e9 bytes/s);
- MEM_LOAD / MEM_STORE nodes need a remote memory (``PER_NPU_MEMORY_EXPANSION``; the
  default ``NO_MEMORY_EXPANSION`` aborts on them) and take ``latency + bytes / bandwidth``
  (1e9 bytes/s), one at a time, overlapping computation;
- communication overlaps computation; the network's bandwidth is in 2^30 bytes/s;
- "exposed communication" is the time an NPU is not computing: its finish time minus
  its computation time.

Errors (ASTRA-sim missing, failing, or printing no finish time for an NPU) raise
:class:`compiler.CompileError` with the end of its output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import CompileError

__all__ = ["find", "missing", "Network", "System", "Memory", "Result", "run", "GIB_PER_GB"]

ROOT = Path(__file__).resolve().parent.parent

#: Our GB/s (1e9 bytes/s) per ASTRA-sim network "GB/s" (2^30 bytes/s).
GIB_PER_GB = 2**30 / 1e9


def find() -> Path | None:
    """The ``astra-sim`` wrapper: ``$ASTRA_SIM``, ``astra-sim`` on PATH, the shared build."""
    shared = [base / "shared" / "tools" / "astra-sim" / "astra-sim" for base in (ROOT.parent, ROOT.parent.parent)]
    for candidate in (os.environ.get("ASTRA_SIM"), shutil.which("astra-sim"), *shared,
                      Path("/work/shared/tools/astra-sim/astra-sim")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def missing() -> str | None:
    """Why ASTRA-sim cannot run here (None when it can)."""
    if find() is None:
        return ("ASTRA-sim not found ($ASTRA_SIM, astra-sim on PATH, ../shared/tools/astra-sim): "
                "it has no package to install")
    return None


@dataclass(frozen=True)
class Network:
    """An ASTRA-sim analytical network: one building block per dimension.

    Members
    -------
    topology : tuple of str
        ``Ring``, ``Switch`` or ``FullyConnected`` per dimension.
    npus : tuple of int
        NPUs per dimension (NPU ids run dimension 0 fastest, as our ``torus:4x4`` does).
    bandwidth : float
        Per link, in ASTRA-sim's GB/s (2^30 bytes/s): ours times :data:`GIB_PER_GB`.
    latency_ns : float
    """

    topology: tuple[str, ...]
    npus: tuple[int, ...]
    bandwidth: float = 50.0
    latency_ns: float = 500.0

    def __post_init__(self):
        if len(self.topology) != len(self.npus) or not self.npus:
            raise CompileError(f"a network needs one topology per dimension, not {self.topology} for {self.npus}")
        for kind in self.topology:
            if kind not in ("Ring", "Switch", "FullyConnected"):
                raise CompileError(f"ASTRA-sim network blocks are Ring, Switch or FullyConnected, not {kind!r}")
        if any(n < 2 for n in self.npus):
            raise CompileError(f"every ASTRA-sim network dimension needs >= 2 NPUs, not {list(self.npus)}")

    @property
    def size(self) -> int:
        out = 1
        for n in self.npus:
            out *= n
        return out

    @classmethod
    def ring(cls, npus: int, **kw) -> "Network":
        return cls(("Ring",), (npus,), **kw)

    @classmethod
    def switch(cls, npus: int, **kw) -> "Network":
        return cls(("Switch",), (npus,), **kw)

    @classmethod
    def torus(cls, *dims: int, **kw) -> "Network":
        return cls(("Ring",) * len(dims), tuple(dims), **kw)

    def yaml(self) -> str:
        k = len(self.npus)
        return (f"topology: [ {', '.join(self.topology)} ]\nnpus_count: [ {', '.join(map(str, self.npus))} ]\n"
                f"bandwidth: [ {', '.join([repr(float(self.bandwidth))] * k)} ]\n"
                f"latency: [ {', '.join([repr(float(self.latency_ns))] * k)} ]\n")


@dataclass(frozen=True)
class System:
    """ASTRA-sim's system layer: ring collectives, and the roofline of COMP nodes.

    ``roofline`` off: COMP nodes take their ``duration_micros``; on: ``max(num_ops /
    (peak_tflops * 1e12), tensor_size / (local_mem_gbps * 1e9))`` seconds.
    """

    roofline: bool = False
    peak_tflops: float = 900.0
    local_mem_gbps: float = 1600.0
    dims: int = 1

    def json(self) -> str:
        impl = ["ring"] * self.dims
        return json.dumps({"scheduling-policy": "LIFO", "endpoint-delay": 10, "active-chunks-per-dimension": 1,
                           "preferred-dataset-splits": 4, "all-reduce-implementation": impl,
                           "all-gather-implementation": impl, "reduce-scatter-implementation": impl,
                           "all-to-all-implementation": impl, "collective-optimization": "localBWAware",
                           "local-mem-bw": self.local_mem_gbps, "boost-mode": 0,
                           "roofline-enabled": int(self.roofline), "peak-perf": self.peak_tflops}, indent=1) + "\n"


@dataclass(frozen=True)
class Memory:
    """The memory MEM_LOAD / MEM_STORE nodes reach: None bandwidth for none (a trace with
    memory nodes then fails), else ``latency_ns + bytes / (bandwidth_gbps * 1e9)`` each."""

    bandwidth_gbps: float | None = None
    latency_ns: float = 0.0

    def json(self) -> str:
        if self.bandwidth_gbps is None:
            return json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}) + "\n"
        return json.dumps({"memory-type": "PER_NPU_MEMORY_EXPANSION", "remote-mem-latency": self.latency_ns,
                           "remote-mem-bw": self.bandwidth_gbps}) + "\n"


@dataclass(frozen=True)
class Result:
    """Per NPU: when it finished and its exposed communication (ns)."""

    finished_ns: tuple[int, ...]
    exposed_ns: tuple[int, ...]

    @property
    def time_ns(self) -> int:
        return max(self.finished_ns)


def run(prefix: str | os.PathLike, network: Network, system: System = System(), memory: Memory = Memory(),
        *, workdir: str | os.PathLike | None = None, timeout: float = 300.0) -> Result:
    """Run ASTRA-sim on ``PREFIX.0.et`` ... ``PREFIX.<N-1>.et`` (N = the network's NPUs), in
    ``workdir`` (default ``PREFIX.astra``), where its configuration files and its ``log/``
    folder go."""
    tool = find()
    if tool is None:
        raise CompileError(missing())
    prefix = Path(prefix).resolve()
    work = (Path(workdir) if workdir is not None else Path(f"{prefix}.astra")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    files = {"network.yml": network.yaml(), "system.json": system.json(), "memory.json": memory.json()}
    for name, text in files.items():
        (work / name).write_text(text)
    try:
        proc = subprocess.run([str(tool), f"--workload-configuration={os.fspath(prefix)}",
                               f"--system-configuration={work / 'system.json'}",
                               f"--remote-memory-configuration={work / 'memory.json'}",
                               f"--network-configuration={work / 'network.yml'}"],
                              capture_output=True, text=True, timeout=timeout, cwd=work)   # its log/ goes there
    except subprocess.TimeoutExpired:
        raise CompileError(f"ASTRA-sim did not finish within {timeout:.0f} s on {os.fspath(prefix)}") from None
    out = proc.stdout + proc.stderr
    found = {int(npu): (int(c), int(e)) for npu, c, e in
             re.findall(r"sys\[(\d+)\] finished, (\d+) cycles, exposed communication (\d+) cycles", out)}
    n = network.size
    if proc.returncode != 0 or sorted(found) != list(range(n)):
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:])
        raise CompileError(f"ASTRA-sim failed on {os.fspath(prefix)} (exit {proc.returncode}, "
                           f"{len(found)} of {n} NPUs finished): {tail}")
    return Result(tuple(found[i][0] for i in range(n)), tuple(found[i][1] for i in range(n)))
