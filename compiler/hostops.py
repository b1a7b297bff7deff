"""The ops a compiled model runs on the host, between accelerator segments: int8 tensors
in torch's logical layouts (NCHW, [batch, features]) with their scales.

Every op is deterministic numpy, so the compiled model's reference and its runtime call
the same function and agree exactly. Integer ops (max pooling, reshapes) keep the scale;
average pooling rounds half up in integers; everything else computes in float64 on the
dequantized inputs and requantizes to the op's calibrated output scale
(:func:`compiler.quant.quantize`).
"""

import numpy as np
import torch

from . import CompileError
from .quant import quantize

__all__ = ["run_host_op", "HOST_COST"]

#: Estimated host cycles per output element (a CPU core, for the manifest's timing).
HOST_COST = {"maxpool": 4, "avgpool": 4, "adaptive_avgpool": 4, "flatten": 0, "reshape": 0, "add": 2,
             "matmul": 2, "softmax": 20, "layernorm": 10, "gelu": 20, "tanh": 20, "sigmoid": 20, "relu": 1}


def _pool_windows(q: np.ndarray, kernel, stride, padding, fill) -> np.ndarray:
    """``[..., Ho, Wo, kh*kw]`` windows of an NCHW tensor padded with ``fill``."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    x = np.pad(q, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho = (x.shape[2] - kh) // sh + 1
    wo = (x.shape[3] - kw) // sw + 1
    win = np.empty(q.shape[:2] + (ho, wo, kh * kw), q.dtype)
    for i in range(kh):
        for j in range(kw):
            win[..., i * kw + j] = x[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw]
    return win


def run_host_op(op, inputs: list[np.ndarray], scales: list[float], out_scale: float) -> np.ndarray:
    """``op`` (a :class:`compiler.graph.Op`) on int8 ``inputs`` with their ``scales``."""
    kind, a = op.kind, op.attrs
    q = inputs[0]
    if kind == "maxpool":
        return _pool_windows(q, a["kernel"], a["stride"], a["padding"], -128).max(axis=-1)
    if kind in ("avgpool", "adaptive_avgpool"):
        if kind == "adaptive_avgpool":
            oh, ow = a["size"]
            if q.shape[2] % oh or q.shape[3] % ow:
                raise CompileError(f"adaptive_avg_pool2d in {op.name}: {q.shape[2:]} is not a multiple of {a['size']}")
            kernel = (q.shape[2] // oh, q.shape[3] // ow)
            stride, padding = kernel, (0, 0)
        else:
            kernel, stride, padding = a["kernel"], a["stride"], a["padding"]
        area = kernel[0] * kernel[1]
        total = _pool_windows(q, kernel, stride, padding, 0).astype(np.int64).sum(axis=-1)
        return (2 * total + area) // (2 * area)                  # round half up, exact
    if kind in ("flatten", "reshape"):
        return q.reshape((q.shape[0],) + tuple(op.shape[1:]))
    x = [qi.astype(np.float64) * s for qi, s in zip(inputs, scales)]
    if kind == "add":
        y = x[0] + x[1]
    elif kind == "matmul":
        y = (inputs[0].astype(np.int64) @ inputs[1].astype(np.int64)).astype(np.float64) * (scales[0] * scales[1])
    elif kind == "softmax":
        y = torch.softmax(torch.from_numpy(x[0]), dim=a["dim"]).numpy()
    elif kind == "layernorm":
        p = op.params
        w = torch.from_numpy(p["weight"]) if p.get("weight") is not None else None
        b = torch.from_numpy(p["bias"]) if p.get("bias") is not None else None
        y = torch.nn.functional.layer_norm(torch.from_numpy(x[0]), a["normalized"], w, b, a["eps"]).numpy()
    elif kind == "gelu":
        y = torch.nn.functional.gelu(torch.from_numpy(x[0]), approximate=a.get("approximate", "none")).numpy()
    elif kind == "tanh":
        y = np.tanh(x[0])
    elif kind == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-x[0]))
    elif kind == "relu":
        y = np.maximum(x[0], 0)
    else:
        raise CompileError(f"no host implementation of {kind} ({op.name})")
    return quantize(y, out_scale)
