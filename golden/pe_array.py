"""Golden models of the dot-product arrays (``hw/pe_array.py``): outputs and cycles.

Row ``r`` of an array computes, for each dot product (the beats up to ``last``), the
wrapped ``acc_width``-bit sum over its beats and columns of ``product(W[r, c], a[c])``,
where the product is the matching PE's, bit for bit:

* ``lp-array``: :func:`golden.lp.fixed_products` (2^frac table of ``table_bits``,
  truncating shift into a ``prod_width`` window, ``sf = sf_w + sf_a`` per beat; NaR
  gives a zero product and sets the row's flag);
* ``int8-array``: the exact int8 x int8 product;
* ``fp8-array``: :func:`golden.mac.fp8_products` (exact, truncated to ``acc_frac``).
"""

import numpy as np

from spec.numerics import wrap
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig

from . import GoldenError
from .lp import LPFormat, fixed_products
from .mac import fp8_products

__all__ = ["array_products", "array_outputs", "array_cycles"]


def _codes(name, x, width):
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise GoldenError(f"{name} must be integer codes, not {x.dtype}")
    x = x.astype(np.int64)
    bad = (x < 0) | (x >= 1 << width)
    if bad.any():
        raise GoldenError(f"{name} holds {int(x[bad][0])}, wider than the {width}-bit codes")
    return x


def array_products(config, w, a, sf=0):
    """Products and NaR flags of weight codes ``w`` and activation codes ``a``
    (broadcast; ``sf`` broadcast too, ``lp-array`` only), as the array forms them."""
    w, a = _codes("weights", w, config.width), _codes("activations", a, config.width)
    if isinstance(config, LPArrayConfig):
        fmt = LPFormat(config.n, config.es, config.rs)
        w, a, sf = np.broadcast_arrays(w, a, np.asarray(sf, np.int64))
        prods = np.zeros(w.shape, np.int64)
        nar = np.zeros(w.shape, bool)
        for s in np.unique(sf):
            sel = sf == s
            s = int(s)
            if s not in config.pe().sf_range:
                raise GoldenError(f"sf={s} is outside the array's sf range {config.pe().sf_range}")
            # sf = sf_w + sf_a: split so each half stays within golden.lp.MAX_SF.
            prods[sel], nar[sel] = fixed_products(
                fmt.with_sf(s // 2), w[sel], fmt.with_sf(s - s // 2), a[sel],
                table_bits=config.table_bits, acc_width=config.acc_width,
                acc_frac=config.acc_frac, prod_width=config.pe().product_width)
        return prods, nar
    if isinstance(config, Int8ArrayConfig):
        p = w.astype(np.int8).astype(np.int64) * a.astype(np.int8).astype(np.int64)
        return p, np.zeros(p.shape, bool)
    if isinstance(config, FP8ArrayConfig):
        return fp8_products(w, a, acc_width=config.acc_width, acc_frac=config.acc_frac)
    raise GoldenError(f"not an array config: {config!r}")


def array_outputs(config, weights, acts, sf=0, last=None):
    """Expected outputs of a run: ``weights[rows, cols]`` held, ``acts[beats, cols]``
    streamed (``sf[beats]``, ``last[beats]``; default: every beat ends a dot product).
    Returns ``(acc[dots, rows], nar[dots, rows])``."""
    weights = np.asarray(weights)
    acts = np.asarray(acts)
    if weights.shape != (config.rows, config.cols):
        raise GoldenError(f"weights must be {config.rows}x{config.cols}, not {weights.shape}")
    if acts.ndim != 2 or acts.shape[1] != config.cols:
        raise GoldenError(f"activations must be [beats, {config.cols}], not {acts.shape}")
    beats = len(acts)
    last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
    if beats == 0 or not last[-1]:
        raise GoldenError("the last beat must end a dot product")
    sf = np.broadcast_to(np.asarray(sf, np.int64), (beats,))
    prods, nar = array_products(config, weights[None, :, :], acts[:, None, :], sf[:, None, None])
    dot = np.cumsum(np.concatenate([[0], last[:-1]]))               # dot index of each beat
    dots = int(dot[-1]) + 1
    acc = np.zeros((dots, config.rows), np.uint64)
    flags = np.zeros((dots, config.rows), bool)
    np.add.at(acc, dot, prods.sum(axis=2).astype(np.uint64))
    np.logical_or.at(flags, dot, nar.any(axis=2))
    return wrap(acc, config.acc_width), flags


def array_cycles(config, beats: int, dots: int = 1) -> int:
    """Cycles from the first beat accepted to the last output taken, at full rate with no
    back-pressure: one beat per cycle plus the latency of the last one."""
    if beats < 1 or not 1 <= dots <= beats:
        raise GoldenError(f"need beats >= 1 and 1 <= dots <= beats, not beats={beats}, dots={dots}")
    return beats + config.latency
