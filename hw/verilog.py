"""Verilog emission for any Tessera component.

Amaranth's backend adds, for every signal with a structured layout, one alias wire per
field (``\\i__payload.act[0]``) for waveform viewers. Those aliases are unused nets (they
trip Verilator's -Wall) and their bracketed names collide with the bit names Yosys's
ABC flow creates (an assertion failure in ``synth_ice40``), so they are left out: the
emitted Verilog holds the ports and the design's own named signals only.
"""

import contextlib
import threading
from pathlib import Path

from amaranth.back import rtlil, verilog

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


def to_verilog(component, name: str) -> str:
    """Return the Verilog text of ``component`` with top-level module ``name``.

    Source locations are left out so that the output only changes when the design does.
    """
    with _LOCK, _without_field_aliases():
        return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name: str, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<name>.v`` whole (:func:`spec.outputs.write_text`: a temporary
    file, then a rename) and return its path."""
    return write_text(Path(out_dir) / f"{name}.v", to_verilog(component, name))
