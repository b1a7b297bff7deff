"""The ISA (spec/isa.py), its page (docs/isa.md) and the assembler (compiler/asm.py)."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileError
from compiler.asm import assemble, disassemble, disassemble_json
from spec import SpecError
from spec.accel import AcceleratorConfig
from spec.isa import (CSR, LAYOUTS, ErrorCode, Insn, Mem, Opcode, check_static, decode, encode)
from tessera.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "isa.md"


def _doc_tables() -> dict[str, list[tuple[int, int, str]]]:
    """{opcode name: [(lo, hi, field)]} from docs/isa.md's instruction tables."""
    tables, current = {}, None
    for line in DOCS.read_text().splitlines():
        head = re.match(r"^### (\w+) \(opcode (\d+)\)", line)
        if head:
            current = head.group(1)
            tables[current] = []
            assert Opcode[current].value == int(head.group(2)), line
            continue
        row = re.match(r"^\| (\d+)(?:\.\.(\d+))? \| `(\w+)` \| (\d+) \|$", line)
        if row and current:
            lo = int(row.group(1))
            hi = int(row.group(2) or lo)
            assert hi - lo + 1 == int(row.group(4)), line
            tables[current].append((lo, hi, row.group(3)))
    return tables


def test_docs_quote_every_field_of_every_layout_at_its_bits():
    tables = _doc_tables()
    assert set(tables) == {op.name for op in LAYOUTS}
    for op, layout in LAYOUTS.items():
        want = [(f.offset, f.offset + f.width - 1, name) for name, f in layout]
        assert tables[op.name] == want, op.name


def test_docs_quote_the_csr_offsets():
    text = DOCS.read_text()
    for reg in CSR:
        if reg != CSR.COUNTERS:
            assert f"| 0x{reg.value:02X} | `{reg.name}`" in text, reg.name


def test_docs_quote_the_param_row_bits():
    layout = AcceleratorConfig().row_layout("param")
    text = DOCS.read_text()
    for name in ("bias", "mult", "shift"):
        f = layout[name]
        assert f"`{name}` (" in text and f"{f.offset}..{f.offset + f.width - 1})" in text, name


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 128) - 1))
def test_disassembly_assembles_back_to_the_same_word(word):
    assert assemble(disassemble([word])) == [word]


def test_assembler_syntax_and_errors():
    words = assemble("""
        # a comment
        LOAD mem=wgt sram=3 dram=0x40 y_size=1 x_size=2 push_next
        GEMM row_blocks=1 cols=1 k_groups=1 passes=1 n_active=2 pop_prev
        FINISH
    """)
    insn = decode(words[0])
    assert insn.opcode == Opcode.LOAD and insn.fields["mem"] == Mem.WGT and insn.fields["sram"] == 3
    assert insn.fields["push_next"] == 1 and decode(words[1]).fields["pop_prev"] == 1
    assert "LOAD mem=wgt sram=3 dram=0x40 y_size=1 x_size=2 push_next" in disassemble(words)
    assert '"opcode": "GEMM"' in disassemble_json(words)
    for source, message in [("FOO x=1", "line 1: unknown instruction 'FOO'"),
                            ("GEMM bogus=1", "GEMM has no field 'bogus'"),
                            ("GEMM cols=5000", r"cols = 5000 does not fit unsigned\(12\)"),
                            ("LOAD mem=xyz", "unknown mem 'xyz'"),
                            ("GEMM cols=1 cols=2", "field cols is given twice"),
                            ("GEMM cols=1.5", "is not a number"),
                            ("\n.word 0x1 0x2", "line 2: .word takes one value")]:
        with pytest.raises(CompileError, match=message):
            assemble(source)


def test_encode_refuses_fields_that_do_not_fit():
    with pytest.raises(SpecError, match="k_groups = 4096 does not fit"):
        encode(Insn(Opcode.GEMM, {"k_groups": 4096}))
    with pytest.raises(SpecError, match="GEMM has no field"):
        encode(Insn(Opcode.GEMM, {"bogus": 1}))


CFG = AcceleratorConfig()


@pytest.mark.parametrize("insn, code", [
    (Insn(Opcode.ILLEGAL, {"raw": 9}), ErrorCode.ILLEGAL_OPCODE),
    (Insn(Opcode.TOPN, {"cols": 1, "k_groups": 1}), ErrorCode.ILLEGAL_OPCODE),   # no top-N unit
    (Insn(Opcode.LOAD, {"pop_prev": 1}), ErrorCode.BAD_TOKEN),
    (Insn(Opcode.STORE, {"push_next": 1}), ErrorCode.BAD_TOKEN),
    (Insn(Opcode.LOAD, {"mem": Mem.ACC, "x_size": 1, "y_size": 1}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.STORE, {"mem": Mem.WGT, "x_size": 1, "y_size": 1}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.LOAD, {"mem": Mem.ACT, "dram": 2, "x_size": 1, "y_size": 1}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.LOAD, {"mem": Mem.ACT, "dram": 0xFFFFFFFC, "x_size": 2, "y_size": 1}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.GEMM, {"n_active": 3}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.GEMM, {"unit": 1}), ErrorCode.BAD_FIELD),
    (Insn(Opcode.LOAD, {"mem": Mem.ACT, "sram": 1020, "x_size": 5, "y_size": 1}), ErrorCode.SRAM_RANGE),
    (Insn(Opcode.GEMM, {"row_blocks": 1, "cols": 2, "k_groups": 1, "passes": 1, "acc": 255}), ErrorCode.SRAM_RANGE),
    (Insn(Opcode.GEMM, {"row_blocks": 1, "cols": 2, "k_groups": 3, "passes": 1, "act": 1020, "act_stride": 2}),
     ErrorCode.SRAM_RANGE),
    (Insn(Opcode.POST, {"row_blocks": 1, "cols": 1, "lanes": 4, "param": 253}), ErrorCode.SRAM_RANGE),
])
def test_static_checks_name_each_error_class(insn, code):
    full = Insn(insn.opcode, {k: 0 for k in LAYOUTS.get(insn.opcode, LAYOUTS[Opcode.FINISH]).members
                              if k != "opcode"} | {"mem": Mem.ACT} | insn.fields) \
        if insn.opcode != Opcode.ILLEGAL else insn
    if insn.opcode not in (Opcode.LOAD, Opcode.STORE, Opcode.ILLEGAL):
        full.fields.pop("mem", None)
    assert check_static(full, CFG)[0] == code


def test_empty_instructions_are_legal_token_carriers():
    for op in (Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.POST):
        insn = decode(encode(Insn(op, {"sram": 65535} if op in (Opcode.LOAD, Opcode.STORE) else {"acc": 65535})))
        assert check_static(insn, CFG) is None, op


def test_asm_and_disasm_commands(tmp_path, capsys):
    source = tmp_path / "p.s"
    source.write_text("LOAD mem=act x_size=1 y_size=1 push_next\nGEMM pop_prev\nFINISH\n")
    binary = tmp_path / "p.bin"
    assert main(["asm", str(source), "-o", str(binary)]) == 0
    assert binary.stat().st_size == 48
    capsys.readouterr()
    assert main(["disasm", str(binary)]) == 0
    text = capsys.readouterr().out
    assert assemble(text) == assemble(source.read_text())
    assert main(["disasm", str(binary), "--json"]) == 0
    assert '"opcode": "FINISH"' in capsys.readouterr().out
    bad = tmp_path / "bad.s"
    bad.write_text("GEMM cols=99999\n")
    assert main(["asm", str(bad), "-o", str(tmp_path / "x.bin")]) == 1
    assert "line 1: GEMM.cols = 99999 does not fit unsigned(12)" in capsys.readouterr().err
    assert not (tmp_path / "x.bin").exists()
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01" * 17)
    assert main(["disasm", str(odd)]) == 1
    assert "multiple of 16 bytes" in capsys.readouterr().err
