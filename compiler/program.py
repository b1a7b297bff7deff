"""A program for the accelerator under construction: instructions plus the DRAM image they
run on. The compiler, the random program generator and the tests build programs with it.

``Program`` lays out DRAM regions (each aligned, never overlapping), packs scratchpad rows
into them with the hardware's row layouts (:meth:`spec.accel.AcceleratorConfig.row_layout`
via :func:`spec.packing.pack_rows`), collects instructions (:class:`spec.isa.Insn`) and
finally writes the words after the data: ``image()`` returns the DRAM bytes, and the
program's address and length are what the host writes into PROG_ADDR and PROG_LEN.
"""

from dataclasses import dataclass, field

import numpy as np

from spec import SpecError
from spec.accel import AcceleratorConfig
from spec.isa import WORD_BYTES, Insn, Opcode, encode, words_to_bytes
from spec.packing import pack_rows

from . import CompileError

__all__ = ["Region", "Program", "act_rows", "wgt_rows", "param_rows", "unpack_act_rows", "unpack_acc_rows"]


@dataclass(frozen=True)
class Region:
    """A named byte range of DRAM."""

    name: str
    addr: int
    size: int

    @property
    def end(self) -> int:
        return self.addr + self.size


@dataclass
class Program:
    """Instructions and the DRAM image they run on (see the module docstring)."""

    config: AcceleratorConfig
    insns: list = field(default_factory=list)
    regions: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)          # region name -> bytes
    cursor: int = 0

    def alloc(self, name: str, size: int, align: int = 64) -> Region:
        """Reserve ``size`` bytes (zero-filled) aligned to ``align``."""
        if name in self.regions:
            raise CompileError(f"DRAM region {name!r} is allocated twice")
        addr = -(-self.cursor // align) * align
        region = Region(name, addr, size)
        self.regions[name] = region
        self.cursor = addr + size
        limit = 1 << self.config.axi_addr_width
        if self.cursor > limit:
            raise CompileError(f"DRAM region {name!r} ends at {self.cursor:#x}, beyond the "
                               f"{self.config.axi_addr_width}-bit address space")
        return region

    def put(self, name: str, blob: bytes, align: int = 64) -> Region:
        """Allocate a region holding ``blob``."""
        region = self.alloc(name, len(blob), align)
        self.data[name] = bytes(blob)
        return region

    def emit(self, opcode: Opcode, **fields) -> int:
        """Append an instruction; returns its index. Fields are checked when encoded."""
        self.insns.append(Insn(opcode, fields))
        return len(self.insns) - 1

    def words(self) -> list[int]:
        try:
            return [encode(insn) for insn in self.insns]
        except SpecError as exc:
            raise CompileError(str(exc)) from None

    def image(self, extra: int = 0) -> tuple[bytes, int, int]:
        """``(dram, prog_addr, prog_len)``: the DRAM bytes with every region's data and
        the program words after them (64-byte aligned), plus ``extra`` zero bytes, the
        whole rounded up to 4 KiB pages (so no AXI beat reaches past its end)."""
        words = self.words()
        prog_addr = -(-self.cursor // 64) * 64
        size = -(-(prog_addr + len(words) * WORD_BYTES + extra) // 4096) * 4096   # whole 4 KiB pages
        dram = bytearray(size)
        for name, blob in self.data.items():
            r = self.regions[name]
            dram[r.addr:r.addr + len(blob)] = blob
        dram[prog_addr:prog_addr + len(words) * WORD_BYTES] = words_to_bytes(words)
        return bytes(dram), prog_addr, len(words)


def _rows(config: AcceleratorConfig, mem: str, fields: dict) -> bytes:
    try:
        rows = pack_rows(config.row_layout(mem), fields, config.pitch(mem))
    except SpecError as exc:
        raise CompileError(f"{mem} rows: {exc}") from None
    return rows.tobytes()


def act_rows(config: AcceleratorConfig, groups: np.ndarray) -> bytes:
    """``groups[N, m]`` int8 values -> N activation rows (DRAM bytes)."""
    g = np.asarray(groups)
    if g.ndim != 2 or g.shape[1] != config.m:
        raise CompileError(f"activation groups must be [N, m={config.m}], not {g.shape}")
    return _rows(config, "act", {f"[{j}]": g[:, j] for j in range(config.m)})


def wgt_rows(config: AcceleratorConfig, values: np.ndarray, indices: np.ndarray | None) -> bytes:
    """``values[N, rows, n]`` (and ``indices`` for a sparse core) -> N weight rows."""
    v = np.asarray(values)
    if v.ndim != 3 or v.shape[1:] != (config.rows, config.n):
        raise CompileError(f"weight rows must be [N, rows={config.rows}, n={config.n}], not {v.shape}")
    fields = {}
    for r in range(config.rows):
        for s in range(config.n):
            fields[f"[{r}].values[{s}]"] = v[:, r, s]
            if config.core.sparse:
                fields[f"[{r}].indices[{s}]"] = np.asarray(indices)[:, r, s]
    return _rows(config, "wgt", fields)


def param_rows(config: AcceleratorConfig, bias, mult, shift) -> bytes:
    """Per-channel POST parameters -> param rows."""
    bias, mult, shift = (np.asarray(a).reshape(-1) for a in (bias, mult, shift))
    return _rows(config, "param", {"bias": bias, "mult": mult, "shift": shift,
                                   "reserved": np.zeros_like(bias)})


def unpack_act_rows(config: AcceleratorConfig, blob: bytes, count: int) -> np.ndarray:
    """``count`` activation rows in DRAM bytes -> int8 values ``[count, m]``."""
    a = np.frombuffer(blob, dtype=np.int8)[:count * config.pitch("act")]
    return a.reshape(count, config.pitch("act"))[:, :config.m].astype(np.int64)


def unpack_acc_rows(config: AcceleratorConfig, blob: bytes, count: int) -> np.ndarray:
    """``count`` accumulator rows (as STORE writes them) -> int32 values ``[count, lanes]``
    (``config.acc_lanes``: ``rows``, or ``rows * n`` on a packing machine)."""
    pitch = config.pitch("acc")
    a = np.frombuffer(blob[:count * pitch], dtype=np.uint8).reshape(count, pitch)
    return a[:, :4 * config.acc_lanes].copy().view("<i4").astype(np.int64)
