"""A model's Linear layers computed by the dot-product arrays' bit-exact arithmetic
(:func:`golden.array_gemm.array_gemm`), with the quantizers of :mod:`golden.lpq`: what a
model's accuracy is when an array, not a float simulation, forms its products.

Each :class:`ArrayLinear` holds one layer's weight codes, the array it runs on, how its
inputs become codes and what one accumulator unit is worth; :func:`run_on_arrays` runs
a model with every such layer's output replaced by ``acc * out_scale + bias`` (the bias
in float, as :func:`golden.lpq.pe_accuracy` adds it; everything outside the Linear
layers, e.g. embeddings, norms, softmax and GELU, stays float). The formats and scales
are the float plans' (:func:`golden.lpq.lp_plan`, ``int_plan``, ``fp8_plan``), except
where the array's fixed point needs a power of two more, as the builders say:

* :func:`lp_linear`: the layer's LP codes (weights ``LP<n,es,rs,sf>``, inputs
  ``sf_a``) on an ``lp-array`` of that ``(n, es, rs)`` with the base config's table,
  window and accumulator. The runtime scale is ``sf = sf + sf_a - s``: every product
  is ``2^s`` times the float product, and ``s`` is the largest for which no product of
  the layer's weight codes with *any* activation code leaves the product window
  (:func:`lp_shift`), so no product can wrap and the fewest are truncated; one
  accumulator unit is ``2^-(acc_frac + s)``. (``pe_accuracy`` on digits uses ``s = 0``.)
* :func:`int_linear`: INT-b weight integers per output channel and signed INT8 inputs
  per tensor, as ``int_plan``, as two's-complement int8 codes on an ``int8-array``
  (INT4: its integers in the int8 array); a unit is ``scale_w[o] * scale_a``.
* :func:`fp8_linear`: E4M3 codes on an ``fp8-array``, whose accumulator holds only
  ``|v| < 2^(acc_width - 1 - acc_frac)`` (2^15 by default) while the float plan maps
  max|w| and max|x| to 448 (448^2 > 2^15): the exact path maps them to ``448 / 2^kw``
  and ``448 / 2^ka`` instead (a power of two: the same E4M3 grid, except values pushed
  into its subnormal range lose bits), ``k = kw + ka`` (``kw = ceil(k/2)``) the smallest
  that keeps the calibration inputs' accumulators below half that range; a unit is
  ``2^-acc_frac * scale_w[o] 2^kw * scale_a 2^ka``.

An accumulator that wraps is counted (:attr:`ArrayLinear.wrapped`), not hidden.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig

from . import GoldenError
from .array_gemm import array_gemm
from .lpq import (IntInputs, LayerGene, fp8_input_scale, fp8_weight_scale, fp_inputs,
                  int_weight_codes, quantizable_layers)
from .mac import fp8_decode, fp8_encode
from .pe_array import array_products

__all__ = ["ArrayLinear", "lp_linear", "lp_shift", "int_linear", "fp8_linear", "lp_layers",
           "int_layers", "fp8_layers", "run_on_arrays"]


@dataclasses.dataclass
class ArrayLinear:
    """One Linear layer on an array.

    Members
    -------
    config : LPArrayConfig | Int8ArrayConfig | FP8ArrayConfig
        The array (its shape must tile the layer).
    codes : np.ndarray
        Weight codes ``[out_features, in_features]``, as the array's weight stream holds them.
    encode : callable
        Float inputs ``[N, in_features]`` -> activation codes.
    out_scale : np.ndarray or float
        Value of one accumulator unit, per output (broadcast over ``[N, out_features]``).
    sf : int
        The ``lp-array``'s runtime scale (0 for the others).
    outputs, wrapped, nar : int
        Outputs computed so far, how many of them wrapped, how many were flagged NaR/NaN.
    """

    config: object
    codes: np.ndarray
    encode: Callable[[np.ndarray], np.ndarray]
    out_scale: np.ndarray | float
    sf: int = 0
    outputs: int = 0
    wrapped: int = 0
    nar: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The layer's outputs (float64, no bias) for inputs ``x[N, in_features]``; NaR/NaN
        outputs are NaN."""
        gemm = array_gemm(self.config, self.codes, self.encode(x), self.sf)
        self.outputs += gemm.acc.size
        self.wrapped += int(gemm.wrapped.sum())
        self.nar += int(gemm.nar.sum())
        return np.where(gemm.nar, np.nan, gemm.acc * self.out_scale)


def lp_shift(config: LPArrayConfig, codes: np.ndarray, gene: LayerGene) -> tuple[int, int]:
    """``(s, sf)`` for a layer of weight ``codes`` in ``gene``'s formats on ``config``: the
    largest ``s`` (smallest runtime ``sf = gene.sf + gene.sf_a - s`` in the array's range)
    for which every product of a weight code present and any activation code, computed
    with a window as wide as the accumulator, is below ``2^prod_width``."""
    wide = dataclasses.replace(config, prod_width=0)
    present = np.unique(codes)
    limit = 1 << config.pe().product_width
    sf_range = config.pe().sf_range
    maxpos = np.array([(1 << (config.n - 1)) - 1])      # a product grows with |a|: the largest
    best = None
    for sf in reversed(sf_range):                          # products double at each step down
        products, _ = array_products(wide, present[:, None], maxpos[None, :], sf)
        if np.abs(products).max() >= limit:
            break
        best = sf
    if best is not None:
        products, _ = array_products(wide, present[:, None], np.arange(1 << config.n)[None, :], best)
        assert np.abs(products).max() < limit, "LP products must grow with the activation"
    else:
        raise GoldenError(f"no sf in {sf_range} keeps LP<{config.n},{config.es},{config.rs}> products "
                          f"within the {config.pe().product_width}-bit window")
    return gene.sf + gene.sf_a - best, best


def lp_linear(weight: np.ndarray, gene: LayerGene, array: LPArrayConfig | None = None) -> ArrayLinear:
    """The layer in ``gene``'s LP formats on an ``lp-array`` of ``gene``'s ``(n, es, rs)``
    with ``array``'s shape and datapath (default :class:`LPArrayConfig`)."""
    config = dataclasses.replace(array or LPArrayConfig(), n=gene.n, es=gene.es, rs=gene.rs)
    codes = gene.weight_format().encode(weight)
    s, sf = lp_shift(config, codes, gene)
    return ArrayLinear(config, codes, gene.input_format().encode, 2.0 ** -(config.acc_frac + s), sf)


def int_linear(weight: np.ndarray, inputs: IntInputs, bits: int,
               array: Int8ArrayConfig | None = None) -> ArrayLinear:
    """INT-``bits`` weights (per output channel) and ``inputs`` on an ``int8-array``."""
    if inputs.lo < -128 or inputs.hi > 127:
        raise GoldenError(f"inputs quantized to {inputs.lo}..{inputs.hi} do not fit the int8 array's "
                          f"signed int8 activations")
    if not 2 <= bits <= 8:
        raise GoldenError(f"the int8 array takes weights of 2..8 bits, not bits={bits}")
    ints, scale = int_weight_codes(weight, bits)
    return ArrayLinear(array or Int8ArrayConfig(), ints & 0xFF, lambda x: inputs.codes(x) & 0xFF,
                       scale.reshape(-1) * inputs.scale)


def fp8_linear(weight: np.ndarray, calib: np.ndarray, array: FP8ArrayConfig | None = None) -> ArrayLinear:
    """E4M3 weights (per output channel) and inputs (per tensor, from ``calib[N, K]``) on
    an ``fp8-array``, scaled down by ``2^kw``, ``2^ka`` to fit its accumulator (see the
    module docstring)."""
    config = array or FP8ArrayConfig()
    sw, sa = fp8_weight_scale(weight), fp8_input_scale(calib)
    wv = fp8_decode(fp8_encode(weight / sw))
    av = fp8_decode(fp8_encode(calib / sa))
    peak = float(np.abs(av @ wv.T).max(initial=0.0))          # calibration sums, in code values
    room = 2.0 ** (config.acc_width - config.acc_frac - 2)      # half the accumulator's range
    k = max(0, math.ceil(math.log2(peak / room))) if peak > 0 else 0
    kw, ka = (k + 1) // 2, k // 2
    sw, sa = sw * 2.0 ** kw, sa * 2.0 ** ka
    return ArrayLinear(config, fp8_encode(weight / sw), lambda x: fp8_encode(x / sa),
                       2.0 ** -config.acc_frac * sw.reshape(-1) * sa)


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    mods = dict(model.named_modules())
    layers = quantizable_layers(model)
    for name in layers:
        if not isinstance(mods[name], nn.Linear):
            raise GoldenError(f"layer {name!r} is a {type(mods[name]).__name__}: the array path runs Linear layers")
    return {name: mods[name] for name in layers}


def _weight(mod: nn.Linear) -> np.ndarray:
    return mod.weight.detach().double().numpy()


def lp_layers(model: nn.Module, genes: dict[str, LayerGene], array: LPArrayConfig | None = None):
    """:func:`lp_linear` for every Linear layer of ``model`` (``genes`` names them all)."""
    return {name: lp_linear(_weight(mod), genes[name], array) for name, mod in _linears(model).items()}


def _calib_inputs(model, calib_x, names):
    inputs = fp_inputs(model, calib_x, names)
    return {name: x.reshape(-1, x.shape[-1]) for name, x in inputs.items()}


def int_layers(model: nn.Module, calib_x: torch.Tensor, bits: int, array: Int8ArrayConfig | None = None):
    """:func:`int_linear` for every Linear layer, inputs scaled on ``calib_x`` as ``int_plan``."""
    from .lpq import int_inputs

    linears = _linears(model)
    inputs = _calib_inputs(model, calib_x, list(linears))
    return {name: int_linear(_weight(mod), int_inputs(8, inputs[name]), bits, array)
            for name, mod in linears.items()}


def fp8_layers(model: nn.Module, calib_x: torch.Tensor, array: FP8ArrayConfig | None = None):
    """:func:`fp8_linear` for every Linear layer, inputs scaled on ``calib_x``."""
    linears = _linears(model)
    inputs = _calib_inputs(model, calib_x, list(linears))
    return {name: fp8_linear(_weight(mod), inputs[name], array) for name, mod in linears.items()}


@torch.no_grad()
def run_on_arrays(model: nn.Module, x: torch.Tensor, layers: dict[str, ArrayLinear],
                  rows: torch.Tensor | None = None) -> torch.Tensor:
    """``model(x)`` with each named Linear's output computed by its :class:`ArrayLinear`
    (plus the bias in float).

    ``rows``: optional boolean mask over the leading dimensions of the layers' inputs
    (e.g. a ``[batch, tokens]`` attention mask): only those rows go through the arrays;
    the others (padding, which never reaches a real token's output) keep the float
    output."""
    mods = dict(model.named_modules())

    def hook(name):
        layer = layers[name]

        def run(module, args, out):
            inp = args[0]
            flat = inp.reshape(-1, inp.shape[-1])
            keep = (torch.ones(len(flat), dtype=torch.bool) if rows is None or rows.shape != inp.shape[:-1]
                    else rows.reshape(-1).bool())
            y = layer(flat[keep].double().numpy())
            if module.bias is not None:
                y = y + module.bias.detach().double().numpy()
            res = out.detach().clone().reshape(-1, out.shape[-1])
            res[keep] = torch.from_numpy(y).to(res.dtype)
            return res.reshape(out.shape)
        return run

    handles = [mods[name].register_forward_hook(hook(name)) for name in layers]
    try:
        return model(x)
    finally:
        for h in handles:
            h.remove()
