"""TASDER: choose a TASD series per layer, for the weights or for the activations, that
minimises the model's cycles on the N:M tensor core within an accuracy budget, without
any fine-tuning.

The core exploits the sparsity of one operand: the one streamed through its compressed
weight port. A layer ``Y = X W^T`` therefore runs in one of three ways:

* ``dense``: W through the compressed port as ``ceil(m/n)`` exact terms of the core's n:m;
* ``weights=<series>``: W decomposed offline, X dense;
* ``activations=<series>``: X decomposed at run time by the top-N unit (``hw.topn``) and
  streamed through the compressed port, W (transposed) dense.

Cycles come from :func:`golden.tasd.series_cycles` for the layer's shape per sample.

Search (deterministic given the calibration batch, hence given its seed):

1. For every layer and option, the *sensitivity*: the metric with only that layer
   approximated (accuracy drop in points, or the relative error of the model output).
2. Greedy: starting from all-dense, try options in order of increasing sensitivity
   (ties: lower output error, then larger cycle saving, then layer order); accept an
   option when it lowers that layer's cycles and the whole model stays within budget.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import GoldenError, tasd
from .lowering import (
    MatmulLayer,
    input_matrix,
    matmul_layers,
    output_from_matrix,
    weight_matrix,
)

__all__ = ["LayerChoice", "TasderResult", "approximate", "search", "layer_options"]

DENSE = "dense"


@dataclass(frozen=True)
class LayerChoice:
    weights: str = DENSE
    activations: str = DENSE

    def __post_init__(self):
        if self.weights != DENSE and self.activations != DENSE:
            raise GoldenError("the core exploits one operand per layer: decompose the weights "
                              f"or the activations, not both ({self.weights}, {self.activations})")

    @property
    def label(self) -> str:
        if self.weights != DENSE:
            return f"W {self.weights}"
        if self.activations != DENSE:
            return f"A {self.activations}"
        return DENSE


def _series_m(series: str) -> int:
    from math import lcm
    return lcm(*(m for _, m in tasd.parse_series(series)))


def _decompose_rows(a: torch.Tensor, series: str) -> torch.Tensor:
    """TASD approximation of every row of ``a`` (K already padded), as a float tensor."""
    approx = tasd.reconstruct(tasd.decompose(a.numpy(), series))
    return torch.from_numpy(np.ascontiguousarray(approx)).to(a.dtype)


class _Approximated:
    """Forward hooks that replace the chosen layers' outputs by the TASD computation."""

    def __init__(self, layers: list[MatmulLayer], choices: dict[str, LayerChoice], cache: dict):
        self.handles = []
        for layer in layers:
            choice = choices.get(layer.name, LayerChoice())
            if choice == LayerChoice():
                continue
            self.handles.append(layer.module.register_forward_hook(self._hook(layer.module, choice, cache, layer.name)))

    @staticmethod
    def _hook(module, choice: LayerChoice, cache: dict, name: str):
        def hook(mod, args, output):
            x = args[0]
            series = choice.weights if choice.weights != DENSE else choice.activations
            pad = _series_m(series)
            xm = input_matrix(mod, x, pad)
            if choice.weights != DENSE:
                key = (name, series)
                if key not in cache:
                    cache[key] = _decompose_rows(weight_matrix(mod, pad), series)
                w = cache[key]
            else:
                w = weight_matrix(mod, pad)
                xm = _decompose_rows(xm, series)
            return output_from_matrix(mod, x, xm @ w.T)
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def approximate(model: nn.Module, choices: dict[str, LayerChoice], x: torch.Tensor,
                cache: dict | None = None) -> torch.Tensor:
    """The model's output on ``x`` with the chosen layers computed through TASD."""
    layers = matmul_layers(model)
    names = {layer.name for layer in layers}
    unknown = sorted(set(choices) - names)
    if unknown:
        raise GoldenError(f"no Linear/Conv2d layer named {unknown[0]!r} in the model")
    model.eval()
    with torch.no_grad(), _Approximated(layers, choices, {} if cache is None else cache):
        return model(x)


def layer_options(menu: list[str], core) -> list[LayerChoice]:
    """Dense, then every menu series on the weights, then on the activations."""
    options = [LayerChoice()]
    for series in menu:
        tasd.series_passes(series, core)          # raises if the core cannot run it
        options.append(LayerChoice(weights=tasd.format_series(series)))
    for series in menu:
        options.append(LayerChoice(activations=tasd.format_series(series)))
    return options


def layer_cycles(layer: MatmulLayer, choice: LayerChoice, core, cols: int) -> int:
    """Core cycles of one layer for one sample (``cols`` activation rows per sample)."""
    if choice.activations != DENSE:
        return tasd.series_cycles(choice.activations, core, cols, layer.k, layer.out_features)
    return tasd.series_cycles(choice.weights, core, layer.out_features, layer.k, cols)


@dataclass
class TasderResult:
    choices: dict[str, LayerChoice]
    layers: list[dict] = field(default_factory=list)
    cycles: int = 0
    dense_cycles: int = 0
    metric: float = 0.0
    budget: float = 0.0
    metric_name: str = ""

    def to_json(self) -> dict:
        return {"metric": self.metric_name, "budget": self.budget, "achieved": self.metric,
                "cycles": self.cycles, "dense_cycles": self.dense_cycles,
                "cycle_reduction": 1 - self.cycles / self.dense_cycles, "layers": self.layers}


def search(model: nn.Module, x: torch.Tensor, core, menu: list[str], *,
           y: torch.Tensor | None = None, max_accuracy_drop: float | None = None,
           max_output_error: float | None = None) -> TasderResult:
    """Choose a series per layer (see the module docstring).

    Exactly one budget: ``max_accuracy_drop`` (points of top-1 on ``(x, y)``) or
    ``max_output_error`` (relative Frobenius error of the model output on ``x``).
    """
    if (max_accuracy_drop is None) == (max_output_error is None):
        raise GoldenError("give exactly one budget: max_accuracy_drop or max_output_error")
    if max_accuracy_drop is not None and y is None:
        raise GoldenError("an accuracy budget needs labels y for the calibration batch")
    budget = max_accuracy_drop if max_accuracy_drop is not None else max_output_error
    if budget < 0:
        raise GoldenError(f"the budget must be >= 0, not {budget!r}")
    layers = matmul_layers(model)
    options = layer_options(menu, core)
    cache: dict = {}
    with torch.no_grad():
        reference = model.eval()(x)

    def metric(choices) -> tuple[float, float]:
        """(the budgeted metric, the output's relative error) with ``choices`` applied."""
        out = approximate(model, choices, x, cache)
        error = float(torch.linalg.norm(out - reference) / torch.linalg.norm(reference))
        if max_accuracy_drop is not None:
            ref_acc = (reference.argmax(1) == y).float().mean().item()
            return 100.0 * (ref_acc - (out.argmax(1) == y).float().mean().item()), error
        return error, error

    # Activation rows per sample, from one forward pass with shape-recording hooks.
    cols = {}
    handles = [layer.module.register_forward_hook(
        lambda mod, args, out, name=layer.name: cols.__setitem__(name, input_matrix(mod, args[0][:1]).shape[0]))
        for layer in layers]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()

    cost = {(l.name, o): layer_cycles(l, o, core, cols[l.name]) for l in layers for o in options}
    candidates = []
    for li, layer in enumerate(layers):
        dense_cost = cost[(layer.name, options[0])]
        for oi, option in enumerate(options[1:], 1):
            saving = dense_cost - cost[(layer.name, option)]
            if saving > 0:
                candidates.append((*metric({layer.name: option}), -saving, li, oi))
    candidates.sort()   # least sensitive first; the output error breaks accuracy ties

    choices: dict[str, LayerChoice] = {}
    achieved = 0.0
    for _sens, _error, _saving, li, oi in candidates:
        layer, option = layers[li], options[oi]
        current = choices.get(layer.name, options[0])
        if cost[(layer.name, option)] >= cost[(layer.name, current)]:
            continue
        trial = {**choices, layer.name: option}
        value, _ = metric(trial)
        if value <= budget:
            choices, achieved = trial, value
    result = TasderResult(choices, budget=budget, metric=achieved,
                          metric_name="accuracy_drop_points" if max_accuracy_drop is not None
                          else "output_relative_error")
    for layer in layers:
        choice = choices.get(layer.name, options[0])
        c, d = cost[(layer.name, choice)], cost[(layer.name, options[0])]
        result.cycles += c
        result.dense_cycles += d
        result.layers.append({"name": layer.name, "kind": layer.kind, "out": layer.out_features,
                              "k": layer.k, "cols": cols[layer.name], "weights": choice.weights,
                              "activations": choice.activations, "cycles": c, "dense_cycles": d})
    return result
