"""cocotb run of one real layer on the N:M core: a trained N:M layer's int8 weights and
int8 activations (from ``TESSERA_LAYER``, an .npz with ``w[R, K]`` and ``x[K, C]``) are
compressed with the core's n:m, streamed through the RTL, and every output compared
with ``golden.nm.matmul``. The outcome goes to ``TESSERA_LAYER_OUT`` (JSON).
"""

import json
import os

import cocotb
import numpy as np

from compiler.nm_stream import lower_matmul
from golden import nm

from .nm_core_tb import NMCoreTB


@cocotb.test()
async def trained_layer_bit_exact(dut):
    tb = NMCoreTB(dut, idle=0.05, backpressure=0.05)
    await tb.reset()
    cfg = tb.config
    layer = np.load(os.environ["TESSERA_LAYER"])
    w, x = layer["w"], layer["x"]
    values, indices = nm.compress(w, cfg.n, cfg.m)        # raises if the layer is not n:m
    got = await tb.run(lower_matmul(cfg, values, indices, x))
    want = nm.matmul(values, indices, x, cfg.n, cfg.m, width=cfg.width, acc_width=cfg.acc_width)
    mismatches = int(np.count_nonzero(got != want))
    with open(os.environ["TESSERA_LAYER_OUT"], "w") as f:
        json.dump({"shape": [int(w.shape[0]), int(w.shape[1]), int(x.shape[1])],
                   "outputs": int(got.size), "mismatches": mismatches,
                   "nonzero_weights": int(np.count_nonzero(w))}, f)
    assert mismatches == 0, f"{mismatches} of {got.size} outputs differ from golden.nm.matmul"
