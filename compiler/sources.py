"""Where the compiler's models come from: a registered model, a ``tessera train-nm``
output folder, or a ``torch.export`` file (``.pt2``), with a calibration set.

:func:`load_source` returns a :class:`Source`: the exported program, the ``nn.Module``
when there is one (TASDER needs it), the calibration inputs, and test inputs and labels
when the model comes with them (the registered digits models do).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golden.models import MODELS, load_model

from . import CompileError

__all__ = ["Source", "load_source", "load_calibration"]


@dataclass
class Source:
    name: str
    exported: object
    module: torch.nn.Module | None
    calib: np.ndarray
    calib_labels: np.ndarray | None
    test_x: np.ndarray | None
    test_y: np.ndarray | None


def load_calibration(path: str | Path, shape: tuple) -> np.ndarray:
    """A ``.npy`` calibration set of inputs ``[N, *shape]`` (float)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CompileError(f"cannot read the calibration file {path}: {exc}") from None
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise CompileError(f"the calibration file {path} holds {data.dtype} values, not numbers")
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != tuple(shape):
        raise CompileError(f"the calibration file {path} has shape {list(data.shape)}; the model takes "
                           f"[N, {', '.join(map(str, shape))}]")
    if len(data) < 1:
        raise CompileError(f"the calibration file {path} is empty")
    return data.astype(np.float64)


def _export(module: torch.nn.Module, example: torch.Tensor):
    try:
        return torch.export.export(module.eval(), (example,))
    except Exception as exc:                    # torch raises many kinds here
        raise CompileError(f"torch.export could not trace the model: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def load_source(spec: str, *, calib: str | None = None, calib_count: int = 256, seed: int = 0) -> Source:
    """``spec``: a registered model name (``golden.models.MODELS``), a folder written by
    ``tessera train-nm``, or a ``.pt2`` file; ``calib``: a ``.npy`` of inputs (required
    for ``.pt2`` files, optional otherwise)."""
    path = Path(spec)
    if spec in MODELS:
        if spec == "minilm":
            raise CompileError("minilm: compile it from Python (compiler.model.compile_model) with token "
                               "embeddings as inputs; the CLI compiles the digits models and .pt2 files")
        bundle = load_model(spec, calib_count, seed)
        x = bundle.x_calib.numpy()
        module = bundle.model
        exported = _export(module, bundle.x_calib[:1])
        labels = bundle.y_calib.numpy() if bundle.y_calib is not None else None
        test_x = bundle.x_test.numpy()
        test_y = bundle.y_test.numpy() if bundle.y_test is not None else None
        if calib:
            x, labels = load_calibration(calib, x.shape[1:]), None
        return Source(spec, exported, module, x, labels, test_x, test_y)
    if path.is_dir() and (path / "model.pt").exists():
        from golden import digits
        try:
            meta = json.loads((path / "recipe.json").read_text())
            state = torch.load(path / "model.pt", weights_only=True)
            module = digits.DigitsCNN()
            module.load_state_dict(state)
        except (OSError, json.JSONDecodeError, RuntimeError, KeyError) as exc:
            raise CompileError(f"{path} is not a readable tessera train-nm folder: {exc}") from None
        data = digits.load_data()
        x, y = data.calibration(calib_count, seed)
        exported = _export(module, x[:1])
        xc = load_calibration(calib, tuple(x.shape[1:])) if calib else x.numpy()
        return Source(f"{path.name} ({meta.get('recipe', {}).get('kind', 'nm')})", exported, module, xc,
                      None if calib else y.numpy(), data.x_test.numpy(), data.y_test.numpy())
    if path.suffix == ".pt2" or path.is_file():
        if not path.exists():
            raise CompileError(f"no model file {path}")
        try:
            exported = torch.export.load(str(path))
        except Exception as exc:
            raise CompileError(f"{path} is not a torch.export program (.pt2): {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if calib is None:
            raise CompileError(f"{path}: give a calibration set with --calib X.npy")
        inputs = [s for s in exported.graph_signature.user_inputs]
        shape = None
        for node in exported.graph.nodes:
            if node.op == "placeholder" and node.name in inputs:
                shape = tuple(int(d) for d in node.meta["val"].shape[1:])
        return Source(path.stem, exported, None, load_calibration(calib, shape), None, None, None)
    known = ", ".join(m for m in MODELS if m != "minilm")
    raise CompileError(f"unknown model {spec!r}: give a registered model ({known}), a train-nm folder or a .pt2 file")

