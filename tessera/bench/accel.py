"""``tessera bench accel``: the accelerator against its twin, its utilisation, its size.

1. Fuzzing: random legal programs and one program of every error class per batch, on
   Verilator and on Icarus (``verif.accel_campaign``): programs, mismatches (target 0),
   simulated cycles per second.
2. Utilisation: a 256x256x256 int8 GEMM with 2:4 weights (``compiler.gemm``: tiled, double
   buffered) end to end from DRAM on Verilator with no memory pauses: core-busy cycles /
   total cycles, the ISS's cycle estimate against the RTL's cycles, and the roofline term
   that bounds it. Also the ISS's own speed on that program.
3. Size: the default configuration on iCE40 HX8K (LUT4, Fmax, whether it fits) and the
   share of LUT4 of each unit (Yosys ``stat`` of the hierarchical iCE40 netlist).
4. Row packing (#14): the default machine generated with ``packing``: fuzzing on
   Verilator (``PACKING_FUZZ``; about half the GEMMs packed), the same GEMM with 1:4
   weights on it (``pack = 1``: 8 logical rows per 4-row block) against the default
   machine running those weights unpacked (``n_active = 1``), and its size beside the
   default machine's (what packing costs).

Results go to ``<out>/accel/report.json`` and ``report.md``.
"""

import time
from pathlib import Path

import click
import numpy as np

from compiler.gemm import GemmShape, lower_gemm, p_rows, product_pack, w_rows, x_rows
from compiler.program import Program
from golden import nm
from golden.iss import Machine
from spec import outputs
from spec.accel import AcceleratorConfig
from spec.isa import Opcode
from verif.accel_campaign import run_campaign
from verif.accel_run import AccelProgram, run_programs

from ..tables import progress_bar

__all__ = ["run_bench", "gemm_program", "FUZZ_PROGRAMS", "PACKING_FUZZ"]

#: Legal programs per simulator (the issue asks for >= 1,000 in all).
FUZZ_PROGRAMS = {"verilator": 800, "icarus": 250}
#: ... and on the packing machine.
PACKING_FUZZ = {"verilator": 200}
GEMM = (256, 256, 256)


def gemm_program(config: AcceleratorConfig, shape=GEMM, seed: int = 0, n: int | None = None
                 ) -> tuple[AccelProgram, dict]:
    """The utilisation program: ``W[R, K]`` n:m-pruned int8 (n: the core's, by default)
    times ``X[K, C]`` int8; packed where the machine can (``compiler.gemm.product_pack``)."""
    rows, k, cols = shape
    n = config.n if n is None else n
    pack = product_pack(config, n)
    rng = np.random.default_rng(seed)
    w = nm.prune(rng.integers(-128, 128, (rows, k)), n, config.m)
    values, indices = nm.compress(w, n, config.m)
    x = rng.integers(-128, 128, (k, cols))
    prog = Program(config)
    xr = prog.put("x", x_rows(config, x))
    wr = prog.put("w", w_rows(config, values, indices, pack))
    pr = prog.put("params", p_rows(config, np.zeros(rows), np.ones(rows), np.full(rows, 12), rows, pack))
    y = prog.alloc("y", cols * rows)
    tiling = lower_gemm(prog, GemmShape(rows, k, cols), x=xr, w=wr, params=pr, y=y, n_active=n, pack=pack)
    prog.emit(Opcode.FINISH)
    dram, addr, length = prog.image()
    return AccelProgram(f"gemm{rows}x{k}x{cols}", dram, addr, length), {"tiling": tiling.__dict__}


def _utilisation(config: AcceleratorConfig, out: Path, n: int | None = None) -> dict:
    program, info = gemm_program(config, n=n)
    br = config.block_rows(product_pack(config, config.n if n is None else n))
    started = time.monotonic()
    iss = Machine(config, program.dram).run(program.prog_addr, program.prog_len)
    iss_seconds = time.monotonic() - started
    started = time.monotonic()
    rtl = run_programs(config, [program], sim="verilator", build_root=out / "sim_build", pause=0.0)[0]
    rtl_seconds = time.monotonic() - started
    c = rtl["counters"]
    rows, k, cols = GEMM
    macs = rows * k * cols
    ideal_beats = -(-rows // br) * cols * (k // config.m)
    post = -(-rows // br) * br * cols                          # one lane per cycle
    load_bytes = iss.counters["bytes_read"]
    return {
        "shape": list(GEMM), "instructions": program.prog_len, "tiling": info["tiling"],
        "rtl_cycles": c["cycles"], "core_beats": c["core_beats"], "ideal_beats": ideal_beats,
        "utilisation": c["core_beats"] / c["cycles"], "compute_busy": c["compute_busy"],
        "post_cycles": post, "load_busy": c["load_busy"], "store_busy": c["store_busy"],
        "bytes_read": c["bytes_read"], "bytes_written": c["bytes_written"],
        "iss_cycles": iss.cycles, "iss_error": iss.cycles / c["cycles"] - 1,
        "bound": {
            "core (one beat per cycle)": ideal_beats,
            "compute unit (GEMM + POST, one lane per cycle, + per-instruction overhead)": c["compute_busy"],
            "load unit (one row or beat per cycle)": c["load_busy"],
            "AXI read bandwidth (bytes_read / bus bytes per cycle)": load_bytes // config.bus_bytes,
        },
        "iss_seconds": iss_seconds, "iss_insns_per_s": program.prog_len / iss_seconds,
        "iss_macs_per_s": macs / iss_seconds, "rtl_seconds": rtl_seconds,
        "rtl_cycles_per_s": c["cycles"] / rtl_seconds, "problems": rtl["problems"],
    }


def _fuzz(config: AcceleratorConfig, out: Path, programs: dict) -> list[dict]:
    rows = []
    for sim, count in programs.items():
        with progress_bar(f"fuzz {sim}", count) as report:
            result = run_campaign(config, count, sim=sim, seed=10_000 if sim == "icarus" else 0, batch=100,
                                  out=out / "mismatches", build_root=out / "sim_build",
                                  progress=lambda done, total: report(done))
        click.echo(result.summary())
        rows.append(result.to_json())
    return rows


def _size(config: AcceleratorConfig, out: Path) -> dict:
    from hw.accel import Accelerator
    from synth.flow import synthesize, unit_breakdown

    report = synthesize(Accelerator(config), "accel", out / "synth", config=config)
    units = unit_breakdown(out / "synth", "accel")
    total = sum(units.values()) or 1
    return {"lut4": report["ice40"]["lut4"], "ff": report["ice40"]["ff"], "bram": report["ice40"]["bram"],
            "carry": report["ice40"]["carry"], "pnr": report["pnr"],
            "units": {name: {"lut4": n, "share": n / total} for name, n in units.items()}}


def run_bench(out: Path, jobs: int = 2, *, programs: dict | None = None, synth: bool = True) -> dict:
    out = Path(out) / "accel"
    out.mkdir(parents=True, exist_ok=True)
    config = AcceleratorConfig()
    click.secho(f"== the default machine: {config.to_json()}", bold=True)
    click.secho("== fuzzing: RTL against the ISS", bold=True)
    fuzz = _fuzz(config, out, programs or FUZZ_PROGRAMS)
    click.secho(f"== utilisation: a {'x'.join(map(str, GEMM))} int8 GEMM, 2:4 weights, from DRAM (Verilator)",
                bold=True)
    util = _utilisation(config, out)
    size = _size(config, out) if synth else None
    packing = AcceleratorConfig(packing=True)
    click.secho(f"== row packing: {packing.to_json()}", bold=True)
    fuzz_p = _fuzz(packing, out / "packing", {sim: min(count, (programs or FUZZ_PROGRAMS).get(sim, count))
                                              for sim, count in PACKING_FUZZ.items()})
    util_p = {"packed": _utilisation(packing, out / "packing", n=1), "unpacked": _utilisation(config, out, n=1)}
    size_p = _size(packing, out / "packing") if synth else None
    lines = ["| simulator | programs | legal | illegal | mismatches | instructions | cycles simulated | cycles/s |",
             "|---|---|---|---|---|---|---|---|"]
    for f in fuzz:
        lines.append(f"| {f['sim']} | {f['programs']} | {f['legal']} | {f['illegal']} | {len(f['mismatches'])} "
                     f"| {f['instructions']} | {f['simulated_cycles']} | {f['cycles_per_second']:,.0f} |")
    total = sum(f["programs"] for f in fuzz)
    bad = sum(len(f["mismatches"]) for f in fuzz)
    lines.append(f"\n{total} programs, {bad} mismatches (target: 0 in >= 1,000)")
    u = util
    lines += ["", f"GEMM {'x'.join(map(str, GEMM))} (2:4 weights) on the default machine: {u['instructions']} "
              f"instructions, tiles {u['tiling']}",
              f"core-busy {u['core_beats']} / {u['rtl_cycles']} cycles = {100 * u['utilisation']:.2f}% "
              f"utilisation (target >= 90%)",
              f"ISS estimate {u['iss_cycles']} cycles: {100 * u['iss_error']:+.2f}% from the RTL (target within 5%)",
              "what bounds it (cycles): " + "; ".join(f"{k} {v}" for k, v in u["bound"].items()),
              f"ISS speed on that program: {u['iss_insns_per_s']:,.0f} instructions/s, "
              f"{u['iss_macs_per_s'] / 1e6:,.1f} M MAC/s; Verilator {u['rtl_cycles_per_s']:,.0f} cycles/s"]
    if size:
        pnr = size["pnr"] or {}
        lines += ["", f"iCE40 HX8K: {size['lut4']} LUT4, {size['ff']} FF, {size['carry']} carry, {size['bram']} BRAM; "
                  f"Fmax {pnr.get('fmax_mhz', 'n/a')} MHz; fits: {pnr.get('fits')} ({pnr.get('lc_used')} of "
                  f"{pnr.get('lc_available')} logic cells)", "",
                  "| unit | LUT4 | share |", "|---|---|---|"]
        for name, unit in sorted(size["units"].items(), key=lambda kv: -kv[1]["lut4"]):
            lines.append(f"| {name} | {unit['lut4']} | {100 * unit['share']:.1f}% |")
    lines += ["", "Row packing (the default machine with packing=True):"]
    for f in fuzz_p:
        lines.append(f"fuzzing on {f['sim']}: {f['programs']} programs ({f['legal']} legal, {f['illegal']} illegal), "
                     f"{len(f['mismatches'])} mismatches, {f['instructions']} instructions")
    up, uu = util_p["packed"], util_p["unpacked"]
    lines += [f"GEMM {'x'.join(map(str, GEMM))} with 1:4 weights: packed (pack=1) {up['rtl_cycles']} cycles "
              f"({up['core_beats']} core beats, ISS {100 * up['iss_error']:+.2f}%) against {uu['rtl_cycles']} "
              f"unpacked on the default machine ({uu['core_beats']} beats): "
              f"{uu['rtl_cycles'] / up['rtl_cycles']:.2f}x fewer cycles, {uu['core_beats'] / up['core_beats']:.2f}x "
              f"fewer beats",
              "what bounds the packed one (cycles): " + "; ".join(f"{k} {v}" for k, v in up["bound"].items())]
    if size_p:
        pnr = size_p["pnr"] or {}
        units = {name: u["lut4"] for name, u in size_p["units"].items()}
        lines.append(f"iCE40 HX8K with packing: {size_p['lut4']} LUT4 ({size_p['lut4'] - size['lut4']:+d}), "
                     f"{size_p['ff']} FF ({size_p['ff'] - size['ff']:+d}), {size_p['bram']} BRAM "
                     f"({size_p['bram'] - size['bram']:+d}); Fmax {pnr.get('fmax_mhz', 'n/a')} MHz; fits: "
                     f"{pnr.get('fits')}; compute unit {units.get('compute', 0)} LUT4 "
                     f"({units.get('compute', 0) - size['units'].get('compute', {}).get('lut4', 0):+d})")
    text = "\n".join(lines)
    click.echo(text)
    report = {"config": config.to_dict(), "fuzz": fuzz, "utilisation": util, "size": size,
              "packing": {"config": packing.to_dict(), "fuzz": fuzz_p, "utilisation": util_p, "size": size_p},
              "provenance": outputs.provenance("bench accel", {"programs": programs, "synth": synth, "jobs": jobs,
                                                               "out": out}, seed=0)}
    outputs.write_json(out / "report.json", report)
    outputs.write_text(out / "report.md", text + "\n")
    click.echo(f"report: {out / 'report.md'}")
    return report
