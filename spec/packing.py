"""Packing values into the layouts of :mod:`spec`, with every field range-checked.

``layout.const(value).as_bits()`` (Amaranth) truncates what does not fit: 300 in a signed
8-bit field packs as 44, an index of m packs as 0, a float is floored. Every packer in
Tessera (the compiler, the assembler, the testbenches) therefore goes through
:func:`pack`, which checks each leaf against its field first and raises
:class:`spec.SpecError` naming the field path, the value and the range.

:func:`leaves` flattens a layout into its fields with their bit offsets (LSB first), which
the documentation tests compare against the bit positions the docs quote.
"""

import enum
import functools
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data

from .config import SpecError

__all__ = ["Leaf", "leaves", "check", "check_array", "pack", "unpack", "pack_rows", "unpack_rows"]


@dataclass(frozen=True)
class Leaf:
    """One scalar field of a layout: its path (``"weights[2].indices[1]"``), bit offset
    from the layout's LSB, width, and signedness (or the enum class of an enum field)."""

    path: str
    offset: int
    width: int
    signed: bool
    enum: type | None = None

    @property
    def range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1


def _is_enum(shape) -> bool:
    return isinstance(shape, type) and issubclass(shape, enum.Enum)


_LEAVES: dict = {}


def leaves(layout, prefix: str = "", offset: int = 0) -> list[Leaf]:
    """Every scalar field of ``layout`` in bit order (LSB first)."""
    if prefix or offset:
        return _leaves(layout, prefix, offset)
    key = id(layout)
    hit = _LEAVES.get(key)
    if hit is None or hit[0] is not layout:
        hit = _LEAVES[key] = (layout, _leaves(layout, "", 0))     # keeps the layout alive
    return hit[1]


def _leaves(layout, prefix: str, offset: int) -> list[Leaf]:
    if isinstance(layout, data.StructLayout):
        out = []
        for name, field in sorted(layout, key=lambda item: item[1].offset):
            out += _leaves(field.shape, f"{prefix}.{name}" if prefix else name, offset + field.offset)
        return out
    if isinstance(layout, data.ArrayLayout):
        size = Shape.cast(layout.elem_shape).width
        out = []
        for k in range(layout.length):
            out += _leaves(layout.elem_shape, f"{prefix}[{k}]", offset + k * size)
        return out
    if _is_enum(layout):
        shape = Shape.cast(layout)
        return [Leaf(prefix, offset, shape.width, shape.signed, layout)]
    if isinstance(layout, ShapeCastable) and not isinstance(layout, data.Layout):
        layout = Shape.cast(layout)
    if isinstance(layout, int):
        layout = Shape.cast(layout)
    if isinstance(layout, Shape):
        return [Leaf(prefix, offset, layout.width, layout.signed)]
    raise SpecError(f"cannot flatten field {prefix!r} of shape {layout!r}")


def _check_scalar(path: str, shape, value) -> None:
    if _is_enum(shape):
        if not isinstance(value, shape):
            try:
                shape(value)
            except ValueError:
                names = ", ".join(m.name for m in shape)
                raise SpecError(f"{path} = {value!r} is not one of {shape.__name__}'s values ({names})") from None
        return
    if not isinstance(value, numbers.Integral):
        raise SpecError(f"{path} = {value!r} is not an integer")
    shape = Shape.cast(shape)
    lo, hi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
              else (0, (1 << shape.width) - 1))
    if not lo <= int(value) <= hi:
        kind = "signed" if shape.signed else "unsigned"
        raise SpecError(f"{path} = {int(value)} does not fit {kind}({shape.width}) [{lo}, {hi}]")


def check(layout, value: Any, path: str = "value") -> None:
    """Raise :class:`SpecError` unless ``value`` fits ``layout`` exactly: a mapping with
    exactly the struct's fields, a sequence of the array's length, integers (or enum
    members) inside each scalar field's range."""
    if isinstance(layout, data.StructLayout):
        if not hasattr(value, "keys"):
            raise SpecError(f"{path} must be a mapping of fields, not {type(value).__name__}")
        names = [name for name, _ in layout]
        unknown = sorted(set(value.keys()) - set(names))
        missing = [name for name in names if name not in value]
        if unknown:
            raise SpecError(f"{path} has unknown field(s) {', '.join(unknown)}; fields: {', '.join(names)}")
        if missing:
            raise SpecError(f"{path} lacks field(s) {', '.join(missing)}")
        for name, field in layout:
            check(field.shape, value[name], f"{path}.{name}")
        return
    if isinstance(layout, data.ArrayLayout):
        try:
            length = len(value)
        except TypeError:
            raise SpecError(f"{path} must be a sequence of {layout.length}, not {value!r}") from None
        if length != layout.length:
            raise SpecError(f"{path} has {length} element(s), the layout {layout.length}")
        for k, item in enumerate(value):
            check(layout.elem_shape, item, f"{path}[{k}]")
        return
    _check_scalar(path, layout, value)


def check_array(name: str, values, shape) -> np.ndarray:
    """Vectorised :func:`check` for many values of one scalar field: ``values`` must be an
    integer array (floats, complex and objects are refused, not floored) whose elements
    fit ``shape`` (an Amaranth shape such as ``signed(8)``). Returns it as int64."""
    a = np.asarray(values)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise SpecError(f"{name} must be integers, not {a.dtype}")
    shape = Shape.cast(shape)
    lo, hi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
              else (0, (1 << shape.width) - 1))
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        where = np.argwhere((a < lo) | (a > hi))[0]
        bad = int(a[tuple(where)])
        kind = "signed" if shape.signed else "unsigned"
        raise SpecError(f"{name} value {bad} at {tuple(int(i) for i in where)} does not fit "
                        f"{kind}({shape.width}) [{lo}, {hi}]")
    return a


def pack(layout, value: Any, what: str = "value") -> int:
    """The bits of ``value`` in ``layout`` (an int, LSB = the layout's bit 0), after
    :func:`check`. ``what`` names the value in error messages.

    The bits are those of ``layout.const(value).as_bits()``, computed by a packer compiled
    once per layout (``layout.const`` costs about a millisecond per call, which testbenches
    streaming thousands of beats cannot afford); a value the compiled packer refuses goes
    through :func:`check`, which raises naming the field.
    """
    try:
        return _packer(layout)(value)
    except _Refused:
        pass
    except TypeError:       # an unhashable layout: no compiled packer
        pass
    check(layout, value, what)
    return _bits(layout, value)


def _bits(layout, value) -> int:
    """The bits of a checked ``value`` (the same as ``layout.const(value).as_bits()``)."""
    if isinstance(layout, data.StructLayout):
        out = 0
        for name, field in layout:
            out |= _bits(field.shape, value[name]) << field.offset
        return out
    if isinstance(layout, data.ArrayLayout):
        size = Shape.cast(layout.elem_shape).width
        out = 0
        for k, item in enumerate(value):
            out |= _bits(layout.elem_shape, item) << (k * size)
        return out
    if _is_enum(layout):
        member = value if isinstance(value, layout) else layout(value)
        width = Shape.cast(layout).width
        return int(member.value) & ((1 << width) - 1)
    width = Shape.cast(layout).width
    return int(value) & ((1 << width) - 1)


class _Refused(Exception):
    """The compiled packer met something it does not take; :func:`check` decides."""


@functools.lru_cache(maxsize=512)
def _packer(layout):
    """``value -> bits`` for ``layout``; raises :class:`_Refused` unless every field is
    present and every leaf an integer (or enum member) inside its range."""
    if isinstance(layout, data.StructLayout):
        fields = [(name, field.offset, _packer(field.shape)) for name, field in layout]
        count = len(fields)

        def pack_struct(value):
            if not hasattr(value, "keys"):
                raise _Refused
            try:
                if len(value) != count:
                    raise _Refused
                bits = 0
                for name, offset, sub in fields:
                    bits |= sub(value[name]) << offset
                return bits
            except (KeyError, TypeError, IndexError):
                raise _Refused from None
        return pack_struct
    if isinstance(layout, data.ArrayLayout):
        sub, length = _packer(layout.elem_shape), layout.length
        stride = Shape.cast(layout.elem_shape).width

        def pack_array(value):
            if isinstance(value, (str, bytes)) or hasattr(value, "keys"):
                raise _Refused
            try:
                if len(value) != length:
                    raise _Refused
            except TypeError:
                raise _Refused from None
            bits, offset = 0, 0
            for item in value:
                bits |= sub(item) << offset
                offset += stride
            return bits
        return pack_array
    if _is_enum(layout):
        mask = (1 << Shape.cast(layout).width) - 1

        def pack_enum(value):
            try:
                member = value if isinstance(value, layout) else layout(value)
            except ValueError:
                raise _Refused from None
            if type(member.value) is not int:
                raise _Refused
            return member.value & mask
        return pack_enum
    if not isinstance(layout, (int, Shape)) or isinstance(layout, bool):
        def refuse(value):      # unions, flexible layouts: the general path packs them
            raise _Refused
        return refuse
    shape = Shape.cast(layout)
    mask = (1 << shape.width) - 1
    lo, hi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
              else (0, mask))
    integral = numbers.Integral

    def pack_scalar(value):
        if type(value) is not int and not isinstance(value, integral):
            raise _Refused
        value = int(value)
        if not lo <= value <= hi:
            raise _Refused
        return value & mask
    return pack_scalar


def _plain(value):
    """numpy scalars -> Python ints, recursively (Amaranth's const wants plain ints)."""
    if hasattr(value, "keys"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return [_plain(v) for v in value]


def unpack(layout, bits: int):
    """A read-only view of ``bits`` in ``layout`` (``layout.from_bits``): fields by
    attribute (``word.act[3]``), signed fields sign-extended."""
    if not isinstance(bits, numbers.Integral) or bits < 0 or bits >> Shape.cast(layout).width:
        raise SpecError(f"{bits!r} is not a {Shape.cast(layout).width}-bit word")
    return layout.from_bits(int(bits))


def unpack_rows(layout, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Decode many words at once: ``rows`` is a uint8 array ``[N, bytes]`` (each row a
    little-endian word of at least ``layout.size`` bits); returns ``{leaf path: int64[N]}``
    (signed fields sign-extended). The vectorised twin of :func:`unpack`."""
    rows = np.asarray(rows, dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] * 8 < Shape.cast(layout).width:
        raise SpecError(f"rows must be [N, >= {-(-Shape.cast(layout).width // 8)} bytes], not {rows.shape}")
    bits = np.unpackbits(rows, axis=1, bitorder="little").astype(np.int64)
    out = {}
    for leaf in leaves(layout):
        weights = np.left_shift(np.int64(1), np.arange(leaf.width, dtype=np.int64))
        if leaf.width == 64:
            raise SpecError(f"field {leaf.path} is 64 bits wide: unpack it with unpack()")
        value = bits[:, leaf.offset:leaf.offset + leaf.width] @ weights
        if leaf.signed:
            value = np.where(value >> (leaf.width - 1) == 1, value - (1 << leaf.width), value)
        out[leaf.path] = value
    return out


def pack_rows(layout, fields: dict[str, np.ndarray], nbytes: int) -> np.ndarray:
    """Encode many words at once into a uint8 array ``[N, nbytes]`` (little-endian):
    ``fields`` maps every leaf path of ``layout`` to an int array ``[N]``, each checked
    against its field (:func:`check_array`). The vectorised twin of :func:`pack`."""
    all_leaves = leaves(layout)
    if nbytes * 8 < Shape.cast(layout).width:
        raise SpecError(f"{nbytes} bytes cannot hold a {Shape.cast(layout).width}-bit word")
    paths = {leaf.path for leaf in all_leaves}
    unknown, missing = sorted(set(fields) - paths), sorted(paths - set(fields))
    if unknown or missing:
        raise SpecError(f"pack_rows: unknown fields {unknown}, missing fields {missing}")
    count = {np.asarray(v).reshape(-1).shape[0] for v in fields.values()}
    if len(count) > 1:
        raise SpecError(f"pack_rows: fields have different lengths {sorted(count)}")
    n = count.pop() if count else 0
    bits = np.zeros((n, nbytes * 8), dtype=np.uint8)
    for leaf in all_leaves:
        shape = (Shape(leaf.width, leaf.signed) if leaf.enum is None else Shape.cast(leaf.enum))
        value = check_array(leaf.path, np.asarray(fields[leaf.path]).reshape(-1), shape)
        value = value & ((1 << leaf.width) - 1)
        for b in range(leaf.width):
            bits[:, leaf.offset + b] = (value >> b) & 1
    return np.packbits(bits, axis=1, bitorder="little")
