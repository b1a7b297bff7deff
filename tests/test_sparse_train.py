"""N:M sparse training (golden/sparse_train.py): the estimators' gradients, the
schedules, the phases, the end result being exactly N:M, and one trained layer run
through the tensor core's RTL."""

import json
import math

import pytest
import torch
from torch import nn

from golden import GoldenError, digits, nm, sparse_train
from golden.sparse_train import Recipe, SparseTraining, default_schedule, layer_mask
from tessera.cli import main
from spec.nm_core import NMCoreConfig
from tessera.train_tools import DENSE_LAYERS, layer_operands
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
    out = sparse_train._SRSTE.apply(w, mask, 0.5)
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
    trained = sparse_train.train(model, recipe, x, y, seed=0, batch=32,
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
    model = digits.DigitsCNN()
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    sparse_train.check_nm(model.eval(), 1, 8, DENSE_LAYERS)
    for sim in ("verilator", "icarus"):
        require_simulator(sim)
        w, x = layer_operands(model, "fc1")
        result = run_layer_on_core(w, x, NMCoreConfig(n=1, m=8, rows=8), tmp_path / "layer", sim=sim, name="fc1")
        assert result["mismatches"] == 0 and result["outputs"] == 64 * 4
        assert 0 < result["nonzero_weights"] <= 64 * 512 // 8
