"""cocotb bench of the whole accelerator against its instruction-set simulator.

The DRAM is cocotbext-axi's ``AxiRam`` (with seeded random pauses on every channel: read
latency, write back-pressure) and the host is its ``AxiLiteMaster``. For each program of
the job (the ``.npz`` named by the job parameter ``programs``, written by
:func:`verif.accel_run.run_programs`): load the DRAM image,
program PROG_ADDR/PROG_LEN through the CSRs, start, wait for the interrupt, read STATUS,
ERROR_INDEX and every counter, and compare with the ISS run the job carries: the error
code and index exactly; for a legal program the whole DRAM image and every counter in
:data:`spec.isa.EXACT_COUNTERS` exactly, and the cycle counters recorded for the caller
to compare with the ISS's estimate. Measured figures go to the job's result file.
"""

import json

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from spec.accel import AcceleratorConfig
from spec.isa import COUNTERS, CSR, EXACT_COUNTERS, ErrorCode

from .job import current

PERIOD_NS = 10
#: Signals the bus models drive (the DUT's inputs), per port.
INPUTS = {"m_axi": {"awready", "wready", "bvalid", "bid", "bresp", "arready", "rvalid", "rid", "rdata",
                    "rresp", "rlast"},
          "s_axil": {"awvalid", "awaddr", "wvalid", "wdata", "wstrb", "bready", "arvalid", "araddr", "rready"}}


class BoundedAxiRam(AxiRam):
    """An ``AxiRam`` of exactly ``size`` bytes whose accesses beyond its end (and inside
    any ``poisoned`` byte range) answer SLVERR instead of wrapping around."""

    def __init__(self, bus, clock, reset, size, poisoned=()):
        super().__init__(bus, clock, reset, size=size)
        self.limit, self.poisoned = size, list(poisoned)
        read, write = self.read_if._read, self.write_if._write

        def bad(address, length):
            end = address + length
            return end > self.limit or any(address < hi and lo < end for lo, hi in self.poisoned)

        async def checked_read(address, length):
            if bad(address, length):
                raise ValueError(f"read of {length} bytes at {address:#x} outside the DRAM")
            return await read(address, length)

        async def checked_write(address, data):
            if bad(address, len(data)):
                raise ValueError(f"write of {len(data)} bytes at {address:#x} outside the DRAM")
            return await write(address, data)

        self.read_if._read = checked_read
        self.write_if._write = checked_write


def _pauses(rng: np.random.Generator, probability: float):
    while True:
        yield bool(rng.random() < probability)


class AccelTB:
    """Clock, reset, the AXI RAM and the host around the DUT."""

    def __init__(self, dut, config: AcceleratorConfig, dram_size: int, *, seed: int, pause: float):
        self.dut, self.config = dut, config
        # Drive every input once at time 0: Icarus evaluates combinational outputs only when
        # an input changes, and cocotbext-axi's monitors refuse X on a handshake.
        for port, names in INPUTS.items():
            for name in names:
                getattr(dut, f"{port}__{name}").value = 0
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
        self.ram = BoundedAxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, dram_size)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        if pause:
            channels = [self.ram.read_if.ar_channel, self.ram.read_if.r_channel,
                        self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                        self.ram.write_if.b_channel]
            for k, channel in enumerate(channels):
                channel.set_pause_generator(_pauses(np.random.default_rng(seed + 101 * (k + 1)), pause))

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def run(self, dram: bytes, prog_addr: int, prog_len: int, timeout_cycles: int) -> dict:
        """Run one program; returns status, error index, counters and the DRAM after."""
        self.ram.write(0, dram)
        await self.host.write_dword(CSR.IRQ_ENABLE, 1)
        await self.host.write_dword(CSR.PROG_ADDR, prog_addr)
        await self.host.write_dword(CSR.PROG_LEN, prog_len)
        await self.host.write_dword(CSR.CTRL, 1)
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            if self.dut.irq.value.is_resolvable and int(self.dut.irq.value):
                break
        else:
            status = await self.host.read_dword(CSR.STATUS)
            raise AssertionError(f"no interrupt after {timeout_cycles} cycles (STATUS {status:#x}): the machine hangs")
        status = await self.host.read_dword(CSR.STATUS)
        # The interrupt rises with done/error; busy falls once the machine is quiet.
        for _ in range(2000):
            if not status & 1:
                break
            await ClockCycles(self.dut.clk, 1)
            status = await self.host.read_dword(CSR.STATUS)
        index = await self.host.read_dword(CSR.ERROR_INDEX)
        counters = {}
        for k, name in enumerate(COUNTERS):
            counters[name] = await self.host.read_dword(CSR.COUNTERS + 4 * k)
        await self.host.write_dword(CSR.CTRL, 2)          # clear done / error and the interrupt
        return {"busy": status & 1, "done": (status >> 1) & 1, "error_flag": (status >> 2) & 1,
                "error": (status >> 8) & 0xFF, "index": index, "counters": counters,
                "dram": self.ram.read(0, len(dram))}


@cocotb.test()
async def programs_match_the_iss(dut):
    """Every program of the job: the same error (code, index), or the same DRAM image and
    exact counters as the ISS."""
    job = np.load(current().param("programs"), allow_pickle=False)
    meta = json.loads(str(job["meta"]))
    config = AcceleratorConfig.from_json(meta["config"])
    results = []
    failures = []
    finals = {}
    size = max(int(job[f"dram{k}"].size) for k in range(len(meta["programs"])))
    tb = AccelTB(dut, config, size, seed=meta["seed"], pause=meta["pause"])
    await tb.reset()
    for k, prog in enumerate(meta["programs"]):
        dram = job[f"dram{k}"].tobytes()
        tb.ram.limit = len(dram)
        tb.ram.poisoned = [tuple(p) for p in prog.get("poisoned", [])]
        got = await tb.run(dram, prog["prog_addr"], prog["prog_len"], meta["timeout"])
        want = prog["iss"]
        entry = {"name": prog["name"], "error": got["error"], "index": got["index"],
                 "counters": got["counters"], "iss_cycles": want.get("cycles")}
        problems = []
        if (got["error"], got["index"] if got["error"] else 0) != (want["error"], want["index"] if want["error"] else 0):
            problems.append(f"error {ErrorCode(got['error']).name}@{got['index']}, the ISS says "
                            f"{ErrorCode(want['error']).name}@{want['index']}")
        if not want["error"]:
            expected = job[f"final{k}"].tobytes()
            if got["dram"] != expected:
                diff = np.flatnonzero(np.frombuffer(got["dram"], np.uint8) != np.frombuffer(expected, np.uint8))
                problems.append(f"{len(diff)} DRAM bytes differ from the ISS's, first at {int(diff[0]):#x}: "
                                f"got {got['dram'][diff[0]]:#04x}, want {expected[diff[0]]:#04x}")
            for name in EXACT_COUNTERS:
                if got["counters"][name] != want["counters"][name]:
                    problems.append(f"counter {name}: {got['counters'][name]}, the ISS says {want['counters'][name]}")
            if not got["done"]:
                problems.append("the machine did not report done")
        entry["problems"] = problems
        results.append(entry)
        if meta.get("dram_out"):
            finals[f"dram{k}"] = np.frombuffer(got["dram"], np.uint8)
        if problems:
            failures.append(f"program {k} ({prog['name']}): " + "; ".join(problems))
    with open(meta["result"], "w") as f:
        json.dump(results, f)
    if meta.get("dram_out"):
        np.savez(meta["dram_out"], **finals)
    await Timer(1, unit="ns")
    assert not failures, f"{len(failures)} of {len(results)} programs differ from the ISS:\n" + "\n".join(failures[:10])
