"""Assembler and disassembler for the Tessera ISA, on the layouts of :mod:`spec.isa`.

Syntax: one instruction per line, ``#`` starts a comment::

    LOAD  mem=wgt sram=0 dram=0x1000 y_size=1 x_size=64 y_stride=0 push_next
    GEMM  wgt=0 act=0 acc=0 row_blocks=1 cols=8 k_groups=16 passes=1 act_stride=16 n_active=2 pop_prev push_next
    .word 0x0                                   # a raw 128-bit word (any value)
    FINISH pop_next

``name=value`` sets a field (decimal, ``0x`` hex or ``0b`` binary; ``mem`` also by name:
act, wgt, acc, param); the bare words ``pop_prev``, ``pop_next``, ``push_prev`` and
``push_next`` set the token flags. Fields left out are 0. :func:`disassemble` writes every
non-zero field (``reserved`` too), so ``assemble(disassemble(words)) == words`` for any
words, and words with an opcode outside the ISA come back as ``.word``.
"""

import json
import re

from spec import SpecError
from spec.isa import FIELDS, HEADER, LAYOUTS, Insn, Mem, Opcode, decode, encode

from . import CompileError

__all__ = ["assemble", "disassemble", "disassemble_json", "FLAGS"]

FLAGS = tuple(name for name, _ in HEADER if name != "opcode")
_NUMBER = re.compile(r"^(0x[0-9a-fA-F_]+|0b[01_]+|[0-9_]+)$")


def _number(text: str, where: str) -> int:
    if not _NUMBER.match(text):
        raise CompileError(f"{where}: {text!r} is not a number (decimal, 0x hex or 0b binary)")
    return int(text.replace("_", ""), 0)


def assemble(source: str) -> list[int]:
    """Assemble ``source`` into 128-bit words; :class:`CompileError` names the line."""
    words = []
    for number, line in enumerate(source.splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"line {number}"
        mnemonic, *operands = text.split()
        if mnemonic.lower() == ".word":
            if len(operands) != 1:
                raise CompileError(f"{where}: .word takes one value")
            value = _number(operands[0], where)
            if not 0 <= value < 1 << 128:
                raise CompileError(f"{where}: .word {value:#x} does not fit 128 bits")
            words.append(value)
            continue
        try:
            opcode = Opcode[mnemonic.upper()]
        except KeyError:
            names = ", ".join(op.name for op in LAYOUTS)
            raise CompileError(f"{where}: unknown instruction {mnemonic!r}; instructions: {names}") from None
        if opcode not in LAYOUTS:
            raise CompileError(f"{where}: {mnemonic} is not an instruction (use .word for raw words)")
        fields = {}
        for operand in operands:
            if operand in FLAGS:
                fields[operand] = 1
                continue
            name, sep, value = operand.partition("=")
            if not sep:
                raise CompileError(f"{where}: {operand!r} is neither name=value nor a token flag "
                                   f"({', '.join(FLAGS)})")
            if name not in FIELDS[opcode] or name == "opcode":
                raise CompileError(f"{where}: {opcode.name} has no field {name!r}; fields: "
                                   f"{', '.join(f for f in FIELDS[opcode] if f != 'opcode')}")
            if name in fields:
                raise CompileError(f"{where}: field {name} is given twice")
            if name == "mem" and not _NUMBER.match(value):
                try:
                    fields[name] = Mem[value.upper()]
                except KeyError:
                    raise CompileError(f"{where}: unknown mem {value!r}; "
                                       f"mems: {', '.join(m.name.lower() for m in Mem)}") from None
            else:
                fields[name] = _number(value, where)
        try:
            words.append(encode(Insn(opcode, fields)))
        except SpecError as exc:
            raise CompileError(f"{where}: {exc}") from None
    return words


def _line(word: int) -> str:
    insn = decode(word)
    if insn.opcode == Opcode.ILLEGAL or ("mem" in insn.fields and not isinstance(insn.fields["mem"], Mem)):
        return f".word {word:#x}"
    parts = [insn.opcode.name]
    for name in FIELDS[insn.opcode]:
        if name == "opcode" or name in FLAGS:
            continue
        value = insn.fields[name]
        if name == "mem":
            parts.append(f"mem={Mem(value).name.lower()}")
        elif value:
            parts.append(f"{name}={value:#x}" if name in ("dram", "y_stride", "reserved") else f"{name}={value}")
    parts += [flag for flag in FLAGS if insn.fields[flag]]
    return " ".join(parts)


def disassemble(words) -> str:
    """One line per word, in the syntax :func:`assemble` reads."""
    return "\n".join(_line(int(w)) for w in words) + "\n"


def disassemble_json(words) -> str:
    """The words as a JSON list of ``{"index", "word", "opcode", fields...}``."""
    out = []
    for index, word in enumerate(words):
        insn = decode(int(word))
        entry = {"index": index, "word": f"{int(word):#034x}", "opcode": insn.opcode.name}
        for name, value in insn.fields.items():
            entry[name] = value.name.lower() if isinstance(value, Mem) else int(value)
        out.append(entry)
    return json.dumps(out, indent=2)
