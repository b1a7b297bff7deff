"""Frozen, JSON-serialisable configuration objects for hardware blocks.

A block's config is the one place its parameters live: the generator elaborates from
it, the testbench rebuilds it from JSON in the simulator process, the synthesis driver
names its reports after it, the golden models and the compiler price work with it.
Fields are declared with :func:`param`, whose help text is shown by
``tessera generate BLOCK --help``.
"""

import dataclasses
import json
import numbers
import re
from typing import Any, ClassVar, Self

__all__ = ["BlockConfig", "ConfigError", "SpecError", "param"]


class SpecError(ValueError):
    """Input that breaks the contract: a field value that does not fit its layout, a
    malformed series, an instruction that cannot be encoded. The message names the value."""


class ConfigError(SpecError):
    """A block parameter is out of range; the message names the offending value."""


def param(default: Any, help: str) -> Any:
    """Declare a config field with a default value and a one-line help text."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Base class of every block config.

    Subclasses are frozen dataclasses whose fields are declared with :func:`param`
    and override :meth:`validate` to check their ranges (raising :class:`ConfigError`).
    Validation runs on construction, so an existing config object is always valid.
    """

    #: Block name used by the CLI and in report names (e.g. ``"nm-core"``).
    block: ClassVar[str] = ""
    #: What the block produces, for throughput figures: :attr:`ops_per_cycle` of these
    #: per clock cycle at full rate (e.g. ``"MAC"``: effective MACs of the N:M core).
    ops_unit: ClassVar[str] = "result"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in (int, "int"):
                # numpy integers are integers too (the golden models accept them alike).
                if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
                        or type(value).__name__ == "bool_":
                    raise ConfigError(f"{field.name} must be an integer, not {value!r}")
                object.__setattr__(self, field.name, int(value))
            if field.type in (str, "str") and not isinstance(value, str):
                raise ConfigError(f"{field.name} must be a string, not {value!r}")
        self.validate()

    def validate(self) -> None:
        """Check parameter ranges; raise :class:`ConfigError` naming the value. A subclass
        may bring a field to its canonical form here with :meth:`_canonical`."""

    def _canonical(self, name: str, value: Any) -> None:
        """Replace field ``name`` by its canonical form (in :meth:`validate` only)."""
        object.__setattr__(self, name, value)

    @property
    def ops_per_cycle(self) -> int:
        """:attr:`ops_unit` produced per clock cycle at full rate (throughput x Fmax gives
        the figure a design-space sweep plots against area)."""
        return 1

    @classmethod
    def params(cls) -> list[dataclasses.Field]:
        """The config's parameters, in declaration order."""
        return list(dataclasses.fields(cls))

    @property
    def tag(self) -> str:
        """A short, file-name-safe identifier of this parameter set (``n2_m4_rows1...``)."""
        text = "_".join(f"{f.name}{getattr(self, f.name)}" for f in dataclasses.fields(self))
        return re.sub(r"[^A-Za-z0-9_.-]", "-", text)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps({"block": self.block, **self.to_dict()}, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """The config of ``values`` (the keys ``block`` and ``provenance``, which a written
        config file also holds, are not parameters)."""
        values = {k: v for k, v in values.items() if k not in ("block", "provenance")}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.block} parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config JSON must be an object, not {type(values).__name__}")
        if values.get("block", cls.block) != cls.block:
            raise ConfigError(f"config is for block {values['block']!r}, not {cls.block!r}")
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)
