"""numpy in, numpy out -- or torch in, torch out: the array conventions of the golden
models. Every model computes in numpy; these helpers take torch tensors in and give the
result back as the caller's kind."""

import numpy as np

__all__ = ["is_torch", "to_numpy", "like"]


def is_torch(x) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and moved to the CPU)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def like(result: np.ndarray, reference):
    """``result`` as a torch tensor if ``reference`` is one, else as it is."""
    if is_torch(reference):
        import torch
        return torch.from_numpy(np.ascontiguousarray(result))
    return result
