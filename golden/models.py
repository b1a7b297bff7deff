"""The registry of built-in models the model-level commands (``tessera tasder``, the
compiler, benchmarks) run on.

``digits``, ``digits-p50``, ``digits-p75``, ``digits-p90``: the digits CNN
(:mod:`golden.digits`), dense or magnitude-pruned to 50/75/90 % unstructured sparsity,
with a seeded calibration batch from the training split and the test split (labels:
the metric is top-1).

``minilm``: all-MiniLM-L6-v2 as a sentence embedder (the optional ``minilm`` extra),
calibrated on the four long texts of :data:`golden.minilm.TEXTS` (128 tokens each) and
evaluated on the sixteen :data:`golden.minilm.SENTENCES` (no labels: the metric is the
cosine similarity of each embedding to the FP32 model's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import GoldenError

if TYPE_CHECKING:                       # torch loads only when a model does
    import torch

__all__ = ["ModelBundle", "MODELS", "load_model"]

DIGITS = {"digits": 0.0, "digits-p50": 0.5, "digits-p75": 0.75, "digits-p90": 0.9}
MODELS = (*DIGITS, "minilm")


@dataclass
class ModelBundle:
    name: str
    model: torch.nn.Module
    x_calib: torch.Tensor
    y_calib: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor | None

    @property
    def labelled(self) -> bool:
        return self.y_calib is not None


def load_model(name: str, calib: int = 512, seed: int = 0) -> ModelBundle:
    """A built-in model with ``calib`` calibration samples drawn with ``seed``."""
    if name == "minilm":
        from golden import minilm

        missing = minilm.available()
        if missing:
            raise GoldenError(missing)
        return ModelBundle(name, minilm.SentenceEmbedder(), minilm.pack_sentences(minilm.TEXTS),
                           None, minilm.pack_sentences(minilm.SENTENCES), None)
    if name not in DIGITS:
        raise GoldenError(f"unknown model {name!r}; built-in models: {', '.join(MODELS)}")
    from golden import digits

    if calib < 1:
        raise GoldenError(f"the calibration batch needs >= 1 sample, not {calib}")
    data = digits.load_data()
    x, y = data.calibration(calib, seed)
    return ModelBundle(name, digits.pretrained(DIGITS[name]), x, y, data.x_test, data.y_test)
