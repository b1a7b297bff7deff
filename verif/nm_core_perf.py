"""cocotb performance run of the N:M core: one large product at full rate.

Not part of the functional bench: ``tessera bench nm-core`` runs it through
:func:`measure_utilisation`, whose job parameter ``shape`` is ``[R, K, C]``. It streams
``W[R, K] @ X[K, C]`` back to back with no idle cycles or back-pressure, checks every
output against golden.nm.matmul (:class:`verif.nm_core_tb.NMCoreScoreboard`), and writes
the measured cycles (first input transfer to last output transfer, inclusive) next to
the ideal (one M-group per row block and column per cycle) to the job's output.
"""

import cocotb

from golden import nm
from spec.nm_core import NMCoreConfig

from .nm_core_tb import NMCoreTB

__all__ = ["measure_utilisation"]


def measure_utilisation(config: NMCoreConfig, shape: tuple[int, int, int], build_root,
                        sim: str = "verilator") -> dict:
    """Run ``W[R, K] @ X[K, C]`` (``shape``) at full rate on ``config``'s RTL; returns the
    measured, ideal and model cycles and the utilisation."""
    from hw.nm_core import NMCore

    from .runner import run_bench

    return run_bench(config, NMCore(config), "nm_core", "verif.nm_core_perf", sim=sim,
                     build_root=build_root, quiet=True, params={"shape": list(shape)}, output=True).output


@cocotb.test()
async def large_product_at_full_rate(dut):
    tb = NMCoreTB(dut)
    await tb.reset()
    cfg = tb.config
    out_rows, k, cols = (int(v) for v in tb.job.param("shape"))
    values, indices = tb.stimulus.weights(out_rows, k, cfg.n)
    x = tb.stimulus.acts(k, cols)
    await tb.check(values, indices, x, cfg.n, f"{out_rows}x{k}x{cols}")
    measured = tb.sink.transfer_edges[-1] - tb.source.transfer_edges[0] + 1
    ideal = -(-out_rows // cfg.rows) * cols * (k // cfg.m)
    result = {"shape": [out_rows, k, cols], "measured_cycles": measured, "ideal_cycles": ideal,
              "model_cycles": nm.cycles(cfg, out_rows, k, cols), "utilisation": ideal / measured}
    tb.job.write_output(result)
    assert measured == result["model_cycles"], result
