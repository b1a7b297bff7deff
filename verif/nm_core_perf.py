"""cocotb performance run of the N:M core: one large product at full rate.

Not part of the functional bench: ``tessera bench nm-core`` runs it through
:func:`verif.runner.run_bench` with ``TESSERA_PERF_SHAPE=R,K,C`` and
``TESSERA_PERF_OUT=<file.json>``. It streams ``W[R, K] @ X[K, C]`` back to back
with no idle cycles or back-pressure, checks every output against golden.nm.matmul,
and writes the measured cycles (first input transfer to last output transfer,
inclusive) next to the ideal (one M-group per row block and column per cycle).
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
    values, indices = tb.random_weights(out_rows, k, cfg.n)
    x = tb.random_acts(k, cols)
    await tb.check(values, indices, x, cfg.n, f"{out_rows}x{k}x{cols}")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[0] + 1
    ideal = -(-out_rows // cfg.rows) * cols * (k // cfg.m)
    result = {"shape": [out_rows, k, cols], "measured_cycles": measured, "ideal_cycles": ideal,
              "model_cycles": nm.cycles(cfg, out_rows, k, cols), "utilisation": ideal / measured}
    with open(os.environ["TESSERA_PERF_OUT"], "w") as f:
        json.dump(result, f)
    assert measured == result["model_cycles"], result
