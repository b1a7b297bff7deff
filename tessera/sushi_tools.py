"""``tessera sushi``: print what serving one seeded query stream gave each policy, and write
the SGS buffer's request words.

The serving is :func:`golden.sushi.serve_stream`; the packing and the hex file are
:mod:`compiler.sgs_stream`'s. This module only prints and writes the summary.
"""

from pathlib import Path

import click

from compiler.sgs_stream import write_requests
from golden.sushi import registry
from spec import outputs

__all__ = ["run_schedule"]


def _line(policy: str, s: dict) -> str:
    return (f"{policy:9} SLO met {s['slo_attainment']:5.1f}%  served {s['served_accuracy']:6.2f}  "
            f"latency mean {s['mean_latency_cycles']:8.0f} p99 {s['p99_latency_cycles']:8} cycles  "
            f"off-chip {s['offchip_bytes_per_query'] / 1024:8.2f} KB/query  SubGraph rewrites {s['subgraph_swaps']}")


def run_schedule(supernet: str, buffer, stream_kind: str, queries: int, seed: int, policies: list[str],
                 out: Path | None) -> dict:
    """Serve the stream with each policy on ``buffer`` (a ``golden.sushi.Platform``); print
    one line per policy; write the first buffer-run policy's request words (hex, one per
    line) and a JSON summary to ``out``."""
    served = registry.serve_stream(supernet, stream_kind, queries, seed, policies, buffer)
    net = served.space.net
    click.echo(f"{supernet}: {len(served.space.subnets)} SubNets, {net.metric} "
               f"{served.space.accuracies.min():.2f}-{served.space.accuracies.max():.2f}; buffer "
               f"{served.platform.capacity_bytes // 1024} KB ({served.platform.persistent_blocks} persistent + "
               f"{served.platform.buffer.stream_slots} streaming slots of {served.platform.block_bytes} B); "
               f"{stream_kind} stream, {queries} queries, seed {seed}")
    summaries, written = {}, None
    for policy, result in served.results.items():
        summaries[policy] = result.summary()
        click.echo(_line(policy, summaries[policy]))
        if out is not None and written is None and result.commands is not None:
            write_requests(served.platform.buffer, result.commands, out / f"{policy}_requests.hex",
                           n_blocks=served.space.n_blocks)
            written = policy
    if out is not None:
        buffer = served.platform.buffer.to_dict()
        params = {"supernet": supernet, "stream": stream_kind, "queries": queries, "policies": policies,
                  "buffer": buffer, "offchip_bytes_per_cycle": served.platform.offchip_bytes_per_cycle, "out": out}
        outputs.write_json(out / "summary.json", {
            "supernet": supernet, "buffer": buffer, "offchip_bytes_per_cycle": served.platform.offchip_bytes_per_cycle,
            "stream": stream_kind, "queries": queries, "seed": seed, "policies": summaries,
            "provenance": outputs.provenance("sushi", params, seed=seed)})
        click.echo(f"wrote {out / f'{written}_requests.hex'} and {out / 'summary.json'}" if written
                   else f"wrote {out / 'summary.json'}")
    return summaries
