"""The recipes' effective weights and gradients on a PyTorch model (no training loop).

Every recipe trains a model whose Linear/Conv2d weights end exactly N:M under the rule of
:func:`golden.nm.mask` (the n largest magnitudes of every m consecutive weights along
the reduction axis, ties to the lower index), grouped as the tensor core reads them:
for a convolution the reduction axis is ``(kh, kw, C_in)`` (:mod:`golden.lowering`), so
groups are input channels at one kernel position; for a Linear layer it is the input
dimension. A trained model therefore compresses with :func:`golden.nm.compress` without
loss.

:class:`SparseTraining` puts an :class:`NMParametrization` on every sparse layer's
weight; a loop calls :meth:`SparseTraining.set_phase` before each step and
:meth:`SparseTraining.after_step` after it, then :meth:`SparseTraining.finish`. What
each phase computes is :mod:`golden.sparse_train.recipe`'s.

The per-step mask of the sparse phase is :func:`group_topn`, a torch twin of
:func:`golden.nm.mask` (same rule, same ties; a test holds them equal on ties) that
runs without the round trip through numpy and float64 (about half the time, for the
36 masks a MiniLM step needs); the mask frozen for the fine-tune phase, and every
check, use :func:`golden.nm.mask` itself.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import GoldenError, nm
from ..lowering import as_matrix, from_matrix, matmul_layers, weight_matrix
from .recipe import Recipe

__all__ = ["layer_mask", "group_topn", "NMParametrization", "SparseTraining", "check_nm",
           "quantize_int8"]


def layer_mask(module: nn.Module, weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """golden.nm.mask of ``weight`` read as the core reads it (conv: K = (kh, kw, C))."""
    keep = nm.mask(as_matrix(module, weight.detach()), n, m)
    return from_matrix(module, keep).to(weight.dtype)


def group_topn(matrix: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """:func:`golden.nm.mask` of ``matrix[..., K]`` in torch: 1 at the ``n`` largest
    magnitudes of every ``m`` consecutive elements, ties to the lower index, 0 elsewhere,
    in ``matrix``'s dtype. K must be a multiple of m.

    For n <= 2 (the high-sparsity targets) it takes the first arg-max n times (arg-max
    returns the first of equal maxima, the lower index); otherwise a stable descending
    sort (equal magnitudes keep their index order)."""
    groups = matrix.detach().abs().reshape(*matrix.shape[:-1], -1, m)
    keep = torch.zeros_like(groups)
    if n <= 2:
        work = groups.clone()
        for _ in range(n):
            top = work.argmax(dim=-1, keepdim=True)
            keep.scatter_(-1, top, 1.0)
            work.scatter_(-1, top, -1.0)          # below every magnitude
    else:
        order = torch.argsort(groups, dim=-1, descending=True, stable=True)
        keep.scatter_(-1, order[..., :n], 1.0)
    return keep.reshape(matrix.shape)


def _step_mask(module: nn.Module, weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    return from_matrix(module, group_topn(as_matrix(module, weight), n, m))


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
    """The effective weight of one layer under the recipe's current phase.

    Members
    -------
    phase : str
        "dense", "sparse" or "finetune" (set by :meth:`SparseTraining.set_phase`).
    t : float
        Sparse-phase time in [0, 1].
    mask : torch.Tensor or None
        The top-n mask of the latest sparse-phase forward pass (for measurements).
    """

    def __init__(self, module: nn.Module, recipe: Recipe):
        super().__init__()
        self.module_ref = [module]          # not a submodule (avoids a reference cycle)
        self.recipe = recipe
        self.phase = "dense"
        self.t = 0.0
        self.mask = None
        self.register_buffer("frozen", torch.ones_like(module.weight))

    def forward(self, w):
        r = self.recipe
        if self.phase == "dense":
            return w
        if self.phase == "finetune":
            return w * self.frozen
        mask = _step_mask(self.module_ref[0], w, r.n_at(self.t), r.m)
        self.mask = mask
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
        for name, layer in layers.items():
            if name not in self.dense_layers:
                p = NMParametrization(layer.module, self.recipe)
                parametrize.register_parametrization(layer.module, "weight", p, unsafe=True)
                self.params[name] = p

    def set_phase(self, epoch: int, t_in_epoch: float = 0.0) -> None:
        """Phase and sparse-phase time for ``epoch`` (0-based) plus a fraction of it."""
        r = self.recipe
        phase, t = r.phase(epoch, t_in_epoch)
        for p in self.params.values():
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

    def originals(self) -> dict[str, torch.Tensor]:
        """The dense weights being trained (the optimizer's tensors), by layer name."""
        return {name: p.module_ref[0].parametrizations.weight.original for name, p in self.params.items()}

    def finish(self) -> nn.Module:
        """Bake the final masks into plain weights (exactly N:M) and remove the hooks."""
        r = self.recipe
        for p in self.params.values():
            module = p.module_ref[0]
            if p.phase != "finetune":
                self.set_phase(r.epochs)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        self.params.clear()
        return self.model


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
