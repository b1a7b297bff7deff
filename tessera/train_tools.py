"""The one-layer hardware check of an N:M-trained model (a verification job: issue 10
moves it to verif/). Training itself lives in :mod:`golden.sparse_train`."""

import json
from pathlib import Path

import numpy as np

from golden.sparse_train.digits import digits_operands
from hw.nm_core import NMCore
from spec.nm_core import NMCoreConfig
from verif.runner import run_bench

__all__ = ["run_layer_on_core"]


def run_layer_on_core(model, name: str, n: int, m: int, out: Path, sim: str = "verilator",
                      rows: int = 8, operands: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Run layer ``name`` of a trained n:m model through the N:M core's RTL (cocotb).

    ``operands``: int8 ``(W[out, K], X[K, cols])`` to run
    (:func:`golden.sparse_train.export.layer_operands`); default: the layer's inputs on
    the first digits test images (:func:`golden.sparse_train.digits.digits_operands`).
    """
    out.mkdir(parents=True, exist_ok=True)
    w, x = operands if operands is not None else digits_operands(model, name)
    np.savez(out / f"{name}.npz", w=w, x=x)
    cfg = NMCoreConfig(n=n, m=m, rows=rows)
    result_file = (out / f"{name}_{sim}.json").resolve()
    run_bench(cfg, NMCore(cfg), "nm_core", "verif.nm_core_layer", sim=sim,
              build_root=out / "sim_build", quiet=True,
              extra_env={"TESSERA_LAYER": str((out / f"{name}.npz").resolve()),
                         "TESSERA_LAYER_OUT": str(result_file)})
    return json.loads(result_file.read_text())
