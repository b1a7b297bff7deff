"""``tessera bench sushi``: SUSHI's serving figures, the SGS buffer's RTL replay, area and Fmax.

Set-up (stated once, used everywhere below; :mod:`golden.sushi.registry`):

* SuperNets: the elastic digits CNN (``golden.sushi.digits_cnn``, 64 SubNets, sandwich
  rule, cached) and, with the MiniLM extra, the elastic all-MiniLM-L6-v2
  (``golden.sushi.elastic_minilm``, 72 SubNets); int8 weights.
* Platform: ``golden.sushi.CORE`` (dense 4:4 x 64 rows, 256 MACs/cycle) at 8 off-chip
  bytes per cycle, batch 1; digits on an 8 KB SGS buffer of 64-byte blocks, MiniLM on a
  2 MB buffer of 16 KB blocks (126 persistent + 2 streaming slots each).
* Streams: ``steady`` (seed 1), ``drift`` (2), ``phased`` (3), ``bursty`` (4), 400 queries.

Figures:

1. The Pareto front of each SubNet space (quality vs latency without a cache vs weight bytes).
2. Per SuperNet, stream and policy (SushiSched, its oracle, no cache, LRU over all slots,
   static SubNet): SLO attainment, served accuracy (mean quality of the served SubNets)
   and quality on the queries' own items, mean and p99 latency, off-chip bytes per query.
   Target lines: SUSHI >= 50 % less traffic than no cache; SUSHI against each baseline on
   served accuracy at equal (or better) SLO attainment, saying plainly who wins; SUSHI
   against the best baseline (the one with the highest SLO attainment, then accuracy).
3. Capacity sweeps on the drift stream: digits 4 to 32 KB, MiniLM 1 to 8 MB.
4. RTL check: the first 40 queries of the digits drift stream's SushiSched requests
   replayed on the buffer's Verilog (Verilator): every word, the counters and the fetched
   blocks must equal the golden cache model's.
5. Synthesis (Yosys ``synth_ice40`` + nextpnr HX8K) of the digits buffer and the default one.

Reproducibility: the headline numbers (:func:`headline`) of the full configuration and of
a reduced one (:data:`REDUCED`: digits only, 100 queries per stream) are stored in
:data:`FIGURES` next to this file; the bench checks its own run against both and says
whether it reproduced them, and ``tests/test_sushi_bench.py`` reruns the reduced one.
To refresh them after an intended change, copy ``<out>/sushi_figures.json`` over :data:`FIGURES`.

Results go to ``<out>/sushi_bench.json`` and ``.md``; the tables are printed.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from compiler.sgs_stream import memory_image
from golden import minilm
from golden import sushi
from golden.sushi import registry
from hw.sgs_buffer import SGSBuffer
from spec import outputs
from spec.sgs_buffer import SGSBufferConfig
from synth.flow import synthesize
from verif.sgs_buffer_replay import replay_on_buffer

from ..tables import rich_progress

STREAMS = [("steady", 1), ("drift", 2), ("phased", 3), ("bursty", 4)]
QUERIES = 400
#: The reduced configuration the test reruns.
REDUCED = {"supernets": ["digits-cnn"], "queries": 100}
#: Capacity sweeps on the drift stream (KB per SuperNet).
SWEEPS = {"digits-cnn": (4, 8, 16, 32), "minilm": (1024, 2048, 4096, 8192)}
SWEEP_STREAM = ("drift", 2)
#: The RTL replay: this SuperNet's drift stream on its own platform.
REPLAY = "digits-cnn"
REPLAY_QUERIES = 40
BASELINES = ("no-cache", "lru", "static")
#: Headline fields, per SuperNet, stream and policy.
HEADLINE = ("slo_attainment", "served_accuracy", "mean_latency_cycles", "p99_latency_cycles",
            "offchip_bytes_per_query")
FIGURES = Path(__file__).with_name("sushi_figures.json")


def supernets() -> list[str]:
    """The SuperNets this machine can serve (MiniLM needs the optional extra)."""
    return [n for n in registry.SUPERNETS if n != "minilm" or minilm.available() is None]


def serve_all(name: str, queries: int, progress=None) -> dict[str, registry.Served]:
    out = {}
    for kind, seed in STREAMS:
        out[f"{kind} (seed {seed})"] = registry.serve_stream(name, kind, queries, seed)
        if progress is not None:
            progress()
    return out


def headline(served: dict[str, registry.Served]) -> dict:
    """``{stream: {policy: {field: value}}}`` of :data:`HEADLINE`."""
    return {stream: {p: {k: r.summary()[k] for k in HEADLINE} for p, r in s.results.items()}
            for stream, s in served.items()}


def reduced_headline() -> dict:
    """The headline of :data:`REDUCED` (what the test compares with :data:`FIGURES`)."""
    return {name: headline(serve_all(name, REDUCED["queries"])) for name in REDUCED["supernets"]}


def _pct(part, whole) -> str:
    return f"{100 * (part / whole - 1):+.1f}%" if whole else "n/a"


def _setup_line(name: str, space, platform) -> str:
    bw = platform.offchip_bytes_per_cycle
    nc = space.no_cache_latencies(bw)
    return (f"{name}: {len(space.subnets)} SubNets, {space.n_blocks} blocks of {space.block_bytes} B "
            f"({space.n_blocks * space.block_bytes / 1024:.0f} KB); SubNets read {space.sizes.min()}-"
            f"{space.sizes.max()} blocks; {space.net.metric} {space.accuracies.min():.2f}-"
            f"{space.accuracies.max():.2f}; {nc.min()}-{nc.max()} cycles without a cache; buffer "
            f"{platform.capacity_bytes / 1024:.0f} KB = {platform.persistent_blocks} persistent + "
            f"{platform.buffer.stream_slots} streaming slots; core {sushi.CORE.n}:{sushi.CORE.m} x{sushi.CORE.rows}; "
            f"off-chip {bw} B/cycle")


def _pareto_table(space, platform) -> str:
    bw = platform.offchip_bytes_per_cycle
    nc, compute = space.no_cache_latencies(bw), space.compute_latencies()
    lines = [f"| SubNet | {space.net.metric} | latency, no cache (cycles) | latency, all resident | weight KB |",
             "|" + "---|" * 5]
    for s in space.pareto_front(bw):
        info = space.subnets[s]
        lines.append(f"| {info.name} | {info.accuracy:.2f} | {nc[s]} | {compute[s]} | {info.weight_bytes / 1024:.1f} |")
    return "\n".join(lines)


def _policy_table(name: str, served) -> str:
    lines = [f"| {name} stream | policy | SLO met (%) | served accuracy | item quality | mean latency | p99 latency "
             "| off-chip KB/query | vs no cache | SubGraph rewrites | SubNets used |", "|" + "---|" * 11]
    for stream, s in served.items():
        base = s.results["no-cache"].summary()
        for policy, result in s.results.items():
            r = result.summary()
            lines.append(f"| {stream} | {policy} | {r['slo_attainment']:.1f} | {r['served_accuracy']:.2f} "
                         f"| {r['served_item_quality']:.2f} | {r['mean_latency_cycles']:.0f} | {r['p99_latency_cycles']} "
                         f"| {r['offchip_bytes_per_query'] / 1024:.2f} "
                         f"| {_pct(r['offchip_bytes_per_query'], base['offchip_bytes_per_query'])} "
                         f"| {r['subgraph_swaps']} | {r['distinct_subnets']} |")
    return "\n".join(lines)


def _verdict(su: dict, x: dict, name: str) -> str:
    da, ds = su["served_accuracy"] - x["served_accuracy"], su["slo_attainment"] - x["slo_attainment"]
    figures = f"accuracy {su['served_accuracy']:.2f} vs {x['served_accuracy']:.2f}, SLO met {su['slo_attainment']:.1f} vs " \
              f"{x['slo_attainment']:.1f}%"
    if da > 0 and ds >= 0:
        return f"beats {name} ({figures})"
    if da >= 0 and ds > 0:
        return f"ties {name} on accuracy and meets more SLOs ({figures})"
    if da <= 0 and ds <= 0:
        return f"{name.upper()} WINS ({figures})"
    return (f"{name.upper()} WINS ON ACCURACY but meets fewer SLOs ({figures})" if da < 0 else
            f"{name.upper()} MEETS MORE SLOS but serves less accurately ({figures})")


def _targets(name: str, served) -> list[str]:
    lines = []
    for stream, s in served.items():
        r = {p: res.summary() for p, res in s.results.items()}
        su, nc = r["sushi"], r["no-cache"]
        cut = 1 - su["offchip_bytes_per_query"] / nc["offchip_bytes_per_query"]
        checks = [f"{100 * cut:.1f}% less off-chip traffic than no cache (target >= 50%: "
                  f"{'met' if cut >= 0.5 else 'MISSED'})"]
        checks += [_verdict(su, r[b], b) for b in BASELINES]
        best = max(BASELINES, key=lambda b: (r[b]["slo_attainment"], r[b]["served_accuracy"]))
        b = r[best]
        checks.append(f"against the best baseline ({best}): SLO met {su['slo_attainment'] - b['slo_attainment']:+.1f} "
                      f"points, accuracy {su['served_accuracy'] - b['served_accuracy']:+.2f}, mean latency "
                      f"{_pct(su['mean_latency_cycles'], b['mean_latency_cycles'])}, p99 "
                      f"{_pct(su['p99_latency_cycles'], b['p99_latency_cycles'])}, traffic "
                      f"{_pct(su['offchip_bytes_per_query'], b['offchip_bytes_per_query'])}; oracle "
                      f"{r['oracle']['served_accuracy']:.2f} at {r['oracle']['slo_attainment']:.1f}% SLO met")
        lines.append(f"{name} {stream}: SUSHI " + "; ".join(checks))
    return lines


def _sweep(name: str, progress) -> tuple[dict, str]:
    kind, seed = SWEEP_STREAM
    base = registry.platform(name)
    results = {}
    for kb in SWEEPS[name]:
        platform = sushi.Platform.of_size(kb * 1024, base.block_bytes)
        results[kb] = {p: r.summary() for p, r in
                       registry.serve_stream(name, kind, QUERIES, seed, buffer_platform=platform).results.items()}
        progress()
    lines = [f"| {name} {kind} buffer | slots (persistent + streaming) | "
             + " | ".join(f"{p} KB/query" for p in sushi.POLICIES) + " | "
             + " | ".join(f"{p} accuracy / SLO met" for p in sushi.POLICIES) + " |",
             "|" + "---|" * (2 + 2 * len(sushi.POLICIES))]
    for kb, res in results.items():
        slots = kb * 1024 // base.block_bytes
        size = f"{kb // 1024} MB" if kb >= 1024 else f"{kb} KB"
        lines.append(f"| {size} | {slots - 2} + 2 | "
                     + " | ".join(f"{res[p]['offchip_bytes_per_query'] / 1024:.2f}" for p in sushi.POLICIES) + " | "
                     + " | ".join(f"{res[p]['served_accuracy']:.2f} / {res[p]['slo_attainment']:.1f}"
                                  for p in sushi.POLICIES) + " |")
    return {str(k): v for k, v in results.items()}, "\n".join(lines)


def _replay(out: Path, served: registry.Served) -> dict:
    """Replay the first REPLAY_QUERIES queries' SushiSched requests on the RTL; the bench
    checks every word, the counters and the fetches against the golden cache model."""
    buffer = served.platform.buffer
    result = sushi.SushiSched(served.space, served.platform).run(served.stream[:REPLAY_QUERIES])
    measured = replay_on_buffer(buffer, result.commands, memory_image(buffer, served.space), out / "sim_build")
    return {**measured, "scheduler_offchip_bytes": sum(r.offchip_bytes for r in result.records)}


def _synth_table(configs, reports) -> str:
    lines = ["| buffer | words x bits | block words | tags + streaming | LUT4 | carry | FF | BRAM (SB_RAM40_4K) "
             "| Fmax (MHz) | LC (placed) |", "|" + "---|" * 10]
    for cfg, r in zip(configs, reports):
        pnr = r["pnr"] or {}
        lines.append(f"| {cfg.capacity_words * cfg.word_width // 8192} KB | {cfg.capacity_words} x {cfg.word_width} "
                     f"| {cfg.block_words} | {cfg.tags} + {cfg.stream_slots} | {r['ice40']['lut4']} "
                     f"| {r['ice40']['carry']} | {r['ice40']['ff']} | {r['ice40']['bram']} "
                     f"| {pnr.get('fmax_mhz') or 'does not fit'} | {pnr.get('lc_used', '-')} |")
    return "\n".join(lines)


def _reproduced(current: dict, stored: dict | None, label: str) -> str:
    if stored is None:
        return f"{label}: no stored figures in {FIGURES}"
    if json.loads(json.dumps(current)) == stored:
        return f"{label}: reproduces the stored figures ({FIGURES.name}) exactly"
    return f"{label}: DIFFERS from the stored figures ({FIGURES.name}); see <out>/sushi_figures.json"


def run_bench(out: Path, jobs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    names = supernets()
    if "minilm" not in names:
        click.echo(f"note: {minilm.available()} -- the MiniLM rows are left out")
    click.echo("SuperNets: trained / measured on the first run (cached afterwards)...")
    spaces = {name: registry.space(name) for name in names}
    setups = [_setup_line(name, spaces[name], registry.platform(name)) for name in names]
    click.echo("\n".join(setups))
    fronts = {name: _pareto_table(spaces[name], registry.platform(name)) for name in names}
    for name in names:
        front = spaces[name].pareto_front(registry.platform(name).offchip_bytes_per_cycle)
        click.echo(f"Pareto front of the {name} SubNets ({len(front)} of {len(spaces[name].subnets)}):")
        click.echo(fronts[name])

    served, tables, targets = {}, {}, []
    with rich_progress() as progress:
        task = progress.add_task("serving query streams", total=len(names) * len(STREAMS)
                                 + sum(len(SWEEPS[n]) for n in names) + len(STREAMS))
        step = lambda: progress.advance(task)
        for name in names:
            served[name] = serve_all(name, QUERIES, step)
            tables[name] = _policy_table(name, served[name])
            targets += _targets(name, served[name])
        sweeps = {name: _sweep(name, step) for name in names}
        reduced = {name: headline(serve_all(name, REDUCED["queries"], step)) for name in REDUCED["supernets"]}
    for name in names:
        click.echo(tables[name])
    click.echo("\n".join(targets))
    for name, (_, table) in sweeps.items():
        click.echo(f"capacity sweep, {name} {SWEEP_STREAM[0]} stream (seed {SWEEP_STREAM[1]}):")
        click.echo(table)

    figures = {"full": {name: headline(served[name]) for name in names}, "reduced": reduced}
    stored = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    repro = [_reproduced(figures["full"], stored.get("full"), f"full configuration ({', '.join(names)})"),
             _reproduced(reduced, stored.get("reduced"), "reduced configuration (digits-cnn, 100 queries)")]
    click.echo("\n".join(repro))
    params = {"supernets": names, "streams": STREAMS, "queries": QUERIES, "reduced": REDUCED, "sweeps": SWEEPS,
              "sweep_stream": SWEEP_STREAM, "replay": [REPLAY, REPLAY_QUERIES], "jobs": jobs, "out": out}
    provenance = outputs.provenance("bench sushi", params, seed=[seed for _, seed in STREAMS])
    # Sorted and compact like FIGURES, so it can be copied over it; provenance beside the figures.
    outputs.write_text(out / "sushi_figures.json",
                       json.dumps({**figures, "provenance": provenance}, indent=1, sort_keys=True) + "\n")

    drift = served[REPLAY][f"{SWEEP_STREAM[0]} (seed {SWEEP_STREAM[1]})"]
    click.echo(f"replaying the first {REPLAY_QUERIES} queries of the {REPLAY} {SWEEP_STREAM[0]} stream's SushiSched "
               "requests on the RTL (Verilator)...")
    replay = _replay(out, drift)
    word_bytes = drift.platform.word_bytes
    rtl_bytes = replay["counters"]["offchip_words"] * word_bytes
    replay_line = (f"RTL replay on the {drift.platform.capacity_bytes // 1024} KB buffer: {replay['requests']} requests "
                   f"({replay['pins']} pins), {replay['words_read']} words read, all right; counters "
                   f"{replay['counters']} = golden cache model; off-chip bytes {rtl_bytes} "
                   f"({'=' if rtl_bytes == replay['scheduler_offchip_bytes'] else 'DIFFERENT FROM'} the scheduler's "
                   f"{replay['scheduler_offchip_bytes']}); {replay['cycles']} cycles from first request to last word "
                   "(no stalls, immediate memory)")
    click.echo(replay_line)

    configs = [drift.platform.buffer, SGSBufferConfig()]
    with rich_progress() as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("synthesis + place-and-route", total=len(configs))
        futures = [pool.submit(synthesize, SGSBuffer(c), "sgs_buffer", out / "synth" / c.tag, config=c)
                   for c in configs]
        reports = []
        for future in futures:
            reports.append(future.result())
            progress.advance(task)
    synth_table = _synth_table(configs, reports)
    click.echo(synth_table)

    result = {"setup": setups,
              "pareto": {n: [spaces[n].subnets[s].name for s in
                             spaces[n].pareto_front(registry.platform(n).offchip_bytes_per_cycle)] for n in names},
              "streams": {n: {s: {p: r.summary() for p, r in v.results.items()} for s, v in served[n].items()}
                          for n in names},
              "capacity_sweep": {n: v for n, (v, _) in sweeps.items()}, "figures": figures, "reproduced": repro,
              "replay": replay, "synth": reports, "provenance": provenance}
    outputs.write_json(out / "sushi_bench.json", result)
    outputs.write_text(out / "sushi_bench.md", "\n\n".join([*setups, *fronts.values(), *tables.values(),
                                                           "\n".join(targets), *(t for _, t in sweeps.values()),
                                                           "\n".join(repro), replay_line, synth_table]) + "\n")
    return result
