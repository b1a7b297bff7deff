"""The registry of built-in models the model-level commands (``tessera tasder``, the
compiler, benchmarks) run on.

``digits``, ``digits-p50``, ``digits-p75``, ``digits-p90``: the digits CNN
(:mod:`golden.digits`), dense or magnitude-pruned to 50/75/90 % unstructured sparsity,
with a seeded calibration batch from the training split and the test split (labels:
the metric is top-1).

``minilm``: all-MiniLM-L6-v2 as a sentence embedder (the optional ``minilm`` extra),
calibrated on the first ``calib`` (default :data:`MINILM_CALIB`) sentences of the
calibration split of :mod:`golden.corpus` (real sentences from the standard library's
docstrings, split with ``seed``) and evaluated on the first :data:`MINILM_TEST` of its
test split (no labels: the metric is the cosine similarity of each embedding to the FP32
model's). The bundle's ``data`` records the corpus (Python version, hash, split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import GoldenError

if TYPE_CHECKING:                       # torch loads only when a model does
    import torch

__all__ = ["ModelBundle", "MODELS", "load_model", "DIGITS_CALIB", "MINILM_CALIB", "MINILM_TEST"]

DIGITS = {"digits": 0.0, "digits-p50": 0.5, "digits-p75": 0.75, "digits-p90": 0.9}
MODELS = (*DIGITS, "minilm")
#: Default calibration batch sizes (digits images, MiniLM sentences).
DIGITS_CALIB, MINILM_CALIB = 512, 24
#: MiniLM test sentences (the start of the corpus' test split).
MINILM_TEST = 256


@dataclass
class ModelBundle:
    name: str
    model: torch.nn.Module
    x_calib: torch.Tensor
    y_calib: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    data: dict | None = None        # where the inputs came from (recorded in reports)

    @property
    def labelled(self) -> bool:
        return self.y_calib is not None


def load_model(name: str, calib: int | None = None, seed: int = 0) -> ModelBundle:
    """A built-in model with ``calib`` calibration samples (default: the model's,
    :data:`DIGITS_CALIB` or :data:`MINILM_CALIB`) drawn with ``seed``."""
    if name not in MODELS:
        raise GoldenError(f"unknown model {name!r}; built-in models: {', '.join(MODELS)}")
    if calib is not None and calib < 1:
        raise GoldenError(f"the calibration batch needs >= 1 sample, not {calib}")
    if name == "minilm":
        from golden import corpus, minilm

        missing = minilm.available()
        if missing:
            raise GoldenError(missing)
        text = corpus.load(seed)
        calib = MINILM_CALIB if calib is None else calib
        if calib > len(text.calibration):
            raise GoldenError(f"the corpus' calibration split has {len(text.calibration)} sentences, "
                              f"not the {calib} asked for")
        return ModelBundle(name, minilm.SentenceEmbedder(), minilm.pack_sentences(text.calibration[:calib]),
                           None, minilm.pack_sentences(text.test[:MINILM_TEST]), None,
                           data={"corpus": text.describe(), "calibration_sentences": calib,
                                 "test_sentences": min(MINILM_TEST, len(text.test))})
    from golden import digits

    calib = DIGITS_CALIB if calib is None else calib
    data = digits.load_data()
    x, y = data.calibration(calib, seed)
    return ModelBundle(name, digits.pretrained(DIGITS[name]), x, y, data.x_test, data.y_test)
