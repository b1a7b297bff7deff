"""``tessera bench lp --only machine``: the digits CNN through the machine's LP array.

Every layer in the array's format LP<6,1,2> with the scales LPQ's search picks for it
(``tessera.bench.lp.pinned_genes``), compiled by :func:`compiler.lp_model.compile_lp_model`
onto ``AcceleratorConfig(lp="6,1,2")`` (4 x 4 array; layers on GEMM unit 1, ReLU,
pooling and the LP encoding of each layer's input on the host). Figures:

* top-1 on the 360 held-out digits through the ISS, against the same formats through
  ``golden.lpq.pe_accuracy`` at the array's datapath (the bench lp row) and float LP;
* the machine's compute cycles per image (``compute_busy``, exact) and the ISS's cycle
  estimate;
* ``RTL_IMAGES`` test images through the RTL (Verilator): every layer's program must end
  with the ISS's DRAM and exact counters (``verif.model_run.rtl_backend``), and the
  top-1 on those images.
"""

import time
from pathlib import Path

import click

__all__ = ["run_machine", "MACHINE_FORMAT", "RTL_IMAGES"]

MACHINE_FORMAT = (6, 1, 2)
RTL_IMAGES = 4


def run_machine(out: Path, *, sim: str = "verilator", rtl_images: int = RTL_IMAGES) -> dict:
    """Print and return the machine section's figures (module docstring)."""
    import torch

    from compiler.lp_model import compile_lp_model
    from golden import lpq, lpq_search
    from golden.digits import load_data, pretrained
    from spec.accel import AcceleratorConfig

    from .lp import pinned_genes

    torch.set_num_threads(1)
    data, model = load_data(), pretrained()
    n, es, rs = MACHINE_FORMAT
    search = lpq_search.LPQ(model, data.calibration(256, 0)[0], budget=8.0)
    genes = pinned_genes(search, n, es, rs)
    cfg = AcceleratorConfig(lp=f"{n},{es},{rs}")
    arr = cfg.lp_array
    click.secho(f"== digits CNN on the machine's LP array (LP<{n},{es},{rs}>, {arr.rows}x{arr.cols}, "
                f"tb={arr.table_bits}, window {arr.prod_width}, acc {arr.acc_width}.{arr.acc_frac})", bold=True)
    x, y = data.x_test, data.y_test
    t0 = time.time()
    compiled = compile_lp_model(model, genes, cfg, x)
    logits, results = compiled.run(x)
    iss_seconds = time.time() - t0
    top1_iss = float((logits.argmax(dim=1) == y).float().mean())
    exact = bool(torch.equal(logits, compiled.reference(x)))
    datapath = dict(table_bits=arr.table_bits, acc_width=arr.acc_width, acc_frac=arr.acc_frac,
                    prod_width=arr.prod_width)
    top1_pe = lpq.pe_accuracy(model, x, y, genes, **datapath)
    top1_float = lpq.accuracy(model, x, y, lpq.lp_plan(genes))
    busy = sum(r.counters["compute_busy"] for r in results)
    cycles = sum(r.cycles for r in results)
    layers = {name: {"sf": layer.sf, "tiling": vars(layer.tiling), "instructions": layer.prog_len,
                     "compute_busy": r.counters["compute_busy"]}
              for (name, layer), r in zip(compiled.layers.items(), results)}
    report = {"format": f"LP<{n},{es},{rs}>", "config": cfg.to_dict(), "images": len(y),
              "top1_machine_iss": top1_iss, "iss_equals_reference": exact, "top1_pe_accuracy": top1_pe,
              "top1_float_lp": top1_float, "compute_busy_per_image": busy / len(y),
              "iss_cycles_per_image": cycles / len(y), "iss_seconds": iss_seconds, "layers": layers}
    click.echo(f"top-1 on {len(y)} test digits: machine (ISS) {100 * top1_iss:.2f}%, "
               f"golden.lpq.pe_accuracy at the array datapath {100 * top1_pe:.2f}%, float LP {100 * top1_float:.2f}%; "
               f"ISS == reference (golden.pe_array) on every logit: {exact}")
    click.echo(f"per image: {busy / len(y):.0f} compute cycles (exact), {cycles / len(y):.0f} cycles (ISS estimate, "
               f"{len(results)} programs for the batch of {len(y)})")
    for name, info in layers.items():
        click.echo(f"  {name}: sf={info['sf']}, tile {info['tiling']}, {info['instructions']} instructions, "
                   f"{info['compute_busy']} compute cycles")
    if rtl_images:
        from verif.model_run import rtl_backend

        xs, ys = x[:rtl_images], y[:rtl_images]
        small = compile_lp_model(model, genes, cfg, xs)
        t0 = time.time()
        rtl_logits, _ = small.run(xs, rtl_backend(small, sim=sim, build_root=Path(out) / "sim_build"))
        iss_logits, _ = small.run(xs)
        same = bool(torch.equal(rtl_logits, iss_logits))
        top1_rtl = float((rtl_logits.argmax(dim=1) == ys).float().mean())
        report.update({"rtl_images": rtl_images, "rtl_sim": sim, "rtl_equals_iss": same, "top1_rtl": top1_rtl,
                       "rtl_seconds": time.time() - t0})
        click.echo(f"RTL ({sim}) on the first {rtl_images} test images: every layer's DRAM and exact counters "
                   f"equal the ISS's; logits RTL == ISS: {same}; top-1 {100 * top1_rtl:.2f}% "
                   f"({time.time() - t0:.0f} s)")
    return report
