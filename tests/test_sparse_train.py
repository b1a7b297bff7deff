"""N:M sparse training (golden/sparse_train/): the estimators' gradients, the
schedules, the phases, the end result being exactly N:M, checkpoints, and one trained
layer run through the tensor core's RTL."""

import json
import math

import pytest
import torch
from torch import nn

from golden import GoldenError, digits, nm, sparse_train
from golden.sparse_train import Recipe, SparseTraining, default_schedule, group_topn, layer_mask
from golden.sparse_train.digits import DENSE_LAYERS
from golden.sparse_train.estimators import _SRSTE
from golden.sparse_train.export import load_state
from golden.sparse_train.loop import train
from tessera.cli import main
from golden.sparse_train.digits import digits_operands
from spec.nm_core import NMCoreConfig
from verif.nm_core_layer import run_layer_on_core

from .conftest import require_simulator


def test_default_sdgf_schedules():
    assert default_schedule(1, 8) == (7, 4, 2, 1)
    assert default_schedule(1, 16) == (15, 8, 4, 2, 1)
    assert default_schedule(2, 4) == (3, 2)


def test_recipe_errors():
    with pytest.raises(GoldenError, match="does not end at the target n=1"):
        Recipe(kind="sdgf", n=1, m=8, schedule=(7, 4, 2))
    with pytest.raises(GoldenError, match="non-increasing"):
        Recipe(kind="sdgf", n=1, m=8, schedule=(2, 4, 1))
    with pytest.raises(GoldenError, match="decay must be a finite value"):
        Recipe(kind="mdgf-exp", decay=-1.0)
    with pytest.raises(GoldenError, match="lam must be"):
        Recipe(lam=float("nan"))
    with pytest.raises(GoldenError, match="target 5:4 is invalid"):
        Recipe(n=5, m=4)
    with pytest.raises(GoldenError, match="unknown recipe 'magic'"):
        Recipe(kind="magic")


def test_layer_that_cannot_hold_the_target_is_named():
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(GoldenError, match="layer '0' has a reduction length of 12.*not a multiple of 8"):
        SparseTraining(model, Recipe(n=1, m=8))
    SparseTraining(model, Recipe(n=1, m=8), dense_layers=("0",))   # kept dense: fine


def test_srste_backward_adds_the_decay_on_pruned_weights():
    w = torch.tensor([[4.0, -3.0, 2.0, 1.0]], requires_grad=True)
    mask = layer_mask(nn.Linear(4, 1), w, 2, 4)
    assert mask.tolist() == [[1, 1, 0, 0]]
    out = _SRSTE.apply(w, mask, 0.5)
    assert out.tolist() == [[4.0, -3.0, 0.0, 0.0]]
    out.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0, 1.0 + 0.5 * 2.0, 1.0 + 0.5 * 1.0]]


def test_mdgf_beta_schedules():
    lin, exp = Recipe(kind="mdgf-linear", decay=2.0), Recipe(kind="mdgf-exp", decay=3.0)
    assert lin.beta(0) == 1 and lin.beta(0.25) == 0.5 and lin.beta(0.75) == 0
    assert exp.beta(0.5) == pytest.approx(math.exp(-1.5))


def test_conv_masks_group_input_channels():
    conv = nn.Conv2d(8, 2, 3)
    mask = layer_mask(conv, conv.weight, 2, 8)
    # 2 of every 8 input channels at each kernel position and output channel.
    assert torch.equal(mask.sum(dim=1), torch.full((2, 3, 3), 2.0))


@pytest.mark.parametrize("kind", ["srste", "mdgf-linear", "mdgf-exp", "sdgf"])
def test_training_ends_exactly_n_m_and_compresses(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(96, 16), torch.randint(0, 3, (96,))
    recipe = Recipe(kind=kind, n=1, m=8, epochs=6, warmup=1, finetune=2)
    seen = []
    trained = train(model, recipe, x, y, seed=0, batch=32,
                                 progress=lambda epoch, loss: seen.append(epoch))
    assert seen == list(range(6))
    sparse_train.check_nm(trained, 1, 8)
    for layer in (trained[0], trained[2]):
        assert not hasattr(layer, "parametrizations")
        values, indices = nm.compress(layer.weight.detach(), 1, 8)
        assert torch.equal(nm.decompress(values, indices, 1, 8), layer.weight.detach())


def test_sdgf_stages_tighten_over_the_sparse_phase():
    r = Recipe(kind="sdgf", n=1, m=8, epochs=10, warmup=1, finetune=1)
    assert [r.n_at(t / 8) for t in range(8)] == [7, 7, 4, 4, 2, 2, 1, 1]


def test_train_nm_command_and_a_trained_layer_on_the_core(tmp_path, capsys, sim_root, monkeypatch):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    out = tmp_path / "run"
    assert main(["train-nm", "--recipe", "sdgf", "--n", "1", "--m", "8", "--epochs", "8",
                 "--warmup", "1", "--finetune", "2", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    # The result on stdout, one line; the progress bar on stderr (8/8 epochs).
    assert captured.out.startswith("test top-1") and captured.out.count("\n") == 1
    assert "train-nm sdgf 1:8 8/8" in captured.err
    meta = json.loads((out / "recipe.json").read_text())
    assert meta["provenance"]["seed"] == 0 and meta["provenance"]["parameters"]["epochs"] == 8
    assert set(meta["layers"]) == {"conv2", "fc1", "fc2"} and meta["recipe"]["schedule"] == [7, 4, 2, 1]
    model, _ = load_state(digits.DigitsCNN(), out)     # checks every sparse layer is 1:8
    sparse_train.check_nm(model, 1, 8, DENSE_LAYERS)
    assert main(["eval-nm", str(out)]) == 0
    assert "every sparse layer exactly 1:8; test top-1" in capsys.readouterr().out
    for sim in ("verilator", "icarus"):
        require_simulator(sim)
        w, x = digits_operands(model, "fc1")
        result = run_layer_on_core(w, x, NMCoreConfig(n=1, m=8, rows=8), tmp_path / "layer", sim=sim, name="fc1")
        assert result["mismatches"] == 0 and result["outputs"] == 64 * 4
        assert 0 < result["nonzero_weights"] <= 64 * 512 // 8


def test_recipe_phases_densities_and_json():
    r = Recipe(kind="mdgf-linear", n=1, m=8, epochs=10, warmup=2, finetune=2, decay=2.0)
    assert r.phase(1, 0.5) == ("dense", 0.0) and r.phase(8) == ("finetune", 1.0)
    assert r.phase(5, 0.0) == ("sparse", 0.5)
    # Mask decay multiplies every weight until beta reaches 0 (t = 1 / decay), then 1:8.
    assert r.forward_density(0.4, "sparse") == 1.0 and r.forward_density(0.5, "sparse") == 1 / 8
    sd = Recipe(kind="sdgf", n=1, m=8, epochs=10, warmup=1, finetune=1)
    assert [sd.forward_density(t / 4, "sparse") for t in range(4)] == [7 / 8, 4 / 8, 2 / 8, 1 / 8]
    assert Recipe(kind="mdgf-exp").forward_density(0.99, "sparse") == 1.0    # exp never reaches 0
    for recipe in (r, sd, Recipe()):
        back = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
        assert back.to_dict() == recipe.to_dict()
    with pytest.raises(GoldenError, match="not a recipe"):
        Recipe.from_dict({"kind": "srste", "colour": "red"})


@pytest.mark.parametrize("m", [4, 8, 16])
def test_group_topn_is_golden_nm_mask_including_ties(m):
    g = torch.Generator().manual_seed(m)
    w = torch.randint(-3, 4, (24, 4 * m), generator=g).float()    # many equal magnitudes
    w[0] = 0.0                                                    # a group of all ties
    for n in sorted({1, 2, 3, m // 2, m - 1}):
        assert torch.equal(group_topn(w, n, m), torch.from_numpy(nm.mask(w.numpy(), n, m)).float()), n


def test_importing_the_semantics_loads_no_training_code():
    """golden.sparse_train is the reference semantics: importing it loads no torch, and
    its estimators load no training loop, data set or language model."""
    import subprocess
    import sys

    code = ("import json, sys; import golden.sparse_train as s; a = sorted(sys.modules); "
            "s.SparseTraining; b = sorted(sys.modules); print(json.dumps([a, b]))")
    bare, semantics = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                                capture_output=True, text=True).stdout)
    assert "torch" not in bare and "golden.sparse_train.recipe" in bare
    training = {"golden.sparse_train.loop", "golden.sparse_train.distil", "golden.sparse_train.digits",
                "golden.digits", "golden.minilm", "golden.corpus", "sklearn", "transformers"}
    assert "golden.sparse_train.estimators" in semantics and not training & set(semantics)


def test_checkpoint_errors_are_one_line(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    recipe = Recipe(kind="srste", n=2, m=4, epochs=3, warmup=0, finetune=1)
    trained = train(model, recipe, torch.randn(32, 16), torch.randint(0, 2, (32,)), seed=0, batch=16,
                    dense_layers=("2",))
    from golden.sparse_train.export import save_model

    out = tmp_path / "ckpt"
    meta = save_model(trained, recipe, out, ("2",), {"model": "toy"})
    assert set(meta["layers"]) == {"0"} and sorted(p.name for p in out.iterdir()) == [
        "model.pt", "nm_weights.npz", "recipe.json"]               # no temporary left behind
    fresh, _ = load_state(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)), out)
    assert torch.equal(fresh[0].weight, trained[0].weight)
    with pytest.raises(GoldenError, match="does not fit the Sequential"):
        load_state(nn.Sequential(nn.Linear(16, 4)), out)
    (out / "model.pt").write_bytes((out / "model.pt").read_bytes()[:200])       # truncated
    with pytest.raises(GoldenError, match="model.pt' is corrupted or not a state dict"):
        load_state(model, out)
    (out / "recipe.json").write_text("{not json")
    assert main(["eval-nm", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: checkpoint") and "recipe.json' is corrupted" in err
    assert err.count("\n") == 1
    assert main(["eval-nm", str(tmp_path / "nowhere")]) == 1
    assert "recipe.json is missing" in capsys.readouterr().err
