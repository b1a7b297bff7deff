"""cocotb performance run of the N:M core: one large product at full rate.

Not part of the functional bench: ``tessera bench nm-core`` runs it through
:func:`measure_utilisation`, whose job parameter ``shape`` is ``[R, K, C]``. It streams
``W[R, K] @ X[K, C]`` back to back with no idle cycles or back-pressure, checks every
output against golden.nm.matmul (:class:`verif.nm_core_tb.NMCoreScoreboard`), and writes
the measured cycles (first input transfer to last output transfer, inclusive) next to
the ideal (one M-group per row block and column per cycle) to the job's output. The
optional job parameter ``n_active`` (a list of N') runs the product once per N' (weights
pruned to N':M; on a packing core a packed mode's row block is ``rows * n / N'`` rows)
and writes a list of results.
"""

import cocotb

from golden import nm
from spec.nm_core import NMCoreConfig

from .nm_core_tb import NMCoreTB

__all__ = ["measure_utilisation"]


def measure_utilisation(config: NMCoreConfig, shape: tuple[int, int, int], build_root,
                        sim: str = "verilator", n_active: list[int] | None = None) -> dict | list[dict]:
    """Run ``W[R, K] @ X[K, C]`` (``shape``) at full rate on ``config``'s RTL; returns the
    measured, ideal and model cycles and the utilisation (one dict; with ``n_active``, a
    list of N', one dict per N')."""
    from hw.nm_core import NMCore

    from .runner import run_bench

    return run_bench(config, NMCore(config), "nm_core", "verif.nm_core_perf", sim=sim,
                     build_root=build_root, quiet=True, params={"shape": list(shape), **({"n_active": list(n_active)} if n_active else {})},
                     output=True).output


@cocotb.test()
async def large_product_at_full_rate(dut):
    tb = NMCoreTB(dut)
    await tb.reset()
    cfg = tb.config
    out_rows, k, cols = (int(v) for v in tb.job.param("shape"))
    modes = tb.job.param("n_active", None)
    results = []
    for n in ([int(v) for v in modes] if modes else [cfg.n]):
        values, indices = tb.stimulus.weights(out_rows, k, n)
        x = tb.stimulus.acts(k, cols)
        first = len(tb.source.transfer_edges)
        await tb.check(values, indices, x, n, f"{out_rows}x{k}x{cols} at N'={n}")
        measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[first] + 1
        pack = cfg.pack_factor(n) if cfg.sparse else 1
        ideal = -(-out_rows // (cfg.rows * pack)) * cols * (k // cfg.m)
        model = nm.cycles(cfg, out_rows, k, cols, n_active=n if cfg.sparse else None)
        results.append({"shape": [out_rows, k, cols], "n_active": n, "pack": pack,
                        "measured_cycles": measured, "ideal_cycles": ideal,
                        "model_cycles": model, "utilisation": ideal / measured})
        assert measured == model, results[-1]
    tb.job.write_output(results if modes else results[0])
