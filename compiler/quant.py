"""int8 quantization of a model graph, and the exact integer semantics of every step.

* Activations: symmetric int8 per tensor, ``q = clip(rint(x / s), -127, 127)`` (``rint``:
  round half to even), ``s = max|x| / 127`` over the calibration set (the value after the
  layer's fused ReLU); 1 when a tensor is all zero.
* Weights: symmetric int8 per output channel, ``s_w[c] = max|W[c]| / 127``.
* Biases: int32, ``rint(b / (s_x * s_w[c]))``.
* Requantization (POST, docs/isa.md): ``M[c] = s_x * s_w[c] / s_y`` as ``mult * 2^-shift``
  with ``mult`` 16 bits: :func:`requant_params` picks the largest ``shift`` (<= 63) that
  keeps ``mult < 2^16``, ``mult = rint(M * 2^shift)``; the machine then computes
  ``saturate8(relu?((wrap32(acc + bias) * mult + 2^(shift-1)) >> shift))``.
* The last layer returns its accumulators; the host adds the bias and scales to float:
  ``(acc + bias) * s_x * s_w[c]``.

:func:`requant` is that POST arithmetic in numpy; :mod:`compiler.model` runs it in its
reference, and the ISS (``golden.iss``) runs the machine's.
"""

import numpy as np

from spec.numerics import requantize

from . import CompileError

__all__ = ["act_scale", "quantize", "weight_scales", "quantize_weights", "requant_params", "requant",
           "QMAX"]

QMAX = 127


def act_scale(max_abs: float) -> float:
    """The int8 scale of a tensor whose largest magnitude is ``max_abs``."""
    if not np.isfinite(max_abs):
        raise CompileError(f"a calibration activation is not finite ({max_abs}): check the calibration set")
    return float(max_abs) / QMAX if max_abs > 0 else 1.0


def quantize(x, scale: float) -> np.ndarray:
    """``clip(rint(x / scale), -127, 127)`` as int64."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale), -QMAX, QMAX).astype(np.int64)


def weight_scales(w: np.ndarray) -> np.ndarray:
    """Per output channel (axis 0) scales of a weight tensor."""
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(amax > 0, amax / QMAX, 1.0)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 weights, per-channel scales)``."""
    scales = weight_scales(w)
    shape = (-1,) + (1,) * (w.ndim - 1)
    return np.clip(np.rint(w / scales.reshape(shape)), -QMAX, QMAX).astype(np.int64), scales


def requant_params(multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mult, shift)`` per channel with ``mult * 2^-shift ~= multiplier`` (module docstring)."""
    m = np.asarray(multiplier, dtype=np.float64)
    if (m < 0).any() or not np.isfinite(m).all():
        raise CompileError(f"requantization multipliers must be finite and >= 0, got {m[~np.isfinite(m) | (m < 0)][:3]}")
    mult = np.zeros(m.shape, np.int64)
    shift = np.zeros(m.shape, np.int64)
    for k, v in enumerate(m.reshape(-1)):
        if v == 0:
            continue
        s = int(np.floor(np.log2((1 << 16) - 1) - np.log2(v)))
        s = min(max(s, 0), 63)
        q = int(np.rint(v * 2.0 ** s))
        while q >= 1 << 16 and s > 0:
            s -= 1
            q = int(np.rint(v * 2.0 ** s))
        if q >= 1 << 16:
            raise CompileError(f"requantization multiplier {v:g} is too large for a 16-bit mult (the "
                               "layer's output scale is tiny compared with its input's)")
        mult.reshape(-1)[k], shift.reshape(-1)[k] = q, s
    return mult, shift


def requant(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, relu: bool) -> np.ndarray:
    """The POST rule (:func:`spec.numerics.requantize`) on ``acc[channel, ...]``."""
    shape = (-1,) + (1,) * (acc.ndim - 1)
    return requantize(acc, bias.reshape(shape), mult.reshape(shape), shift.reshape(shape), relu)
