"""The registry of generatable blocks: what ``tessera generate/verify/synth`` know.

A block is registered once with its config class, its component class, the Verilog
module name it is emitted as, and the cocotb bench module that verifies it. Later
blocks add one :func:`register` call here.
"""

from dataclasses import dataclass

from hw.accel import Accelerator
from hw.gear_unit import GearUnit
from hw.lp_pe import LPPE
from hw.mac_pe import FP8PE, Int8PE
from hw.nm_core import NMCore
from hw.pe_array import FP8Array, Int8Array, LPArray
from hw.sgs_buffer import SGSBuffer
from hw.topn import TopN
from spec import BlockConfig
from spec.accel import AcceleratorConfig
from spec.gear_unit import GearUnitConfig
from spec.lp_pe import LPPEConfig
from spec.mac_pe import FP8PEConfig, Int8PEConfig
from spec.nm_core import NMCoreConfig
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig
from spec.sgs_buffer import SGSBufferConfig
from spec.topn import TopNConfig

__all__ = ["Block", "BLOCKS", "register", "get_block"]


@dataclass(frozen=True)
class Block:
    """A generatable block. ``bench`` is its cocotb test module; a block whose verification
    is a set of programs (the accelerator) names instead a ``verify`` function
    ``(config, *, sim, build_root, seed) -> [(case, passed)]``, as ``module:function``."""

    name: str
    summary: str
    config: type[BlockConfig]
    component: type
    top: str
    bench: str | None = None
    verify: str | None = None

    def build(self, config: BlockConfig):
        return self.component(config)


BLOCKS: dict[str, Block] = {}


def register(block: Block) -> Block:
    if block.name in BLOCKS:
        raise ValueError(f"block {block.name!r} is registered twice")
    if block.config.block != block.name:
        raise ValueError(f"{block.config.__name__}.block is {block.config.block!r}, not {block.name!r}")
    BLOCKS[block.name] = block
    return block


def get_block(name: str) -> Block:
    try:
        return BLOCKS[name]
    except KeyError:
        raise KeyError(f"unknown block {name!r}; known: {', '.join(sorted(BLOCKS))}") from None


register(Block("nm-core", "N:M structured-sparse tensor core (int8 x int8 -> int32)",
               NMCoreConfig, NMCore, "nm_core", "verif.nm_core_tb"))
register(Block("topn", "activation top-N unit: dense int8 M-groups -> TASD N:M terms",
               TopNConfig, TopN, "topn", "verif.topn_tb"))
register(Block("gear-unit", "GEAR KV reconstruction unit (2/4-bit codes + outliers + low rank -> int8 rows)",
               GearUnitConfig, GearUnit, "gear_unit", "verif.gear_unit_tb"))
register(Block("lp-pe", "logarithmic-posit (LP x LP) dot-product PE",
               LPPEConfig, LPPE, "lp_pe", "verif.lp_pe_tb"))
register(Block("int8-pe", "INT8 MAC dot-product PE (the LP PE's baseline)",
               Int8PEConfig, Int8PE, "int8_pe", "verif.mac_pe_tb"))
register(Block("fp8-pe", "FP8 (E4M3) MAC dot-product PE (the LP PE's baseline)",
               FP8PEConfig, FP8PE, "fp8_pe", "verif.mac_pe_tb"))
register(Block("lp-array", "R x L weight-stationary LP dot-product array (decode amortised)",
               LPArrayConfig, LPArray, "lp_array", "verif.pe_array_tb"))
register(Block("int8-array", "R x L weight-stationary INT8 dot-product array (the LP array's baseline)",
               Int8ArrayConfig, Int8Array, "int8_array", "verif.pe_array_tb"))
register(Block("fp8-array", "R x L weight-stationary FP8 (E4M3) dot-product array (the LP array's baseline)",
               FP8ArrayConfig, FP8Array, "fp8_array", "verif.pe_array_tb"))
register(Block("sgs-buffer", "SUSHI SubGraph-stationary weight buffer (persistent + streaming regions)",
               SGSBufferConfig, SGSBuffer, "sgs_buffer", "verif.sgs_buffer_tb"))
register(Block("accel", "the accelerator: N:M core, scratchpads, three queues, AXI4 DRAM, AXI4-Lite CSRs",
               AcceleratorConfig, Accelerator, "accel", verify="verif.accel_campaign:verify_smoke"))
