"""N:M training on the digits CNN: the ``tessera train-nm`` command, the training
benchmark and the one-layer hardware check (:func:`verif.nm_core_layer.run_layer_on_core`
on :func:`layer_operands`) share these helpers."""

import json
from pathlib import Path

import numpy as np
import torch

from golden import digits, nm, sparse_train
from golden.lowering import input_matrix, matmul_layers, weight_matrix
from spec import outputs

__all__ = ["DENSE_LAYERS", "train_digits", "save_model", "layer_operands"]

#: The first convolution (K = 9: one input channel) has no room for N:M groups; it stays
#: dense, as is usual for a network's first layer.
DENSE_LAYERS = ("conv1",)


def train_digits(recipe: sparse_train.Recipe, seed: int, progress=None) -> torch.nn.Module:
    data = digits.load_data()
    torch.manual_seed(seed)
    model = digits.DigitsCNN()
    return sparse_train.train(model, recipe, data.x_train, data.y_train, seed=seed,
                              dense_layers=DENSE_LAYERS, progress=progress)


def save_model(model: torch.nn.Module, recipe: sparse_train.Recipe, out: Path,
               provenance: dict | None = None) -> dict:
    """Write ``model.pt`` (state dict), ``nm_weights.npz`` (per sparse layer the compressed
    float weights and their int8 quantization: values, indices, scale) and ``recipe.json``
    (the recipe, the layers and ``provenance``, :func:`spec.outputs.provenance`), each
    file whole."""
    with outputs.atomic_path(out / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    arrays, summary = {}, {}
    for layer in matmul_layers(model):
        if layer.name in DENSE_LAYERS or recipe.kind == "dense":
            continue
        w = weight_matrix(layer.module)
        values, indices = nm.compress(w, recipe.n, recipe.m)
        q, scale = sparse_train.quantize_int8(w)
        qv, qi = nm.compress(q, recipe.n, recipe.m)
        arrays.update({f"{layer.name}.values": values.numpy(), f"{layer.name}.indices": indices.numpy(),
                       f"{layer.name}.int8_values": qv, f"{layer.name}.int8_indices": qi,
                       f"{layer.name}.int8_scale": np.array(scale)})
        summary[layer.name] = {"shape": list(w.shape), "groups": int(values.shape[1])}
    with outputs.atomic_path(out / "nm_weights.npz") as tmp:
        np.savez(tmp, **arrays)
    schedule = list(recipe.stages) if recipe.kind == "sdgf" else []
    meta = {"recipe": recipe.__dict__ | {"schedule": schedule}, "layers": summary}
    if provenance is not None:
        meta["provenance"] = provenance
    outputs.write_json(out / "recipe.json", meta)
    return meta


def layer_operands(model: torch.nn.Module, name: str, samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights ``W[out, K]`` of layer ``name`` and int8 activations ``X[K, cols]``
    (its real inputs for the first ``samples`` test images), each symmetric per tensor."""
    data = digits.load_data()
    module = dict(model.named_modules())[name]
    captured = {}

    def capture(mod, args, output):
        captured["x"] = args[0]          # returns None: the output is left alone

    handle = module.register_forward_hook(capture)
    with torch.no_grad():
        model(data.x_test[:samples])
    handle.remove()
    w, _ = sparse_train.quantize_int8(weight_matrix(module))
    x, _ = sparse_train.quantize_int8(input_matrix(module, captured["x"]))
    return w, x.T.copy()
