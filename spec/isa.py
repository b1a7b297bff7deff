"""The Tessera instruction set: fixed-width 128-bit words, one layout per opcode.

This module is the only definition of the instruction formats. The assembler
(``compiler.asm``), the compiler, the instruction-set simulator (``golden.iss``), the
hardware decoder (``hw.accel``) and the testbenches all encode and decode with these
layouts; docs/isa.md is their human page (``tests/test_isa.py`` checks every bit
position it quotes against them).

Words
-----
An instruction is 128 bits, stored little-endian at ``prog_addr + 16 * index`` in DRAM.
Bits 0..3 hold the :class:`Opcode`, bits 4..7 the dependency-token flags (:data:`HEADER`);
the rest is the opcode's own layout (:data:`LAYOUTS`), padded to 128 bits with a
``reserved`` field that the machine ignores.

Queues and tokens
-----------------
LOAD goes to the load queue, STORE to the store queue, everything else to the compute
queue (:data:`QUEUE_OF`). The queues run concurrently and are ordered only by
dependency tokens, carried in four FIFOs: load->compute, compute->load, compute->store,
store->compute. An instruction's ``pop_prev``/``pop_next`` make its unit wait for (and
take) a token from the previous/next queue in the order load, compute, store; after
executing, ``push_prev``/``push_next`` give one (waiting while the FIFO is full). The
load queue has no previous queue and the store queue no next one: those flags are
illegal there. FINISH is also a barrier: it waits until the load and store queues are
empty and idle, then requires every token FIFO to be empty.

Errors
------
The machine stops with an :class:`ErrorCode` and the failing instruction's index in its
status registers; :func:`check_static` is the rule, shared by the simulator and the
hardware's decoder, for every error that the instruction alone shows.
"""

import enum as py_enum
import numbers
from dataclasses import dataclass

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

from .accel import AcceleratorConfig
from .config import SpecError

__all__ = ["WORD_BITS", "WORD_BYTES", "Opcode", "Mem", "Queue", "ErrorCode", "QUEUE_OF",
           "HEADER", "LAYOUTS", "FIELDS", "param_layout", "Insn", "encode", "decode",
           "words_to_bytes", "bytes_to_words", "check_static", "CSR", "Status", "COUNTERS",
           "EXACT_COUNTERS", "STORABLE", "LOADABLE"]

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8


class Opcode(enum.Enum, shape=4):
    """Bits 0..3 of every word. 0 is illegal, so a word of zeros (unwritten DRAM) stops
    the machine instead of running; 7..15 are free for later units."""

    ILLEGAL = 0
    LOAD = 1
    STORE = 2
    GEMM = 3
    POST = 4
    TOPN = 5
    FINISH = 6


class Mem(enum.Enum, shape=3):
    """A scratchpad, as LOAD and STORE name it (4..7: free for later units' memories)."""

    ACT = 0
    WGT = 1
    ACC = 2
    PARAM = 3


#: The scratchpads LOAD may write and STORE may read.
LOADABLE = (Mem.ACT, Mem.WGT, Mem.PARAM)
STORABLE = (Mem.ACT, Mem.ACC)


class Queue(py_enum.IntEnum):
    """The three instruction queues, in token order (previous -> next)."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2


QUEUE_OF = {Opcode.LOAD: Queue.LOAD, Opcode.STORE: Queue.STORE, Opcode.GEMM: Queue.COMPUTE,
            Opcode.POST: Queue.COMPUTE, Opcode.TOPN: Queue.COMPUTE, Opcode.FINISH: Queue.COMPUTE}


class ErrorCode(py_enum.IntEnum):
    """Why the machine stopped (``STATUS.error``); 0 while it runs or after success."""

    NONE = 0
    #: An opcode that is not one of :class:`Opcode` (or ILLEGAL, or TOPN without a unit).
    ILLEGAL_OPCODE = 1
    #: A field out of range: a mem LOAD/STORE cannot use, n_active > n, a misaligned DRAM
    #: address or stride, a GEMM unit that does not exist, a top-N term it does not have,
    #: a ``pack`` the machine cannot run (no packing, or GEMM ``n_active << pack != n``),
    #: GEMM unit 1 on a machine without the LP array.
    BAD_FIELD = 2
    #: A scratchpad row range that leaves the scratchpad.
    SRAM_RANGE = 3
    #: A token flag the instruction's queue cannot use (pop/push_prev on the load queue,
    #: pop/push_next on the store queue).
    BAD_TOKEN = 4
    #: Every unit waits for a token that no instruction still to run can give.
    DEADLOCK = 5
    #: FINISH found tokens left in a FIFO.
    TOKENS_LEFT = 6
    #: The program has no FINISH, FINISH is not its last instruction, or it is empty.
    NO_FINISH = 7
    #: An AXI read (fetch or LOAD) answered SLVERR or DECERR.
    AXI_READ = 8
    #: An AXI write (STORE) answered SLVERR or DECERR.
    AXI_WRITE = 9


#: Bits 0..7 of every word.
HEADER = data.StructLayout({
    "opcode": Opcode,
    "pop_prev": 1, "pop_next": 1, "push_prev": 1, "push_next": 1,
})


def _word(fields: dict) -> data.StructLayout:
    """The header, the opcode's fields, and ``reserved`` up to 128 bits (none when the
    fields fill the word)."""
    layout = data.StructLayout({**HEADER.members, **fields})
    if layout.size == WORD_BITS:
        return layout
    return data.StructLayout({**layout.members, "reserved": unsigned(WORD_BITS - layout.size)})


#: LOAD (DRAM -> act/wgt/param) and STORE (act/acc -> DRAM): a 2-D strided block of rows.
_TRANSFER = {
    "mem": Mem,
    "sram": unsigned(16),        # first scratchpad row
    "dram": unsigned(32),        # byte address of the first row (a multiple of the pitch)
    "y_size": unsigned(16),      # lines
    "x_size": unsigned(16),      # rows per line (contiguous in DRAM)
    "y_stride": unsigned(32),    # bytes from one line to the next (a multiple of the pitch)
}

LAYOUTS = {
    Opcode.LOAD: _word(_TRANSFER),
    Opcode.STORE: _word(_TRANSFER),
    Opcode.GEMM: _word({
        "wgt": unsigned(16),         # first weight row
        "act": unsigned(16),         # first activation row
        "acc": unsigned(16),         # first accumulator row
        "row_blocks": unsigned(12),  # blocks of `rows` output rows
        "cols": unsigned(12),        # activation columns
        "k_groups": unsigned(12),    # m-groups per pass of a dot product
        "passes": unsigned(4),       # TASD passes (terms) accumulated per dot product
        "act_stride": unsigned(16),  # activation rows from one column to the next
        "n_active": unsigned(4),     # active weight slots N' <= N
        "accumulate": unsigned(1),   # add to the accumulator rows instead of overwriting
        "unit": unsigned(2),         # compute unit: 0 = the N:M core (others: later units)
        "pack": unsigned(3),         # packing machines: 2^pack logical rows per core row
        "sf": signed(6),             # unit 1 (the LP array): its runtime scale sf_w + sf_a
    }),
    Opcode.POST: _word({
        "acc": unsigned(16),         # first accumulator row
        "act": unsigned(16),         # activation row of output channel 0 of column 0
        "param": unsigned(16),       # parameter row of channel 0
        "row_blocks": unsigned(12),
        "cols": unsigned(12),
        "out_stride": unsigned(16),  # activation rows from one output column to the next
        "lanes": unsigned(16),       # lanes written: block*rows + lane < lanes (the rest dropped)
        "relu": unsigned(1),
        "transpose": unsigned(1),    # lanes are columns (TOPN layouts), not channels
        "pack": unsigned(3),         # the GEMM's pack: a block is rows << pack lanes
    }),
    Opcode.TOPN: _word({
        "act": unsigned(16),         # first activation row (column 0, group 0)
        "wgt": unsigned(16),         # first weight row written
        "cols": unsigned(12),        # columns decomposed (each becomes one core row lane)
        "k_groups": unsigned(12),
        "act_stride": unsigned(16),
        "term": unsigned(3),         # which term of the unit's series to write
        "passes": unsigned(4),       # passes of the GEMM that will read the terms
    }),
    Opcode.FINISH: _word({}),
}

#: Field names per opcode, in layout order (header first, ``reserved`` last).
FIELDS = {op: [name for name, _ in layout] for op, layout in LAYOUTS.items()}
#: (name, offset, width) of every field per opcode: decoding and encoding a flat word is
#: bit arithmetic on these (the layouts stay the definition).
_SLOTS = {op: [(name, f.offset, f.width) for name, f in layout] for op, layout in LAYOUTS.items()}
#: Fields that hold two's-complement values (encoded and decoded as signed ints).
_SIGNED = {op: {name for name, f in layout if isinstance(f.shape, Shape) and f.shape.signed}
           for op, layout in LAYOUTS.items()}
_MEM_VALUES = {m.value: m for m in Mem}


def param_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One output channel's POST parameters (a ``param`` row, 64 bits):
    ``y = saturate8(relu?((wrap32(acc + bias) * mult + 2^(shift-1)) >> shift))``
    (``shift`` 0: no rounding term), the arithmetic in 64 bits."""
    return config.row_layout("param")


@dataclass(frozen=True)
class Insn:
    """One decoded instruction: its opcode and every field of its layout (ints; ``mem``
    as a :class:`Mem`). Build one with ``Insn(Opcode.GEMM, {...})``: fields left out are 0."""

    opcode: Opcode
    fields: dict

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(f"{self.opcode.name} has no field {name!r}") from None

    @property
    def queue(self) -> Queue:
        return QUEUE_OF[self.opcode]

    def full_fields(self) -> dict:
        """Every field of the layout, defaults (0) filled in, the header's opcode set."""
        layout = LAYOUTS[self.opcode]
        unknown = sorted(set(self.fields) - set(FIELDS[self.opcode]) - {"opcode"})
        if unknown:
            raise SpecError(f"{self.opcode.name} has no field(s) {', '.join(unknown)}; "
                            f"fields: {', '.join(n for n in FIELDS[self.opcode][1:] if n != 'reserved')}")
        out = {}
        for name, field in layout:
            if name == "opcode":
                out[name] = self.opcode
            elif name == "mem":
                out[name] = Mem(self.fields.get(name, Mem.ACT))
            else:
                out[name] = self.fields.get(name, 0)
        return out


def encode(insn: Insn) -> int:
    """The 128-bit word of ``insn``; every field is range-checked (the rule of
    :func:`spec.packing.pack`, on the flat layout)."""
    if not isinstance(insn.opcode, Opcode) or insn.opcode not in LAYOUTS:
        raise SpecError(f"cannot encode opcode {insn.opcode!r}")
    fields = insn.full_fields()
    word = 0
    for name, offset, width in _SLOTS[insn.opcode]:
        value = fields[name]
        if isinstance(value, (Opcode, Mem)):
            value = value.value
        elif not isinstance(value, numbers.Integral):
            raise SpecError(f"{insn.opcode.name}.{name} = {value!r} is not an integer")
        value = int(value)
        if name in _SIGNED[insn.opcode]:
            if not -(1 << (width - 1)) <= value < 1 << (width - 1):
                raise SpecError(f"{insn.opcode.name}.{name} = {value} does not fit signed({width}) "
                                f"[{-(1 << (width - 1))}, {(1 << (width - 1)) - 1}]")
            value &= (1 << width) - 1
        elif not 0 <= value < 1 << width:
            raise SpecError(f"{insn.opcode.name}.{name} = {value} does not fit unsigned({width}) "
                            f"[0, {(1 << width) - 1}]")
        word |= value << offset
    return word


def decode(word: int) -> Insn:
    """The instruction in a 128-bit word. An opcode outside :class:`Opcode` (or ILLEGAL)
    decodes as ``Insn(Opcode.ILLEGAL, {"raw": opcode})``: it is the machine's error to
    report, not the decoder's."""
    if not isinstance(word, int) or not 0 <= word < 1 << WORD_BITS:
        raise SpecError(f"{word!r} is not a {WORD_BITS}-bit instruction word")
    raw = word & 0xF
    try:
        opcode = Opcode(raw)
    except ValueError:
        opcode = Opcode.ILLEGAL
    if opcode == Opcode.ILLEGAL:
        head = HEADER.from_bits(word & 0xFF)
        return Insn(Opcode.ILLEGAL, {"raw": raw, "pop_prev": head.pop_prev, "pop_next": head.pop_next,
                                     "push_prev": head.push_prev, "push_next": head.push_next})
    fields = {}
    for name, offset, width in _SLOTS[opcode]:
        if name == "opcode":
            continue
        value = (word >> offset) & ((1 << width) - 1)
        if name in _SIGNED[opcode] and value >> (width - 1):
            value -= 1 << width
        if name == "mem":       # a Mem, or the raw int of a value that names no scratchpad
            value = _MEM_VALUES.get(value, value)
        fields[name] = value
    return Insn(opcode, fields)


def words_to_bytes(words) -> bytes:
    """Program words -> their DRAM image (16 bytes each, little-endian)."""
    return b"".join(int(w).to_bytes(WORD_BYTES, "little") for w in words)


def bytes_to_words(blob: bytes) -> list[int]:
    """A DRAM image of a program -> its words."""
    if len(blob) % WORD_BYTES:
        raise SpecError(f"a program image is a multiple of {WORD_BYTES} bytes, not {len(blob)}")
    return [int.from_bytes(blob[k:k + WORD_BYTES], "little") for k in range(0, len(blob), WORD_BYTES)]


def _ranges(insn: Insn, cfg: AcceleratorConfig) -> list[tuple[str, int, int]]:
    """(scratchpad, first row, last row) of every row range ``insn`` touches (non-empty)."""
    f = insn.fields
    op = insn.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        rows = f["y_size"] * f["x_size"]
        return [(Mem(f["mem"]).name.lower(), f["sram"], f["sram"] + rows - 1)] if rows else []
    if op == Opcode.GEMM:
        rb, c, g, p = f["row_blocks"], f["cols"], f["k_groups"], f["passes"]
        if not rb * c * g * p:
            return []
        if f["unit"] == 1:      # the LP unit's weight tiles: `rows` act rows each
            weights = ("act", f["wgt"], f["wgt"] + rb * p * g * cfg.rows - 1)
        else:
            weights = ("wgt", f["wgt"], f["wgt"] + rb * p * g - 1)
        return [weights,
                ("act", f["act"], f["act"] + (c - 1) * f["act_stride"] + g - 1),
                ("acc", f["acc"], f["acc"] + rb * c - 1)]
    if op == Opcode.POST:
        rb, c, ch = f["row_blocks"], f["cols"], f["lanes"]
        if not rb * c * ch:
            return []
        lanes = min(rb * (cfg.rows << f["pack"]), ch)
        if f["transpose"]:
            last_act = f["act"] + (lanes - 1) * f["out_stride"] + (c - 1) // cfg.m
            params = ("param", f["param"], f["param"] + c - 1)
        else:
            last_act = f["act"] + (c - 1) * f["out_stride"] + (lanes - 1) // cfg.m
            params = ("param", f["param"], f["param"] + lanes - 1)
        return [("acc", f["acc"], f["acc"] + rb * c - 1), ("act", f["act"], last_act), params]
    if op == Opcode.TOPN:
        c, g = f["cols"], f["k_groups"]
        if not c * g:
            return []
        blocks = -(-c // cfg.rows)
        return [("act", f["act"], f["act"] + (c - 1) * f["act_stride"] + g - 1),
                ("wgt", f["wgt"] + f["term"] * g, f["wgt"] + ((blocks - 1) * f["passes"] + f["term"]) * g + g - 1)]
    return []


def check_static(insn: Insn, cfg: AcceleratorConfig) -> tuple[ErrorCode, str] | None:
    """The error ``insn`` shows on its own on machine ``cfg`` (checked at decode, in this
    order: opcode, token flags, fields, scratchpad ranges), with a reason; None when legal."""
    op = insn.opcode
    if op == Opcode.ILLEGAL:
        return ErrorCode.ILLEGAL_OPCODE, f"opcode {insn.fields.get('raw', 0)} is not an instruction"
    if op == Opcode.TOPN and not cfg.topn:
        return ErrorCode.ILLEGAL_OPCODE, "TOPN on a machine without a top-N unit"
    f = insn.fields
    queue = QUEUE_OF[op]
    if queue == Queue.LOAD and (f["pop_prev"] or f["push_prev"]):
        return ErrorCode.BAD_TOKEN, "the load queue has no previous queue (pop_prev/push_prev)"
    if queue == Queue.STORE and (f["pop_next"] or f["push_next"]):
        return ErrorCode.BAD_TOKEN, "the store queue has no next queue (pop_next/push_next)"
    if op in (Opcode.LOAD, Opcode.STORE):
        if not isinstance(f["mem"], Mem) and f["mem"] not in {m.value for m in Mem}:
            return ErrorCode.BAD_FIELD, f"mem {f['mem']} names no scratchpad"
        mem = Mem(f["mem"])
        allowed = LOADABLE if op == Opcode.LOAD else STORABLE
        if mem not in allowed:
            return ErrorCode.BAD_FIELD, f"{op.name} cannot use the {mem.name.lower()} scratchpad"
        pitch = cfg.pitch(mem.name.lower())
        if f["y_size"] * f["x_size"]:
            if f["dram"] % pitch or f["y_stride"] % pitch:
                return ErrorCode.BAD_FIELD, (f"DRAM address {f['dram']:#x} and stride {f['y_stride']} "
                                             f"must be multiples of the {mem.name.lower()} pitch {pitch}")
            end = f["dram"] + (f["y_size"] - 1) * f["y_stride"] + f["x_size"] * pitch
            if end > 1 << cfg.axi_addr_width:
                return ErrorCode.BAD_FIELD, (f"the transfer ends at byte {end:#x}, beyond the "
                                             f"{cfg.axi_addr_width}-bit address space")
    if op == Opcode.GEMM:
        if f["unit"] > cfg.units - 1:
            return ErrorCode.BAD_FIELD, (f"GEMM unit {f['unit']} does not exist on this machine (0: the N:M core"
                                         + (", 1: the LP array)" if cfg.lp else "; 1, the LP array, needs lp)"))
        if f["n_active"] > cfg.n:
            return ErrorCode.BAD_FIELD, f"n_active={f['n_active']} exceeds the core's n={cfg.n}"
        if f["pack"] and not cfg.packing:
            return ErrorCode.BAD_FIELD, f"GEMM pack={f['pack']} on a machine without packing"
        if f["pack"] and f["n_active"] << f["pack"] != cfg.n:
            return ErrorCode.BAD_FIELD, (f"GEMM pack={f['pack']} needs n_active << pack = n={cfg.n}, "
                                         f"not n_active={f['n_active']}")
    if op == Opcode.POST and f["pack"] > cfg.max_pack:
        return ErrorCode.BAD_FIELD, (f"POST pack={f['pack']} exceeds this machine's {cfg.max_pack}"
                                     + ("" if cfg.packing else " (no packing)"))
    if op == Opcode.TOPN:
        terms = len(cfg.topn_config.terms)
        if f["term"] >= terms:
            return ErrorCode.BAD_FIELD, f"term {f['term']}: the unit's series {cfg.topn} has {terms}"
        if f["term"] >= max(f["passes"], 1):
            return ErrorCode.BAD_FIELD, f"term {f['term']} does not fit passes={f['passes']}"
    for mem, first, last in _ranges(insn, cfg):
        depth = cfg.depth(mem)
        if last >= depth:
            return ErrorCode.SRAM_RANGE, f"rows {first}..{last} of {mem} (depth {depth})"
    return None


# ------------------------------------------------------------------------------- CSRs

class CSR(py_enum.IntEnum):
    """Byte offsets of the host's 32-bit registers on the AXI4-Lite slave."""

    #: W: bit 0 = start (ignored while busy), bit 1 = clear done/error and the interrupt.
    CTRL = 0x00
    #: R: :data:`Status` fields.
    STATUS = 0x04
    #: R: index of the instruction that caused STATUS.error.
    ERROR_INDEX = 0x08
    #: RW: bit 0 = raise the interrupt line on done or error.
    IRQ_ENABLE = 0x0C
    #: RW: byte address of instruction 0 (a multiple of 16).
    PROG_ADDR = 0x10
    #: RW: number of instructions.
    PROG_LEN = 0x14
    #: R: 0x7E55E1A0 + the layout version (an identification word).
    ID = 0x18
    #: R: the performance counters, 32 bits each, from here in :data:`COUNTERS` order.
    COUNTERS = 0x40


#: STATUS register, LSB first.
Status = data.StructLayout({"busy": 1, "done": 1, "error_flag": 1, "reserved0": 5,
                            "error": unsigned(8), "reserved1": unsigned(16)})

ID_WORD = 0x7E55E1A0 + 2      # layout version 2: GEMM and POST gained `pack`

#: Performance counters (32 bits each, wrapping; cleared by start), in CSR order.
COUNTERS = (
    "cycles",            # from start to done or error
    "load_busy",         # cycles the load unit executes an instruction
    "compute_busy",      # ... the compute unit (GEMM, POST, TOPN, FINISH)
    "store_busy",        # ... the store unit
    "load_stall",        # cycles the load unit's next instruction waits for a token
    "compute_stall",
    "store_stall",
    "core_beats",        # beats the N:M core accepted (cycles it was busy)
    "bytes_read",        # bytes of data the AXI master read (whole beats), fetch included
    "bytes_written",     # bytes the AXI master wrote (strobed bytes)
    "insns",             # instructions executed
)

#: The counters the instruction-set simulator predicts exactly; the others it estimates.
EXACT_COUNTERS = ("compute_busy", "core_beats", "bytes_read", "bytes_written", "insns")
