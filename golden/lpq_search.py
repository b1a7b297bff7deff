"""LPQ: the genetic search for per-layer LP formats (arXiv 2403.05465), on the harness of
:mod:`golden.lpq`.

The genome holds one gene ``(n, es, rs, sf)`` per layer: the LP format of the layer's
weights. The layer's input activations use the same ``(n, es, rs)`` (the LP PE
multiplies two codes of one format) with their own scale ``sf_a``, chosen for each
``(n, es, rs)`` by minimising the mean squared error on the calibration inputs of the
full-precision model (:meth:`LPQ.activation_sf`). The PE's runtime scale is
``sf + sf_a``.

Fitness (lower is better), on a small calibration set, against the FP32 model:

* global: KL(softmax(fp logits) || softmax(quantized logits)), mean over samples
  (``objective="kl"``, classifiers), or ``1 - cos(fp output, quantized output)``
  (``objective="cosine"``, embedding models);
* local: for every quantized layer, the feature infidelity ``1 - mean_i cos(q_i, f_i)``
  between the quantized features ``q_i`` and the FP32 features ``f_i`` of the
  calibration samples, plus a contrastive (InfoNCE) term: with cosine similarity over
  temperature ``tau``, ``mean_i -log softmax_j(cos(q_i, f_j) / tau)[i]`` (each quantized
  sample must stay closer to its own FP32 features than to the other samples'), counted
  only where it exceeds the same loss of the FP32 features against themselves (so a
  perfect layer scores 0 and no layer is rewarded for beating FP32); the mean over
  layers, weighted by ``local_weight``;
* a bits budget: the mean bits per weight ``sum(n_l * |W_l|) / sum(|W_l|)``; a genome
  over budget scores ``1e3 + excess`` (always worse than any feasible one).

The GA: the population starts from uniform genomes (every layer n = b for each b
within budget, each es, rs in {2, 3, n - 1}, the scale that puts maxpos at max|w|;
as many as fit) and random ones; tournament selection (3), uniform crossover of whole layer genes, per-layer
mutation (one field: n ±1, es, rs, sf ±1 or ±2), elitism (2). Every random draw comes
from one ``numpy.random.Generator(seed)``, and evaluation is deterministic, so a seed
reproduces the search exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import torch
from torch import nn

from . import GoldenError
from .lp import MAX_SF, LPFormat
from .lpq import LayerGene, accuracy, fp_inputs, lp_plan, quantizable_layers, run_model

__all__ = ["LPQ", "LPQResult", "DigitsSearch", "search_digits"]


def _max_log(n, es, rs):
    """log2(maxpos) of LP<n, es, rs, sf=0>."""
    return math.log2(LPFormat(n, es, rs).maxpos)


def _clamp_sf(sf):
    return int(max(-MAX_SF, min(MAX_SF, sf)))


@dataclasses.dataclass
class LPQResult:
    """The chosen genes per layer, their fitness parts and the search history."""

    genes: dict[str, LayerGene]
    fitness: float
    global_loss: float
    local_loss: float
    mean_bits: float
    budget: float
    seed: int
    history: list[float]
    evaluations: int

    def to_json(self) -> str:
        return json.dumps({
            "budget_bits": self.budget, "mean_weight_bits": round(self.mean_bits, 4),
            "seed": self.seed, "fitness": self.fitness, "global_loss": self.global_loss,
            "local_loss": self.local_loss, "evaluations": self.evaluations,
            "best_fitness_per_generation": self.history,
            "layers": [{"name": name, **dataclasses.asdict(g), "pe_sf": g.sf + g.sf_a}
                       for name, g in self.genes.items()],
        }, indent=2)

    @staticmethod
    def genes_from_json(text: str) -> dict[str, LayerGene]:
        try:
            data = json.loads(text)
            return {layer["name"]: LayerGene(*(int(layer[k]) for k in ("n", "es", "rs", "sf", "sf_a")))
                    for layer in data["layers"]}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise GoldenError(f"not an LPQ result file: {exc}") from None


class LPQ:
    """The per-layer LP format search (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        A trained float model (left unchanged).
    calib_x : torch.Tensor
        Calibration inputs (a few hundred samples).
    budget : float
        Maximum mean bits per weight.
    n_choices, es_choices : sequences of int
        The menu of word widths and exponent sizes.
    local_weight, tau : float
        Weight of the local (contrastive) term and its temperature.
    """

    def __init__(self, model: nn.Module, calib_x: torch.Tensor, *, budget: float = 6.0,
                 n_choices=(4, 5, 6, 7, 8), es_choices=(0, 1, 2), local_weight: float = 0.5,
                 tau: float = 0.1, objective: str = "kl"):
        if not min(n_choices) <= budget:
            raise GoldenError(f"budget must be at least the smallest n ({min(n_choices)}), not {budget!r}")
        if not calib_x.numel():
            raise GoldenError("the calibration set is empty")
        if objective not in ("kl", "cosine"):
            raise GoldenError(f"objective must be 'kl' or 'cosine', not {objective!r}")
        self.objective = objective
        self.model, self.calib_x, self.budget = model.eval(), calib_x, float(budget)
        self.n_choices, self.es_choices = tuple(n_choices), tuple(es_choices)
        self.local_weight, self.tau = local_weight, tau
        self.layers = quantizable_layers(model)
        if not self.layers:
            raise GoldenError("the model has no Conv2d or Linear layer to quantize")
        mods = dict(model.named_modules())
        self.weights = {n: mods[n].weight.detach().double().numpy() for n in self.layers}
        self.sizes = {n: self.weights[n].size for n in self.layers}
        self.inputs = fp_inputs(model, calib_x, self.layers)
        logits, feats = run_model(model, calib_x, None, taps=self.layers)
        self.fp_logits = logits.double()
        self.fp_logp = torch.log_softmax(logits.double(), dim=1)
        self.fp_feats = {n: self._normalize(feats[n]) for n in self.layers}
        self.fp_self = {n: self._info_nce(f, f) for n, f in self.fp_feats.items()}
        self._sf_a: dict = {}
        self._cache: dict = {}

    @staticmethod
    def _normalize(f):
        f = f.float().reshape(len(f), -1)
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _info_nce(self, q, f):
        logits = q @ f.T / self.tau
        return float(torch.nn.functional.cross_entropy(logits, torch.arange(len(q))))

    def _local(self, q, layer):
        """1 - mean cos(q_i, f_i), plus the InfoNCE excess over the FP32 features' own."""
        f = self.fp_feats[layer]
        cos = float((q * f).sum(dim=1).mean())
        return (1.0 - cos) + max(0.0, self._info_nce(q, f) - self.fp_self[layer])

    def center_sf(self, layer: str, n: int, es: int, rs: int) -> int:
        """The weight scale that maps max|w| onto maxpos."""
        amax = float(np.abs(self.weights[layer]).max()) or 1.0
        return _clamp_sf(round(_max_log(n, es, rs) - math.log2(amax)))

    def activation_sf(self, layer: str, n: int, es: int, rs: int) -> int:
        """The input scale with the least squared error on the calibration inputs."""
        key = (layer, n, es, rs)
        if key not in self._sf_a:
            x = self.inputs[layer].ravel()
            amax = float(np.abs(x).max()) or 1.0
            center = _clamp_sf(round(_max_log(n, es, rs) - math.log2(amax)))
            errors = {}
            for sf in range(center - 2, center + 9):
                sf = _clamp_sf(sf)
                errors[sf] = float(np.mean((LPFormat(n, es, rs, sf).quantize(x) - x) ** 2))
            self._sf_a[key] = min(errors, key=lambda s: (errors[s], s))
        return self._sf_a[key]

    def mean_bits(self, genome) -> float:
        return sum(g[0] * self.sizes[n] for n, g in zip(self.layers, genome)) / sum(self.sizes.values())

    def genes(self, genome) -> dict[str, LayerGene]:
        return {name: LayerGene(n, es, rs, sf, self.activation_sf(name, n, es, rs))
                for name, (n, es, rs, sf) in zip(self.layers, genome)}

    def evaluate(self, genome) -> tuple[float, float, float]:
        """(fitness, global loss, local loss) of a genome (cached)."""
        genome = tuple(tuple(g) for g in genome)
        if genome in self._cache:
            return self._cache[genome]
        bits = self.mean_bits(genome)
        if bits > self.budget + 1e-9:
            result = (1e3 + bits - self.budget, math.inf, math.inf)
        else:
            logits, feats = run_model(self.model, self.calib_x, lp_plan(self.genes(genome)), taps=self.layers)
            if self.objective == "kl":
                logq = torch.log_softmax(logits.double(), dim=1)
                glob = float(torch.sum(self.fp_logp.exp() * (self.fp_logp - logq), dim=1).mean())
            else:
                glob = float(1 - torch.nn.functional.cosine_similarity(
                    logits.double(), self.fp_logits, dim=1).mean())
            local = float(np.mean([self._local(self._normalize(feats[n]), n) for n in self.layers]))
            result = (glob + self.local_weight * local, glob, local)
        self._cache[genome] = result
        return result

    # --- the genetic algorithm ---------------------------------------------------------
    def _random_gene(self, rng, layer):
        n = int(rng.choice(self.n_choices))
        es = int(rng.choice(self.es_choices))
        rs = int(rng.integers(1, n))
        return (n, es, rs, self.center_sf(layer, n, es, rs) + int(rng.integers(-2, 3)))

    def _mutate_gene(self, rng, layer, gene):
        n, es, rs, sf = gene
        field = int(rng.integers(4))
        if field == 0:
            options = [c for c in self.n_choices if abs(c - n) == 1]
            n = int(rng.choice(options))
            rs = min(rs, n - 1)
            sf = self.center_sf(layer, n, es, rs) + int(rng.integers(-1, 2))
        elif field == 1:
            es = int(rng.choice(self.es_choices))
            sf = self.center_sf(layer, n, es, rs) + int(rng.integers(-1, 2))
        elif field == 2:
            rs = int(rng.integers(1, n))
        else:
            sf += int(rng.choice([-2, -1, 1, 2]))
        return (n, es, rs, _clamp_sf(sf))

    def search(self, *, seed: int = 0, population: int = 24, generations: int = 20,
               mutation: float = 0.3, progress=None) -> LPQResult:
        """Run the GA. ``progress(generation, generations, best_fitness, best_bits)`` is
        called after every generation (the CLI shows a rich progress bar with it)."""
        if population < 4 or generations < 1:
            raise GoldenError(f"need population >= 4 and generations >= 1, got {population}, {generations}")
        rng = np.random.default_rng(seed)
        pop = []
        for b in sorted({c for c in self.n_choices if c <= self.budget}, reverse=True):
            for es in self.es_choices:
                for rs in sorted({min(2, b - 1), min(3, b - 1), b - 1}):
                    pop.append(tuple((b, es, rs, self.center_sf(name, b, es, rs)) for name in self.layers))
        pop = list(dict.fromkeys(pop))
        while len(pop) < population:
            pop.append(tuple(self._random_gene(rng, name) for name in self.layers))
        pop = pop[:population]
        history = []
        for gen in range(generations):
            scored = sorted(pop, key=lambda g: (self.evaluate(g)[0], g))
            best = scored[0]
            history.append(round(self.evaluate(best)[0], 6))
            if progress:
                progress(gen + 1, generations, self.evaluate(best)[0], self.mean_bits(best))
            if gen == generations - 1:
                break
            nxt = scored[:2]
            while len(nxt) < population:
                def pick():
                    idx = rng.choice(len(scored), size=3, replace=False)
                    return scored[min(idx)]
                a, b = pick(), pick()
                child = tuple(a[k] if rng.random() < 0.5 else b[k] for k in range(len(self.layers)))
                child = tuple(self._mutate_gene(rng, name, g) if rng.random() < mutation else g
                              for name, g in zip(self.layers, child))
                nxt.append(child)
            pop = nxt
        fit, glob, local = self.evaluate(best)
        return LPQResult(self.genes(best), fit, glob, local, self.mean_bits(best), self.budget, seed,
                         history, len(self._cache))


@dataclasses.dataclass
class DigitsSearch:
    """What :func:`search_digits` returns: the search result and the model's test top-1
    (fractions) in FP32 and with the chosen LP formats."""

    result: LPQResult
    model: nn.Module
    top1_fp32: float
    top1_lpq: float
    test_images: int


def search_digits(budget: float = 6.0, seed: int = 0, population: int = 20, generations: int = 15,
                  calib: int = 256, progress=None) -> DigitsSearch:
    """LPQ on the digits CNN (``golden.digits``) with ``calib`` calibration images from
    the training split; ``progress(generation, total, best, bits)`` is called per
    generation. Runs torch on one thread (tiny tensors: faster, and reproducible)."""
    from .digits import load_data, pretrained

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_data()
        model = pretrained()
        search = LPQ(model, data.calibration(calib, 0)[0], budget=budget)
        result = search.search(seed=seed, population=population, generations=generations,
                               progress=progress)
        fp32 = accuracy(model, data.x_test, data.y_test)
        top1 = accuracy(model, data.x_test, data.y_test, lp_plan(result.genes))
    finally:
        torch.set_num_threads(threads)
    return DigitsSearch(result, model, fp32, top1, len(data.y_test))
