"""Arithmetic building blocks shared by the generators."""

from amaranth import Cat, Const, Signal, signed

__all__ = ["booth_multiply", "tree_sum"]


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


def booth_multiply(m, a, b, name: str):
    """``a * b`` exactly, for a signed ``a`` and an unsigned or signed ``b``, as radix-4 Booth
    partial products summed by :func:`tree_sum`; returns a ``signed(len(a) + len(b))``
    signal. Combinational (wrap it in registers as the pipeline needs).

    Yosys maps ``a * b`` through carry-save full adders (~1.5x the LUT4s of carry-chain
    adders on iCE40, see :func:`tree_sum`); this is about half of that for 32 x 16 bits:
    ``ceil((len(b) + 1) / 2)`` partial products (``ceil(len(b) / 2)`` for a signed ``b``,
    whose sign bit is the top digit's high bit) of ``len(a) + 1`` bits (each bit
    ``b2 ^ (one & a[i] | two & a[i-1])`` of the digit's Booth bits), the negations' +1s
    in one more row, and a tree of ``rows`` carry-chain adders.
    """
    width = len(a) + len(b)
    if b.shape().signed:                        # b's sign bit is the top digit's high bit
        digits = (len(b) + 1) // 2
        bits = [0] + [b[k] for k in range(len(b))] + [b[-1]] * (2 * digits - len(b))
    else:
        digits = (len(b) + 2) // 2              # b is unsigned: one 0 bit above it
        bits = [0] + [b[k] for k in range(len(b))] + [0] * (2 * digits + 1 - len(b))
    rows, corrections = [], []
    a_ext = [a[k] for k in range(len(a))] + [a[-1]]          # a, sign-extended by one bit
    for d in range(digits):
        low, mid, high = bits[2 * d], bits[2 * d + 1], bits[2 * d + 2]
        one, two, neg = (Signal(name=f"{name}_d{d}_{x}") for x in ("one", "two", "neg"))
        m.d.comb += [one.eq(mid ^ low), two.eq((high & ~mid & ~low) | (~high & mid & low)), neg.eq(high)]
        row = Signal(signed(len(a) + 1), name=f"{name}_pp{d}")
        m.d.comb += row.eq(Cat(*[neg ^ ((one & a_ext[i]) | (two & (a_ext[i - 1] if i else 0)))
                                 for i in range(len(a) + 1)]))
        rows.append(row.as_signed() << (2 * d) if d else row)
        corrections.append((neg, 2 * d))
    fix = Signal(2 * digits, name=f"{name}_neg")
    m.d.comb += fix.eq(Cat(*[bit for neg, _ in corrections for bit in (neg, Const(0, 1))]))
    product = Signal(signed(width), name=f"{name}_p")
    m.d.comb += product.eq(tree_sum(m, rows + [fix], f"{name}_sum", max_width=width + 1))
    return product
