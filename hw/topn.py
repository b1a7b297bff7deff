"""The activation top-N unit: dense int8 M-groups in, TASD N:M terms out, at line rate.

It turns a dense activation stream into the compressed groups the N:M tensor core takes
on its weight port, so activations can be decomposed at run time (TASD/TASDER). For a
series ``n0:m + n1:m + ...`` each group goes through one stage per term::

    keep   = the n_t largest magnitudes of the residual (ties: lower index)
    term_t = the kept values and their positions, in ascending position order
    residual <- residual with the kept positions zeroed

which is exactly ``golden.tasd.decompose`` on integers (and ``golden.nm.compress`` of
``golden.nm.prune``): when fewer than n_t elements are non-zero, the spare slots hold
value 0 at the lowest free positions, because a zero's magnitude ties with the other
zeros and ties go to the lower index.

Ranking: element j is kept when fewer than n_t elements *beat* it, where i beats j if
``|r_i| > |r_j|``, or ``|r_i| == |r_j|`` and ``i < j``: m(m-1)/2 magnitude comparators
per term, shared by the "beats" relation in both directions. Magnitudes are unsigned
``width`` bits, so ``|-128| = 128`` needs no extra bit.

One group per cycle in steady state; latency = number of terms (one register per term,
the last one being the output register). The whole pipeline stalls while ``o`` is held.

The config and the payload layouts are in :mod:`spec.topn`; every term has the tensor
core's group layout (:func:`spec.nm_core.group_layout`), so a ``4:4`` term carries no
indices, exactly like a 4:4 core's weight group.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec import ConfigError
from spec.topn import TopNConfig, topn_in_layout, topn_out_layout, topn_term_layout

__all__ = ["TopN"]


class TopN(wiring.Component):
    """Activation top-N unit (see the module docstring).

    Members
    -------
    i : In(stream.Signature(topn_in_layout(config)))
        Dense M-groups; accepted whenever ``i.ready`` (``~o.valid | o.ready``).
    o : Out(stream.Signature(topn_out_layout(config)))
        The group's terms, ``config.latency`` cycles after it was accepted; held (and the
        unit stalled) until ``o.ready``.
    """

    def __init__(self, config: TopNConfig):
        if not isinstance(config, TopNConfig):
            raise ConfigError(f"TopN needs a TopNConfig, not {config!r}")
        self.config = config
        super().__init__({
            "i": In(stream.Signature(topn_in_layout(config))),
            "o": Out(stream.Signature(topn_out_layout(config))),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        advance = self.i.ready
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        mw = cfg.m
        residual = [self.i.payload.act[k] for k in range(mw)]
        valid, last = self.i.valid, self.i.payload.last
        done = []                                   # registered terms of earlier stages
        for t, (n, _) in enumerate(cfg.terms):
            values, indices, residual_next = self._term(m, t, n, residual)
            final = t == len(cfg.terms) - 1
            if final:
                q_valid, q_last = self.o.valid, self.o.payload.last
                q_terms = [self.o.payload.terms[f"t{u}"] for u in range(t + 1)]
            else:
                q_valid = Signal(name=f"s{t}_valid")
                q_last = Signal(name=f"s{t}_last", reset_less=True)
                q_terms = [Signal(topn_term_layout(cfg, u), name=f"s{t}_t{u}", reset_less=True)
                           for u in range(t + 1)]
            with m.If(advance):
                m.d.sync += [q_valid.eq(valid), q_last.eq(last)]
                for u, earlier in enumerate(done):
                    m.d.sync += q_terms[u].eq(earlier)
                m.d.sync += [q_terms[t].values[j].eq(values[j]) for j in range(n)]
                if n < cfg.m:       # a dense term (n_t = m) has no indices: slot j is element j
                    m.d.sync += [q_terms[t].indices[j].eq(indices[j]) for j in range(n)]
            if not final:
                q_residual = [Signal(signed(cfg.width), name=f"s{t}_r{k}", reset_less=True)
                              for k in range(mw)]
                with m.If(advance):
                    m.d.sync += [q.eq(r) for q, r in zip(q_residual, residual_next)]
                residual = q_residual
            valid, last, done = q_valid, q_last, q_terms
        return m

    def _term(self, m, t, n, residual):
        """Combinational logic of one term: (values[n], indices[n], next residual[m])."""
        cfg = self.config
        mw = cfg.m
        mag = []
        for k, r in enumerate(residual):
            a = Signal(unsigned(cfg.width), name=f"t{t}_mag{k}")
            m.d.comb += a.eq(abs(r))
            mag.append(a)
        # beats[i][j]: element i ranks ahead of element j.
        beats = [[None] * mw for _ in range(mw)]
        for i in range(mw):
            for j in range(i + 1, mw):
                ge = Signal(name=f"t{t}_ge{i}_{j}")
                m.d.comb += ge.eq(mag[i] >= mag[j])
                beats[i][j], beats[j][i] = ge, ~ge
        keep = Signal(mw, name=f"t{t}_keep")
        for j in range(mw):
            count = Signal(range(mw), name=f"t{t}_rank{j}")
            m.d.comb += count.eq(sum(beats[i][j] for i in range(mw) if i != j))
            m.d.comb += keep[j].eq(count < n)
        # Slot s takes the s-th kept position in ascending order.
        values = [Signal(signed(cfg.width), name=f"t{t}_v{s}") for s in range(n)]
        indices = [Signal(range(mw), name=f"t{t}_i{s}") for s in range(n)]
        for j in range(mw):
            before = Signal(range(mw + 1), name=f"t{t}_before{j}")
            m.d.comb += before.eq(sum(keep[b] for b in range(j)) if j else 0)
            for s in range(n):
                if s <= j:
                    with m.If(keep[j] & (before == s)):
                        m.d.comb += [values[s].eq(residual[j]), indices[s].eq(j)]
        residual_next = [Signal(signed(cfg.width), name=f"t{t}_res{k}") for k in range(mw)]
        for k in range(mw):
            m.d.comb += residual_next[k].eq(residual[k] & ~keep[k].replicate(cfg.width))
        return values, indices, residual_next
