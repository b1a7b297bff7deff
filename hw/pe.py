"""What the dot-product processing elements (``lp-pe``, ``int8-pe``, ``fp8-pe``) share:
their pipeline skeleton (their stream formats are :mod:`spec.pe`).

A PE has ``lanes`` lanes. Each input beat carries one weight code and one activation
code per lane; the PE forms the ``lanes`` products, sums them and accumulates. A dot
product is the run of beats up to and including one with ``last`` set: its total goes
out on ``o`` and the accumulator restarts from zero. The PEs differ only in how a
lane's product is formed (``DotProductPE._products``).

Pipeline (every register advances together, with ``advance = ~o.valid | o.ready``)::

    i.payload --> product stages (subclass, product_stages registers) -->
              --> lane adder tree --[R]--> accumulate --[acc, out]--> o.payload

so the latency from accepting a ``last`` beat to ``o.valid`` is ``product_stages + 2``.
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.pe import pe_beat_layout, pe_out_layout

from .arith import tree_sum

__all__ = ["DotProductPE", "shift_floor"]


def shift_floor(m: Module, value, amount, out_width: int, name: str):
    """``floor(value * 2^amount)`` modulo ``2^out_width`` for an unsigned ``value`` and a
    signed ``amount`` (a barrel shifter); 0 when every bit of the result is shifted out."""
    vw = len(value)
    lo, hi = -vw, out_width - 1                    # amounts that keep some bit
    index = Signal(range(hi - lo + 1), name=f"{name}_index")
    inside = Signal(name=f"{name}_inside")
    m.d.comb += [
        inside.eq((amount >= lo) & (amount <= hi)),
        index.eq(amount - lo),
    ]
    wide = Signal(vw + hi - lo + 1 + vw, name=f"{name}_wide")
    m.d.comb += wide.eq(value << index)
    out = Signal(out_width, name=name)
    m.d.comb += out.eq(Mux(inside, wide[vw:vw + out_width], 0))
    return out


class DotProductPE(wiring.Component):
    """Base of the dot-product PEs (see the module docstring).

    Subclasses implement :meth:`_products`, and may add ports in ``extra_members``. The
    config must have ``lanes``, ``width``, ``acc_width`` and ``product_stages`` (the
    register stages :meth:`_products` puts on the path).

    Members
    -------
    i : In(stream.Signature(pe_beat_layout(lanes, width)))
        One beat per transfer; ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(pe_out_layout(acc_width)))
        A dot product's result, valid ``latency`` cycles after its ``last`` beat was
        accepted; held (and the pipeline stalled) until ``o.ready``.
    """

    def __init__(self, config, extra_members=None):
        self.config = config
        self.product_stages = config.product_stages
        super().__init__({
            "i": In(stream.Signature(pe_beat_layout(config.lanes, config.width))),
            "o": Out(stream.Signature(pe_out_layout(config.acc_width))),
            **(extra_members or {}),
        })

    def _products(self, m: Module, reg):
        """Return ``(products, nar)`` after exactly ``product_stages`` calls of ``reg``
        on the path: ``products`` one signed value per lane (at most ``acc_width`` bits
        are used), ``nar`` one bit (any lane had a NaR/NaN operand).

        ``reg(name, value)`` returns a register holding ``value``, updated on ``advance``.
        """
        raise NotImplementedError

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        advance = self.i.ready
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        def reg(name, value):
            q = Signal.like(value, name=name, reset_less=True) if isinstance(value, Signal) \
                else Signal(value.shape(), name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += q.eq(value)
            return q

        valid, last = self.i.valid, self.i.payload.last
        for s in range(self.product_stages):
            valid_q = Signal(name=f"p{s}_valid")
            with m.If(advance):
                m.d.sync += valid_q.eq(valid)
            valid, last = valid_q, reg(f"p{s}_last", last)
        products, nar = self._products(m, reg)

        tree = tree_sum(m, products, "tree", max_width=cfg.acc_width)
        total = Signal(signed(min(len(tree), cfg.acc_width)), name="lane_sum")
        m.d.comb += total.eq(tree)
        sum_valid = Signal(name="sum_valid")
        with m.If(advance):
            m.d.sync += sum_valid.eq(valid)
        sum_q, last_q, nar_q = reg("sum", total), reg("sum_last", last), reg("sum_nar", nar)

        acc = Signal(signed(cfg.acc_width), name="acc")
        acc_nar = Signal(name="acc_nar")
        new = Signal(signed(cfg.acc_width), name="acc_next")
        new_nar = Signal(name="acc_nar_next")
        m.d.comb += [new.eq(acc + sum_q), new_nar.eq(acc_nar | nar_q)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(sum_valid & last_q)
            with m.If(sum_valid):
                m.d.sync += [acc.eq(Mux(last_q, 0, new)), acc_nar.eq(Mux(last_q, 0, new_nar))]
                with m.If(last_q):
                    m.d.sync += [self.o.payload.acc.eq(new), self.o.payload.nar.eq(new_nar)]
        return m
