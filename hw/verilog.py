"""Verilog emission for any Tessera component.

Amaranth's backend adds, for every signal with a structured layout, one alias wire per
field (``\\i__payload.act[0]``) for waveform viewers. Those aliases are unused nets (they
trip Verilator's -Wall) and their bracketed names collide with the bit names Yosys's
ABC flow creates (an assertion failure in ``synth_ice40``), so they are left out: the
emitted Verilog holds the ports and the design's own named signals only.

Power-up values: by default every register is declared with its ``init`` value
(``reg [3:0] count = 4'h0;``), which is Amaranth's semantics (a register holds ``init``
at power-up and after reset) and what FPGAs implement. ``reset_only=True`` leaves them
out for ASIC flows and lint tools that reject them: registers get their values from the
reset alone (a ``reset_less`` register is undefined until first written) and memories
have no initial contents (a memory whose ``init`` is not all zeros is refused, since its
contents could not be kept). The one initialiser left is Yosys's simulation trigger of
the ``always @*`` blocks (``reg $auto$verilog_backend...$1 = 0;``): never assigned, not
a register of the design, it makes each block evaluate once at time zero.
"""

import contextlib
import threading
from pathlib import Path

from amaranth.back import rtlil, verilog

from spec import ConfigError
from spec.outputs import write_text

__all__ = ["to_verilog", "write_verilog"]


#: Emission patches Amaranth's emitter class for its duration: one conversion at a time.
_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_field_aliases():
    # ModuleEmitter.emit_signal_fields is internal to Amaranth 0.5 (pinned in
    # pyproject.toml); tests/test_cli.py lints the output, which fails if aliases return.
    original = rtlil.ModuleEmitter.emit_signal_fields
    rtlil.ModuleEmitter.emit_signal_fields = lambda self: None
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_signal_fields = original


@contextlib.contextmanager
def _without_power_up_values():
    # Flip-flop power-up values travel as ``init`` attributes of the wires the emitter
    # collects in ModuleEmitter.collect_init_attrs (internal to Amaranth 0.5, like the
    # field aliases above); memory contents as the $meminit_v2 cell of emit_memory.
    # tests/test_verilog_reset_only.py lints the output, which fails if either returns.
    collect, memory = rtlil.ModuleEmitter.collect_init_attrs, rtlil.ModuleEmitter.emit_memory

    def collect_without_init(self):
        collect(self)
        for attrs in self.value_attrs.values():
            attrs.pop("init", None)

    def memory_without_init(self, cell_idx, cell):
        if any(cell.init):
            raise ConfigError(f"memory {self.memories[cell_idx].memid!r} has initial contents, "
                              "which reset-only Verilog cannot hold")

    rtlil.ModuleEmitter.collect_init_attrs = collect_without_init
    rtlil.ModuleEmitter.emit_memory = memory_without_init
    try:
        yield
    finally:
        rtlil.ModuleEmitter.collect_init_attrs = collect
        rtlil.ModuleEmitter.emit_memory = memory


def to_verilog(component, name: str, *, reset_only: bool = False) -> str:
    """Return the Verilog text of ``component`` with top-level module ``name``.

    Source locations are left out so that the output only changes when the design does.
    ``reset_only`` leaves out the registers' power-up values and the memories' initial
    contents (see the module docstring).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_LOCK)
        stack.enter_context(_without_field_aliases())
        if reset_only:
            stack.enter_context(_without_power_up_values())
        return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name: str, out_dir: str | Path, *, reset_only: bool = False) -> Path:
    """Write ``<out_dir>/<name>.v`` whole (:func:`spec.outputs.write_text`: a temporary
    file, then a rename, so a failed conversion leaves no half-written file) and return
    its path."""
    return write_text(Path(out_dir) / f"{name}.v", to_verilog(component, name, reset_only=reset_only))
