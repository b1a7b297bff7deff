"""What leaves N:M training: a checkpoint folder, and one layer's int8 operands for the core.

A checkpoint folder holds

* ``model.pt``: the state dict (plain tensors; read back with ``weights_only=True``);
* ``nm_weights.npz``: per sparse layer, the compressed float weights
  (``<layer>.values``, ``<layer>.indices``, :func:`golden.nm.compress`) and their int8
  quantization (``<layer>.int8_values``, ``<layer>.int8_indices``, ``<layer>.int8_scale``);
* ``recipe.json``: the recipe, the sparse layers and their shapes, and whatever the
  caller adds (the corpus a student was distilled on, its quality).

Every file is written to a temporary name and renamed (:mod:`spec.outputs`), so a folder never holds a
half-written file. :func:`load_state` raises :class:`golden.GoldenError` in one line for
a missing, truncated or foreign checkpoint.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spec import outputs

from .. import GoldenError, nm
from ..lowering import input_matrix, matmul_layers, weight_matrix
from .estimators import check_nm, quantize_int8
from .recipe import Recipe

__all__ = ["save_model", "load_state", "read_meta", "layer_operands"]


def save_model(model: nn.Module, recipe: Recipe, out: Path, dense_layers: tuple[str, ...] = (),
               extra: dict | None = None) -> dict:
    """Write the checkpoint folder ``out`` (see the module docstring); returns the metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays, summary = {}, {}
    for layer in matmul_layers(model):
        if layer.name in dense_layers or recipe.kind == "dense":
            continue
        w = weight_matrix(layer.module)
        values, indices = nm.compress(w, recipe.n, recipe.m)
        q, scale = quantize_int8(w)
        qv, qi = nm.compress(q, recipe.n, recipe.m)
        arrays.update({f"{layer.name}.values": values.numpy(), f"{layer.name}.indices": indices.numpy(),
                       f"{layer.name}.int8_values": qv, f"{layer.name}.int8_indices": qi,
                       f"{layer.name}.int8_scale": np.array(scale)})
        summary[layer.name] = {"shape": list(w.shape), "groups": int(values.shape[1])}
    meta = {"recipe": recipe.to_dict(), "dense_layers": list(dense_layers), "layers": summary,
            **(extra or {})}
    with outputs.atomic_path(out / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    with outputs.atomic_path(out / "nm_weights.npz") as tmp:
        np.savez(tmp, **arrays)
    outputs.write_json(out / "recipe.json", meta)
    return meta


def read_meta(folder: Path) -> tuple[dict, Recipe]:
    """``recipe.json`` of a checkpoint folder and its recipe (GoldenError when unreadable)."""
    path = Path(folder) / "recipe.json"
    try:
        meta = json.loads(path.read_text())
        return meta, Recipe.from_dict(meta["recipe"])
    except FileNotFoundError:
        raise GoldenError(f"no checkpoint at {str(folder)!r}: {path.name} is missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GoldenError(f"checkpoint {str(path)!r} is corrupted: {exc}") from None


def load_state(model: nn.Module, folder: Path) -> tuple[nn.Module, dict]:
    """Load ``folder/model.pt`` into ``model`` and check that every sparse layer is the
    recipe's n:m; returns ``(model, metadata)``. One-line GoldenError on a missing,
    truncated or foreign checkpoint."""
    meta, recipe = read_meta(folder)
    path = Path(folder) / "model.pt"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise GoldenError(f"checkpoint {str(folder)!r} has no model.pt") from None
    except Exception as exc:   # torch raises RuntimeError, pickle errors, EOFError, zipfile errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GoldenError(f"checkpoint {str(path)!r} is corrupted or not a state dict: {reason}") from None
    if not isinstance(state, dict):
        raise GoldenError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise GoldenError(f"checkpoint {str(path)!r} does not fit the {type(model).__name__}: "
                          f"{' '.join(l.strip() for l in first[:2])}") from None
    if recipe.kind != "dense":
        check_nm(model, recipe.n, recipe.m, tuple(meta.get("dense_layers", ())))
    return model.eval(), meta


def layer_operands(model: nn.Module, name: str, inputs) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights ``W[out, K]`` of layer ``name`` and int8 activations ``X[K, cols]``
    (its real inputs when ``model`` runs on ``inputs``), each symmetric per tensor."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise GoldenError(f"no layer named {name!r}; layers: {', '.join(l.name for l in matmul_layers(model))}")
    module = modules[name]
    captured = {}

    def capture(mod, args, output):
        captured["x"] = args[0]          # returns None: the output is left alone

    handle = module.register_forward_hook(capture)
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    w, _ = quantize_int8(weight_matrix(module))
    x, _ = quantize_int8(input_matrix(module, captured["x"]))
    return w, x.T.copy()
