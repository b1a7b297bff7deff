"""cocotb run of one real layer on the N:M core, and the job that starts it.

:func:`run_layer_on_core` takes a trained N:M layer's int8 weights ``w[R, K]`` and int8
activations ``x[K, C]``, writes them to an ``.npz`` named by the job parameter ``layer``,
and runs :func:`trained_layer_bit_exact`: the weights are compressed with the core's n:m,
streamed through the RTL, and every output compared with ``golden.nm.matmul``
(:class:`verif.nm_core_tb.NMCoreScoreboard`). The outcome (shape, outputs, mismatching
outputs, non-zero weights) is the job's output.
"""

from pathlib import Path

import cocotb
import numpy as np

from compiler.nm_stream import lower_matmul
from golden import nm
from spec.nm_core import NMCoreConfig

from .nm_core_tb import NMCoreTB

__all__ = ["run_layer_on_core"]


def run_layer_on_core(w, x, config: NMCoreConfig, out: Path, *, sim: str = "verilator",
                      name: str = "layer") -> dict:
    """Run ``w @ x`` (int8, ``w`` n:m sparse for the core's n:m) through ``config``'s RTL;
    returns the outcome (``mismatches`` is 0 when every output is bit-exact)."""
    from hw.nm_core import NMCore

    from .runner import run_bench

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layer = (out / f"{name}.npz").resolve()
    np.savez(layer, w=np.asarray(w), x=np.asarray(x))
    return run_bench(config, NMCore(config), "nm_core", "verif.nm_core_layer", sim=sim,
                     build_root=out / "sim_build", quiet=True, params={"layer": str(layer)},
                     output=True).output


@cocotb.test()
async def trained_layer_bit_exact(dut):
    tb = NMCoreTB(dut, idle=0.05, backpressure=0.05)
    await tb.reset()
    cfg = tb.config
    layer = np.load(tb.job.param("layer"))
    w, x = layer["w"], layer["x"]
    values, indices = nm.compress(w, cfg.n, cfg.m)        # raises if the layer is not n:m
    program = lower_matmul(cfg, values, indices, x)
    tb.scoreboard.expect_matmul(program, values, indices, x, cfg.n, "layer")
    tb.drive(program)
    await tb.finish(program, "layer", check=False)
    outputs = int(w.shape[0]) * int(x.shape[1])
    mismatches = tb.scoreboard.differing_fields
    tb.job.write_output({"shape": [int(w.shape[0]), int(w.shape[1]), int(x.shape[1])],
                         "outputs": outputs, "mismatches": mismatches,
                         "nonzero_weights": int(np.count_nonzero(w))})
    assert mismatches == 0, f"{mismatches} of {outputs} outputs differ from golden.nm.matmul"
    tb.scoreboard.check()
