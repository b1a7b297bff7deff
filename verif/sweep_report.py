"""``tessera sweep report``: the Pareto front of a sweep's results store (throughput vs
LUT4, and Fmax) as Markdown, JSON and a PNG plot. The sweep itself is :mod:`verif.sweep`."""

import json
import math
from pathlib import Path

from spec import outputs

from . import VerifError
from .sweep import ResultStore

__all__ = ["pareto_report"]


def _pareto(points: list[dict]) -> list[dict]:
    """Points no other point beats on both area (fewer LUT4) and throughput (more)."""
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p["lut4"], -p["throughput"])):
        if p["throughput"] > best:
            front.append(p)
            best = p["throughput"]
    return front


def _unit_label(unit: str) -> str:
    return "effective GMAC/s" if unit == "MAC" else f"G{unit}s/s"


def pareto_report(out_dir: str | Path, *, block: str | None = None, target: str | None = None,
                  report_dir: str | Path | None = None) -> dict:
    """Write the Pareto front (throughput vs LUT4, with Fmax) of a sweep's stored points as
    ``pareto.md``, ``pareto.json`` and ``pareto.png`` (into ``report_dir``, default
    ``out_dir``). The store may hold several blocks or targets: choose with ``block`` and
    ``target``. Points that did not fit the device or failed are listed, not plotted."""
    out = Path(out_dir)
    path = out if out.suffix == ".sqlite" else out / "results.sqlite"
    if not path.exists():
        raise VerifError(f"no results store at {path}: run 'tessera sweep SPEC -o {out}' first")
    store = ResultStore(path)
    rows = store.rows()
    store.close()
    report_dir = Path(report_dir) if report_dir else path.parent

    latest = {}
    for row in rows:                          # the newest row per (config, task) wins
        latest[(json.dumps(row["config"], sort_keys=True), json.dumps(row["task"], sort_keys=True))] = row
    rows = [r for r in latest.values() if "synth" in r["task"]["steps"]]
    groups = sorted({(r["block"], r["task"]["synth"]["target"]) for r in rows})
    chosen = [g for g in groups if (block is None or g[0] == block) and (target is None or g[1] == target)]
    if not chosen:
        raise VerifError(f"{path} has no synthesized points"
                         + (f" of block {block!r}" if block else "") + (f" on {target}" if target else "")
                         + (f"; it has: {', '.join(f'{b} on {t}' for b, t in groups)}" if groups else ""))
    if len(chosen) > 1:
        raise VerifError(f"{path} holds several sweeps ({', '.join(f'{b} on {t}' for b, t in chosen)}): "
                         "choose one with --block and --target")
    block, target = chosen[0]
    rows = [r for r in rows if r["block"] == block and r["task"]["synth"]["target"] == target]

    varying = [k for k in rows[0]["config"] if len({json.dumps(r["config"][k]) for r in rows}) > 1]
    points, unplaced, failed = [], [], []
    unit = None
    for r in rows:
        res = r["result"]
        label = ",".join(f"{k}={r['config'][k]}" for k in varying) or "default"
        if r["status"] != "ok":
            failed.append({"label": label, "config": r["config"], "error": r["error"]})
            continue
        s = res["synth"]
        unit = res["ops_unit"]
        entry = {"label": label, "config": r["config"], "lut4": s["lut4"], "ff": s["ff"], "carry": s["carry"],
                 "bram": s["bram"], "dsp": s["dsp"], "fmax_mhz": s["fmax_mhz"], "part": s["part"],
                 "ops_per_cycle": res["ops_per_cycle"]}
        if not s["fits"] or s["fmax_mhz"] is None:
            unplaced.append({**entry, "reason": s.get("pnr_error") or "no Fmax (place-and-route not run)"})
            continue
        entry["throughput"] = res["ops_per_cycle"] * s["fmax_mhz"] / 1000
        entry["throughput_per_klut"] = 1000 * entry["throughput"] / s["lut4"] if s["lut4"] else None
        points.append(entry)
    front = _pareto(points)
    on_front = {id(p) for p in front}
    for p in points:
        p["on_front"] = id(p) in on_front
    ylabel = _unit_label(unit or "result")

    header = (f"| {' '.join(varying) or 'config'} | LUT4 | FF | carry | BRAM | DSP | Fmax (MHz) | {ylabel} "
              f"| {ylabel} per 1k LUT4 |")
    lines = [f"# Pareto front: {block} on {target} ({len(front)} of {len(points)} placed points)", "",
             f"Throughput = {unit or 'result'}s per cycle x Fmax; the front holds the points no other point "
             "beats on both LUT4 (fewer) and throughput (more).", "", header, "|" + "---|" * 9]
    for p in front:
        lines.append(f"| {p['label']} | {p['lut4']} | {p['ff']} | {p['carry']} | {p['bram']} | {p['dsp']} "
                     f"| {p['fmax_mhz']:.1f} | {p['throughput']:.3f} | {p['throughput_per_klut']:.3f} |")
    if unplaced:
        lines += ["", f"Not placed ({len(unplaced)}): " + "; ".join(f"{p['label']} ({p['reason']})" for p in unplaced)]
    if failed:
        lines += ["", f"Failed ({len(failed)}): " + "; ".join(f"{p['label']} ({p['error']})" for p in failed)]
    table = "\n".join(lines) + "\n"
    png = report_dir / "pareto.png"
    report = {"block": block, "target": target, "unit": unit, "throughput_label": ylabel, "varying": varying,
              "front": front, "points": points, "not_placed": unplaced, "failed": failed,
              "files": {"markdown": str(report_dir / "pareto.md"), "json": str(report_dir / "pareto.json"),
                        "plot": str(png)}}
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_text(report_dir / "pareto.md", table)
        outputs.write_text(report_dir / "pareto.json", json.dumps(report, indent=2) + "\n")
        _plot(points, front, png, f"{block} on {target}", ylabel)
    except OSError as exc:
        raise VerifError(f"cannot write the report to {report_dir}: {exc.strerror or exc}") from None
    report["markdown"] = table
    return report


def _plot(points: list[dict], front: list[dict], png: Path, title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_f) = plt.subplots(1, 2, figsize=(13, 5.5))
    others = [p for p in points if not p["on_front"]]
    ax.scatter([p["lut4"] for p in others], [p["throughput"] for p in others], c="0.6", s=22,
               label="swept points")
    ax.step([p["lut4"] for p in front], [p["throughput"] for p in front], where="post", c="tab:red", lw=1.2)
    ax.scatter([p["lut4"] for p in front], [p["throughput"] for p in front], c="tab:red", s=40, zorder=3,
               label=f"Pareto front ({len(front)})")
    for p in front:
        ax.annotate(p["label"], (p["lut4"], p["throughput"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=7)
    ax.set_xlabel("LUT4")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: throughput vs area")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax_f.scatter([p["lut4"] for p in others], [p["fmax_mhz"] for p in others], c="0.6", s=22)
    ax_f.scatter([p["lut4"] for p in front], [p["fmax_mhz"] for p in front], c="tab:red", s=40, zorder=3)
    ax_f.set_xlabel("LUT4")
    ax_f.set_ylabel("Fmax (MHz)")
    ax_f.set_title(f"{title}: Fmax vs area (front in red)")
    ax_f.grid(alpha=0.3)
    fig.tight_layout()
    partial = png.with_name(f".{png.stem}.partial.png")
    fig.savefig(partial, dpi=120)
    plt.close(fig)
    partial.replace(png)
