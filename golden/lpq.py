"""LP formats per layer and the baseline quantizers they are compared with (INT8 / INT4
per-channel, FP8 E4M3), all in one fake-quantization harness: the semantics of LPQ.

The harness
-----------
A model's quantizable layers (``nn.Conv2d`` / ``nn.Linear``, named) run with quantized
weights and quantized *inputs* (activations), as an accelerator that multiplies
quantized operands would; biases stay in float (they enter the wide accumulator).
:func:`run_model` evaluates a model under a :class:`Plan` (one weight and one input
quantizer per layer) and can tap every quantized layer's output.

LP formats
----------
A layer's LP format is a :class:`LayerGene` ``(n, es, rs, sf, sf_a)``: the weights' LP
format, and the same ``(n, es, rs)`` with the scale ``sf_a`` for the layer's inputs (the
LP PE multiplies two codes of one format; its runtime scale is ``sf + sf_a``).
:func:`lp_plan` quantizes a model with them; :func:`pe_accuracy` runs them through the
LP PE's bit-exact arithmetic. The genetic search that chooses them is
:mod:`golden.lpq_search`.

Baselines: INT-b weights are symmetric per output channel (scale ``max|w| / (2^(b-1)-1)``,
round half to even, clamp); INT inputs are INT8 per tensor (unsigned when the
calibration inputs are non-negative), so INT4 is W4A8. FP8 is E4M3 with a per-output-
channel scale for weights and a per-tensor scale for inputs, each mapping max|x| to 448.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from .lp import LPFormat
from .mac import FP8_MAX, fp8_decode, fp8_encode

__all__ = ["Plan", "LayerGene", "quantizable_layers", "run_model", "fp_inputs",
           "accuracy", "lp_plan", "int_plan", "fp8_plan", "fp32_plan", "mean_weight_bits", "pe_accuracy",
           "int_weight_codes", "IntInputs", "int_inputs", "fp8_weight_scale", "fp8_input_scale"]

Quantizer = Callable[[np.ndarray], np.ndarray]


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the model's Conv2d and Linear layers, in definition order."""
    return [name for name, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


@dataclasses.dataclass
class Plan:
    """Per layer name: a weight quantizer and an input quantizer (None: full precision),
    and the bits per weight (for :func:`mean_weight_bits`)."""

    weights: dict[str, Quantizer | None]
    inputs: dict[str, Quantizer | None]
    bits: dict[str, float]


def mean_weight_bits(model: nn.Module, bits: dict[str, float]) -> float:
    mods = dict(model.named_modules())
    sizes = {name: mods[name].weight.numel() for name in bits}
    return sum(bits[n] * sizes[n] for n in bits) / sum(sizes.values())


@torch.no_grad()
def run_model(model: nn.Module, x: torch.Tensor, plan: Plan | None = None,
              taps: list[str] | None = None):
    """``model(x)`` with ``plan``'s quantizers applied; returns ``(logits, {tap: output})``."""
    mods = dict(model.named_modules())
    handles, saved, outputs = [], {}, {}
    plan = plan or fp32_plan(model)
    try:
        for name in plan.weights:
            mod = mods[name]
            wq, aq = plan.weights[name], plan.inputs.get(name)
            if wq is not None:
                saved[name] = mod.weight.data
                w = wq(mod.weight.data.double().numpy())
                mod.weight.data = torch.from_numpy(np.ascontiguousarray(w)).to(mod.weight.dtype)
            if aq is not None:
                def pre(module, args, aq=aq):
                    q = aq(args[0].double().numpy())
                    return (torch.from_numpy(np.ascontiguousarray(q)).to(args[0].dtype),)
                handles.append(mod.register_forward_pre_hook(pre))
        for name in taps or []:
            def post(module, args, out, name=name):
                outputs[name] = out
            handles.append(mods[name].register_forward_hook(post))
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
        for name, w in saved.items():
            mods[name].weight.data = w
    return logits, outputs


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: Plan | None = None) -> float:
    """Top-1 accuracy (0..1) of ``model`` under ``plan``."""
    logits, _ = run_model(model, x, plan)
    return float((logits.argmax(dim=1) == y).float().mean())


# --- baseline quantizers -------------------------------------------------------------
def _per_channel_amax(w: np.ndarray) -> np.ndarray:
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    return np.where(amax > 0, amax, 1.0).reshape(-1, *([1] * (w.ndim - 1)))


def int_weight_codes(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel INT-``bits``: the integers (int64, in
    ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``, round half to even) and the scale per output
    channel (``max|w| / (2^(bits-1) - 1)``, shaped to broadcast against ``w``)."""
    qmax = (1 << (bits - 1)) - 1
    scale = _per_channel_amax(w) / qmax
    return np.clip(np.round(w / scale), -qmax, qmax).astype(np.int64), scale


def int_weights(bits: int) -> Quantizer:
    """Symmetric per-output-channel INT-``bits`` fake quantization."""
    def q(w):
        codes, scale = int_weight_codes(w, bits)
        return codes * scale
    return q


@dataclasses.dataclass(frozen=True)
class IntInputs:
    """A per-tensor integer input quantizer: ``x -> clip(round(x / scale), lo, hi)``
    (:meth:`codes`, round half to even); calling it fake-quantizes (``codes * scale``)."""

    scale: float
    lo: int
    hi: int

    def codes(self, x) -> np.ndarray:
        return np.clip(np.round(np.asarray(x) / self.scale), self.lo, self.hi).astype(np.int64)

    def __call__(self, x) -> np.ndarray:
        return self.codes(x) * self.scale


def int_inputs(bits: int, calib: np.ndarray) -> IntInputs:
    """Per-tensor INT-``bits`` with a scale from the calibration inputs' max|x|;
    unsigned when those are all non-negative."""
    amax = float(np.abs(calib).max()) or 1.0
    unsigned = bool(calib.min() >= 0)
    lo, hi = (0, (1 << bits) - 1) if unsigned else (-((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1)
    return IntInputs(amax / hi, lo, hi)


def fp8_weight_scale(w: np.ndarray) -> np.ndarray:
    """The FP8 weights' scale per output channel: ``max|w|`` maps to 448."""
    return _per_channel_amax(w) / FP8_MAX


def fp8_weights(w: np.ndarray) -> np.ndarray:
    scale = fp8_weight_scale(w)
    return fp8_decode(fp8_encode(w / scale)) * scale


def fp8_input_scale(calib: np.ndarray) -> float:
    """The FP8 inputs' per-tensor scale: the calibration inputs' ``max|x|`` maps to 448."""
    return (float(np.abs(calib).max()) or 1.0) / FP8_MAX


def fp8_inputs(calib: np.ndarray) -> Quantizer:
    scale = fp8_input_scale(calib)
    return lambda x: fp8_decode(fp8_encode(x / scale)) * scale


def fp_inputs(model, x, layers):
    """The full-precision model's input to each layer, as float64 numpy arrays."""
    inputs = {}
    mods = dict(model.named_modules())
    handles = [mods[n].register_forward_pre_hook(
        lambda m, a, n=n: inputs.__setitem__(n, a[0].double().numpy())) for n in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return inputs


def fp32_plan(model: nn.Module) -> Plan:
    layers = quantizable_layers(model)
    return Plan({n: None for n in layers}, {n: None for n in layers}, {n: 32 for n in layers})


def int_plan(model: nn.Module, calib_x: torch.Tensor, weight_bits: int, input_bits: int = 8) -> Plan:
    layers = quantizable_layers(model)
    inputs = fp_inputs(model, calib_x, layers)
    return Plan({n: int_weights(weight_bits) for n in layers},
                {n: int_inputs(input_bits, inputs[n]) for n in layers},
                {n: weight_bits for n in layers})


def fp8_plan(model: nn.Module, calib_x: torch.Tensor) -> Plan:
    layers = quantizable_layers(model)
    inputs = fp_inputs(model, calib_x, layers)
    return Plan({n: fp8_weights for n in layers}, {n: fp8_inputs(inputs[n]) for n in layers},
                {n: 8 for n in layers})


# --- LP -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerGene:
    """One layer's LP weight format, and the input scale LPQ chose to go with it."""

    n: int
    es: int
    rs: int
    sf: int
    sf_a: int = 0

    def weight_format(self) -> LPFormat:
        return LPFormat(self.n, self.es, self.rs, self.sf)

    def input_format(self) -> LPFormat:
        return LPFormat(self.n, self.es, self.rs, self.sf_a)


def lp_plan(genes: dict[str, LayerGene]) -> Plan:
    """Weights and inputs of each layer in its LP formats (round to nearest in log)."""
    return Plan({n: g.weight_format().quantize for n, g in genes.items()},
                {n: g.input_format().quantize for n, g in genes.items()},
                {n: g.n for n, g in genes.items()})


# --- the LP PE's own arithmetic -------------------------------------------------------
@torch.no_grad()
def pe_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, genes: dict[str, LayerGene], *,
                table_bits: int = 8, acc_width: int = 32, acc_frac: int = 16, prod_width: int | None = None,
                chunk: int = 100) -> float:
    """Top-1 of ``model`` when every quantized layer's dot products are computed with the
    LP PE's bit-exact fixed-point arithmetic (:func:`golden.lp.fixed_products`: the 2^frac
    table, the truncating shift, the wrapping ``acc_width``-bit accumulator), on the
    layer's LP codes; biases are added in float afterwards. This is what an array of LP
    PEs configured per layer would compute, so it checks that LPQ's float simulation
    (:func:`lp_plan`) holds on the hardware.
    """
    from .lp import fixed_products

    mods = dict(model.named_modules())
    tables = {}
    for name, g in genes.items():
        fw, fa = g.weight_format(), g.input_format()
        codes = np.arange(1 << g.n)
        prods, nar = fixed_products(fw, codes[:, None], fa, codes[None, :], table_bits=table_bits,
                                    acc_width=acc_width, acc_frac=acc_frac, prod_width=prod_width)
        tables[name] = prods
    half = 1 << (acc_width - 1)

    def layer(name, mod, inp):
        g = genes[name]
        xin = inp.double().numpy()
        wc = g.weight_format().encode(mod.weight.detach().double().numpy())
        if isinstance(mod, nn.Conv2d):
            patches = nn.functional.unfold(torch.from_numpy(xin), mod.kernel_size, padding=mod.padding,
                                           stride=mod.stride, dilation=mod.dilation).numpy()   # [N, CKK, L]
            ac = g.input_format().encode(patches)
            wc = wc.reshape(wc.shape[0], -1)                                                  # [O, CKK]
            acc = np.zeros((ac.shape[0], wc.shape[0], ac.shape[2]), np.int64)
            for k in range(wc.shape[1]):
                acc += tables[name][wc[:, k][None, :, None], ac[:, k, :][:, None, :]]
        else:
            ac = g.input_format().encode(xin)                                                # [N, K]
            acc = np.zeros((ac.shape[0], wc.shape[0]), np.int64)
            for k in range(wc.shape[1]):
                acc += tables[name][wc[None, :, k], ac[:, k][:, None]]
        acc = (acc + half) % (2 * half) - half                                              # wrap
        out = acc / float(1 << acc_frac)
        if isinstance(mod, nn.Conv2d):
            side = int(round(math.sqrt(out.shape[-1])))
            out = out.reshape(out.shape[0], out.shape[1], side, side)
        out = torch.from_numpy(out)
        if mod.bias is not None:
            out = out + mod.bias.double().reshape(1, -1, *([1] * (out.ndim - 2)))
        return out.float()

    handles = [mods[name].register_forward_hook(lambda m, a, o, name=name: layer(name, m, a[0]))
               for name in genes]
    try:
        correct = 0
        for k in range(0, len(x), chunk):
            correct += int((model(x[k:k + chunk]).argmax(dim=1) == y[k:k + chunk]).sum())
    finally:
        for h in handles:
            h.remove()
    return correct / len(x)
