"""Arithmetic building blocks shared by the generators."""

from amaranth import C, Cat, Mux, Signal, signed

__all__ = ["tree_sum", "booth_recode", "booth_product", "booth_multiply"]


def tree_sum(m, values, name: str, *, max_width: int | None = None, root_shape=None, carries=None):
    """Balanced tree of two-input adders (log2 depth) over ``values``; returns the root.

    Each partial sum is a ``keep`` signal named ``{name}_l{level}_{k}``: otherwise Yosys
    merges the whole tree into one multi-operand adder and maps it to carry-save full
    adders, which on iCE40 cost ~1.5x the LUT4s of a tree of carry-chain adders (81 vs 52
    for four 16-bit inputs). ``max_width`` caps every node (signed; sums wrap, as an
    accumulator of that width does); ``root_shape`` sets the root's shape (the caller
    makes it wide enough for the exact sum). ``carries``, a list of 1-bit values, are
    added one per adder as its carry-in (free on a carry chain: ``a + b + c`` maps to one
    chain); those left over (more carries than adders) stay in the list for the caller.
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
            if carries:
                total = total + carries.pop(0)
            if root_shape is not None and len(values) == 2:
                shape = root_shape
            elif max_width is not None and shape.width > max_width:
                shape = signed(max_width)
            node = Signal(shape, name=f"{name}_l{level}_{k // 2}", attrs={"keep": 1})
            m.d.comb += node.eq(total)
            pairs.append(node)
        values, level = pairs, level + 1
    return values[0]


def booth_recode(m, b, name: str) -> list:
    """Radix-4 Booth digits of a signed value ``b`` (even width): per digit ``i`` the bits
    ``(neg, one, two)`` of ``d_i = -2 b[2i+1] + b[2i] + b[2i-1]`` (``b[-1] = 0``), so
    ``b = sum d_i 4^i``, ``|d_i| = one + 2 two`` and ``neg`` is its sign (set for
    ``d_i = -0``, which :func:`booth_product` handles). Returns a list of
    ``Cat(neg, one, two)`` values, one per digit."""
    width = len(b)
    if width % 2:
        raise ValueError(f"booth_recode needs an even width, not {width}")
    digits = []
    for i in range(width // 2):
        lo = b[2 * i - 1] if i else 0
        mid, hi = b[2 * i], b[2 * i + 1]
        d = Signal(3, name=f"{name}_d{i}")
        m.d.comb += d.eq(Cat(hi, mid ^ lo, (hi & ~mid & ~lo) | (~hi & mid & lo)))
        digits.append(d)
    return digits


def booth_product(m, a, digits, name: str, width: int):
    """``a * b`` (signed, wrapped to ``width`` bits) from ``b``'s Booth digits
    (:func:`booth_recode`): one partial product ``(|d_i| a) XOR neg_i`` per digit, shifted
    by ``2i``, and one word carrying every ``neg_i`` at bit ``2i`` (the +1 that completes
    each negation), summed in a tree of carry-chain adders (:func:`tree_sum`)."""
    a = a.as_signed()
    terms, carries = [], []
    for i, d in enumerate(digits):
        neg, one, two = d[0], d[1], d[2]
        sel = Signal(signed(len(a) + 2), name=f"{name}_sel{i}")
        m.d.comb += sel.eq(Mux(two, a << 1, Mux(one, a, 0)))
        pp = Signal(signed(len(a) + 2), name=f"{name}_pp{i}")
        m.d.comb += pp.eq(sel ^ Mux(neg, -1, 0))
        terms.append(pp << (2 * i))
        carries += [neg, C(0, 1)]
    terms.append(Cat(*carries[:-1]).as_unsigned())
    return tree_sum(m, terms, name, max_width=width)


def booth_multiply(m, a, b, name: str):
    """``a * b`` exactly, for a signed ``a`` and an unsigned or signed ``b``: ``b``
    (zero- or sign-extended to an even signed width) through :func:`booth_recode` and
    :func:`booth_product`; returns a ``signed(len(a) + len(b))`` signal. Combinational.
    An unsigned ``b`` takes ``len(b) // 2 + 1`` digits, a signed one ``ceil(len(b) / 2)``.

    Yosys maps ``a * b`` through carry-save full adders (~1.5x the LUT4s of carry-chain
    adders on iCE40, see :func:`tree_sum`); this is about 60 % of them for 32 x 16 bits
    (818 LUT4 + 288 carry against 1411 LUT4 + 43 carry, the accelerator's POST stage).
    """
    width = len(a) + len(b)
    if b.shape().signed:
        b_signed = Cat(b, b[-1]).as_signed() if len(b) % 2 else b
    else:
        pad = 2 - len(b) % 2                  # at least one 0 above b: it stays non-negative
        b_signed = Cat(b, C(0, pad)).as_signed()
    product = Signal(signed(width), name=f"{name}_p")
    m.d.comb += product.eq(booth_product(m, a, booth_recode(m, b_signed, f"{name}_b"), name, width))
    return product
