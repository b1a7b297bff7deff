"""Amaranth generators for Tessera's accelerator blocks.

Every block is a :class:`amaranth.lib.wiring.Component` built from one frozen config
object (a :class:`spec.BlockConfig`, defined with the block's stream layouts in
:mod:`spec`), which is the single source of truth for its parameters. Invalid
parameters raise :class:`spec.ConfigError` (re-exported here as ``hw.ConfigError``).
This package imports :mod:`spec` and Amaranth only; never ``golden``.
"""

from spec import ConfigError

from .verilog import to_verilog, write_verilog

__all__ = ["ConfigError", "to_verilog", "write_verilog"]
