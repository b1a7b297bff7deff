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

The search that chooses the series within an accuracy budget is
:mod:`golden.tasder_search`; this module is the semantics (what a choice computes and
costs) and the menu policy.
"""

from dataclasses import dataclass

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

__all__ = ["LayerChoice", "approximate", "layer_options", "layer_cycles", "STANDARD_MENU",
           "default_menu"]

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


#: Series worth supporting (REFERENCE.md); a core runs the ones whose terms fit it.
STANDARD_MENU = ["1:2", "1:4", "2:4", "2:4+1:4", "1:8", "2:8", "4:8", "2:8+2:8", "2:4+2:8", "4:8+2:8"]


def _density(series: str) -> float:
    return sum(n / m for n, m in tasd.parse_series(series))


def _rank(series: str) -> tuple[float, int, int]:
    ms = [m for _, m in tasd.parse_series(series)]
    return _density(series), min(ms), max(ms)


def default_menu(core) -> list[str]:
    """For every pass cost below dense (:func:`golden.tasd.series_cost`: a packed pass
    counts less than one), the standard series that keeps the most: the
    largest density (sum of n/m), ties to the larger groups (fewer constraints). At equal
    cost a series that keeps the top-k of a group is never worse for the tensor than
    one that keeps fewer or more constrained elements, so the others are left out.
    ``--menu`` gives the search any list instead."""
    best: dict[float, str] = {}
    for series in STANDARD_MENU:
        terms = tasd.parse_series(series)
        if not all(tasd.term_fits_core(n, m, core) for n, m in terms):
            continue
        passes = tasd.series_cost(series, core)       # packed passes count 1 / factor
        if passes >= tasd.dense_passes(core):
            continue
        if passes not in best or _rank(series) > _rank(best[passes]):
            best[passes] = series
    if not best:
        raise GoldenError(f"no standard series runs faster than dense on a {core.n}:{core.m} core")
    return [best[p] for p in sorted(best)]
