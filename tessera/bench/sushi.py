"""``tessera bench sushi``: SUSHI's serving figures and the SGS buffer's area and Fmax.

Set-up (stated once, used everywhere below):

* SuperNet: ``golden.sushi.SuperNetSpec()`` (elastic MLP on digits, 84 SubNets), trained
  with the sandwich rule (cached), int8 weights cut into 256-byte blocks.
* Tensor core: ``NMCoreConfig(n=4, m=4, rows=8)`` (dense, 32 MACs/cycle), batch 1.
* Buffer: ``SGSBufferConfig()``: 2,048 x 32-bit words (8 KB), 64-word (256 B) blocks,
  30 persistent slots (tags) + 2 streaming slots. Off-chip memory: 8 bytes per core cycle.
* Streams: ``steady`` (seed 1), ``drift`` (seed 2), ``phased`` (seed 3), 400 queries each.

Figures:

1. Per stream and policy (SushiSched, no persistent cache, LRU over all 32 block slots,
   static SubNet): off-chip traffic per query, mean latency, served top-1 (mean of the
   served SubNets' test top-1) and the share of the queries' own images classified
   right, SLO violations. Target lines: SUSHI >= 50 % less traffic than no cache, less
   than LRU, served accuracy >= static.
2. Capacity sweep (4 to 16 KB) on the drift stream: where LRU catches up.
3. The choice rule's accuracy band: tolerance 0 against one test image (the default).
4. RTL check: the first 40 queries of the drift stream's SushiSched requests replayed
   on the buffer's Verilog (Verilator): every word and the off-chip word counter must
   equal the golden cache model's.
5. Synthesis (Yosys ``synth_ice40`` + nextpnr HX8K) of the 8 KB buffer and a 16 KB one.

Results go to ``<out>/sushi_bench.json`` and ``.md``; the tables are printed.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from compiler.sgs_stream import memory_image
from golden import sushi
from hw.sgs_buffer import SGSBuffer
from spec.nm_core import NMCoreConfig
from spec.sgs_buffer import SGSBufferConfig
from synth.flow import synthesize
from verif.sgs_buffer_replay import replay_on_buffer

from spec import outputs

from ..tables import rich_progress

CORE = NMCoreConfig(n=4, m=4, rows=8)
BUFFER = SGSBufferConfig()
OFFCHIP_BYTES_PER_CYCLE = 8
STREAMS = [("steady", 1), ("drift", 2), ("phased", 3)]
QUERIES = 400
CAPACITY_KB = (4, 8, 12, 16)
SWEEP_STREAM = ("drift", 2)
REPLAY_QUERIES = 40
SYNTH = [BUFFER, BUFFER.replace(capacity_words=4096, tags=62)]


def _buffer_of(kb: int) -> SGSBufferConfig:
    """A buffer of ``kb`` KB with BUFFER's word and block size and 2 streaming slots."""
    words = kb * 1024 // BUFFER.word_bytes
    return BUFFER.replace(capacity_words=words, tags=words // BUFFER.block_words - 2)


def _pct(part, whole) -> str:
    """Change of ``part`` relative to ``whole`` (-66.0% = two thirds less)."""
    return f"{100 * (part / whole - 1):+.1f}%" if whole else "n/a"


def _policy_table(rows) -> str:
    lines = ["| stream | policy | off-chip KB/query | vs no cache | mean latency (cycles) | vs no cache "
             "| served top-1 (%) | images right (%) | SLO violations | SubGraph rewrites | SubNets used |",
             "|" + "---|" * 11]
    for r in rows:
        s, base = r["summary"], r["no_cache"]
        lines.append(
            f"| {r['stream']} | {s['policy']} | {s['offchip_bytes_per_query'] / 1024:.2f} "
            f"| {_pct(s['offchip_bytes_per_query'], base['offchip_bytes_per_query'])} "
            f"| {s['mean_latency_cycles']:.0f} | {_pct(s['mean_latency_cycles'], base['mean_latency_cycles'])} "
            f"| {s['served_accuracy']:.2f} | {s['served_correct']:.1f} | {s['slo_violations']} "
            f"| {s['subgraph_swaps']} | {s['distinct_subnets']} |")
    return "\n".join(lines)


def _targets(by_stream) -> list[str]:
    lines = []
    for stream, res in by_stream.items():
        su, nc, lru, st = (res[p] for p in ("sushi", "no-cache", "lru", "static"))
        cut = 1 - su["offchip_bytes_per_query"] / nc["offchip_bytes_per_query"]
        checks = [f"{100 * cut:.1f}% less off-chip traffic than no cache (target >= 50%: "
                  f"{'met' if cut >= 0.5 else 'MISSED'})",
                  f"{su['offchip_bytes_per_query'] / 1024:.2f} vs LRU {lru['offchip_bytes_per_query'] / 1024:.2f} "
                  f"KB/query (target: less: {'met' if su['offchip_bytes_per_query'] < lru['offchip_bytes_per_query'] else 'MISSED'})",
                  f"served top-1 {su['served_accuracy']:.2f} vs static {st['served_accuracy']:.2f} "
                  f"(target: no lower: {'met' if su['served_accuracy'] >= st['served_accuracy'] - 1e-9 else 'MISSED'})",
                  f"{100 * (1 - su['mean_latency_cycles'] / nc['mean_latency_cycles']):.1f}% lower mean "
                  "latency than no cache"]
        lines.append(f"{stream}: SUSHI " + "; ".join(checks))
    return lines


def _sweep_table(sweep) -> str:
    lines = ["| buffer | slots (persistent + streaming) | SUSHI KB/query | LRU KB/query | no cache KB/query "
             "| static KB/query | SUSHI top-1 | LRU top-1 | static top-1 |", "|" + "---|" * 9]
    for kb, res in sweep.items():
        cfg = _buffer_of(kb)
        kbq = {p: res[p]["offchip_bytes_per_query"] / 1024 for p in res}
        lines.append(f"| {kb} KB | {cfg.tags} + {cfg.stream_slots} | {kbq['sushi']:.2f} | {kbq['lru']:.2f} "
                     f"| {kbq['no-cache']:.2f} | {kbq['static']:.2f} | {res['sushi']['served_accuracy']:.2f} "
                     f"| {res['lru']['served_accuracy']:.2f} | {res['static']['served_accuracy']:.2f} |")
    return "\n".join(lines)


def _tolerance_table(ablation) -> str:
    lines = ["| stream | tolerance (points) | SUSHI KB/query | LRU KB/query | no cache KB/query | SUSHI top-1 "
             "| LRU top-1 | no cache top-1 |", "|" + "---|" * 8]
    for (stream, tol), res in ablation.items():
        lines.append(f"| {stream} | {tol:.3f} | {res['sushi']['offchip_bytes_per_query'] / 1024:.2f} "
                     f"| {res['lru']['offchip_bytes_per_query'] / 1024:.2f} "
                     f"| {res['no-cache']['offchip_bytes_per_query'] / 1024:.2f} "
                     f"| {res['sushi']['served_accuracy']:.2f} | {res['lru']['served_accuracy']:.2f} "
                     f"| {res['no-cache']['served_accuracy']:.2f} |")
    return "\n".join(lines)


def _synth_table(reports) -> str:
    lines = ["| buffer | words x bits | block words | tags + streaming | LUT4 | carry | FF | BRAM (SB_RAM40_4K) "
             "| Fmax (MHz) | LC (placed) |", "|" + "---|" * 10]
    for cfg, r in zip(SYNTH, reports):
        pnr = r["pnr"] or {}
        lines.append(f"| {cfg.capacity_words * cfg.word_width // 8192} KB | {cfg.capacity_words} x {cfg.word_width} "
                     f"| {cfg.block_words} | {cfg.tags} + {cfg.stream_slots} | {r['ice40']['lut4']} "
                     f"| {r['ice40']['carry']} | {r['ice40']['ff']} | {r['ice40']['bram']} "
                     f"| {pnr.get('fmax_mhz') or 'does not fit'} | {pnr.get('lc_used', '-')} |")
    return "\n".join(lines)


def _replay(out: Path, space, platform, stream) -> dict:
    """Replay the first REPLAY_QUERIES queries' SushiSched requests on the RTL; the bench
    checks every word, the counters and the fetches against the golden cache model."""
    result = sushi.SushiSched(space, platform).run(stream[:REPLAY_QUERIES])
    measured = replay_on_buffer(BUFFER, result.commands, memory_image(BUFFER, space), out / "sim_build")
    return {**measured, "scheduler_offchip_bytes": sum(r.offchip_bytes for r in result.records)}


def run_bench(out: Path, jobs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    click.echo("SuperNet: training with the sandwich rule on the first run (cached afterwards)...")
    net = sushi.supernet()
    space = sushi.SubNetSpace(net, BUFFER.block_bytes, CORE)
    platform = sushi.Platform.from_buffer(BUFFER, OFFCHIP_BYTES_PER_CYCLE)
    no_cache = space.no_cache_latencies(OFFCHIP_BYTES_PER_CYCLE)
    setup = (f"SuperNet {len(space.subnets)} SubNets, {space.n_blocks} blocks of {space.block_bytes} B "
             f"({space.n_blocks * space.block_bytes // 1024} KB); SubNets read {space.sizes.min()}-{space.sizes.max()} "
             f"blocks, test top-1 {space.accuracies.min():.2f}-{space.accuracies.max():.2f}%, "
             f"{no_cache.min()}-{no_cache.max()} cycles without a cache; core {CORE.n}:{CORE.m} x{CORE.rows}; "
             f"buffer {BUFFER.capacity_words * BUFFER.word_bytes // 1024} KB = {BUFFER.tags} persistent + "
             f"{BUFFER.stream_slots} streaming slots; off-chip {OFFCHIP_BYTES_PER_CYCLE} B/cycle; "
             f"{QUERIES} queries per stream")
    click.echo(setup)
    streams = {f"{kind} (seed {seed})": sushi.make_stream(space, platform, kind, QUERIES, seed=seed)
               for kind, seed in STREAMS}
    rows, by_stream, sweep, ablation = [], {}, {}, {}
    runs = (len(streams) * len(sushi.POLICIES) + len(CAPACITY_KB) * len(sushi.POLICIES)
            + 2 * len(streams) * 3)
    with rich_progress() as progress:
        task = progress.add_task("serving query streams", total=runs)
        for name, stream in streams.items():
            res = {}
            for policy in sushi.POLICIES:
                res[policy] = sushi.serve(policy, space, platform, stream).summary()
                progress.advance(task)
            by_stream[name] = res
            rows += [{"stream": name, "summary": res[p], "no_cache": res["no-cache"]} for p in sushi.POLICIES]
        sweep_stream = sushi.make_stream(space, platform, SWEEP_STREAM[0], QUERIES, seed=SWEEP_STREAM[1])
        for kb in CAPACITY_KB:
            plat = sushi.Platform.from_buffer(_buffer_of(kb), OFFCHIP_BYTES_PER_CYCLE)
            sweep[kb] = {}
            for policy in sushi.POLICIES:
                sweep[kb][policy] = sushi.serve(policy, space, plat, sweep_stream).summary()
                progress.advance(task)
        for name, stream in streams.items():
            for tol in (0.0, space.accuracy_step):
                ablation[(name, tol)] = {}
                for policy in ("sushi", "lru", "no-cache"):
                    ablation[(name, tol)][policy] = sushi.serve(policy, space, platform, stream,
                                                                tolerance=tol).summary()
                    progress.advance(task)

    policy_table, target_lines = _policy_table(rows), _targets(by_stream)
    sweep_table, tolerance_table = _sweep_table(sweep), _tolerance_table(ablation)
    click.echo(policy_table)
    click.echo("\n".join(target_lines))
    click.echo(f"capacity sweep, {SWEEP_STREAM[0]} stream (seed {SWEEP_STREAM[1]}):")
    click.echo(sweep_table)
    click.echo(f"accuracy band of the choice rule (default: one test image = {space.accuracy_step:.3f} points):")
    click.echo(tolerance_table)

    click.echo(f"replaying the first {REPLAY_QUERIES} queries of the drift stream's SushiSched requests on "
               "the RTL (Verilator)...")
    replay = _replay(out, space, platform, streams[f"{SWEEP_STREAM[0]} (seed {SWEEP_STREAM[1]})"])
    rtl_bytes = replay["counters"]["offchip_words"] * BUFFER.word_bytes
    replay_line = (f"RTL replay: {replay['requests']} requests ({replay['pins']} pins), {replay['words_read']} "
                   f"words read, all right; counters {replay['counters']} = golden cache model; off-chip bytes "
                   f"{rtl_bytes} ({'=' if rtl_bytes == replay['scheduler_offchip_bytes'] else 'DIFFERENT FROM'} "
                   f"the scheduler's {replay['scheduler_offchip_bytes']}); {replay['cycles']} cycles from first "
                   f"request to last word (no stalls, immediate memory)")
    click.echo(replay_line)

    with rich_progress() as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("synthesis + place-and-route", total=len(SYNTH))
        futures = [pool.submit(synthesize, SGSBuffer(c), "sgs_buffer", out / "synth" / c.tag, config=c)
                   for c in SYNTH]
        reports = []
        for future in futures:
            reports.append(future.result())
            progress.advance(task)
    synth_table = _synth_table(reports)
    click.echo(synth_table)

    result = {"setup": setup, "streams": by_stream, "capacity_sweep": {str(k): v for k, v in sweep.items()},
              "tolerance": [{"stream": s, "tolerance": t, **v} for (s, t), v in ablation.items()],
              "replay": replay, "synth": reports}
    result["provenance"] = outputs.provenance(
        "bench sushi", {"streams": STREAMS, "queries": QUERIES, "sweep_stream": SWEEP_STREAM, "jobs": jobs,
                        "out": out}, seed=[seed for _, seed in STREAMS])
    outputs.write_json(out / "sushi_bench.json", result)
    outputs.write_text(out / "sushi_bench.md", "\n\n".join([setup, policy_table, "\n".join(target_lines), sweep_table,
                                                     tolerance_table, replay_line, synth_table]) + "\n")
    return result
