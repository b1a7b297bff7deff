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

#: The array formats: (label, block name, parameters without the shape).
ARRAY_FORMATS = [
    ("LP n=6 (es=1, rs=2)", "lp-array", {}),
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
    plans += [(f"LP<{n},{es},{rs}> on every layer (the array's format, float LP)",
               lpq.lp_plan(pinned_genes(search, n, es, rs)), float(n), f"LP<{n},{es},{rs}>")
              for n, es, rs in ARRAY_LP_FORMATS]
    return [{"format": name, "cosine": _mean_cosine(model, test, plan), "mean_weight_bits": bits,
             "inputs": act} for name, plan, bits, act in plans]


#: Sections ``tessera bench lp --only`` can run alone: ``machine``, the digits CNN through
#: the machine's LP array (``tessera.bench.lp_machine``; not part of the full run).
SECTIONS = ("machine",)


def run_bench(out: Path, jobs: int = 2, *, hardware: bool = True, seed: int = 0, only: tuple = ()) -> dict:
    """Print and write (``out/lp/report.json``, ``report.md``) the LP benchmark figures
    (with ``only=("machine",)``: ``out/lp/machine.json``, the machine section alone)."""
    out = Path(out) / "lp"
    if "machine" in only:
        from spec import outputs

        from .lp_machine import run_machine

        report = run_machine(out)
        report["provenance"] = outputs.provenance("bench lp --only machine", {"out": out}, seed=seed)
        outputs.write_json(out / "machine.json", report)
        click.echo(f"report: {out / 'machine.json'}")
        return report
    click.secho("== LPQ search (budget 6 bits per weight)", bold=True)
    result, model, data = run_lpq(budget=6.0, seed=seed, out=out / "lpq.json")
    acc = accuracy_rows(result, model, data)
    hw = []
    if hardware:
        click.secho(f"== synthesizing {len(HARDWARE)} arrays (yosys + nextpnr, {jobs} at a time)", bold=True)
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
