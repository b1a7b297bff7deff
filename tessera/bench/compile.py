"""``tessera bench compile``: models compiled for the default machine, run end to end.

For the digits CNN dense, 75 %-pruned (TASDER with a 1-point budget on the calibration
set), and an N:M 1:8 model trained with SDGF (``golden.sparse_train``; conv1 stays
dense), each compiled for the default machine and also compiled all-dense:

* top-1 on all test images through the ISS, against the float model and the fake-quant
  reference (which the ISS must equal on every image);
* cycles per image and per layer, core utilisation, and the speed-up of the compressed
  program over the dense one (targets: <= 1 point below float for the 8-bit dense model,
  >= 1.8x fewer cycles for the 1:8 model);
* the pruned and 1:8 models again on the *packing* machine (``AcceleratorConfig(packing=True)``:
  the 2:4 core runs a layer whose groups hold one non-zero as two logical rows per core
  row, GEMM ``pack = 1``), against the default machine's dense compile (on the packing
  machine a "dense" compile of already-sparse weights packs too: it is no dense baseline);
* the 1:8 programs (default and packing machine) on Verilator for ``RTL_IMAGES`` test
  images: outputs bit-exact with the ISS, cycles against the ISS's estimate;
* compile time and ISS time per image.

Results go to ``<out>/compile/report.json`` and ``report.md``.
"""

import time
from pathlib import Path

import click
import numpy as np
import torch

from compiler.model import compile_model
from compiler.profile import layer_profile, profile_table
from compiler.sources import load_source
from golden import digits
from golden.cache import cache_dir, load_or_rebuild
from golden.sparse_train import Recipe
from golden.tasder import default_menu
from golden.tasder_search import search
from spec import outputs
from spec.accel import AcceleratorConfig
from verif.model_run import run_on_rtl

from ..tables import progress_bar

__all__ = ["run_bench", "nm_model", "RTL_IMAGES", "BATCH"]

RTL_IMAGES = 24
BATCH = 8
NM_RECIPE = Recipe(kind="sdgf", n=1, m=8, epochs=30, warmup=5, finetune=5)


def nm_model() -> torch.nn.Module:
    """The digits CNN trained to 1:8 with SDGF (seed 0), cached in TESSERA_CACHE."""
    from golden.sparse_train.digits import train_digits

    def load(file):
        model = digits.DigitsCNN()
        model.load_state_dict(torch.load(file, weights_only=True))
        return model.eval()

    def build(tmp):
        torch.set_num_threads(1)
        torch.save(train_digits(NM_RECIPE, 0).state_dict(), tmp)

    return load_or_rebuild(cache_dir() / "digits-sdgf-1of8-seed0.pt", load, build, "1:8 digits CNN")


def _evaluate(compiled, data, model, name: str) -> dict:
    xs = data.x_test.numpy()
    n = len(xs) - len(xs) % compiled.batch
    batches = [xs[k:k + compiled.batch] for k in range(0, n, compiled.batch)]
    started = time.monotonic()
    outputs, results = compiled.run_many(batches)
    iss_seconds = time.monotonic() - started
    y = np.concatenate(outputs)
    ref = np.concatenate([compiled.reference(b) for b in batches])
    with torch.no_grad():
        fl = model(data.x_test[:n]).numpy()
    labels = data.y_test[:n].numpy()
    cycles = sum(r.cycles for seg in results for r in seg) + sum(h["estimated_cycles"] for h in compiled.manifest["host_ops"]) * len(batches)
    prof = layer_profile(compiled, [seg[0] for seg in results])
    beats = sum(r.counters["core_beats"] for seg in results for r in seg)
    machine = sum(r.cycles for seg in results for r in seg)
    return {"model": name, "images": n, "top1": 100 * float((y.argmax(1) == labels).mean()),
            "top1_float": 100 * float((fl.argmax(1) == labels).mean()),
            "equal_to_reference": bool(np.array_equal(y, ref)),
            "cycles_per_image": cycles / n, "machine_cycles_per_image": machine / n,
            "utilisation": beats / machine, "iss_seconds_per_image": iss_seconds / n,
            "layers": [l for l in compiled.manifest["layers"]], "profile": prof}


def _rtl(compiled, name, batches, build_root) -> dict:
    """``compiled``'s programs on Verilator for ``batches``: bit-exact with the ISS?"""
    started = time.monotonic()
    rtl_out, rtl_res = run_on_rtl(compiled, batches, sim="verilator", build_root=build_root)
    seconds = time.monotonic() - started
    iss_out, _ = compiled.run_many(batches)
    rtl = {"model": name, "images": sum(len(b) for b in batches),
           "bit_exact": all(np.array_equal(a, b) for a, b in zip(rtl_out, iss_out)),
           "segments": [{"rtl_cycles": [r["counters"]["cycles"] for r in seg],
                         "iss_cycles": [r["iss_cycles"] for r in seg]} for seg in rtl_res],
           "seconds": seconds}
    errors = [abs(i / r - 1) for seg in rtl["segments"] for r, i in zip(seg["rtl_cycles"], seg["iss_cycles"])]
    rtl["max_cycle_error"] = max(errors)
    rtl["line"] = (f"Verilator, {name}, {rtl['images']} test images: outputs "
                   f"{'bit-exact with' if rtl['bit_exact'] else 'DIFFERENT from'} the ISS; ISS cycle estimate within "
                   f"{100 * rtl['max_cycle_error']:.2f}% of the RTL's cycles; {seconds:.0f} s")
    return rtl


def run_bench(out: Path, jobs: int = 2, *, rtl_images: int = RTL_IMAGES) -> dict:
    out = Path(out) / "compile"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    config = AcceleratorConfig()
    packing = AcceleratorConfig(packing=True)
    data = digits.load_data()
    calib, calib_y = data.calibration(256, 0)
    runs = []
    sources = [("digits (dense)", load_source("digits").module, None),
               ("digits-p75 (TASDER, 1-point budget)", load_source("digits-p75").module, 1.0),
               ("digits SDGF 1:8", nm_model(), None)]
    rows = []
    # (machine, source index): every source on the default machine, the compressed ones
    # again on the packing machine.
    plan = [(config, k) for k in range(len(sources))] + [(packing, k) for k in (1, 2)]
    choices_of, dense_of = {}, {}
    with progress_bar("compile + run", len(plan) * 2) as report:
        for step, (machine, k) in enumerate(plan):
            name, model, budget = sources[k]
            model = model.eval()
            if machine is packing:
                name += " [packing machine]"
            ep = torch.export.export(model, (calib[:1],))
            if budget is not None and k not in choices_of:
                result = search(model, calib, config.core, default_menu(config.core), y=calib_y,
                                max_accuracy_drop=budget)
                choices_of[k] = {n: c.weights for n, c in result.choices.items()}
            started = time.monotonic()
            compiled = compile_model(ep, calib.numpy(), machine, batch=BATCH, choices=choices_of.get(k))
            compile_seconds = time.monotonic() - started
            ev = _evaluate(compiled, data, model, name)
            report(2 * step + 1)
            if k not in dense_of:       # the default machine's dense compile, the reference
                dense = compile_model(ep, calib.numpy(), config, batch=BATCH, dense=True)
                dense_of[k] = _evaluate(dense, data, model, name + " compiled dense")
            ev_dense = dense_of[k]
            report(2 * step + 2)
            ev["compile_seconds"] = compile_seconds
            ev["speedup_vs_dense"] = ev_dense["cycles_per_image"] / ev["cycles_per_image"]
            ev["dense"] = {key: ev_dense[key] for key in ("top1", "cycles_per_image", "utilisation", "equal_to_reference")}
            ev["packing"] = machine.packing
            rows.append(ev)
            runs.append((name, compiled))
    # RTL: the 1:8 model's programs on Verilator, on both machines
    xs = data.x_test.numpy()[:rtl_images - rtl_images % BATCH]
    batches = [xs[k:k + BATCH] for k in range(0, len(xs), BATCH)]
    nm_runs = [runs[len(sources) - 1], runs[-1]]
    rtls = [_rtl(compiled, name, batches, out / "sim_build") for name, compiled in nm_runs]
    rtl = rtls[0]
    lines = ["| model | images | top-1 ISS | top-1 float | ISS = reference | cycles/image | utilisation "
             "| dense cycles/image | speed-up vs dense | compile s | ISS s/image |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['model']} | {r['images']} | {r['top1']:.2f}% | {r['top1_float']:.2f}% "
                     f"| {'yes' if r['equal_to_reference'] else 'NO'} | {r['cycles_per_image']:.0f} "
                     f"| {100 * r['utilisation']:.1f}% | {r['dense']['cycles_per_image']:.0f} "
                     f"| {r['speedup_vs_dense']:.2f}x | {r['compile_seconds']:.1f} | {r['iss_seconds_per_image']:.3f} |")
    dense_row, nm_row, packed_row = rows[0], rows[len(sources) - 1], rows[-1]
    lines += ["", f"8-bit dense model: {dense_row['top1']:.2f}% vs float {dense_row['top1_float']:.2f}% "
              f"({dense_row['top1'] - dense_row['top1_float']:+.2f} points; target >= -1)",
              f"1:8 model: {nm_row['speedup_vs_dense']:.2f}x fewer cycles than compiled dense (target >= 1.8x); "
              f"on the packing machine {packed_row['speedup_vs_dense']:.2f}x",
              "", f"per layer, {nm_row['model']} (batch {BATCH}):", profile_table(nm_row["profile"]),
              "", f"per layer, {packed_row['model']} (batch {BATCH}):", profile_table(packed_row["profile"]), "",
              *[r.pop("line") for r in rtls]]
    text = "\n".join(lines)
    click.echo(text)
    report_doc = {"config": config.to_dict(), "packing_config": packing.to_dict(), "batch": BATCH, "models": rows,
                  "rtl": rtl, "rtl_packing": rtls[1],
                  "provenance": outputs.provenance("bench compile", {"rtl_images": rtl_images, "batch": BATCH,
                                                                     "jobs": jobs, "out": out},
                                                   seed=0, calibration=len(calib))}
    outputs.write_json(out / "report.json", report_doc)
    outputs.write_text(out / "report.md", text + "\n")
    click.echo(f"report: {out / 'report.md'}")
    return report_doc

