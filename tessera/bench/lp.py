"""``tessera lpq`` and ``tessera bench lp``: the LPQ search on the digits CNN, and the
LP benchmark (accuracy under FP32 / LPQ / INT8 / INT4 / FP8, and the PEs' area and speed).

Accuracy: top-1 on the 360 held-out digits (``golden/digits.py``); weights *and*
layer inputs are quantized (LPQ: LP in the layer's format; INT8: W8A8; INT4: W4A8;
FP8: E4M3 W8A8; see ``golden/lpq.py``). Mean bits are per weight. The LPQ formats are
also run through the LP PE's bit-exact arithmetic (``golden.lpq.pe_accuracy``: 8-bit
2^frac table, 32-bit accumulator with 16 fraction bits, 32- or 20-bit product window),
i.e. what the hardware computes.

The LP array's own formats: LPQ's search picks (n, es, rs) per layer, but an
``lp-array`` instance has one (n, es, rs); so the array's format is also run with every
layer pinned to it (each layer's scales chosen as LPQ chooses them), in float LP and
through the array's bit-exact arithmetic (``golden.lpq.pe_accuracy`` at the array's
table, window and accumulator: each row of ``lp-array`` is that arithmetic).

MiniLM (the optional extra, :func:`minilm_rows`): sentence-embedding cosine against FP32
per format, in float fake-quant and with every Linear layer's products and sums through
its array's bit-exact arithmetic (:mod:`golden.array_model`); the formats within
:data:`ISO_TOL` of the INT8 array's cosine are compared on area (products/s per 1,000
LUT4 of the hardware table). ``tessera bench lp --only minilm`` runs that section alone
(minutes; against the stored hardware rows, :data:`HARDWARE_FIGURES`, unless ``OUT/lp``
holds a full run's).

Hardware (this section replaced the first round's single 4-lane PEs): the R x L arrays
(``hw/pe_array.py``: ``lp-array``, ``int8-array``, ``fp8-array``; R x L in {4x4, 8x8})
synthesized alone for iCE40 (LUT4 = SB_LUT4 cells) and placed and routed behind the
pin wrapper for Fmax (``synth/flow.py``). An array takes one beat (R x L products) per
cycle, so products/cycle per 1,000 LUT4 is ``1000 R L / LUT4`` and throughput per area
is that times Fmax. For each LP array the LUT4 per unit (``synth.flow.unit_breakdown``:
decode, log add + 2^frac/fine-shift table, coarse shift, and the rest: trees,
accumulators, control), divided per product where the unit is per product.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

__all__ = ["run_lpq", "run_bench", "HARDWARE"]

#: The product window of the extra lp-array row on MiniLM: the default array's 12-bit window
#: (enough on digits) truncates most of MiniLM's products (their range is wider than the
#: window), a 16-bit one keeps the float LP cosine (measured by the row itself).
MINILM_WIDE_WINDOW = 16
#: The array formats: (label, block name, parameters without the shape).
ARRAY_FORMATS = [
    ("LP n=6 (es=1, rs=2)", "lp-array", {}),
    (f"LP n=6 (es=1, rs=2), {MINILM_WIDE_WINDOW}-bit window", "lp-array", {"prod_width": MINILM_WIDE_WINDOW}),
    ("LP n=8 (es=1, rs=4)", "lp-array", {"n": 8, "es": 1, "rs": 4}),
    ("INT8 (Booth)", "int8-array", {}),
    ("FP8 E4M3", "fp8-array", {}),
]
SHAPES = [(4, 4), (8, 8)]
#: The arrays the benchmark synthesizes: (label, block name, parameters).
HARDWARE = [(f"{label}, {r}x{c}", name, {"rows": r, "cols": c, **params})
            for r, c in SHAPES for label, name, params in ARRAY_FORMATS]
#: (n, es, rs) pinned on every layer for the array-format accuracy rows.
ARRAY_LP_FORMATS = [(6, 1, 2), (8, 1, 4)]


def run_lpq(budget: float = 6.0, seed: int = 0, population: int = 20, generations: int = 15,
            out: Path | None = None, progress: bool = True):
    """``golden.lpq_search.search_digits`` under a progress bar (stderr); print the
    per-layer table and the top-1; write the JSON. Shared by ``tessera lpq`` and the
    benchmark."""
    from golden import lpq_search
    from golden.digits import load_data

    from ..tables import lpq_layer_table, progress_bar

    with progress_bar("LPQ generation", generations, show=progress) as report:
        found = lpq_search.search_digits(budget=budget, seed=seed, population=population,
                                         generations=generations,
                                         progress=lambda gen, total, best, bits: report(
                                             gen, f"best fitness {best:.5f}, {bits:.2f} bits"))
    result = found.result
    click.echo(lpq_layer_table(result, found.model))
    click.echo(f"mean bits per weight {result.mean_bits:.3f} (budget {budget:g}); fitness "
               f"{result.fitness:.5f} (global {result.global_loss:.5f}, local {result.local_loss:.5f}); "
               f"{result.evaluations} genomes evaluated")
    click.echo(f"top-1 on {found.test_images} test digits: LPQ {100 * found.top1_lpq:.2f}%, "
               f"FP32 {100 * found.top1_fp32:.2f}%")
    if out is not None:
        from spec import outputs

        doc = json.loads(result.to_json())
        params = {"budget": budget, "population": population, "generations": generations, "out": out}
        doc.update({"model": "digits-cnn", "top1_lpq": found.top1_lpq, "top1_fp32": found.top1_fp32,
                    "provenance": outputs.provenance("lpq", params, seed=seed, calibration=found.calibration)})
        outputs.write_json(out, doc)
        click.echo(f"wrote {out}")
    return result, found.model, load_data()


def accuracy_rows(result, model, data) -> list[dict]:
    import torch

    from golden import lpq

    torch.set_num_threads(1)
    plans = [
        ("FP32", lpq.fp32_plan(model), 32.0, "32"),
        ("LPQ (LP per layer)", lpq.lp_plan(result.genes), result.mean_bits, "LP, layer's n"),
        ("INT8 per-channel", lpq.int_plan(model, data.calibration(256, 0)[0], 8), 8.0, "INT8"),
        ("INT4 per-channel", lpq.int_plan(model, data.calibration(256, 0)[0], 4), 4.0, "INT8"),
        ("FP8 E4M3", lpq.fp8_plan(model, data.calibration(256, 0)[0]), 8.0, "FP8"),
    ]
    rows = []
    for name, plan, bits, act in plans:
        rows.append({"format": name, "top1": lpq.accuracy(model, data.x_test, data.y_test, plan),
                     "mean_weight_bits": bits, "inputs": act})
    # LPQ's per-layer formats through the LP arithmetic at the array's datapath.
    from spec.pe_array import LPArrayConfig

    arr = LPArrayConfig()
    datapath = dict(table_bits=arr.table_bits, acc_width=arr.acc_width, acc_frac=arr.acc_frac,
                    prod_width=arr.prod_width)
    rows.insert(2, {"format": f"LPQ per-layer formats, LP arithmetic at the array datapath "
                              f"(tb={arr.table_bits}, window {arr.prod_width}, acc {arr.acc_width}.{arr.acc_frac})",
                    "inputs": "LP, layer's n", "mean_weight_bits": result.mean_bits,
                    "top1": lpq.pe_accuracy(model, data.x_test, data.y_test, result.genes, **datapath)})
    from golden import lpq_search

    search = lpq_search.LPQ(model, data.calibration(256, 0)[0], budget=8.0)
    for n, es, rs in ARRAY_LP_FORMATS:
        genes = pinned_genes(search, n, es, rs)
        rows.append({"format": f"LP<{n},{es},{rs}> on every layer (float LP)", "inputs": f"LP<{n},{es},{rs}>",
                     "mean_weight_bits": float(n), "top1": lpq.accuracy(model, data.x_test, data.y_test,
                                                                        lpq.lp_plan(genes))})
        rows.append({"format": f"LP<{n},{es},{rs}> on every layer, lp-array bit-exact arithmetic",
                     "inputs": f"LP<{n},{es},{rs}>", "mean_weight_bits": float(n),
                     "top1": lpq.pe_accuracy(model, data.x_test, data.y_test, genes, **datapath)})
    return rows


def pinned_genes(search, n: int, es: int, rs: int) -> dict:
    """Every layer in LP<n, es, rs>, with the weight and input scales the LPQ ``search``
    would pick for that format (``LPQ.center_sf``, ``LPQ.activation_sf``)."""
    from golden import lpq

    return {name: lpq.LayerGene(n, es, rs, search.center_sf(name, n, es, rs),
                                search.activation_sf(name, n, es, rs)) for name in search.layers}


def _unit_group(name: str) -> str:
    """The unit kind of a sub-module of ``hw.pe_array``'s arrays (``shift_3_1`` -> shift)."""
    return name.split("_")[0].rstrip("0123456789")


UNIT_NAMES = {"wdec": "weight decode (at load)", "adec": "activation decode (per column)",
              "addexp": "log add + 2^frac/fine-shift table", "shift": "shift + sign (LP: the coarse shift)",
              "mul": "multiplier (FP8: and exponent add)", "rest": "trees, accumulators, column adds, control"}


def hardware_rows(out: Path, jobs: int) -> list[dict]:
    from hw import write_verilog
    from synth.flow import synthesize, unit_breakdown
    from tessera.blocks import get_block

    def one(item):
        label, name, params = item
        block = get_block(name)
        cfg = block.config(**params)
        folder = out / f"{name}-{cfg.tag}"
        report = synthesize(block.build(cfg), block.top, folder, config=cfg)
        # The per-unit split comes from the same design built with one module per unit.
        write_verilog(block.component(cfg, units=True), block.top, folder / "units")
        units = {}
        for unit, lut in unit_breakdown(folder / "units", block.top).items():
            key = "rest" if unit == block.top else _unit_group(unit)
            units[key] = units.get(key, 0) + lut
        lut4, fmax = report["ice40"]["lut4"], report["pnr"]["fmax_mhz"]
        ops = cfg.ops_per_cycle
        return {"array": label, "block": name, "shape": f"{cfg.rows}x{cfg.cols}", "config": cfg.to_dict(),
                "products_per_cycle": ops, "lut4": lut4, "carry": report["ice40"]["carry"],
                "ff": report["ice40"]["ff"], "fmax_mhz": fmax,
                "products_per_cycle_per_klut": 1000 * ops / lut4,
                "mproducts_per_s_per_klut": 1000 * ops * fmax / lut4 if fmax else None,
                "units_lut4": units}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, HARDWARE))


def _hardware_markdown(hw) -> list[str]:
    lines = ["", "## Hardware: R x L dot-product arrays, iCE40 HX8K", "",
             "| array | LUT4 | carry | FF | Fmax (MHz) | products/cycle per 1k LUT4 | Mproducts/s per 1k LUT4 "
             "| vs INT8 | vs FP8 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in hw:
        ref = {x["block"]: x["mproducts_per_s_per_klut"] for x in hw
               if x["shape"] == r["shape"] and x["block"] != "lp-array"}
        rate = r["mproducts_per_s_per_klut"]
        vs = [f"{rate / ref[b]:.2f}x" if rate and ref.get(b) else "-" for b in ("int8-array", "fp8-array")]
        lines.append(f"| {r['array']} | {r['lut4']} | {r['carry']} | {r['ff']} | "
                     f"{r['fmax_mhz'] if r['fmax_mhz'] is None else format(r['fmax_mhz'], '.1f')} "
                     f"| {r['products_per_cycle_per_klut']:.2f} | {'-' if rate is None else format(rate, '.1f')} "
                     f"| {vs[0]} | {vs[1]} |")
    lines += ["", "LUT4 per unit (synth_ice40 -noflatten; per product = unit total / (R x L); the "
              "flattened total is smaller, Yosys optimises across units):", "",
              "| array | unit | LUT4 | per product |", "|---|---|---|---|"]
    for r in hw:
        for unit, lut in sorted(r["units_lut4"].items()):
            lines.append(f"| {r['array']} | {UNIT_NAMES.get(unit, unit)} | {lut} "
                         f"| {lut / r['products_per_cycle']:.1f} |")
    return lines


def _markdown(acc, hw, test_images: int) -> str:
    lines = [f"## Accuracy: digits CNN, top-1 on {test_images} held-out images", "",
             "| format | top-1 (%) | drop vs FP32 (points) | mean bits / weight | layer inputs |",
             "|---|---|---|---|---|"]
    fp32 = acc[0]["top1"]
    for r in acc:
        lines.append(f"| {r['format']} | {100 * r['top1']:.2f} | {100 * (fp32 - r['top1']):+.2f} "
                     f"| {r['mean_weight_bits']:.2f} | {r['inputs']} |")
    if hw:
        lines += _hardware_markdown(hw)
    return "\n".join(lines)


#: MiniLM rows: sentences of the corpus' calibration split the LPQ search fits on, and
#: of its test split the cosine is measured on.
MINILM_CALIB, MINILM_TEST = 32, 128
#: Iso-accuracy on MiniLM: a format's mean cosine through the array's arithmetic at most
#: this far below the INT8 array's (paired over the same sentences). Under a third of
#: INT8's own loss (1 - cos is about 0.017), and about ten standard errors of the paired
#: difference between two close formats (about 0.0005; the table prints each row's): a
#: format inside it is not meaningfully worse than INT8, and one outside it is worse
#: beyond the sampling noise of the 128 sentences.
ISO_TOL = 0.005
#: The hardware rows the --only minilm area comparison falls back to (a full run's own).
HARDWARE_FIGURES = Path(__file__).with_name("lp_hardware.json")


def _cosines(ref, got) -> "np.ndarray":
    import torch

    return torch.nn.functional.cosine_similarity(ref.double(), got.double(), dim=1).numpy()


def minilm_rows(seed: int = 0, out: Path | None = None) -> dict:
    """MiniLM sentence-embedding cosine (quantized vs FP32) per format, in float
    fake-quant and through the arrays' bit-exact arithmetic, timed.

    Sentences: the first :data:`MINILM_TEST` of the test split of
    :func:`golden.minilm.corpus` (the cosine), the first :data:`MINILM_CALIB` of its
    calibration split (LPQ's search with the cosine objective, population 8, 4
    generations: each evaluation runs the 36-layer model; and the INT8/FP8 input scales).
    Float: :func:`golden.lpq.run_model` under the plan. Array: every one of the 36 Linear
    layers computed by :func:`golden.array_model.run_on_arrays` (embeddings, norms,
    softmax, GELU float; padding tokens, which reach no embedding, skipped) on the
    default arrays' datapaths (:class:`spec.pe_array.LPArrayConfig` etc.): LPQ's
    per-layer formats each on an ``lp-array`` of that layer's ``(n, es, rs)``, the pinned
    formats on one, INT8 and INT4 on the ``int8-array``, FP8 on the ``fp8-array``.
    The search's result is written to ``out/lpq-minilm.json`` and reused from there by a
    later run with the same seed, sizes and corpus.
    """
    import time

    import numpy as np
    import torch

    from golden import array_model, lpq, lpq_search, minilm
    from spec.pe_array import LPArrayConfig

    from ..tables import progress_bar

    torch.set_num_threads(1)
    started, cpu = time.perf_counter(), time.process_time()
    model = minilm.SentenceEmbedder()
    text = minilm.corpus()
    calib = minilm.pack_sentences(text.calibration[:MINILM_CALIB])
    test = minilm.pack_sentences(text.test[:MINILM_TEST])
    tokens = test[:, 1].bool()
    search = lpq_search.LPQ(model, calib, budget=6.0, objective="cosine")
    # The search is the slow part: a result of the same search (seed, sizes, corpus) in
    # ``out`` is reused, so a rerun of the section costs only the evaluation.
    key = {"seed": seed, "budget": 6.0, "population": 8, "generations": 4, "calibration": MINILM_CALIB,
           "corpus_sha256": text.sha256}
    cached = out / "lpq-minilm.json" if out is not None else None
    genes, searched_now = None, False
    if cached is not None and cached.exists():
        doc = json.loads(cached.read_text())
        if doc.get("search") == key:
            genes = lpq_search.LPQResult.genes_from_json(cached.read_text())
    if genes is None:
        with progress_bar("LPQ generation (MiniLM)", 4) as report:
            result = search.search(seed=seed, population=8, generations=4,
                                   progress=lambda gen, total, best, bits: report(gen, f"best {best:.5f}"))
        genes, searched_now = result.genes, True
        if cached is not None:
            from spec import outputs

            outputs.write_json(cached, {**json.loads(result.to_json()), "search": key})
    lpq_bits = lpq.mean_weight_bits(model, {name: g.n for name, g in genes.items()})
    searched = time.perf_counter()
    pinned = {f: pinned_genes(search, *f) for f in ARRAY_LP_FORMATS}
    # (name, float plan, array layers, bits, inputs, array, the hardware row it is priced by)
    lpq_formats = sorted({(g.n, g.es, g.rs) for g in genes.values()})
    if len(lpq_formats) == 1:                          # one array runs every layer: price it
        (n, es, rs), = lpq_formats
        lpq_array = f"lp-array LP<{n},{es},{rs}> (LPQ's choice for every layer)"
        lpq_priced = {"block": "lp-array", "n": n, "es": es, "rs": rs, "prod_width": LPArrayConfig().prod_width}
    else:
        lpq_array, lpq_priced = f"an lp-array per layer format ({len(lpq_formats)} formats)", None
    formats = [
        ("LPQ (LP per layer)", lpq.lp_plan(genes), lambda: array_model.lp_layers(model, genes),
         lpq_bits, "LP, layer's n", lpq_array, lpq_priced),
        ("INT8 per-channel", lpq.int_plan(model, calib, 8), lambda: array_model.int_layers(model, calib, 8),
         8.0, "INT8", "int8-array", {"block": "int8-array"}),
        ("INT4 per-channel", lpq.int_plan(model, calib, 4), lambda: array_model.int_layers(model, calib, 4),
         4.0, "INT8", "int8-array (INT4 codes)", {"block": "int8-array"}),
        ("FP8 E4M3", lpq.fp8_plan(model, calib), lambda: array_model.fp8_layers(model, calib), 8.0, "FP8",
         "fp8-array", {"block": "fp8-array"}),
    ] + [(f"LP<{n},{es},{rs}> on every layer", lpq.lp_plan(pinned[(n, es, rs)]),
          lambda g=pinned[(n, es, rs)]: array_model.lp_layers(model, g), float(n), f"LP<{n},{es},{rs}>",
          f"lp-array LP<{n},{es},{rs}>", {"block": "lp-array", "n": n, "es": es, "rs": rs,
                                          "prod_width": LPArrayConfig().prod_width})
         for n, es, rs in ARRAY_LP_FORMATS]
    wide = LPArrayConfig(prod_width=MINILM_WIDE_WINDOW)
    g6 = pinned[(wide.n, wide.es, wide.rs)]
    formats.append((f"LP<{wide.n},{wide.es},{wide.rs}> on every layer, {wide.prod_width}-bit product window",
                    lpq.lp_plan(g6), lambda: array_model.lp_layers(model, g6, wide), float(wide.n),
                    f"LP<{wide.n},{wide.es},{wide.rs}>", f"lp-array LP<{wide.n},{wide.es},{wide.rs}>, "
                    f"prod_width={wide.prod_width}", {"block": "lp-array", "n": wide.n, "es": wide.es,
                                                      "rs": wide.rs, "prod_width": wide.prod_width}))
    with torch.no_grad():
        ref = model(test)
    rows = []
    with progress_bar("MiniLM formats, float and array arithmetic", len(formats)) as report:
        for k, (name, plan, build, bits, inputs, array, priced) in enumerate(formats):
            t0 = time.perf_counter()
            fake, _ = lpq.run_model(model, test, plan)
            t1 = time.perf_counter()
            layers = build()
            exact = array_model.run_on_arrays(model, test, layers, rows=tokens)
            t2 = time.perf_counter()
            rows.append({"format": name, "array": array, "priced_by": priced, "mean_weight_bits": bits,
                         "inputs": inputs,
                         "cosine": float(_cosines(ref, fake).mean()), "per_sentence": _cosines(ref, exact),
                         "wrapped": sum(x.wrapped for x in layers.values()),
                         "outputs": sum(x.outputs for x in layers.values()),
                         "seconds_float": t1 - t0, "seconds_array": t2 - t1})
            report(k + 1, name)
    int8 = next(r for r in rows if r["format"].startswith("INT8"))["per_sentence"]
    for r in rows:
        diff = r["per_sentence"] - int8
        r["cosine_array"] = float(r["per_sentence"].mean())
        r["vs_int8"] = float(diff.mean())
        r["vs_int8_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        r["iso_int8"] = bool(r["vs_int8"] >= -ISO_TOL)
        r["per_sentence"] = [round(float(c), 6) for c in r["per_sentence"]]
    return {"rows": rows, "test_sentences": len(test), "calibration_sentences": len(calib),
            "tokens": int(tokens.sum()), "seconds_search": searched - started,
            "seconds_total": time.perf_counter() - started, "cpu_seconds_total": time.process_time() - cpu,
            "search_reused": cached is not None and genes is not None and not searched_now,
            "corpus": text.describe(),
            "corpus_line": text.line(),
            "lpq_layers": [{"name": k, "n": g.n, "es": g.es, "rs": g.rs, "sf": g.sf, "sf_a": g.sf_a}
                           for k, g in genes.items()]}


def _area_row(hw, priced_by: dict | None, shape: str):
    """The hardware row of ``shape`` whose block (and LP format) ``priced_by`` names, or
    None (LPQ's per-layer formats run on no single array)."""
    if priced_by is None:
        return None
    params = {k: v for k, v in priced_by.items() if k != "block"}
    return next((r for r in hw if r["shape"] == shape and r["block"] == priced_by["block"]
                 and all(r["config"].get(k) == v for k, v in params.items())), None)


def minilm_markdown(mini: dict, hw: list[dict], hw_source: str) -> str:
    """The MiniLM table, the iso-accuracy sentence and the area among those formats."""
    from spec.pe_array import FP8ArrayConfig, Int8ArrayConfig, LPArrayConfig

    lp, i8, f8 = LPArrayConfig(), Int8ArrayConfig(), FP8ArrayConfig()
    rows = mini["rows"]
    lines = [f"mean cosine with the FP32 embeddings on {mini['test_sentences']} test sentences "
             f"({mini['tokens']} tokens; LPQ fitted on {mini['calibration_sentences']} calibration sentences)",
             mini["corpus_line"], "",
             "float: fake quantization (golden.lpq). array: each of the 36 Linear layers' products and sums "
             "through the array's bit-exact arithmetic (golden.array_gemm; embeddings, norms, softmax, GELU "
             f"float) at the arrays' datapaths: lp-array 2^frac table {lp.table_bits} bits, product window "
             f"{lp.prod_width} bits, accumulator {lp.acc_width}.{lp.acc_frac}; int8-array accumulator "
             f"{i8.acc_width} bits; fp8-array accumulator {f8.acc_width}.{f8.acc_frac}.", "",
             "| format | array | cosine, float fake-quant | cosine, array exact | array vs INT8 array (± s.e.) "
             "| wrapped outputs | mean bits / weight | layer inputs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {r['array']} | {r['cosine']:.4f} | {r['cosine_array']:.4f} "
                     f"| {r['vs_int8']:+.4f} ± {r['vs_int8_se']:.4f} | {r['wrapped']} of {r['outputs']} "
                     f"| {r['mean_weight_bits']:.2f} | {r['inputs']} |")
    iso = [r for r in rows if r["iso_int8"]]
    lines += ["", f"Iso-accuracy with INT8 on MiniLM (array exact cosine at most {ISO_TOL} below the INT8 "
              f"array's, paired over the same sentences): " + ", ".join(r["format"] for r in iso) + ". "
              + (", ".join(r["format"] for r in rows if not r["iso_int8"]) or "none") + " miss it.",
              "", f"Area among those formats ({hw_source}):", "",
              "| format | array | Mproducts/s per 1k LUT4, 4x4 | vs INT8, 4x4 | products/cycle per 1k LUT4, 8x8 "
              "| vs INT8, 8x8 |", "|---|---|---|---|---|---|"]
    ref = {shape: _area_row(hw, {"block": "int8-array"}, shape) for shape in ("4x4", "8x8")}
    for r in iso:
        small, big = _area_row(hw, r["priced_by"], "4x4"), _area_row(hw, r["priced_by"], "8x8")
        if small is None:
            lines.append(f"| {r['format']} | {r['array']} | no single array: an lp-array instance per "
                         f"format (not priced) | - | - | - |")
            continue
        rate, base = small["mproducts_per_s_per_klut"], ref["4x4"] and ref["4x4"]["mproducts_per_s_per_klut"]
        cyc = big and big["products_per_cycle_per_klut"]
        cyc_base = ref["8x8"] and ref["8x8"]["products_per_cycle_per_klut"]
        lines.append(f"| {r['format']} | {small['array'].rsplit(',', 1)[0]} "
                     f"| {'-' if rate is None else format(rate, '.1f')} "
                     f"| {f'{rate / base:.2f}x' if rate and base else '-'} "
                     f"| {'-' if cyc is None else format(cyc, '.2f')} "
                     f"| {f'{cyc / cyc_base:.2f}x' if cyc and cyc_base else '-'} |")
    search = "reused from lpq-minilm.json" if mini.get("search_reused") else "run"
    lines += ["", f"time: {mini['seconds_total']:.0f} s wall, {mini.get('cpu_seconds_total', 0):.0f} s CPU for this "
              f"section (model, corpus and LPQ search ({search}) {mini['seconds_search']:.0f} s; "
              "per format float + array: " + ", ".join(
                  f"{r['format'].split(' (')[0].split(' on ')[0]} {r['seconds_float']:.0f} + {r['seconds_array']:.0f} s"
                  for r in rows) + ")"]
    return "\n".join(lines)


def _stored_hardware(out: Path) -> tuple[list[dict], str]:
    """The hardware rows of a full run in ``out`` (``report.json``), else the stored ones."""
    report = out / "report.json"
    if report.exists():
        hw = json.loads(report.read_text()).get("hardware") or []
        if hw:
            return hw, f"hardware table of {report}"
    doc = json.loads(HARDWARE_FIGURES.read_text())
    return doc["hardware"], f"stored hardware table, {HARDWARE_FIGURES.name}: iCE40 HX8K, the run before the merge"


#: The sections of a full run; ``tessera bench lp --only`` runs them alone.
DEFAULT_SECTIONS = ("digits", "hardware", "minilm")
#: ... and ``machine``, the digits CNN through the machine's LP array (GEMM unit 1,
#: ``tessera.bench.lp_machine``), which runs only when asked for.
SECTIONS = DEFAULT_SECTIONS + ("machine",)


def run_bench(out: Path, jobs: int = 2, *, hardware: bool = True, seed: int = 0,
              only: tuple[str, ...] = DEFAULT_SECTIONS) -> dict:
    """Print and write (``out/lp/report.json``, ``report.md``) the LP benchmark figures.

    ``only`` (a subset of :data:`SECTIONS`; ``tessera bench lp --only minilm``) runs those
    sections alone and writes ``report-<sections>.json`` / ``.md`` instead (``minilm``: a
    few minutes, priced against :func:`_stored_hardware` unless ``hardware`` runs too);
    ``hardware=False`` skips the synthesis."""
    from spec import outputs

    out = Path(out) / "lp"
    run = set(only) & set(SECTIONS)          # the CLI refuses unknown sections
    if not hardware:
        run.discard("hardware")
    report, parts, calibration = {}, [], None
    if "digits" in run:
        click.secho("== LPQ search (budget 6 bits per weight)", bold=True)
        result, model, data = run_lpq(budget=6.0, seed=seed, out=out / "lpq.json")
        report["accuracy"] = accuracy_rows(result, model, data)
        report["lpq"] = json.loads((out / "lpq.json").read_text())
        calibration = report["lpq"]["provenance"]["calibration_samples"]
        parts.append(_markdown(report["accuracy"], [], len(data.y_test)))
    if "hardware" in run:
        click.secho(f"== synthesizing {len(HARDWARE)} arrays (yosys + nextpnr, {jobs} at a time)", bold=True)
        report["hardware"] = hardware_rows(out, jobs)
        parts.append("\n".join(_hardware_markdown(report["hardware"])).strip("\n"))
    if "machine" in run:
        from .lp_machine import run_machine

        report["machine"] = run_machine(out)
    if "minilm" in run:
        from golden import minilm

        text = "## MiniLM-L6 sentence embeddings (optional extra)\n\n"
        why = minilm.available()
        if why is None:
            click.secho("== MiniLM (optional extra): LPQ with the cosine objective; float and array arithmetic",
                        bold=True)
            report["minilm"] = minilm_rows(seed, out)
            hw, source = ((report["hardware"], "hardware table above") if report.get("hardware")
                          else _stored_hardware(out))
            text += minilm_markdown(report["minilm"], hw, source)
            report["minilm_hardware_source"] = source
        else:
            text += f"skipped: {why}"
        parts.append(text)
    text = "\n\n".join(parts)
    click.echo(text)
    report["provenance"] = outputs.provenance("bench lp", {"hardware": hardware, "jobs": jobs, "out": out,
                                                           "only": list(only)}, seed=seed, calibration=calibration)
    whole = set(only) == set(DEFAULT_SECTIONS)
    name = "report" if whole else "report-" + "-".join(s for s in SECTIONS if s in only)
    outputs.write_json(out / f"{name}.json", report)
    outputs.write_text(out / f"{name}.md", text + "\n")
    click.echo(f"report: {out / (name + '.md')}")
    return report
