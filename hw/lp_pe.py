"""The logarithmic-posit (LP) processing element: a ``lanes``-wide dot-product unit on
LP<n, es, rs> codes (format: ``golden/lp.py``; arithmetic: ``golden.lp.fixed_dot``).

Operands: LP x LP
-----------------
Both the weight and the activation are LP codes of the same ``(n, es, rs)``. The
alternative, an LP weight times an int8 activation, needs either a real multiplier
(``2^f`` of the weight times the integer), which is the very cost LP removes, or an
int8-to-log converter (a priority encoder and a log table per lane) to bring the
activation into the log domain. With both operands in LP a product is one fixed-point
add of two logs and an XOR of the signs, which is the point of the format; LPQ
quantizes activations with the layer's (n, es, rs) and its own scale, so this costs
no flexibility. The two scales combine into the one runtime input ``sf = sf_w + sf_a``.

Datapath (``product_stages = 3``, latency 5)::

    decode w, a (lanes x 2) --[R: sign, zero, NaR, log T, sf]-->
    P = T_w + T_a - sf * 2^F; mant = exp2 table[P mod 2^F]; sh = (P >> F) + acc_frac - tb
                            --[R: mant, sh, sign, kill]-->
    mag = floor(mant * 2^sh) mod 2^prod_width (barrel shift, truncating), +/- --[R: product]-->
    lane adder tree --[R]--> accumulate (acc_width bits, wraps) --[o.payload]

Decode of an n-bit code ``c`` (no table: logic): sign = top bit; magnitude word =
``-c`` when negative; the regime run of the body is a priority encoder on ``body XOR
(its top bit)``, capped at ``rs``; the body shifted left by the regime length
(run + a terminator unless the run is ``rs`` long) leaves the exponent and then the
fraction at fixed positions; ``T = Cat(frac, e, k)`` is then just wiring, since
``k * 2^es + e`` with ``0 <= e < 2^es`` is a concatenation.

The 2^frac table has ``2^F`` entries of ``table_bits + 1`` bits:
``round(2^(j/2^F) * 2^table_bits)`` (:func:`spec.numerics.lp_exp2_table`), so the linear product
carries ``table_bits`` fraction bits before the shift (relative error <= 2^-(tb+1)).

NaR operands give a zero product and set the output's ``nar`` flag; zero operands give
zero. ``sf`` is sampled with every accepted beat (it travels down the pipeline with the
beat), so it may change between layers without draining the PE.
"""

from amaranth import Array, C, Cat, Const, Mux, Signal, signed
from amaranth.lib.wiring import In
from amaranth.utils import bits_for

from spec import ConfigError
from spec.lp_pe import LPPEConfig
from spec.numerics import lp_exp2_table

from .pe import DotProductPE, shift_floor

__all__ = ["LPPE", "lp_decode"]


def lp_decode(m, cfg: LPPEConfig, code, name: str):
    """Decode logic of an n-bit LP ``code`` (see the module docstring) added to ``m``:
    returns ``(sign, zero, nar, T)``, ``T = (k * 2^es + e) * 2^F + frac`` (signed)."""
    n, es, rs, F = cfg.n, cfg.es, cfg.rs, cfg.frac_bits
    nb = n - 1
    sign = code[n - 1]
    zero = Signal(name=f"{name}_zero")
    nar = Signal(name=f"{name}_nar")
    m.d.comb += [zero.eq(code == 0), nar.eq(code == 1 << nb)]
    mag = Signal(n, name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(sign, -code, code))
    body = mag[:nb]
    r0 = body[nb - 1]
    differs = Signal(rs, name=f"{name}_differs")         # the top rs body bits vs r0
    m.d.comb += differs.eq(body[nb - rs:] ^ Cat(*([r0] * rs)))
    run_value = Const(rs, range(rs + 1))
    for i in reversed(range(rs)):
        run_value = Mux(differs[rs - 1 - i], i, run_value)
    run = Signal(range(rs + 1), name=f"{name}_run")
    m.d.comb += run.eq(run_value)
    length = Signal(range(rs + 2), name=f"{name}_len")
    m.d.comb += length.eq(run + (run != rs))
    ext = Cat(C(0, es), body) if es else body
    rest = Signal(nb + es, name=f"{name}_rest")
    m.d.comb += rest.eq(ext << length)
    k = Signal(range(-rs, rs), name=f"{name}_k")
    m.d.comb += k.eq(Mux(r0, run - 1, -run))
    parts = []
    if F:
        parts.append(rest[nb - F:nb])
    if es:
        parts.append(rest[nb:nb + es])
    parts.append(k)
    log = Signal(signed(F + es + len(k)), name=f"{name}_log")
    m.d.comb += log.eq(Cat(*parts).as_signed())
    return sign, zero, nar, log


class LPPE(DotProductPE):
    """LP dot-product PE (see the module docstring).

    Parameters
    ----------
    config : LPPEConfig

    Members
    -------
    i : In(stream.Signature(beat_layout(config)))
        ``w[l]``, ``a[l]``: the LP codes of lane l; ``last`` ends a dot product.
        ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(out_layout(config)))
        ``acc``: the dot product in units of ``2^-acc_frac``; ``nar``: some operand was
        NaR. Valid ``config.latency`` (5) cycles after the ``last`` beat was accepted;
        held until ``o.ready``.
    sf : In(signed(sf_width))
        The layer's scale ``sf_w + sf_a``; sampled with each accepted beat.
    """

    def __init__(self, config: LPPEConfig):
        if not isinstance(config, LPPEConfig):
            raise ConfigError(f"LPPE needs an LPPEConfig, not {config!r}")
        super().__init__(config, {"sf": In(signed(config.sf_width))})

    def _decode(self, m, code, name):
        return lp_decode(m, self.config, code, name)

    def _products(self, m, reg):
        cfg = self.config
        F, tb = cfg.frac_bits, cfg.table_bits
        beat = self.i.payload

        # Stage 0: decode both operands of every lane; the scale travels with the beat.
        sf = reg("s0_sf", self.sf)
        lanes = []
        for lane in range(cfg.lanes):
            ws, wz, wn, wl = self._decode(m, beat.w[lane], f"w{lane}")
            as_, az, an, al = self._decode(m, beat.a[lane], f"a{lane}")
            lanes.append((reg(f"s0_sign{lane}", ws ^ as_), reg(f"s0_zero{lane}", wz | az),
                          reg(f"s0_nar{lane}", wn | an), reg(f"s0_wlog{lane}", wl),
                          reg(f"s0_alog{lane}", al)))

        # Stage 1: add the logs, look up 2^frac, work out the shift.
        table = Array(Const(v, tb + 1) for v in lp_exp2_table(F, tb))
        stage1 = []
        for lane, (sign, zero, nar, wl, al) in enumerate(lanes):
            p = Signal(signed(max(len(wl), len(sf) + F) + 2), name=f"s1_p{lane}")
            m.d.comb += p.eq(wl + al - (sf << F))
            mant = Signal(tb + 1, name=f"s1_mant{lane}")
            m.d.comb += mant.eq(table[p[:F]] if F else table[0])
            sh = Signal(signed(len(p) - F + bits_for(cfg.acc_frac + tb) + 1), name=f"s1_sh{lane}")
            m.d.comb += sh.eq((p >> F) + (cfg.acc_frac - tb))
            stage1.append((reg(f"s1_sign{lane}", sign), reg(f"s1_kill{lane}", zero | nar),
                           reg(f"s1_nar{lane}", nar), reg(f"s1_mant{lane}", mant),
                           reg(f"s1_sh{lane}", sh)))

        # Stage 2: shift into the accumulator's fixed point, apply the sign.
        products, nars = [], []
        for lane, (sign, kill, nar, mant, sh) in enumerate(stage1):
            mag = shift_floor(m, mant, sh, cfg.product_width, f"s2_mag{lane}")
            prod = Signal(signed(min(cfg.product_width + 1, cfg.acc_width)), name=f"s2_prod{lane}")
            m.d.comb += prod.eq(Mux(kill, 0, Mux(sign, -mag, mag)))
            products.append(reg(f"s2_prod{lane}_q", prod))
            nars.append(nar)
        any_nar = Signal(name="s2_nar")
        m.d.comb += any_nar.eq(Cat(*nars).any())
        return products, reg("s2_nar_q", any_nar)
