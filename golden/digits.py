"""A small CNN on scikit-learn's 8x8 digits, dense and magnitude-pruned, for the model-level
benchmarks (TASD, LP, N:M training). Trains in seconds on the CPU; trained weights are
cached (``TESSERA_CACHE``, default ``~/.cache/tessera``) keyed by everything that
determines them, so every later call loads them.

Data: 1,797 images, scaled to [0, 1], split 80/20 (stratified, seed 0) into train and
test. Pruning is unstructured, per layer, by magnitude, followed by a short fine-tune
with the mask fixed (the pruned models are "off-the-shelf sparse models"; TASD itself
is applied later without any fine-tuning).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import GoldenError
from .cache import cache_dir, load_or_rebuild

__all__ = ["DigitsData", "load_data", "DigitsCNN", "train", "prune_unstructured", "accuracy",
           "pretrained", "cache_path", "cache_dir"]


@dataclass(frozen=True)
class DigitsData:
    x_train: torch.Tensor   # [N, 1, 8, 8] float32 in [0, 1]
    y_train: torch.Tensor   # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor

    def calibration(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded subset of ``size`` images of the training split (for post-training
        searches); ``size`` must be in 1..len(training split), never silently capped."""
        if not 1 <= size <= len(self.x_train):
            raise GoldenError(f"the calibration batch draws from the {len(self.x_train)} training "
                              f"images: its size must be in 1..{len(self.x_train)}, not {size}")
        if seed < 0:
            raise GoldenError(f"the calibration seed must be >= 0, not {seed}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.x_train), generator=g)[:size]
        return self.x_train[idx], self.y_train[idx]


def load_data() -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, digits.target, test_size=0.2, random_state=0,
                                          stratify=digits.target)
    t = torch.from_numpy
    return DigitsData(t(xtr), t(ytr).long(), t(xte), t(yte).long())


class DigitsCNN(nn.Module):
    """conv3x3(1->16) - ReLU - conv3x3(16->32) - ReLU - maxpool2 - fc(512->64) - ReLU - fc(64->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def train(model: nn.Module, data: DigitsData, epochs: int, seed: int, lr: float = 2e-3,
          masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Adam, batch 64, cross-entropy; with ``masks`` the masked weights stay zero.
    Runs on one thread: the tensors are tiny, so that is faster and reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, data, epochs, seed, lr, masks)
    finally:
        torch.set_num_threads(threads)


def _train(model, data, epochs, seed, lr, masks):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data.x_train)
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n, generator=g).split(64):
            opt.zero_grad()
            loss_fn(model(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
    model.eval()
    return model


def prune_unstructured(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Zero the smallest-magnitude ``sparsity`` fraction of every Conv2d/Linear weight
    (per layer, ties by position); return the masks keyed by parameter name."""
    if not 0 <= sparsity < 1:
        raise GoldenError(f"sparsity must be in [0, 1), not {sparsity!r}")
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach()
            drop = int(round(sparsity * w.numel()))
            order = torch.argsort(w.abs().flatten(), stable=True)
            mask = torch.ones(w.numel())
            mask[order[:drop]] = 0
            mask = mask.reshape(w.shape)
            with torch.no_grad():
                module.weight.mul_(mask)
            masks[f"{name}.weight"] = mask
    return masks


#: Training recipe; part of the cache key, so changing it retrains.
RECIPE = {"epochs": 40, "finetune_epochs": 15, "lr": 2e-3, "version": 1}


def cache_path(sparsity: float = 0.0, seed: int = 0) -> Path:
    """The cache file of :func:`pretrained` ``(sparsity, seed)``, keyed by everything that
    determines the weights (the recipe, the sparsity, the seed, the torch version)."""
    if not 0 <= sparsity < 1:
        raise GoldenError(f"sparsity must be in [0, 1), not {sparsity!r}")
    key = hashlib.sha256(repr((RECIPE, round(sparsity, 4), seed, torch.__version__)).encode()).hexdigest()[:16]
    return cache_dir() / f"digits_cnn_{key}.pt"


def pretrained(sparsity: float = 0.0, seed: int = 0) -> DigitsCNN:
    """The digits CNN trained with ``seed``, then pruned to ``sparsity`` and fine-tuned
    with the mask fixed (``sparsity=0`` is the dense model). Cached at :func:`cache_path`;
    an unreadable cache file is named in a warning and trained again
    (:func:`golden.cache.load_or_rebuild`)."""
    path = cache_path(sparsity, seed)

    def load(file):
        model = DigitsCNN()
        model.load_state_dict(torch.load(file, weights_only=True))
        return model.eval()

    def build(tmp):
        data = load_data()
        if sparsity == 0:
            torch.manual_seed(seed)
            model = DigitsCNN()
            train(model, data, RECIPE["epochs"], seed, RECIPE["lr"])
        else:
            model = pretrained(0.0, seed)
            masks = prune_unstructured(model, sparsity)
            train(model, data, RECIPE["finetune_epochs"], seed + 1, RECIPE["lr"] / 2, masks)
        torch.save(model.state_dict(), tmp)

    return load_or_rebuild(path, load, build, "digits CNN")
