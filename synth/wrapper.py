"""An I/O wrapper that lets a block with hundreds of ports be placed on a small package.

Place-and-route needs a pin for every top-level port; an 8-row core has over 400. The
wrapper drives every input of the block from one serial-in shift chain and folds every
output into one pin through a registered XOR tree (four bits per LUT4 per level), so
the design uses three pins (clk, rst, sin -> sout) whatever the block. Every block
output still reaches a pin, so Yosys removes nothing, and every wrapper path is one
LUT deep, so the block's own paths set Fmax. Used only for Fmax: the block's area is
taken from a synthesis run of the block alone.
"""

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PinWrapper"]


class PinWrapper(wiring.Component):
    """Wrap ``inner`` behind a serial input pin and a one-bit XOR-folded output pin.

    Members
    -------
    sin : In(1)
        Serial input; shifted into the chain that drives all of ``inner``'s inputs.
    sout : Out(1)
        XOR of all of ``inner``'s outputs, ``ceil(log4(bits))`` cycles later.
    """

    sin: In(1)
    sout: Out(1)

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        inputs, outputs = [], []
        for _path, member, value in inner.signature.flatten(inner):
            (inputs if member.flow == In else outputs).append(Value.cast(value))

        width = sum(len(v) for v in inputs)
        if width:
            chain = Signal(width)
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) if width > 1 else self.sin)
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)

        bits = list(Cat(*outputs)) if outputs else [self.sin]
        level = 0
        while len(bits) > 1:
            folded = []
            for k in range(0, len(bits), 4):
                q = Signal(name=f"fold_l{level}_{k // 4}")
                m.d.sync += q.eq(Cat(*bits[k:k + 4]).xor())
                folded.append(q)
            bits, level = folded, level + 1
        m.d.comb += self.sout.eq(bits[0])
        return m
