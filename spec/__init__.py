"""The contract between Tessera's packages: every bit format, every block config, and
every numeric rule that more than one package uses.

``hw`` implements these formats, ``golden`` gives them meaning, ``compiler`` packs them
and ``verif`` checks them; each imports them from here, so a width, a field order or a
rounding rule is written exactly once. This package imports only ``amaranth.lib``,
``numpy`` and the standard library: never torch, never a generator or a golden model
(``tests/test_layering.py`` checks ``sys.modules`` after ``import spec``).

Modules
-------
config     frozen, validated, JSON-serialisable block configs (:class:`BlockConfig`)
numerics   two's-complement wrap, saturation, rounding, the LP exp2 table, FP8 fields,
           the TASD series grammar
packing    packing values into layouts with a range check of every field
nm_core, topn, pe, lp_pe, mac_pe, gear_unit, sgs_buffer
           each block's config and stream payload layouts

Errors a caller can cause (a parameter out of range, a field value that does not fit
its layout, a malformed series) raise :class:`SpecError`; configs raise its subclass
:class:`ConfigError`.
"""

from .config import BlockConfig, ConfigError, SpecError, param

__all__ = ["BlockConfig", "ConfigError", "SpecError", "param"]
