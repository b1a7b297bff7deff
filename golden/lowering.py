"""How a PyTorch layer becomes the matrix product the tensor core computes.

Only ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) run on the core. Both become
``Y[rows, out] = X[rows, K] @ W[out, K]^T``:

* Linear: ``W`` is the weight, ``X`` the input flattened to ``[tokens, in_features]``.
* Conv2d: im2col. The reduction axis K is ordered ``(kh, kw, C_in)`` -- input channels
  innermost -- so N:M groups of consecutive K elements are groups of input channels at
  one kernel position whenever ``C_in`` is a multiple of M (the grouping N:M training
  uses for convolutions). ``W[out, C, kh, kw]`` is permuted to ``[out, kh, kw, C]``.

K is zero-padded to a multiple of ``pad_to`` (the group size the caller needs), on
both operands, so padding never changes the product.

Layers that carry no matrix product (activations, pooling, normalisation, dropout,
flatten, embedding lookups, containers) are not the core's business and are skipped;
any other layer with parameters raises :class:`GoldenError` naming it.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import GoldenError

__all__ = ["MatmulLayer", "matmul_layers", "as_matrix", "from_matrix", "weight_matrix", "input_matrix",
           "output_from_matrix"]

#: Layers that do no matrix product on the core (skipped by matmul_layers).
NOT_ON_CORE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.LogSoftmax,
               nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten,
               nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm,
               nn.Embedding, nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class MatmulLayer:
    """A layer that runs on the core: its name in the model and the module."""

    name: str
    module: nn.Module

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def k(self) -> int:
        """Unpadded reduction length K."""
        mod = self.module
        if isinstance(mod, nn.Linear):
            return mod.in_features
        return mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

    @property
    def out_features(self) -> int:
        mod = self.module
        return mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels


def _check_supported(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise GoldenError(f"layer {name!r} (Conv2d) has groups={module.groups}; only groups=1 "
                              "convolutions run on the tensor core")
        if module.padding_mode != "zeros":
            raise GoldenError(f"layer {name!r} (Conv2d) uses padding_mode={module.padding_mode!r}; "
                              "only zero padding is supported")
        return
    if isinstance(module, nn.Linear) or isinstance(module, NOT_ON_CORE):
        return
    own = list(module.parameters(recurse=False))
    if own or isinstance(module, (nn.modules.conv._ConvNd, nn.RNNBase, nn.MultiheadAttention)):
        raise GoldenError(f"layer {name!r} ({type(module).__name__}) is not supported: only "
                          "Linear and Conv2d layers lower onto the tensor core")


def matmul_layers(model: nn.Module) -> list[MatmulLayer]:
    """The model's Linear/Conv2d layers in definition order; raises on unsupported layers."""
    layers = []
    for name, module in model.named_modules():
        _check_supported(name or type(model).__name__, module)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            layers.append(MatmulLayer(name, module))
    if not layers:
        raise GoldenError(f"model {type(model).__name__} has no Linear or Conv2d layer to run")
    return layers


def _pad_k(a: torch.Tensor, pad_to: int) -> torch.Tensor:
    k = a.shape[-1]
    extra = -k % pad_to
    return F.pad(a, (0, extra)) if extra else a


def as_matrix(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """A weight tensor of ``module``'s shape read as ``W[out, K]`` (K in ``(kh, kw, C)``
    order for convolutions); :func:`from_matrix` is the inverse."""
    if isinstance(module, nn.Conv2d):
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight


def from_matrix(module: nn.Module, matrix: torch.Tensor) -> torch.Tensor:
    """``W[out, K]`` (unpadded) back to ``module``'s weight shape. The shape comes from the
    module's attributes, not ``module.weight``, which a parametrization may be computing."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return matrix.reshape(module.out_channels, kh, kw, module.in_channels).permute(0, 3, 1, 2)
    return matrix


def weight_matrix(module: nn.Module, pad_to: int = 1) -> torch.Tensor:
    """``W[out, K]`` (K in ``(kh, kw, C)`` order for convolutions), zero-padded to ``pad_to``."""
    return _pad_k(as_matrix(module, module.weight.detach()), pad_to)


def input_matrix(module: nn.Module, x: torch.Tensor, pad_to: int = 1) -> torch.Tensor:
    """``X[rows, K]`` for ``module``'s input ``x``, zero-padded to ``pad_to``."""
    if isinstance(module, nn.Linear):
        return _pad_k(x.reshape(-1, x.shape[-1]), pad_to)
    c = module.in_channels
    kh, kw = module.kernel_size
    cols = F.unfold(x, (kh, kw), dilation=module.dilation, padding=module.padding,
                    stride=module.stride)                       # [B, C*kh*kw, L], (C, kh, kw)
    b, _, length = cols.shape
    cols = cols.reshape(b, c, kh * kw, length).transpose(1, 2)  # [B, kh*kw, C, L]
    return _pad_k(cols.reshape(b, kh * kw * c, length).transpose(1, 2).reshape(b * length, -1), pad_to)


def output_from_matrix(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reshape ``Y[rows, out]`` back to the layer's output for input ``x`` and add the bias."""
    if module.bias is not None:
        y = y + module.bias.detach()
    if isinstance(module, nn.Linear):
        return y.reshape(*x.shape[:-1], module.out_features)
    b, _, h, w = x.shape
    kh, kw = module.kernel_size
    ho = (h + 2 * module.padding[0] - module.dilation[0] * (kh - 1) - 1) // module.stride[0] + 1
    wo = (w + 2 * module.padding[1] - module.dilation[1] * (kw - 1) - 1) // module.stride[1] + 1
    return y.reshape(b, ho * wo, -1).transpose(1, 2).reshape(b, -1, ho, wo)


def cols_per_sample(module: nn.Module, x: torch.Tensor) -> int:
    """Rows of ``X`` per sample (tokens for Linear, output pixels for Conv2d)."""
    return input_matrix(module, x[:1]).shape[0]
