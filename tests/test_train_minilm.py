"""N:M training on a language task, reduced (golden/sparse_train/distil.py and the MiniLM
half of ``tessera bench train-nm``): all-MiniLM-L6-v2 distilled into N:M students on a
few batches of the standard-library corpus; the students are exactly N:M, compress
exactly, one projection runs through the core's RTL bit-exact; the FLOP count is what
torch counts; runs are reproducible; bad input is one line."""

import json

import numpy as np
import pytest
import torch

from golden import minilm, nm
from golden.lowering import matmul_layers, weight_matrix
from tessera.cli import main


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    missing = minilm.available()
    if missing:
        pytest.skip(missing)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny():
    from golden.sparse_train.distil import DistilBudget

    return DistilBudget(steps=2, batch=4, lr=1e-3, max_tokens=32, test_sentences=8)


def test_step_flops_are_what_torch_counts():
    from torch.utils.flop_counter import FlopCounterMode

    from golden.sparse_train.distil import new_student, step_flops

    student = new_student()
    packed = minilm.pack_sentences(minilm.template_sentences(3, 0), 32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        student(packed)
    counted = step_flops(student, packed.shape[0], packed.shape[2])
    # torch's counter sees the 36 projections; the CPU attention kernel (scaled dot
    # product) is not in its table, so the two attention products are checked by shape.
    assert counter.get_total_flops() == counted["linear"]
    b, t, hidden = packed.shape[0], packed.shape[2], student.bert.config.hidden_size
    assert counted["attention"] == 6 * 2 * (2 * b * t * t * hidden)
    assert counted["dense"] == 3 * counted["forward"]
    half = step_flops(student, b, t, density=0.5)
    assert counted["nm_aware"] == counted["dense"]                    # density 1: nothing to skip
    assert half["nm_aware"] == counted["dense"] - 2 * 0.5 * counted["linear"]


def test_reduced_bench_students_are_exact_and_one_layer_runs_on_the_core(tmp_path):
    from tessera.bench.train_nm import MinilmPlan, run_minilm
    from verif.runner import simulator_missing

    sim = "icarus" if simulator_missing("icarus") is None else "verilator"
    plan = MinilmPlan(recipes=("srste", "mdgf-linear"), targets=((1, 8),), seeds=(0,), budget=_tiny(),
                      recipe=(("epochs", 2), ("warmup", 0), ("finetune", 1)), keep=("srste", 1, 8, 0), sim=sim)
    summary = run_minilm(tmp_path, jobs=1, plan=plan)
    runs = summary["runs"]
    assert set(runs) == {"srste-1:8", "mdgf-linear-1:8"} and all(len(r) == 1 for r in runs.values())
    for name, seeds in runs.items():
        for run in seeds:
            assert 0 < run["cosine"]["mean"] < 1 and run["cosine"]["sentences"] == 8
            assert len(run["loss_per_epoch"]) == 2 and run["steps"] == 4
            assert 0 <= run["noise"]["pruned_grad_share"] <= 1 and run["noise"]["grad_norm_mean"] > 0
    # Same seed, same batches: every recipe computes the same dense products; mask decay
    # keeps every weight in the forward pass while beta > 0, SR-STE only 1 in 8.
    srste, mdgf = runs["srste-1:8"][0]["flops"], runs["mdgf-linear-1:8"][0]["flops"]
    assert srste["dense"] == mdgf["dense"] and srste["nm_aware"] < mdgf["nm_aware"] < mdgf["dense"]
    assert summary["corpus"]["sha256"] == minilm.corpus().sha256
    hw = summary["hardware"]
    assert hw["layers"] == hw["exact"] == 36
    layer = hw["layer_on_core"]
    assert layer["mismatches"] == 0 and layer["shape"][:2] == [384, 384]
    assert layer["outputs"] == 384 * layer["shape"][2] and 0 < layer["nonzero_weights"] <= 384 * 384 // 8
    text = "\n".join(summary["sections"])
    assert "| 1:8 | srste |" in text and "| dense | teacher (FP32) | 1.0000 |" in text
    assert "1:8: best decay recipe mdgf-linear" in text and "Gradient noise" in text
    # The kept checkpoint loads back exactly n:m, and eval-nm reports the same quality.
    meta = json.loads((tmp_path / "minilm-student" / "recipe.json").read_text())
    assert meta["corpus"]["sha256"] == minilm.corpus().sha256 and len(meta["layers"]) == 36
    npz = np.load(tmp_path / "minilm-student" / "nm_weights.npz")
    name = matmul_layers(minilm.SentenceEmbedder())[0].name
    assert npz[f"{name}.int8_values"].shape == (384, 384 // 8, 1)


def test_a_seed_reproduces_a_run_and_the_student_compresses_exactly():
    from golden.sparse_train import Recipe
    from golden.sparse_train.distil import distil

    recipe = Recipe(kind="sdgf", n=1, m=16, epochs=3, warmup=0, finetune=1)
    a = distil(recipe, minilm.corpus(), 3, _tiny(), trace=True)
    b = distil(recipe, minilm.corpus(), 3, _tiny())
    assert a.loss_per_epoch == b.loss_per_epoch and a.cosine == b.cosine
    assert a.trace["n"] == [15, 8, 4, 2]            # SDGF stages over the 4 sparse-phase steps
    for layer in matmul_layers(a.model):
        w = weight_matrix(layer.module)
        values, indices = nm.compress(w, 1, 16)
        assert torch.equal(nm.decompress(values, indices, 1, 16), w)


def test_minilm_bad_input_is_one_line(capsys, tmp_path):
    assert main(["train-nm", "--model", "minilm", "--recipe", "srste", "--n", "1", "--m", "5",
                 "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has a reduction length of 384, which does not hold 1:5 groups" in err
    (tmp_path / "recipe.json").write_text(json.dumps({"model": "minilm", "recipe": {"kind": "srste", "n": 1,
                                                                                    "m": 8}}))
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not really a zip file")
    assert main(["eval-nm", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.pt' is corrupted or not a state dict" in err
