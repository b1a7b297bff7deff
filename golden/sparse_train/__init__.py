"""N:M sparse training: SR-STE and the progressive gradient flow recipes (arXiv 2402.04744).

Why a package and where each piece lives
----------------------------------------
The reference semantics (what a recipe is, what weight and gradient it gives a layer at
each moment, which weights survive) are what the rest of Tessera needs: reports read
recipes, the compiler and the benches check that a trained layer is exactly N:M and
compress it, a cost model prices a recipe's FLOPs. None of them needs an optimizer, a
data set or a model to train. So the package splits along that line, and importing it
loads only the semantics (a test checks ``sys.modules``):

* :mod:`.recipe`: :class:`Recipe` (validated, frozen), the phases, MDGF's ``beta(t)``,
  SDGF's stages, the forward density each recipe computes at: plain Python, no torch;
* :mod:`.estimators`: the N:M masks as the core groups them, the SR-STE estimator, the
  MDGF/SDGF parametrizations (:class:`SparseTraining` on any PyTorch model), the exact
  N:M check and the int8 quantization of a trained layer;

and the training code, imported only by whoever trains:

* :mod:`.loop`: the supervised loop (Adam, cross-entropy) for classifiers;
* :mod:`.digits`: the digits CNN trained with it (``tessera train-nm``'s default);
* :mod:`.distil`: all-MiniLM-L6-v2 distilled into an N:M student on the corpus of
  :mod:`golden.corpus` (the optional ``minilm`` extra), with its FLOPs and
  gradient-noise measurements;
* :mod:`.export`: checkpoint folders (atomic writes, one-line errors when corrupted) and
  one trained layer's int8 operands for the N:M core.

One module per concern rather than a ``nm_train.py`` twin of the old file: the
distillation loop alone is as long as the old module, and the two loops share the
semantics, not each other.

The estimators' names are loaded on first use (PEP 562), so ``import golden.sparse_train``
(and the CLI, which lists the recipes) does not import torch.
"""

import importlib

from .recipe import RECIPES, SPARSE_RECIPES, Recipe, default_schedule

_ESTIMATORS = ("layer_mask", "group_topn", "NMParametrization", "SparseTraining", "check_nm",
               "quantize_int8")


def __getattr__(name):
    if name in _ESTIMATORS:
        return getattr(importlib.import_module(".estimators", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Recipe", "RECIPES", "SPARSE_RECIPES", "default_schedule", "layer_mask", "group_topn",
           "NMParametrization", "SparseTraining", "check_nm", "quantize_int8"]
