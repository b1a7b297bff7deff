"""The model compiler (compiler/model.py): a small CNN through torch.export, compiled, run
on the ISS (equal to the fake-quant reference), on Verilator and Icarus (equal to the
ISS, byte for byte), saved and loaded; and every bad input as one clear error."""

import numpy as np
import pytest
import torch
from torch import nn

from compiler import CompileError
from compiler.model import compile_model, load_compiled
from spec.accel import AcceleratorConfig
from tessera.cli import main
from verif.model_run import run_on_rtl

from .conftest import require_simulator


class Tiny(nn.Module):
    """conv(2->8, 3x3, pad 1) + BN + ReLU, conv(8->8, stride 2) + ReLU, max pool, residual-free
    flatten into linear(8 -> 12) + ReLU, linear(12 -> 5)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.f1 = nn.Linear(8, 12)
        self.f2 = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = self.pool(torch.relu(self.c2(x)))
        return self.f2(torch.relu(self.f1(x.flatten(1))))


def tiny(seed=0):
    torch.manual_seed(seed)
    model = Tiny().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 2, 4, 4)
    return model, torch.export.export(model, (x,)), torch.randn(32, 2, 4, 4).numpy()


@pytest.fixture(scope="module")
def compiled():
    model, ep, calib = tiny()
    return model, compile_model(ep, calib, AcceleratorConfig())


def test_the_iss_run_equals_the_fake_quant_reference_and_tracks_float(compiled):
    model, cm = compiled
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = rng.standard_normal((1, 2, 4, 4))
        out, _ = cm.run(x)
        assert np.array_equal(out, cm.reference(x))
        with torch.no_grad():
            want = model(torch.from_numpy(x).float()).numpy()
        assert np.abs(out - want).max() < 0.15 * np.abs(want).max() + 0.05
    kinds = [layer["series"] for layer in cm.manifest["layers"]]
    assert len(kinds) == 4 and [h["kind"] for h in cm.manifest["host_ops"]] == ["maxpool", "flatten"]


def test_saved_and_loaded_models_run_the_same(compiled, tmp_path):
    _, cm = compiled
    cm.save(tmp_path / "m")
    again = load_compiled(tmp_path / "m")
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4))
    assert np.array_equal(again.run(x)[0], cm.run(x)[0])
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"manifest.json", "graph.json", "state.npz",
                                                             "seg0.bin", "seg0.dram"}


def _assert_rtl_equals_iss(cm, seed, sim, sim_root):
    """Two random inputs through ``cm`` on ``sim``: outputs equal the ISS's, no problem reported."""
    xs = [np.random.default_rng(seed + k).standard_normal((1, 2, 4, 4)) for k in range(2)]
    outs, results = run_on_rtl(cm, xs, sim=sim, build_root=sim_root / "model")
    iss, _ = cm.run_many(xs)
    assert all(np.array_equal(a, b) for a, b in zip(outs, iss))
    assert all(not r["problems"] for seg in results for r in seg)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_the_rtl_runs_the_compiled_model_bit_exact(compiled, sim, sim_root):
    require_simulator(sim)
    _, cm = compiled
    _assert_rtl_equals_iss(cm, 3, sim, sim_root)


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def test_an_unsupported_op_is_named_with_its_place():
    ep = torch.export.export(Unsupported(), (torch.zeros(1, 4),))
    with pytest.raises(CompileError, match=r"unsupported op aten.cumsum.default in"):
        compile_model(ep, np.zeros((2, 4)))


def test_bad_calibration_data_is_refused():
    _, ep, calib = tiny()
    with pytest.raises(CompileError, match=r"calibration set must have shape \[N, 2, 4, 4\]"):
        compile_model(ep, calib[:, :1])
    bad = calib.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(CompileError, match="NaN or infinite"):
        compile_model(ep, bad)


def test_a_model_that_does_not_fit_is_refused():
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(64, 64, 3, padding=1)

        def forward(self, x):
            return self.c(x)
    ep = torch.export.export(Wide().eval(), (torch.zeros(1, 64, 32, 32),))
    with pytest.raises(CompileError, match="does not fit the scratchpads"):
        compile_model(ep, np.zeros((1, 64, 32, 32)), AcceleratorConfig())


def test_cli_compile_and_run_errors(tmp_path, capsys):
    _, ep, calib = tiny()
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(ep, str(pt2))
    np.save(tmp_path / "calib.npy", calib)
    assert main(["compile", str(pt2), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    np.save(tmp_path / "x.npy", calib[:2])
    assert main(["run", str(tmp_path / "out"), "--input", str(tmp_path / "x.npy"), "--compare"]) == 0
    assert "fake-quant reference: equal" in capsys.readouterr().out
    (tmp_path / "bogus.pt2").write_bytes(b"not a model")
    cases = [
        (["compile", str(tmp_path / "bogus.pt2"), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "o2")],
         "is not a torch.export program"),
        (["compile", str(pt2), "-o", str(tmp_path / "o3")], "give a calibration set with --calib"),
        (["compile", "nosuchmodel", "-o", str(tmp_path / "o4")], "unknown model 'nosuchmodel'"),
    ]
    np.save(tmp_path / "wrong.npy", calib[:, :1])
    cases.append((["compile", str(pt2), "--calib", str(tmp_path / "wrong.npy"), "-o", str(tmp_path / "o5")],
                  "has shape [32, 1, 4, 4]; the model takes [N, 2, 4, 4]"))
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    cases.append((["compile", str(pt2), "--calib", str(tmp_path / "strings.npy"), "-o", str(tmp_path / "o6")],
                  "holds <U1 values, not numbers"))
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / argv[-1]).exists()


def test_compile_writes_a_chakra_trace_chakras_reader_reads_node_for_node(tmp_path, capsys):
    """``tessera compile --chakra``: one node per instruction (and per host op), MEM_LOAD /
    MEM_STORE with tensor_size, COMP with num_ops and the cycle model's duration, each
    pop's dependency on its push, read back by mlc-chakra's chakra_jsonizer."""
    from compiler.chakra import read_traces

    from .test_chakra import _jsonize

    _, ep, calib = tiny()
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(ep, str(pt2))
    np.save(tmp_path / "calib.npy", calib)
    prefix = tmp_path / "trace" / "tiny"
    assert main(["compile", str(pt2), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "out"),
                 "--chakra", str(prefix)]) == 0
    model = load_compiled(tmp_path / "out")
    (nodes,) = read_traces(prefix, 1)
    insns = sum(seg.prog_len - 1 for seg in model.segments)            # FINISH is no node
    assert len(nodes) == insns + len(model.manifest["host_ops"])
    meta, *docs = _jsonize(prefix.with_name("tiny.0.et"), tmp_path)
    assert len(docs) == len(nodes)
    for node, doc in zip(nodes, docs):
        assert doc["name"] == node.name and doc["type"] == f"{node.type.name}_NODE"
        assert [int(d) for d in doc.get("dataDeps", [])] == list(node.data_deps)
        assert [int(d) for d in doc.get("ctrlDeps", [])] == list(node.ctrl_deps)
    kinds = {n.type.name for n in nodes}
    assert {"MEM_LOAD", "MEM_STORE", "COMP"} <= kinds
    gemms = [n for n in nodes if n.name.endswith(":GEMM") and n.attrs["num_ops"] > 0]
    assert gemms and all(n.duration_micros >= 1 and n.data_deps for n in gemms[:1])


def test_layers_already_n_m_run_as_they_are_with_fewer_active_slots():
    """Weights pruned to 1:4 along K (input channels innermost) compile to one pass with
    n_active = 1, and still equal the reference: every non-zero sits in an active slot."""
    ep, calib = _pruned_1of4()
    cm = compile_model(ep, calib, AcceleratorConfig())
    layers = {l["name"]: l for l in cm.manifest["layers"]}
    assert (layers["c2"]["series"], layers["c2"]["passes"], layers["c2"]["n_active"]) == ("1:4", 1, 1)
    assert layers["f1"]["n_active"] == 1
    x = np.random.default_rng(5).standard_normal((1, 2, 4, 4))
    assert np.array_equal(cm.run(x)[0], cm.reference(x))


PACKING = AcceleratorConfig(rows=2, packing=True, act_rows=256, wgt_rows=64, acc_rows=64, param_rows=64)


def _pruned_1of4(seed=4):
    """The tiny model with c2 and f1 pruned to 1:4 along K, exported, and its calibration."""
    from golden import nm
    from golden.lowering import as_matrix, from_matrix

    model, _, calib = tiny(seed=seed)
    with torch.no_grad():
        for layer in (model.c2, model.f1):
            w = as_matrix(layer, layer.weight)
            layer.weight.copy_(from_matrix(layer, nm.prune(w, 1, 4)))
    return torch.export.export(model, (torch.zeros(1, 2, 4, 4),)), calib


@pytest.fixture(scope="module")
def packed():
    ep, calib = _pruned_1of4()
    return compile_model(ep, calib, PACKING), compile_model(ep, calib, PACKING, dense=True)


def test_a_packing_machine_packs_the_1of4_layers_and_halves_their_beats(packed):
    """On a packing 2:4 machine the 1:4 layers compile with pack = 1 (two logical rows per
    core row), the unpruned ones (two non-zeros per group) with pack = 0; the ISS equals
    the fake-quant reference and the same integers as the unpacked machine's, in fewer
    beats."""
    cm, dense = packed
    layers = {l["name"]: l for l in cm.manifest["layers"]}
    assert (layers["c2"]["n_active"], layers["c2"]["pack"]) == (1, 1)
    assert (layers["f1"]["n_active"], layers["f1"]["pack"]) == (1, 1)
    assert (layers["c1"]["n_active"], layers["c1"]["pack"]) == (2, 0)
    # A dense compile (the exact 2:4+2:4 series) of 1:4 weights holds one non-zero per
    # group in every pass: it packs too.
    assert {l["name"]: l["pack"] for l in dense.manifest["layers"]}["c2"] == 1
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 4))
    out, results = cm.run(x)
    assert np.array_equal(out, cm.reference(x))
    ep, calib = _pruned_1of4()
    unpacked = compile_model(ep, calib, AcceleratorConfig(rows=2, act_rows=256, wgt_rows=64, acc_rows=64,
                                                          param_rows=64))
    assert np.array_equal(unpacked.run(x)[0], out)         # the same integers, fewer beats
    beats = lambda rs: sum(r.counters["core_beats"] for r in rs)           # noqa: E731
    assert beats(results) < beats(unpacked.run(x)[1])


@pytest.mark.parametrize("sim", [pytest.param("verilator", marks=pytest.mark.wide), "icarus"])
def test_the_rtl_runs_a_packed_model_bit_exact(packed, sim, sim_root):
    require_simulator(sim)
    cm, _ = packed
    _assert_rtl_equals_iss(cm, 7, sim, sim_root)
