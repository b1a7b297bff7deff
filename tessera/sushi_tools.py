"""``tessera sushi``: run SushiSched (and the baselines) on one seeded query stream and
write the SGS buffer's request words.

The SuperNet, core and off-chip bandwidth are those of ``tessera bench sushi``
(:mod:`tessera.bench.sushi`); the buffer is any ``SGSBufferConfig`` (default: the
bench's 8 KB one).
"""

import json
from pathlib import Path

import click

from compiler.sgs_stream import pack_requests
from golden import sushi
from spec.sgs_buffer import SGSBufferConfig

from .bench.sushi import CORE, OFFCHIP_BYTES_PER_CYCLE

__all__ = ["run_schedule"]


def run_schedule(buffer: SGSBufferConfig, stream_kind: str, queries: int, seed: int, policies: list[str],
                 out: Path | None) -> dict:
    """Serve the stream with each policy; print one line per policy; write the first
    buffer-run policy's request words (hex, one per line) and a JSON summary to ``out``."""
    space = sushi.SubNetSpace(sushi.supernet(), buffer.block_bytes, CORE)
    platform = sushi.Platform.from_buffer(buffer, OFFCHIP_BYTES_PER_CYCLE)
    stream = sushi.make_stream(space, platform, stream_kind, queries, seed=seed)
    summaries, written = {}, None
    for policy in policies:
        result = sushi.serve(policy, space, platform, stream)
        s = summaries[policy] = result.summary()
        click.echo(f"{policy:9} off-chip {s['offchip_bytes_per_query'] / 1024:7.2f} KB/query  latency "
                   f"{s['mean_latency_cycles']:7.0f} cycles  top-1 {s['served_accuracy']:.2f}%  "
                   f"SLO violations {s['slo_violations']}  SubGraph rewrites {s['subgraph_swaps']}")
        if out is not None and written is None and result.commands is not None:
            words = pack_requests(buffer, result.commands, n_blocks=space.n_blocks)
            out.mkdir(parents=True, exist_ok=True)
            width = -(-(buffer.id_width + buffer.slot_width + 2) // 4)
            (out / f"{policy}_requests.hex").write_text("".join(f"{w:0{width}x}\n" for w in words))
            written = policy
    if out is not None:
        (out / "summary.json").write_text(json.dumps({"buffer": buffer.to_dict(), "stream": stream_kind,
                                                      "queries": queries, "seed": seed,
                                                      "policies": summaries}, indent=2) + "\n")
        if written:
            click.echo(f"wrote {out / f'{written}_requests.hex'} and {out / 'summary.json'}")
    return summaries
