"""Arithmetic building blocks shared by the generators."""

from amaranth import Cat, Mux, Signal, signed
from amaranth.utils import exact_log2

__all__ = ["tree_sum", "mux_pow2"]


def mux_pow2(m, options, sel, name: str):
    """``options[sel]`` for a power-of-two number of same-shape ``options``, built so a
    LUT4 mapper needs 2 LUT4 per bit for 4 options (ABC's own choice is 3), 5 for 8, 10
    for 16.

    The 4:1 step per bit: ``t = s1 ? s0 : (s0 ? a1 : a0)`` (a ``keep`` signal, so it is one
    LUT4 output), then ``s1 ? (t ? a3 : a2) : t`` (when ``s1`` is set, ``t`` is ``s0``).
    An odd number of select bits splits on the top bit first. Combinational; the result
    is a ``{name}`` signal of the options' shape.
    """
    options = list(options)
    k = exact_log2(len(options))
    shape = options[0].shape()
    if k == 0:
        return options[0]
    if k == 1:
        return Mux(sel[0], options[1], options[0])
    if k % 2:
        half = len(options) // 2
        lo = mux_pow2(m, options[:half], sel[:k - 1], f"{name}_lo")
        hi = mux_pow2(m, options[half:], sel[:k - 1], f"{name}_hi")
        out = Signal(shape, name=name)
        m.d.comb += out.eq(Mux(sel[k - 1], hi, lo))
        return out
    quarter = len(options) // 4
    a = [mux_pow2(m, options[i * quarter:(i + 1) * quarter], sel[:k - 2], f"{name}_q{i}")
         for i in range(4)]
    s0, s1 = sel[k - 2], sel[k - 1]
    width = shape.width
    t = Signal(width, name=f"{name}_t", attrs={"keep": 1})
    out = Signal(shape, name=name)
    m.d.comb += t.eq(Cat(Mux(s1, s0, Mux(s0, a[1][b], a[0][b])) for b in range(width)))
    m.d.comb += out.eq(Cat(Mux(s1, Mux(t[b], a[3][b], a[2][b]), t[b]) for b in range(width)))
    return out


def tree_sum(m, values, name: str, *, max_width: int | None = None, root_shape=None):
    """Balanced tree of two-input adders (log2 depth) over ``values``; returns the root.

    Each partial sum is a ``keep`` signal named ``{name}_l{level}_{k}``: otherwise Yosys
    merges the whole tree into one multi-operand adder and maps it to carry-save full
    adders, which on iCE40 cost ~1.5x the LUT4s of a tree of carry-chain adders (81 vs 52
    for four 16-bit inputs). ``max_width`` caps every node (signed; sums wrap, as an
    accumulator of that width does); ``root_shape`` sets the root's shape (the caller
    makes it wide enough for the exact sum).
    """
    values = list(values)
    level = 0
    while len(values) > 1:
        pairs = []
        for k in range(0, len(values), 2):
            if k + 1 == len(values):
                pairs.append(values[k])
                continue
            total = values[k] + values[k + 1]
            shape = total.shape()
            if root_shape is not None and len(values) == 2:
                shape = root_shape
            elif max_width is not None and shape.width > max_width:
                shape = signed(max_width)
            node = Signal(shape, name=f"{name}_l{level}_{k // 2}", attrs={"keep": 1})
            m.d.comb += node.eq(total)
            pairs.append(node)
        values, level = pairs, level + 1
    return values[0]
