"""The supervised training loop: a classifier trained to an N:M target with a recipe
(Adam, cross-entropy, seeded batches). The digits CNN trains with it
(:mod:`golden.sparse_train.digits`)."""

import torch
from torch import nn

from .estimators import SparseTraining
from .recipe import Recipe

__all__ = ["train"]


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
