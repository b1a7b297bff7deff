"""N:M training of the digits CNN (:mod:`golden.digits`): the ``tessera train-nm`` command's
default model and the digits table of ``tessera bench train-nm``."""

import numpy as np
import torch

from .. import digits
from .export import layer_operands
from .loop import train
from .recipe import Recipe

__all__ = ["DENSE_LAYERS", "train_digits", "digits_operands"]

#: The first convolution (K = 9: one input channel) has no room for N:M groups; it stays
#: dense, as is usual for a network's first layer.
DENSE_LAYERS = ("conv1",)


def train_digits(recipe: Recipe, seed: int, progress=None) -> torch.nn.Module:
    """The digits CNN trained from scratch to ``recipe`` on the training split."""
    data = digits.load_data()
    torch.manual_seed(seed)
    model = digits.DigitsCNN()
    return train(model, recipe, data.x_train, data.y_train, seed=seed,
                 dense_layers=DENSE_LAYERS, progress=progress)


def digits_operands(model: torch.nn.Module, name: str, samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """int8 ``W[out, K]`` and ``X[K, cols]`` of layer ``name`` on the first ``samples``
    test images (:func:`golden.sparse_train.export.layer_operands`)."""
    return layer_operands(model, name, digits.load_data().x_test[:samples])
