"""``tessera lpq`` and ``tessera bench lp``: the LPQ search on the digits CNN, and the
LP benchmark (accuracy under FP32 / LPQ / INT8 / INT4 / FP8, and the PEs' area and speed).

Accuracy: top-1 on the 360 held-out digits (``golden/digits.py``); weights *and*
layer inputs are quantized (LPQ: LP in the layer's format; INT8: W8A8; INT4: W4A8;
FP8: E4M3 W8A8; see ``golden/lpq.py``). Mean bits are per weight. The LPQ formats are
also run through the LP PE's bit-exact arithmetic (``golden.lpq.pe_accuracy``: 8-bit
2^frac table, 32-bit accumulator with 16 fraction bits, 32- or 20-bit product window),
i.e. what the hardware computes.

Hardware: every PE with 4 lanes and a 32-bit accumulator (the LP PE also with its
product window narrowed to 20 bits, ``prod_width``), synthesized alone for iCE40
(LUT4 = SB_LUT4 cells) and placed and routed behind the pin wrapper for Fmax
(``synth/flow.py``). Each PE takes one beat (4 products) per cycle, so products/cycle
per 1,000 LUT4 is ``4000 / LUT4``, and throughput per area is that times Fmax.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

__all__ = ["run_lpq", "run_bench", "HARDWARE"]

#: The PEs the benchmark synthesizes: (label, block name, parameters).
HARDWARE = [
    ("LP n=8 (es=1, rs=4)", "lp-pe", {"n": 8, "es": 1, "rs": 4}),
    ("LP n=8, 20-bit products", "lp-pe", {"n": 8, "es": 1, "rs": 4, "prod_width": 20}),
    ("LP n=6 (es=1, rs=3)", "lp-pe", {"n": 6, "es": 1, "rs": 3}),
    ("LP n=6, 20-bit products", "lp-pe", {"n": 6, "es": 1, "rs": 3, "prod_width": 20}),
    ("INT8", "int8-pe", {}),
    ("FP8 E4M3", "fp8-pe", {}),
]


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
    # The same LPQ formats through the LP PE's bit-exact arithmetic (table, shift, wrap).
    for k, pw in enumerate((32, 20)):
        pe = dict(table_bits=8, acc_width=32, acc_frac=16, prod_width=pw)
        rows.insert(2 + k, {"format": f"LPQ on the LP PE arithmetic, {pw}-bit products",
                            "inputs": "LP, layer's n", "mean_weight_bits": result.mean_bits,
                            "top1": lpq.pe_accuracy(model, data.x_test, data.y_test, result.genes, **pe)})
    return rows


def hardware_rows(out: Path, jobs: int) -> list[dict]:
    from synth.flow import synthesize
    from tessera.blocks import get_block

    def one(item):
        label, name, params = item
        block = get_block(name)
        cfg = block.config(**params)
        report = synthesize(block.build(cfg), block.top, out / f"{name}-{cfg.tag}", config=cfg)
        lut4, fmax = report["ice40"]["lut4"], report["pnr"]["fmax_mhz"]
        return {"pe": label, "block": name, "config": cfg.to_dict(), "lanes": cfg.lanes,
                "lut4": lut4, "carry": report["ice40"]["carry"], "ff": report["ice40"]["ff"],
                "fmax_mhz": fmax, "products_per_cycle_per_klut": 1000 * cfg.lanes / lut4,
                "mproducts_per_s_per_klut": 1000 * cfg.lanes * fmax / lut4}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, HARDWARE))


def _markdown(acc, hw, test_images: int) -> str:
    lines = [f"## Accuracy: digits CNN, top-1 on {test_images} held-out images", "",
             "| format | top-1 (%) | drop vs FP32 (points) | mean bits / weight | layer inputs |",
             "|---|---|---|---|---|"]
    fp32 = acc[0]["top1"]
    for r in acc:
        lines.append(f"| {r['format']} | {100 * r['top1']:.2f} | {100 * (fp32 - r['top1']):+.2f} "
                     f"| {r['mean_weight_bits']:.2f} | {r['inputs']} |")
    lines += ["", "## Hardware: 4-lane PEs, 32-bit accumulator, iCE40 HX8K", "",
              "| PE | LUT4 | carry | FF | Fmax (MHz) | products/cycle per 1k LUT4 | Mproducts/s per 1k LUT4 "
              "| vs INT8 | vs FP8 |", "|---|---|---|---|---|---|---|---|---|"]
    ref = {r["block"]: r["mproducts_per_s_per_klut"] for r in hw if r["block"] != "lp-pe"}
    for r in hw:
        lines.append(f"| {r['pe']} | {r['lut4']} | {r['carry']} | {r['ff']} | {r['fmax_mhz']:.1f} "
                     f"| {r['products_per_cycle_per_klut']:.2f} | {r['mproducts_per_s_per_klut']:.1f} "
                     f"| {r['mproducts_per_s_per_klut'] / ref['int8-pe']:.2f}x "
                     f"| {r['mproducts_per_s_per_klut'] / ref['fp8-pe']:.2f}x |")
    return "\n".join(lines)


def _mean_cosine(model, x, plan) -> float:
    """Mean cosine similarity of the embeddings under ``plan`` with the FP32 ones."""
    import torch

    from golden.lpq import run_model

    with torch.no_grad():
        ref, _ = run_model(model, x, None)
        got, _ = run_model(model, x, plan)
    return float(torch.nn.functional.cosine_similarity(ref, got, dim=1).mean())


#: MiniLM rows: sentences of the corpus' calibration split the LPQ search fits on, and
#: of its test split the cosine is measured on.
MINILM_CALIB, MINILM_TEST = 32, 128


def minilm_rows(seed: int = 0) -> list[dict]:
    """Mean cosine of MiniLM sentence embeddings (quantized vs FP32) on the first
    :data:`MINILM_TEST` test-split sentences of :func:`golden.minilm.corpus`; LPQ with the
    cosine objective on the first :data:`MINILM_CALIB` of its calibration split, a small
    search (population 8, 4 generations: each evaluation runs the 36-layer model)."""
    import torch

    from golden import lpq, lpq_search, minilm

    from ..tables import progress_bar

    torch.set_num_threads(1)
    model = minilm.SentenceEmbedder()
    text = minilm.corpus()
    calib = minilm.pack_sentences(text.calibration[:MINILM_CALIB])
    test = minilm.pack_sentences(text.test[:MINILM_TEST])
    search = lpq_search.LPQ(model, calib, budget=6.0, objective="cosine")
    with progress_bar("LPQ generation (MiniLM)", 4) as report:
        result = search.search(seed=seed, population=8, generations=4,
                               progress=lambda gen, total, best, bits: report(gen, f"best {best:.5f}"))
    plans = [("LPQ (LP per layer)", lpq.lp_plan(result.genes), result.mean_bits, "LP, layer's n"),
             ("INT8 per-channel", lpq.int_plan(model, calib, 8), 8.0, "INT8"),
             ("INT4 per-channel", lpq.int_plan(model, calib, 4), 4.0, "INT8"),
             ("FP8 E4M3", lpq.fp8_plan(model, calib), 8.0, "FP8")]
    return [{"format": name, "cosine": _mean_cosine(model, test, plan), "mean_weight_bits": bits,
             "inputs": act} for name, plan, bits, act in plans]


def run_bench(out: Path, jobs: int = 2, *, hardware: bool = True, seed: int = 0) -> dict:
    """Print and write (``out/lp/report.json``, ``report.md``) the LP benchmark figures."""
    out = Path(out) / "lp"
    click.secho("== LPQ search (budget 6 bits per weight)", bold=True)
    result, model, data = run_lpq(budget=6.0, seed=seed, out=out / "lpq.json")
    acc = accuracy_rows(result, model, data)
    hw = []
    if hardware:
        click.secho(f"== synthesizing {len(HARDWARE)} PEs (yosys + nextpnr, {jobs} at a time)", bold=True)
        hw = hardware_rows(out, jobs)
    from golden import minilm

    mini, why, text_info = [], minilm.available(), None
    if why is None:
        click.secho("== MiniLM (optional extra): LPQ with the cosine objective", bold=True)
        mini = minilm_rows(seed)
        text_info = minilm.corpus()
    text = _markdown(acc, hw, len(data.y_test))
    if not hw:
        text = text.split("\n## Hardware")[0]
    text += "\n\n## MiniLM-L6 sentence embeddings (optional extra)\n\n"
    if mini:
        text += "\n".join([f"mean cosine with the FP32 embeddings on {MINILM_TEST} test sentences "
                           f"(LPQ fitted on {MINILM_CALIB} calibration sentences)", text_info.line(), "",
                           "| format | cosine | mean bits / weight | layer inputs |", "|---|---|---|---|"] +
                          [f"| {r['format']} | {r['cosine']:.4f} | {r['mean_weight_bits']:.2f} | {r['inputs']} |"
                           for r in mini])
    else:
        text += f"skipped: {why}"
    click.echo(text)
    report = {"accuracy": acc, "hardware": hw, "minilm": mini,
              "corpus": text_info.describe() if text_info else None,
              "lpq": json.loads((out / "lpq.json").read_text())}
    from spec import outputs

    report["provenance"] = outputs.provenance("bench lp", {"hardware": hardware, "jobs": jobs, "out": out},
                                              seed=seed, calibration=report["lpq"]["provenance"]["calibration_samples"])
    outputs.write_json(out / "report.json", report)
    outputs.write_text(out / "report.md", text + "\n")
    click.echo(f"report: {out / 'report.md'}")
    return report
