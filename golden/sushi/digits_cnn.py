"""The elastic CNN SuperNet on scikit-learn's 8x8 digits: spec, sandwich-rule training
and measurement (PyTorch, run once and cached as a :class:`~golden.sushi.supernet.SuperNet`).

Architecture (the largest SubNet; every SubNet is a choice of the three widths)::

    8x8x1 -> conv1 3x3 (c1 channels) -> ReLU -> maxpool 2 -> 4x4
          -> conv2 3x3 (c2 channels) -> ReLU -> maxpool 2 -> 2x2
          -> flatten (position outer, channel inner) -> fc1 (h units) -> ReLU -> head (10)

A SubNet uses the first ``c1`` / ``c2`` / ``h`` output channels of each layer and, on the
reduction axis, exactly the inputs those produce, so a narrower SubNet's weights are a
subset of a wider one's (weight sharing). The stored matrices are ``conv1 [C1, 9]``,
``conv2 [C2, 9 C1]`` (K in the core's ``(kh, kw, C_in)`` order, ``golden.lowering``),
``fc1 [H, 4 C2]`` and ``head [10, H]`` with ``C1, C2, H`` the largest choices; a SubNet
with ``c1`` channels reads columns ``p C1 .. p C1 + c1`` of conv2 for each of the nine
kernel positions ``p``.

Training (:data:`RECIPE`): the sandwich rule of BigNAS / slimmable networks -- every step
trains the largest SubNet on the labels and the smallest plus ``random_subnets`` random
ones on the largest one's soft outputs (in-place distillation); Adam with a cosine
schedule, batch 64, on ``golden.digits``' training split (80 %), one CPU thread, every
random draw seeded, so a rerun with the same torch build gives the same weights bit for
bit. Top-1 is then measured on the 360 test images with the stored int8 weights
(dequantized; per-row scales, :func:`golden.sushi.supernet.quantize_rows`), float
activations and float biases (the biases live beside the core, not in the buffer).
"""

import hashlib
import time
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from .. import GoldenError
from ..cache import cache_dir
from .supernet import MatmulUse, SubNet, SuperNet, cached, quantize_rows

__all__ = ["ElasticCNNSpec", "SMALL", "RECIPE", "SMALL_RECIPE", "subnet_uses", "supernet", "small_supernet"]

#: Training recipe; part of the cache key, so changing it retrains.
RECIPE = {"epochs": 80, "batch": 64, "lr": 3e-3, "random_subnets": 2, "version": 2}

#: Input image side and the spatial sizes after each pooling.
_IMAGE, _AFTER_CONV1, _AFTER_CONV2 = 8, 4, 2


@dataclass(frozen=True)
class ElasticCNNSpec:
    """Width choices of the elastic CNN (each ascending, distinct, >= 1).

    Parameters
    ----------
    conv1, conv2 : tuple of int
        Output channels of the two 3x3 convolutions.
    hidden : tuple of int
        Units of the hidden fully connected layer.
    classes : int
        Output classes (10 digits).
    """

    conv1: tuple[int, ...] = (2, 8, 16, 32)
    conv2: tuple[int, ...] = (4, 8, 32, 64)
    hidden: tuple[int, ...] = (6, 32, 64, 128)
    classes: int = 10

    def __post_init__(self):
        for name in ("conv1", "conv2", "hidden"):
            values = getattr(self, name)
            if (not isinstance(values, tuple) or not values or list(values) != sorted(set(values))
                    or not all(isinstance(v, int) and v >= 1 for v in values)):
                raise GoldenError(f"{name} must be a tuple of distinct positive integers in ascending "
                                  f"order, not {name}={values!r}")
        if self.classes != 10:
            raise GoldenError(f"the digits have 10 classes, not classes={self.classes!r}")

    def choices(self) -> list[dict[str, int]]:
        """Every SubNet's choice, smallest first (c1 outer, h inner)."""
        return [{"c1": a, "c2": b, "h": c} for a in self.conv1 for b in self.conv2 for c in self.hidden]

    def largest(self) -> dict[str, int]:
        return {"c1": self.conv1[-1], "c2": self.conv2[-1], "h": self.hidden[-1]}

    def smallest(self) -> dict[str, int]:
        return {"c1": self.conv1[0], "c2": self.conv2[0], "h": self.hidden[0]}

    def stored_shapes(self) -> list[tuple[int, int]]:
        c1, c2, h = self.conv1[-1], self.conv2[-1], self.hidden[-1]
        return [(c1, 9), (c2, 9 * c1), (h, _AFTER_CONV2 ** 2 * c2), (self.classes, h)]


#: A small SuperNet (8 SubNets, ~1 KB of weights) for the unit tests and the RTL benches,
#: where any block size must give a handful of blocks; trained with :data:`SMALL_RECIPE`.
SMALL = ElasticCNNSpec(conv1=(2, 4), conv2=(4, 8), hidden=(8, 16))

#: :data:`RECIPE` shortened for :data:`SMALL` (a few seconds of one core).
SMALL_RECIPE = RECIPE | {"epochs": 20}


def _name(choice: dict[str, int]) -> str:
    return f"c{choice['c1']}-c{choice['c2']}-h{choice['h']}"


def subnet_uses(spec: ElasticCNNSpec, choice: dict[str, int]) -> tuple[MatmulUse, ...]:
    """The four products of a SubNet (module docstring), batch 1."""
    c1, c2, h = choice["c1"], choice["c2"], choice["h"]
    c1_max, c2_max = spec.conv1[-1], spec.conv2[-1]
    return (MatmulUse(0, ((0, c1),), ((0, 9),), _IMAGE ** 2),
            MatmulUse(1, ((0, c2),), tuple((p * c1_max, p * c1_max + c1) for p in range(9)), _AFTER_CONV1 ** 2),
            MatmulUse(2, ((0, h),), tuple((p * c2_max, p * c2_max + c2) for p in range(_AFTER_CONV2 ** 2)), 1),
            MatmulUse(3, ((0, spec.classes),), ((0, h),), 1))


def _model(spec: ElasticCNNSpec):
    import torch.nn.functional as F
    from torch import nn

    class ElasticCNN(nn.Module):
        def __init__(self):
            super().__init__()
            (c1, _), (c2, _), (h, k3), (classes, _) = spec.stored_shapes()
            self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
            self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
            self.fc1 = nn.Linear(k3, h)
            self.head = nn.Linear(h, classes)

        def forward(self, x, choice):
            c1, c2, h = choice["c1"], choice["c2"], choice["h"]
            y = F.relu(F.conv2d(x, self.conv1.weight[:c1], self.conv1.bias[:c1], padding=1))
            y = F.max_pool2d(y, 2)
            y = F.relu(F.conv2d(y, self.conv2.weight[:c2, :c1], self.conv2.bias[:c2], padding=1))
            y = F.max_pool2d(y, 2).permute(0, 2, 3, 1).reshape(len(x), -1)   # position outer
            w = self.fc1.weight.reshape(self.fc1.out_features, _AFTER_CONV2 ** 2, -1)[:h, :, :c2]
            y = F.relu(F.linear(y, w.reshape(h, -1), self.fc1.bias[:h]))
            return F.linear(y, self.head.weight[:, :h], self.head.bias)

    return ElasticCNN()


def _train(spec: ElasticCNNSpec, seed: int, recipe: dict):
    import torch
    import torch.nn.functional as F

    from ..digits import load_data

    data = load_data()
    torch.manual_seed(seed)
    model = _model(spec)
    choices = spec.choices()
    largest, smallest = spec.largest(), spec.smallest()
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["epochs"])
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = data.x_train, data.y_train
    for _ in range(recipe["epochs"]):
        for idx in torch.randperm(len(x), generator=g).split(recipe["batch"]):
            opt.zero_grad()
            logits = model(x[idx], largest)
            loss = F.cross_entropy(logits, y[idx])
            soft = logits.detach().softmax(1)
            picks = rng.integers(0, len(choices), recipe["random_subnets"])
            for choice in [smallest] + [choices[i] for i in picks]:
                loss = loss - (soft * model(x[idx], choice).log_softmax(1)).sum(1).mean()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval(), data


def _build(spec: ElasticCNNSpec, seed: int, recipe: dict) -> SuperNet:
    import torch

    from ..lowering import as_matrix, from_matrix

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        model, data = _train(spec, seed, recipe)
        seconds = time.process_time() - start
        layers = [model.conv1, model.conv2, model.fc1, model.head]
        matrices, scales, biases = [], [], []
        with torch.no_grad():
            for layer in layers:
                q, s = quantize_rows(as_matrix(layer, layer.weight.detach()).double().numpy())
                matrices.append(q)
                scales.append(s)
                biases.append(layer.bias.detach().double().numpy())
                dequantized = torch.from_numpy(q.astype(np.float64) * s[:, None]).float()
                layer.weight.copy_(from_matrix(layer, dequantized))
            subnets, correct = [], []
            for choice in spec.choices():
                subnets.append(SubNet(_name(choice), choice, subnet_uses(spec, choice)))
                correct.append((model(data.x_test, choice).argmax(1) == data.y_test).numpy())
    finally:
        torch.set_num_threads(threads)
    item_quality = 100.0 * np.array(correct, dtype=np.float64)
    info = {"spec": asdict(spec), "recipe": recipe, "seed": seed, "test_items": item_quality.shape[1],
            "train_cpu_seconds": round(seconds, 1), "data": "sklearn digits, golden.digits split (80/20, seed 0)"}
    return SuperNet("digits-cnn", "top-1 (%)", tuple(matrices), tuple(scales), tuple(biases), tuple(subnets),
                    item_quality.mean(axis=1), item_quality, 100.0 / item_quality.shape[1], info)


def supernet(spec: ElasticCNNSpec = ElasticCNNSpec(), seed: int = 0, recipe: dict | None = None) -> SuperNet:
    """The elastic CNN ``spec`` trained with ``seed`` and ``recipe`` (default :data:`RECIPE`)
    and measured; cached in ``golden.cache.cache_dir()`` (``TESSERA_CACHE``) keyed by the
    spec, the recipe, the seed and the torch and scikit-learn versions, so only the first
    call trains (about 30 s of one CPU core for the default spec). Loading imports neither
    torch nor scikit-learn."""
    recipe = RECIPE if recipe is None else recipe
    key = repr((spec, recipe, seed, metadata.version("torch"), metadata.version("scikit-learn")))
    path = cache_dir() / f"sushi_cnn_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    return cached(path, lambda: _build(spec, seed, recipe))


def small_supernet() -> SuperNet:
    """:data:`SMALL` trained with :data:`SMALL_RECIPE` (a few seconds; the unit tests' and
    the RTL benches' SuperNet)."""
    return supernet(SMALL, recipe=SMALL_RECIPE)
