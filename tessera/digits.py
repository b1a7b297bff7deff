"""The small CNN on scikit-learn's 8x8 digits that LPQ and the LP benchmark quantize.

Data: the 1,797 digits, pixels scaled to [0, 1], split once with a fixed seed into
1,197 training and 600 test images; the calibration set is the first 256 training
images. The model (9,882 parameters)::

    conv1 3x3, 1->8, ReLU -> conv2 3x3, 8->16, ReLU -> max-pool 2 -> fc1 256->32, ReLU -> fc2 32->10

Training (Adam, 60 epochs, batch 64, seeded, one thread) takes a few seconds; the
weights are cached under ``.cache/`` (git-ignored) keyed by the recipe, so every later
run loads the same model.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "DigitsData", "load_data", "trained_model", "CACHE_DIR"]

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"
RECIPE = {"epochs": 60, "batch": 64, "lr": 3e-3, "seed": 0, "split_seed": 0, "test": 600, "version": 1}


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(256, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@dataclass(frozen=True)
class DigitsData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def calib_x(self) -> torch.Tensor:
        return self.train_x[:256]


def load_data() -> DigitsData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(RECIPE["split_seed"]).permutation(len(x)))
    test, train = order[:RECIPE["test"]], order[RECIPE["test"]:]
    return DigitsData(x[train], y[train], x[test], y[test])


def _train(data: DigitsData) -> DigitsCNN:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(RECIPE["seed"])
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
        gen = torch.Generator().manual_seed(RECIPE["seed"])
        for _ in range(RECIPE["epochs"]):
            perm = torch.randperm(len(data.train_x), generator=gen)
            for k in range(0, len(perm), RECIPE["batch"]):
                idx = perm[k:k + RECIPE["batch"]]
                loss = nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def trained_model(data: DigitsData | None = None, cache: bool = True) -> DigitsCNN:
    """The trained CNN: loaded from ``.cache/`` when present, else trained (and cached)."""
    data = data or load_data()
    key = hashlib.sha256(repr(sorted(RECIPE.items())).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"digits_cnn_{key}.pt"
    model = DigitsCNN()
    if cache and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = _train(data)
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{np.random.default_rng().integers(1 << 30)}")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return model
