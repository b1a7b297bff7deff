"""LPQ (golden/lpq.py) on the digits CNN: a small search is reproducible from its seed,
keeps to its bits budget and improves on its starting population; the baselines'
quantizers; the ``tessera lpq`` command. Small populations keep this to seconds."""

import json

import numpy as np
import pytest
import torch

from golden import GoldenError, lpq, lpq_search
from golden.digits import load_data, pretrained
from golden.lp import LPFormat
from tessera.cli import main


@pytest.fixture(scope="module")
def digits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = load_data()
    yield data, pretrained()
    torch.set_num_threads(threads)


def test_fp32_model_is_trained(digits):
    data, model = digits
    assert lpq.accuracy(model, data.x_test, data.y_test) > 0.95


def test_search_is_reproducible_and_keeps_the_budget(digits):
    data, model = digits
    calls = []
    runs = [lpq_search.LPQ(model, data.calibration(256, 0)[0][:64], budget=5.5).search(
        seed=3, population=6, generations=3, progress=lambda *a: calls.append(a)) for _ in range(2)]
    a, b = runs
    assert a.genes == b.genes and a.history == b.history and a.fitness == b.fitness
    assert a.mean_bits <= 5.5 and a.fitness < 1e3
    assert len(calls) == 6 and [c[0] for c in calls[:3]] == [1, 2, 3]
    assert all(x >= y for x, y in zip(a.history, a.history[1:]))    # elitism: never worse
    for name, gene in a.genes.items():
        assert 4 <= gene.n <= 8 and 1 <= gene.rs < gene.n
        assert gene.weight_format() == LPFormat(gene.n, gene.es, gene.rs, gene.sf)
    doc = json.loads(a.to_json())
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert lpq_search.LPQResult.genes_from_json(a.to_json()) == a.genes
    assert all(layer["pe_sf"] == layer["sf"] + layer["sf_a"] for layer in doc["layers"])


def test_fitness_prefers_wider_formats_and_rejects_over_budget(digits):
    data, model = digits
    search = lpq_search.LPQ(model, data.calibration(256, 0)[0][:64], budget=6)
    uniform = lambda n: tuple((n, 0, 2, search.center_sf(name, n, 0, 2)) for name in search.layers)  # noqa: E731
    assert search.evaluate(uniform(6))[0] < search.evaluate(uniform(4))[0]
    fit, glob, local = search.evaluate(uniform(7))
    assert fit > 1e3 and glob == np.inf
    with pytest.raises(GoldenError, match="budget must be at least the smallest n \\(4\\), not 3"):
        lpq_search.LPQ(model, data.calibration(256, 0)[0][:8], budget=3)
    with pytest.raises(GoldenError, match="not an LPQ result file"):
        lpq_search.LPQResult.genes_from_json('{"layers": [{"name": "x"}]}')


def test_baseline_quantizers():
    w = np.array([[0.5, -0.25, 0.1], [2.0, 1.0, -0.3]])
    q4 = lpq.int_weights(4)(w)
    assert np.allclose(q4[0], np.round(w[0] / (0.5 / 7)) * (0.5 / 7))      # per-channel scale
    assert np.abs(q4[1]).max() == 2.0
    q = lpq.int_inputs(8, np.array([0.0, 3.0]))                             # unsigned: 0..255
    assert q(np.array([3.0, -1.0, 1.5]))[1] == 0 and np.isclose(q(np.array([3.0]))[0], 3.0)
    f = lpq.fp8_weights(w)
    assert np.allclose(np.abs(f).max(axis=1), np.abs(w).max(axis=1))       # max maps to 448 exactly
    assert np.allclose(f, w, rtol=2 ** -4)


def test_baselines_are_close_to_fp32(digits):
    data, model = digits
    fp32 = lpq.accuracy(model, data.x_test, data.y_test)
    for plan in (lpq.int_plan(model, data.calibration(256, 0)[0], 8), lpq.fp8_plan(model, data.calibration(256, 0)[0])):
        assert abs(lpq.accuracy(model, data.x_test, data.y_test, plan) - fp32) < 0.02


def test_cli_lpq_writes_json_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "lpq.json"
    assert main(["lpq", "--population", "4", "--generations", "2", "--budget", "5", "--no-progress",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layer" in text and "fc1" in text and "mean bits per weight" in text
    doc = json.loads(out.read_text())
    assert doc["budget_bits"] == 5 and doc["mean_weight_bits"] <= 5 and len(doc["layers"]) == 4
    assert main(["lpq", "--budget", "2", "--no-progress", "-o", str(out)]) == 1
    assert capsys.readouterr().err == "tessera: error: budget must be at least the smallest n (4), not 2.0\n"


def test_pe_arithmetic_agrees_with_the_float_simulation(digits):
    data, model = digits
    genes = lpq_search.LPQ(model, data.calibration(256, 0)[0][:64], budget=6).genes(
        tuple((6, 0, 2, s) for s in (2, 2, 4, 3)))
    x, y = data.x_test[:200], data.y_test[:200]
    sim = lpq.accuracy(model, x, y, lpq.lp_plan(genes))
    pe = lpq.pe_accuracy(model, x, y, genes, table_bits=8, acc_width=32, acc_frac=16)
    assert abs(sim - pe) <= 0.01 and pe > 0.9
    # A 1-bit table is coarse enough to cost accuracy: the PE path really uses its table.
    coarse = lpq.pe_accuracy(model, x, y, genes, table_bits=1, acc_width=32, acc_frac=16)
    assert coarse != pe or coarse < sim


def test_cosine_objective(digits):
    data, model = digits
    search = lpq_search.LPQ(model, data.calibration(256, 0)[0][:32], budget=6, objective="cosine")
    six = tuple((6, 0, 2, search.center_sf(name, 6, 0, 2)) for name in search.layers)
    four = tuple((4, 0, 2, search.center_sf(name, 4, 0, 2)) for name in search.layers)
    (fit6, glob6, _), (fit4, glob4, _) = search.evaluate(six), search.evaluate(four)
    assert 0 <= glob6 < glob4 < 1 and fit6 < fit4
    with pytest.raises(GoldenError, match="objective must be 'kl' or 'cosine', not 'mse'"):
        lpq_search.LPQ(model, data.calibration(256, 0)[0][:8], objective="mse")
