"""TASDER's search: choose a TASD series per layer, for the weights or for the
activations, that minimises the model's cycles on the N:M tensor core within an accuracy
budget, without any fine-tuning (the semantics and cost of a choice are
:mod:`golden.tasder`).

Search (deterministic given the calibration batch, hence given its seed):

1. For every layer and option, the *sensitivity*: the metric with only that layer
   approximated (accuracy drop in points, or the relative error of the model output).
2. Greedy: starting from all-dense, try options in order of increasing sensitivity
   (ties: lower output error, then larger cycle saving, then layer order); accept an
   option when it lowers that layer's cycles and the whole model stays within budget.
"""

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import nn

from spec.nm_core import NMCoreConfig

from . import GoldenError, tasd
from .lowering import input_matrix, matmul_layers
from .models import ModelBundle
from .tasder import LayerChoice, approximate, layer_cycles, layer_options

__all__ = ["TasderResult", "search", "effective_density", "evaluate", "top1", "cosines"]


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
           max_output_error: float | None = None, progress=None) -> TasderResult:
    """Choose a series per layer (see the module docstring).

    Exactly one budget: ``max_accuracy_drop`` (points of top-1 on ``(x, y)``) or
    ``max_output_error`` (relative Frobenius error of the model output on ``x``), a
    finite number >= 0. ``progress(done, total)`` is called after every trial of the two
    passes (``total`` = twice the candidate options).
    """
    if (max_accuracy_drop is None) == (max_output_error is None):
        raise GoldenError("give exactly one budget: max_accuracy_drop or max_output_error")
    if max_accuracy_drop is not None and y is None:
        raise GoldenError("an accuracy budget needs labels y for the calibration batch")
    budget = max_accuracy_drop if max_accuracy_drop is not None else max_output_error
    if not (isinstance(budget, numbers.Real) and math.isfinite(budget) and budget >= 0):
        raise GoldenError(f"the budget must be a finite number >= 0, not {budget!r}")
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
    trials = [(li, oi, cost[(layer.name, options[0])] - cost[(layer.name, option)])
              for li, layer in enumerate(layers) for oi, option in enumerate(options[1:], 1)]
    trials = [t for t in trials if t[2] > 0]
    report = progress or (lambda done, total: None)
    candidates = []
    for done, (li, oi, saving) in enumerate(trials, 1):
        candidates.append((*metric({layers[li].name: options[oi]}), -saving, li, oi))
        report(done, 2 * len(trials))
    candidates.sort()   # least sensitive first; the output error breaks accuracy ties

    choices: dict[str, LayerChoice] = {}
    achieved = 0.0
    for done, (_sens, _error, _saving, li, oi) in enumerate(candidates, len(trials) + 1):
        layer, option = layers[li], options[oi]
        current = choices.get(layer.name, options[0])
        if cost[(layer.name, option)] < cost[(layer.name, current)]:
            trial = {**choices, layer.name: option}
            value, _ = metric(trial)
            if value <= budget:
                choices, achieved = trial, value
        report(done, 2 * len(trials))
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


def effective_density(result: TasderResult) -> float:
    """Fraction of the dense MACs the chosen terms keep: per layer sum(n_i / m_i) over the
    decomposed operand's series (1 for dense layers), weighted by the layer's MACs."""
    kept = total = 0.0
    for layer in result.layers:
        macs = layer["out"] * layer["k"] * layer["cols"]
        series = layer["weights"] if layer["weights"] != "dense" else layer["activations"]
        density = 1.0 if series == "dense" else min(1.0, sum(n / m for n, m in tasd.parse_series(series)))
        kept += macs * density
        total += macs
    return kept / total


def top1(model, choices, x, y) -> float:
    out = approximate(model, choices, x)
    return 100.0 * (out.argmax(1) == y).float().mean().item()


def cosines(model, choices, x) -> list[float]:
    """Cosine similarity of each output row (an embedding) to the unapproximated model's."""
    with torch.no_grad():
        reference = model(x)
    out = approximate(model, choices, x)
    return torch.nn.functional.cosine_similarity(out, reference, dim=-1).tolist()


def evaluate(bundle: ModelBundle, core: NMCoreConfig, menu: list[str], *,
             max_drop: float | None = None, max_error: float | None = None, progress=None) -> dict:
    """Search on the calibration batch, then evaluate on the test inputs: top-1 for a
    labelled model, embedding cosine similarity otherwise. A JSON-able summary.
    ``progress`` is passed on to :func:`search`."""
    if not bundle.labelled and max_drop is not None:
        raise GoldenError(f"model {bundle.name!r} has no labels: give an output-error budget, "
                          "not an accuracy drop")
    result = search(bundle.model, bundle.x_calib, core, menu, y=bundle.y_calib,
                    max_accuracy_drop=max_drop, max_output_error=max_error, progress=progress)
    cycle_ratio = result.cycles / result.dense_cycles
    summary = {
        "model": bundle.name, "core": core.to_dict(), "menu": menu,
        "search": result.to_json(),
        "effective_density": effective_density(result),
        "cycle_reduction": 1 - cycle_ratio,
        # Energy ~ cycles x (the core's power, unchanged), delay ~ cycles.
        "edp_reduction": 1 - cycle_ratio ** 2,
    }
    if bundle.data is not None:
        summary["data"] = bundle.data
    if bundle.labelled:
        reference = top1(bundle.model, {}, bundle.x_test, bundle.y_test)
        approximated = top1(bundle.model, result.choices, bundle.x_test, bundle.y_test)
        summary["test_top1"] = {"reference": reference, "tasd": approximated,
                                "drop": reference - approximated}
    else:
        values = cosines(bundle.model, result.choices, bundle.x_test)
        summary["test_cosine"] = {"mean": sum(values) / len(values), "min": min(values)}
    return summary
