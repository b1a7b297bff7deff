"""Where a compiled model's time goes: per layer, from an ISS run's trace.

A layer's cycles are the span of its instructions in the trace (first start to last
end, the three queues overlapping inside it); its core beats are the beats of its GEMMs;
its utilisation the ratio. Host ops are counted with their estimated host cycles.
"""

from spec.isa import WORD_BYTES, Opcode, bytes_to_words, decode

__all__ = ["layer_profile", "profile_table"]


def _beats(insn) -> int:
    f = insn.fields
    return f["row_blocks"] * f["cols"] * f["k_groups"] * f["passes"]


def layer_profile(model, results: list) -> list[dict]:
    """Rows for one input: ``results`` holds one ``golden.iss.RunResult`` per segment."""
    rows = []
    seg_results = iter(results)
    for kind, item in model.steps:
        if kind == "host":
            est = next((h["estimated_cycles"] for h in model.manifest["host_ops"] if h["name"] == item.name), 0)
            rows.append({"layer": item.name, "where": "host", "op": item.kind, "cycles": est, "core_beats": 0,
                         "utilisation": None, "series": ""})
            continue
        seg = model.segments[item]
        result = next(seg_results)
        words = bytes_to_words(seg.dram[seg.prog_addr:seg.prog_addr + seg.prog_len * WORD_BYTES])
        spans = {i: (start, end) for i, _, _, start, end in result.trace}
        for layer in seg.layers:
            first, last = seg.insn_ranges[layer.op.name]
            times = [spans[i] for i in range(first, last + 1) if i in spans]
            cycles = max(e for _, e in times) - min(s for s, _ in times) if times else 0
            beats = sum(_beats(decode(words[i])) for i in range(first, last + 1)
                        if decode(words[i]).opcode == Opcode.GEMM)
            rows.append({"layer": layer.op.name, "where": f"segment {item}", "op": layer.op.kind,
                         "cycles": cycles, "core_beats": beats, "utilisation": beats / cycles if cycles else None,
                         "series": layer.series})
        rows.append({"layer": f"segment {item} total", "where": f"segment {item}", "op": "", "cycles": result.cycles,
                     "core_beats": result.counters["core_beats"],
                     "utilisation": result.counters["core_beats"] / result.cycles, "series": ""})
    return rows


def profile_table(rows: list[dict]) -> str:
    lines = ["| layer | runs on | op | weights | cycles | core beats | utilisation |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        util = "" if r["utilisation"] is None else f"{100 * r['utilisation']:.1f}%"
        lines.append(f"| {r['layer']} | {r['where']} | {r['op']} | {r['series']} | {r['cycles']} | {r['core_beats']} | {util} |")
    return "\n".join(lines)
