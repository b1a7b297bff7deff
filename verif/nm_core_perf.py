"""cocotb performance run of the N:M core: one large product at full rate.

Not part of the functional bench: ``tessera bench nm-core`` runs it through
:func:`verif.runner.run_bench` with ``TESSERA_PERF_SHAPE=R,K,C`` and
``TESSERA_PERF_OUT=<file.json>``. It streams ``W[R, K] @ X[K, C]`` back to back
with no idle cycles or back-pressure, checks every output against golden.nm.matmul,
and writes the measured cycles (first input transfer to last output transfer,
inclusive) next to the ideal (one M-group per row block and column per cycle).
``TESSERA_PERF_N_ACTIVE=1,2`` (optional, default the core's n) runs the product once per
listed N' (weights pruned to N':M; on a packing core a packed mode's row block is
``rows * n / N'`` rows) and writes a list of results.
"""

import json
import os

import cocotb

from golden import nm

from .nm_core_tb import NMCoreTB


@cocotb.test()
async def large_product_at_full_rate(dut):
    tb = NMCoreTB(dut)
    await tb.reset()
    cfg = tb.config
    out_rows, k, cols = (int(v) for v in os.environ["TESSERA_PERF_SHAPE"].split(","))
    modes = os.environ.get("TESSERA_PERF_N_ACTIVE", "")
    results = []
    for n in ([int(v) for v in modes.split(",")] if modes else [cfg.n]):
        values, indices = tb.random_weights(out_rows, k, n)
        x = tb.random_acts(k, cols)
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
    with open(os.environ["TESSERA_PERF_OUT"], "w") as f:
        json.dump(results if modes else results[0], f)
