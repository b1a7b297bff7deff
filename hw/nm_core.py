"""The N:M structured-sparse tensor core.

One *row* computes one output of a matrix-vector product: per cycle it takes one
M-group of int8 activations (shared by all rows) and its own compressed N:M weight
group (N values and N log2(M)-bit indices), selects the N activations the indices name,
multiplies them with the N values and accumulates. A row therefore does M *effective*
MACs per cycle with N multipliers; ``rows`` rows work in parallel on ``rows`` outputs.

With ``n == m`` the same generator gives the dense baseline: the payload carries no
indices (slot j is element j) and there is no selection logic. A dense core runs any
N':M tensor given in dense form (``golden.nm.decompress``), at the same rate.

A sparse core built for N:M also runs any N':M with N' <= N (VEGETA-style): the
``n_active`` input disables slots ``j >= n_active`` (their weight values are ignored,
whatever the payload carries), so an N':M stream needs only N' meaningful slots.

Row packing (``config.packing``, off by default): when ``n_active = N'`` divides N
(N' < N), each physical row computes P = N/N' *logical* rows per beat, so an N':M layer
runs P times faster: logical row ``r * P + q`` of a block has its N' weights in row r's
slots ``q*N' .. q*N'+N'-1`` and its result in row r's accumulator q (output entry
``r * N + q``; :func:`spec.nm_core.logical_slot`, :func:`spec.nm_core.out_index`). Each
row then has N accumulators (entries a mode does not use read 0); every other
``n_active`` behaves as without packing. Each product goes to the accumulators it can
feed through its own copy of the product register, zeroed by the register's
synchronous reset when the beat's mode does not route it there, so packing costs
(N - 1) accumulators per row, the extra adders of accumulators 1.. and flip-flops, but
no multiplexers. Off, the core is exactly the plain one.

Datapath (``pipeline`` chooses which of the optional registers exist)::

    i.payload --> select --[R if pipeline>=2]--> multiply --[R if pipeline>=1]-->
              --> adder tree --[R if pipeline>=3]--> accumulate --[acc, out]--> o.payload

A dot product is the run of beats up to and including one with ``last`` set: its total
goes to the output register (``o.payload``) and the accumulator restarts from zero, so a
K-long dot product is K/M beats with ``last`` on the final one. ``o.valid`` rises
``latency`` cycles after the ``last`` beat was accepted, and the whole pipeline stalls
while a result waits on ``o`` (``i.ready = ~o.valid | o.ready``), so no result is ever
overwritten or dropped.

Area notes (iCE40): the multipliers are radix-4 Booth (:func:`hw.arith.booth_multiply`;
~110 LUT4 for 8 x 8 bits where Yosys's own ``$mul`` mapping takes ~176). The
accumulator restart (with the domain reset folded in) and the disabled-slot masking are
written as "register <- 0", so Yosys maps them onto the flip-flops' synchronous resets
(SB_DFFESR) instead of LUTs; the output register costs flip-flops, not LUTs. The adder
tree keeps its partial sums (:func:`hw.arith.tree_sum`). Per 2:4 row the 4:1 activation
muxes take 2 x 24 LUT4 (3 LUT4 per bit: a 2-LUT4-per-bit decomposition exists, but
ABC9 re-maps it to 3 even when the intermediate is a ``keep`` wire), the adder 17 and
the accumulator 32.

The config and the bit formats of the stream payloads are in :mod:`spec.nm_core`
(``NMCoreConfig``, ``beat_layout``, ``out_layout``); the compiler and the testbenches pack
words with them (:func:`spec.packing.pack`).
"""

from amaranth import Array, Cat, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spec import ConfigError
from spec.nm_core import NMCoreConfig, beat_layout, out_layout

from .arith import booth_multiply, tree_sum

__all__ = ["NMCore"]


class NMCore(wiring.Component):
    """N:M structured-sparse tensor core (see the module docstring for the datapath).

    Parameters
    ----------
    config : NMCoreConfig

    Members
    -------
    i : In(stream.Signature(beat_layout(config)))
        One M-group per transfer. Accepted whenever ``i.ready``, which is
        ``~o.valid | o.ready`` (ready does not depend on ``i.valid``).
    o : Out(stream.Signature(out_layout(config)))
        Row results of a dot product, valid ``config.latency`` cycles after its ``last``
        beat was accepted; held (and the pipeline stalled) until ``o.ready``.
    n_active : In(range(n + 1)), sparse cores only
        Number of active weight slots (runtime N' <= N); sampled with each accepted
        beat. Slots ``j >= n_active`` contribute nothing. 0 makes every product zero.
    """

    def __init__(self, config: NMCoreConfig):
        if not isinstance(config, NMCoreConfig):
            raise ConfigError(f"NMCore needs an NMCoreConfig, not {config!r}")
        self.config = config
        members = {
            "i": In(stream.Signature(beat_layout(config))),
            "o": Out(stream.Signature(out_layout(config))),
        }
        if config.sparse:
            members["n_active"] = In(range(config.n + 1), init=config.n)
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()

        # Every register advances together; nothing moves while a result waits on `o`.
        advance = self.i.ready
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        def stage(name, enabled, valid, values):
            """Register ``valid`` and ``values`` when ``enabled`` (advancing with ``advance``)."""
            if not enabled:
                return valid, values
            valid_q = Signal(name=f"{name}_valid")
            values_q = [Signal.like(v, name=f"{name}_{k}", reset_less=True)
                        for k, v in enumerate(values)]
            with m.If(advance):
                m.d.sync += valid_q.eq(valid)
                m.d.sync += [q.eq(v) for q, v in zip(values_q, values)]
            return valid_q, values_q

        beat = self.i.payload
        act = Array(beat.act[k] for k in range(cfg.m))
        registered_select = cfg.pipeline >= 2

        # Select: the activation each slot's index names. Slots j >= n_active get weight
        # 0: with a select register that is the register's synchronous reset (free on
        # iCE40), otherwise an AND gate. The N comparisons are shared by all rows.
        # With packing, a packed mode (n_active = d dividing n, d < n) enables every slot.
        modes = cfg.pack_modes
        if cfg.sparse:
            active = Signal(cfg.n, name="slot_active")
            packed_now = Signal(name="packed") if modes else 0
            if modes:
                m.d.comb += packed_now.eq(Cat(self.n_active == d for d in modes).any())
            m.d.comb += [active[j].eq((j < self.n_active) | packed_now) for j in range(cfg.n)]
        select_valid = Signal(name="sel_valid") if registered_select else self.i.valid
        select_last = Signal(name="sel_last") if registered_select else beat.last
        # One flag per packed mode, travelling with the beat to the product register.
        mode_next = [Signal(name=f"mode_{d}") for d in modes]
        m.d.comb += [flag.eq(self.n_active == d) for flag, d in zip(mode_next, modes)]
        select_mode = ([Signal(name=f"sel_mode_{d}") for d in modes] if registered_select
                       else mode_next)
        if registered_select:
            with m.If(advance):
                m.d.sync += [select_valid.eq(self.i.valid), select_last.eq(beat.last)]
                m.d.sync += [q.eq(v) for q, v in zip(select_mode, mode_next)]
        selected, weights = [], []
        for r in range(cfg.rows):
            group = beat.weights[r]
            for j in range(cfg.n):
                a = Signal(signed(cfg.width), name=f"sel_act_r{r}_s{j}", reset_less=True)
                w = Signal(signed(cfg.width), name=f"sel_w_r{r}_s{j}", reset_less=True)
                a_next = act[group.indices[j]] if cfg.sparse else beat.act[j]
                w_next = Mux(active[j], group.values[j], 0) if cfg.sparse else group.values[j]
                if registered_select:
                    with m.If(advance):
                        m.d.sync += [a.eq(a_next), w.eq(w_next)]
                else:
                    m.d.comb += [a.eq(a_next), w.eq(w_next)]
                selected.append(a)
                weights.append(w)

        # Multiply.
        products = []
        for k, (a, w) in enumerate(zip(selected, weights)):
            p = Signal(signed(2 * cfg.width), name=f"prod_r{k // cfg.n}_s{k % cfg.n}")
            m.d.comb += p.eq(booth_multiply(m, a, w, f"mul_r{k // cfg.n}_s{k % cfg.n}"))
            products.append(p)

        # Route products to accumulators. Accumulator q of a row sums, in packed mode d,
        # slots q*d .. q*d+d-1, and unpacked (q = 0 only) every slot. Each (slot,
        # accumulator) pair with a possible route gets its own copy of the product,
        # zeroed when the beat's mode does not route it: with a product register that
        # is again the register's synchronous reset. Without packing: one accumulator
        # per row, every product routed, no copies.
        unpacked = ~Cat(select_mode).any() if modes else 1
        routes = []   # per accumulator q: [(slot j, route condition or None)]
        for q in range(cfg.out_slots):
            pairs = []
            for j in range(cfg.n):
                conds = [flag for flag, d in zip(select_mode, modes) if j // d == q]
                if q == 0 and j == 0:
                    pairs.append((j, None))           # slot 0 always feeds accumulator 0
                elif q == 0:
                    pairs.append((j, Cat(unpacked, *conds).any() if modes else None))
                elif conds:
                    pairs.append((j, Cat(*conds).any()))
            routes.append(pairs)
        routed = []
        for r in range(cfg.rows):
            for q, pairs in enumerate(routes):
                for j, cond in pairs:
                    p = products[r * cfg.n + j]
                    if cond is None:
                        routed.append(p)
                        continue
                    c = Signal(signed(2 * cfg.width), name=f"route_r{r}_a{q}_s{j}")
                    m.d.comb += c.eq(Mux(cond, p, 0))
                    routed.append(c)
        valid, values = stage("mul", cfg.pipeline >= 1, select_valid, [select_last, *routed])
        last, routed = values[0], values[1:]

        # Sum each accumulator's products.
        sums, at = [], 0
        for r in range(cfg.rows):
            for q, pairs in enumerate(routes):
                terms = routed[at:at + len(pairs)]
                at += len(pairs)
                s = Signal(signed(2 * cfg.width + ceil_log2(len(pairs))), name=f"sum_r{r}_a{q}"
                           if cfg.packing else f"sum_r{r}")
                m.d.comb += s.eq(tree_sum(m, terms, f"tree_r{r}_a{q}" if cfg.packing else f"tree_r{r}"))
                sums.append(s)
        valid, values = stage("sum", cfg.pipeline >= 3, valid, [last, *sums])
        last, sums = values[0], values[1:]

        # Accumulate. On `last` the total goes to the output register and the accumulator
        # restarts from zero. The accumulator is reset_less with the domain reset folded
        # into its clear, so Yosys maps the whole clear onto the flip-flops' synchronous
        # reset (otherwise the reset takes that pin and the clear costs a LUT per bit).
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid & last)
        clear = Signal()
        m.d.comb += clear.eq(ResetSignal() | (advance & valid & last))
        for k in range(cfg.rows * cfg.out_slots):
            suffix = f"r{k // cfg.out_slots}_a{k % cfg.out_slots}" if cfg.packing else f"r{k}"
            acc = Signal(signed(cfg.acc_width), name=f"acc_{suffix}", reset_less=True)
            total = Signal(signed(cfg.acc_width), name=f"total_{suffix}")
            m.d.comb += total.eq(acc + sums[k])
            with m.If(clear):
                m.d.sync += acc.eq(0)
            with m.Elif(advance & valid):
                m.d.sync += acc.eq(total)
            with m.If(advance & valid & last):
                m.d.sync += self.o.payload[k].eq(total)
        return m
