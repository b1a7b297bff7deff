"""hw.arith.booth_multiply is an exact signed x unsigned product (Amaranth simulation).

Exhaustive on small widths (every digit pattern and both sign cases of ``a``), and on the
accelerator POST stage's 32 x 16 width at the extremes plus random operands.
"""

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal, signed
from amaranth.sim import Simulator

from hw.arith import booth_multiply


class _Product(Elaboratable):
    def __init__(self, a_width, b_width, b_signed=False):
        self.a, self.b = Signal(signed(a_width)), Signal(signed(b_width) if b_signed else b_width)
        self.m = Module()
        self.p = booth_multiply(self.m, self.a, self.b, "bm")

    def elaborate(self, platform):
        return self.m


def _mismatches(a_width, b_width, cases, b_signed=False):
    dut = _Product(a_width, b_width, b_signed)
    bad = []

    async def bench(ctx):
        for x, y in cases:
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            if ctx.get(dut.p) != x * y:
                bad.append((x, y, ctx.get(dut.p)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert len(dut.p) == a_width + b_width
    return bad


@pytest.mark.parametrize("a_width,b_width", [(5, 4), (6, 3), (4, 6), (3, 1)])
def test_booth_exhaustive_small(a_width, b_width):
    cases = [(x, y) for x in range(-(1 << a_width - 1), 1 << a_width - 1) for y in range(1 << b_width)]
    assert _mismatches(a_width, b_width, cases) == []


def test_booth_32x16_extremes_and_random():
    rng = np.random.default_rng(7)
    lo, hi, top = -(1 << 31), (1 << 31) - 1, (1 << 16) - 1
    cases = [(a, b) for a in (lo, hi, -1, 0, 1) for b in (0, 1, top, 0x8000, 0x5555, 0xAAAA)]
    cases += [(int(rng.integers(lo, hi, endpoint=True)), int(rng.integers(0, top, endpoint=True)))
              for _ in range(600)]
    assert _mismatches(32, 16, cases) == []


@pytest.mark.parametrize("a_width,b_width", [(5, 4), (4, 5), (6, 6), (3, 1)])
def test_booth_signed_b_exhaustive(a_width, b_width):
    """Signed x signed: every operand pair (every digit pattern, both signs of b)."""
    cases = [(x, y) for x in range(-(1 << a_width - 1), 1 << a_width - 1)
             for y in range(-(1 << b_width - 1), 1 << b_width - 1)]
    assert _mismatches(a_width, b_width, cases, b_signed=True) == []


def test_booth_signed_8x8_extremes_and_random():
    """The N:M core's int8 x int8 products: extremes and random pairs."""
    rng = np.random.default_rng(8)
    edge = (-128, -127, -1, 0, 1, 127, 0x55, -0x56)
    cases = [(a, b) for a in edge for b in edge]
    cases += [(int(a), int(b)) for a, b in rng.integers(-128, 128, (1500, 2))]
    assert _mismatches(8, 8, cases, b_signed=True) == []
