"""TASDER end to end on the digits CNN through the CLI (the model trains once and is
cached): the JSON it writes, the budget it keeps, the cost it reports."""

import json

from golden import tasd
from spec.nm_core import NMCoreConfig
from tessera.cli import main


def test_tasder_command_on_the_pruned_digits_cnn(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    # A folder for -o (trailing slash, not yet there) means tasder.json inside it.
    assert main(["tasder", "--model", "digits-p75", "--core", "2:4", "--max-drop", "1.0",
                 "--calib", "256", "-o", f"{tmp_path}/runs/"]) == 0
    out = tmp_path / "runs" / "tasder.json"
    summary = json.loads(out.read_text())
    record = summary["provenance"]
    assert record["seed"] == 0 and record["calibration_samples"] == 256
    assert record["parameters"]["max_drop"] == 1.0 and record["parameters"]["model"] == "digits-p75"
    assert {"tessera", "torch"} <= set(record["versions"])
    search = summary["search"]
    core = NMCoreConfig(n=2, m=4, rows=8)
    # The budget holds on the calibration batch it was searched on.
    assert search["metric"] == "accuracy_drop_points" and search["achieved"] <= 1.0
    # Every layer's cycles are what the cost model gives for its choice and shape.
    for layer in search["layers"]:
        series = layer["weights"] if layer["weights"] != "dense" else layer["activations"]
        if layer["activations"] != "dense":
            expected = tasd.series_cycles(series, core, layer["cols"], layer["k"], layer["out"])
        else:
            expected = tasd.series_cycles(series, core, layer["out"], layer["k"], layer["cols"])
        assert layer["cycles"] == expected
    assert search["cycles"] == sum(l["cycles"] for l in search["layers"]) < search["dense_cycles"]
    assert 0 < summary["effective_density"] < 1
    captured = capsys.readouterr()
    table = captured.out
    assert "| conv2 | Conv2d | 32 x 144 x 64 |" in table and "fewer cycles than dense" in table
    assert "TASDER digits-p75" in captured.err and "TASDER" not in table    # progress: stderr only


def test_tasder_command_errors(capsys):
    assert main(["tasder", "--core", "3:4", "--menu", "2:8"]) == 1
    assert "term 2:8 cannot run on a 3:4 core" in capsys.readouterr().err
    assert main(["tasder", "--core", "2of4"]) == 1
    assert "core '2of4' is not of the form n:m" in capsys.readouterr().err


def test_minilm_lowers_to_36_projections_and_runs_through_tasd():
    import pytest
    import torch

    from golden import minilm, tasder
    from golden.lowering import matmul_layers

    missing = minilm.available()
    if missing:
        pytest.skip(missing)
    model = minilm.SentenceEmbedder()
    layers = matmul_layers(model)
    assert len(layers) == 36 and all(l.kind == "Linear" for l in layers)
    x = minilm.pack_sentences(minilm.template_sentences(2, 0))      # something tiny
    with torch.no_grad():
        reference = model(x)
    assert torch.allclose(tasder.approximate(model, {}, x), reference)
    # Exact series (4:8+4:8 keeps every element) change nothing; a lossy one changes a little.
    name = layers[4].name
    exact = tasder.approximate(model, {name: tasder.LayerChoice(activations="4:8+4:8")}, x)
    assert torch.allclose(exact, reference, atol=1e-5)
    lossy = tasder.approximate(model, {name: tasder.LayerChoice(weights="2:4")}, x)
    cosine = torch.nn.functional.cosine_similarity(lossy, reference, dim=-1)
    assert 0.9 < float(cosine.min()) < 1.0
