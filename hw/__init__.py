"""Amaranth generators for Tessera's accelerator blocks.

Every block is a :class:`amaranth.lib.wiring.Component` built from one frozen config
object (a :class:`hw.config.BlockConfig`), which is the single source of truth for its
parameters. Invalid parameters raise :class:`hw.ConfigError`.
"""

from .config import BlockConfig, ConfigError, param
from .verilog import to_verilog, write_verilog

__all__ = ["BlockConfig", "ConfigError", "param", "to_verilog", "write_verilog"]
