"""N:M sparse training: SR-STE and the progressive gradient flow recipes (arXiv 2402.04744).

Every recipe trains a model whose Linear/Conv2d weights end exactly N:M under the rule of
:func:`golden.nm.mask` (the n largest magnitudes of every m consecutive weights along
the reduction axis, ties to the lower index), grouped as the tensor core reads them:
for a convolution the reduction axis is ``(kh, kw, C_in)`` (:mod:`golden.lowering`), so
groups are input channels at one kernel position. A trained model therefore compresses
with :func:`golden.nm.compress` without loss.

Training time ``t`` runs over the *sparse phase* only, from 0 to 1; the phases are

1. dense warm-up (``warmup`` epochs): no mask;
2. sparse phase (``epochs - warmup - finetune`` epochs), by recipe:

   * ``srste``: forward ``W * mask``; backward passes the dense gradient plus
     ``lam * (1 - mask) * W`` (sparse-refined straight-through estimator);
   * ``mdgf-linear`` / ``mdgf-exp`` (mask decay): forward ``W * (mask + (1 - mask) * beta(t))``
     with ``beta = max(1 - decay * t, 0)`` or ``exp(-decay * t)``; gradients follow the
     forward, so pruned weights get ``beta``-scaled gradient early and none late;
   * ``sdgf`` (structure decay): SR-STE whose N follows ``schedule`` (e.g. 7:8 -> 4:8 ->
     2:8 -> 1:8), each stage an equal slice of the sparse phase;

3. fine-tune (``finetune`` epochs): forward ``W * mask`` with the mask frozen at the end of
   phase 2 and pruned weights held at zero (plain binary mask).

The mask is recomputed from the current weights at every step of phase 2. All recipes
run the same epochs on the same dense arithmetic, so their training FLOPs are equal.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from . import GoldenError, nm
from .lowering import as_matrix, from_matrix, matmul_layers, weight_matrix

__all__ = ["Recipe", "RECIPES", "NMParametrization", "SparseTraining", "layer_mask"]

RECIPES = ("dense", "srste", "mdgf-linear", "mdgf-exp", "sdgf")


def default_schedule(n: int, m: int) -> tuple[int, ...]:
    """Structure-decay stages ending at n:m: m-1, then halving down to n (7, 4, 2, 1 for 1:8)."""
    stages = [m - 1] if m - 1 > n else []
    k = m // 2
    while k > n:
        stages.append(k)
        k //= 2
    return tuple(stages) + (n,)


@dataclass(frozen=True)
class Recipe:
    """A training recipe (validated on construction; raises GoldenError naming the value)."""

    kind: str = "srste"
    n: int = 2
    m: int = 4
    epochs: int = 30
    warmup: int = 5
    finetune: int = 5
    lam: float = 2e-4
    decay: float = 0.0          # MDGF: 0 means the default (linear 1.0, exp 8.0)
    schedule: tuple[int, ...] = ()   # SDGF: () means default_schedule(n, m)

    def __post_init__(self):
        if self.kind not in RECIPES:
            raise GoldenError(f"unknown recipe {self.kind!r}; choose one of {', '.join(RECIPES)}")
        if self.m < 2 or not 1 <= self.n <= self.m:
            raise GoldenError(f"target {self.n}:{self.m} is invalid: need m >= 2 and 1 <= n <= m")
        if self.epochs < 1 or self.warmup < 0 or self.finetune < 0:
            raise GoldenError(f"epochs must be >= 1 and warm-up/fine-tune >= 0, not "
                              f"epochs={self.epochs}, warmup={self.warmup}, finetune={self.finetune}")
        if self.kind != "dense" and self.sparse_epochs < 1:
            raise GoldenError(f"no sparse phase: epochs={self.epochs} leaves none after "
                              f"warmup={self.warmup} and finetune={self.finetune}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise GoldenError(f"lam must be a finite value >= 0, not {self.lam!r}")
        if not (math.isfinite(self.decay) and self.decay >= 0):
            raise GoldenError(f"decay must be a finite value > 0 (or 0 for the default), not {self.decay!r}")
        if self.schedule and self.kind != "sdgf":
            raise GoldenError(f"a schedule {list(self.schedule)} applies to the sdgf recipe only, "
                              f"not to {self.kind!r}")
        if self.decay and not self.kind.startswith("mdgf"):
            raise GoldenError(f"a decay of {self.decay!r} applies to the mdgf recipes only, not to {self.kind!r}")
        if self.kind == "sdgf":
            stages = self.stages
            if stages[-1] != self.n:
                raise GoldenError(f"the SDGF schedule {list(stages)} does not end at the target n={self.n}")
            if any(not 1 <= s <= self.m for s in stages) or any(a < b for a, b in zip(stages, stages[1:])):
                raise GoldenError(f"the SDGF schedule {list(stages)} must be non-increasing values in 1..{self.m}")

    @property
    def sparse_epochs(self) -> int:
        return self.epochs - self.warmup - self.finetune

    @property
    def stages(self) -> tuple[int, ...]:
        return self.schedule or default_schedule(self.n, self.m)

    @property
    def beta_decay(self) -> float:
        if self.decay:
            return self.decay
        return 1.0 if self.kind == "mdgf-linear" else 8.0

    def beta(self, t: float) -> float:
        """MDGF's weight on pruned weights at sparse-phase time t in [0, 1]."""
        if self.kind == "mdgf-linear":
            return max(1.0 - self.beta_decay * t, 0.0)
        return math.exp(-self.beta_decay * t)

    def n_at(self, t: float) -> int:
        """The N in force at sparse-phase time t (SDGF stages; the target otherwise)."""
        if self.kind != "sdgf":
            return self.n
        stages = self.stages
        return stages[min(int(t * len(stages)), len(stages) - 1)]


def layer_mask(module: nn.Module, weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """golden.nm.mask of ``weight`` read as the core reads it (conv: K = (kh, kw, C))."""
    keep = nm.mask(as_matrix(module, weight.detach()), n, m)
    return from_matrix(module, keep).to(weight.dtype)


class _SRSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, mask, lam):
        ctx.save_for_backward(w, mask)
        ctx.lam = lam
        return w * mask

    @staticmethod
    def backward(ctx, grad):
        w, mask = ctx.saved_tensors
        return grad + ctx.lam * (1 - mask) * w, None, None


class NMParametrization(nn.Module):
    """The effective weight of one layer under the recipe's current phase."""

    def __init__(self, module: nn.Module, recipe: Recipe):
        super().__init__()
        self.module_ref = [module]          # not a submodule (avoids a reference cycle)
        self.recipe = recipe
        self.phase = "dense"
        self.t = 0.0
        self.register_buffer("frozen", torch.ones_like(module.weight))

    def forward(self, w):
        r = self.recipe
        if self.phase == "dense":
            return w
        if self.phase == "finetune":
            return w * self.frozen
        mask = layer_mask(self.module_ref[0], w, r.n_at(self.t), r.m)
        if r.kind in ("srste", "sdgf"):
            return _SRSTE.apply(w, mask, r.lam)
        beta = r.beta(self.t)
        return w * (mask + (1 - mask) * beta)


@dataclass
class SparseTraining:
    """Applies a recipe to every Linear/Conv2d layer of ``model`` except ``dense_layers``.

    Raises GoldenError when a layer's reduction length K is not a multiple of m (the
    first layer of a small CNN, K = 9 for a 3x3 kernel on one channel, is the usual case:
    keep it dense by naming it in ``dense_layers``).
    """

    model: nn.Module
    recipe: Recipe
    dense_layers: tuple[str, ...] = ()
    params: dict[str, NMParametrization] = field(default_factory=dict)

    def __post_init__(self):
        layers = {l.name: l for l in matmul_layers(self.model)}
        unknown = sorted(set(self.dense_layers) - set(layers))
        if unknown:
            raise GoldenError(f"no Linear/Conv2d layer named {unknown[0]!r}; layers: {', '.join(layers)}")
        if self.recipe.kind == "dense":
            return
        for name, layer in layers.items():
            if name in self.dense_layers:
                continue
            if layer.k % self.recipe.m:
                raise GoldenError(f"layer {name!r} has a reduction length of {layer.k}, which does not "
                                  f"hold {self.recipe.n}:{self.recipe.m} groups (not a multiple of "
                                  f"{self.recipe.m}); keep it dense (dense_layers) or choose another m")
            p = NMParametrization(layer.module, self.recipe)
            parametrize.register_parametrization(layer.module, "weight", p, unsafe=True)
            self.params[name] = p

    def set_phase(self, epoch: int, t_in_epoch: float = 0.0) -> None:
        """Phase and sparse-phase time for ``epoch`` (0-based) plus a fraction of it."""
        r = self.recipe
        if epoch < r.warmup:
            phase, t = "dense", 0.0
        elif epoch < r.warmup + r.sparse_epochs:
            phase, t = "sparse", (epoch - r.warmup + t_in_epoch) / r.sparse_epochs
        else:
            phase, t = "finetune", 1.0
        for name, p in self.params.items():
            if phase == "finetune" and p.phase != "finetune":
                module = p.module_ref[0]
                w = module.parametrizations.weight.original
                p.frozen.copy_(layer_mask(module, w, r.n, r.m))
                with torch.no_grad():
                    w.mul_(p.frozen)
            p.phase, p.t = phase, t

    def after_step(self) -> None:
        """Keep pruned weights at zero during the fine-tune phase."""
        for p in self.params.values():
            if p.phase == "finetune":
                with torch.no_grad():
                    p.module_ref[0].parametrizations.weight.original.mul_(p.frozen)

    def finish(self) -> nn.Module:
        """Bake the final masks into plain weights (exactly N:M) and remove the hooks."""
        r = self.recipe
        for name, p in self.params.items():
            module = p.module_ref[0]
            if p.phase != "finetune":
                self.set_phase(r.epochs)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        self.params.clear()
        return self.model


def train(model: nn.Module, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, *, seed: int,
          lr: float = 2e-3, batch: int = 64, dense_layers: tuple[str, ...] = (),
          progress=None) -> nn.Module:
    """Train ``model`` on ``(x, y)`` with ``recipe`` (Adam, cross-entropy); ``progress`` is
    called after every epoch with (epoch, loss). Returns the model with N:M weights baked in."""
    torch.manual_seed(seed)
    training = SparseTraining(model, recipe, dense_layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(x), generator=g).split(batch)
        total = 0.0
        for step, idx in enumerate(order):
            training.set_phase(epoch, step / len(order))
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            training.after_step()
            total += loss.item() * len(idx)
        if progress:
            progress(epoch, total / len(x))
    model = training.finish()
    model.eval()
    return model


def check_nm(model: nn.Module, n: int, m: int, dense_layers: tuple[str, ...] = ()) -> None:
    """Raise GoldenError unless every sparse layer's weight is n:m as the core reads it."""
    for layer in matmul_layers(model):
        if layer.name in dense_layers:
            continue
        if not nm.is_nm(weight_matrix(layer.module), n, m):
            raise GoldenError(f"layer {layer.name!r} is not {n}:{m}")


def quantize_int8(t: torch.Tensor) -> tuple[np.ndarray, float]:
    """Symmetric per-tensor int8: ``round(t / scale)`` with ``scale = max|t| / 127``."""
    a = t.detach().cpu().numpy().astype(np.float64)
    peak = float(np.abs(a).max())
    scale = peak / 127.0 if peak > 0 else 1.0
    return np.clip(np.rint(a / scale), -127, 127).astype(np.int64), scale
