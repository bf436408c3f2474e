"""Gradient clipping by the global norm: one function for PyTorch and for the NumPy engine.

Long products of Jacobians (an RNN unrolled over many steps) can make one gradient huge, and
one huge step throws the weights far away. Clipping treats all gradients as one long vector
g and shrinks it when it is longer than a threshold theta, keeping its direction:

    g <- min(1, theta / (||g|| + 1e-6)) * g

This is `torch.nn.utils.clip_grad_norm_` (same formula, same 1e-6 guard, same return value:
the norm before clipping). The Trainer, the NumPy engine's trainer and the lessons all call
`clip_grad_norm` below; tests/test_gradients.py checks it against PyTorch's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from dlcamp.core.errors import BadArgument

EPS = 1e-6  # keeps theta / ||g|| finite for all-zero gradients (torch uses the same)


def _with_grads(params: Any) -> list[Any]:
    """The parameters that hold a gradient: from a module (torch or scratch), a list, or one."""
    if hasattr(params, "parameters"):  # torch.nn.Module or dlcamp.engine.nn.Module
        params = params.parameters()
    elif hasattr(params, "grad"):  # a single tensor
        params = [params]
    return [p for p in params if p.grad is not None]


def clip_grad_norm(params: Iterable[Any] | Any, max_norm: float) -> torch.Tensor | float:
    """Scale all gradients together so that their global L2 norm is at most `max_norm`.

    `params`: a module, a list of parameters, or one parameter, either PyTorch tensors
    (gradients scaled in place) or the NumPy engine's (NumPy gradients, replaced). Returns
    the global norm before clipping: for PyTorch a 0-d tensor on the gradients' device (as
    torch's clip_grad_norm_ returns; reading it is up to the caller, so the training loop
    does not wait for the GPU), for the NumPy engine a float. `max_norm=math.inf` clips
    nothing and just measures the norm.
    """
    if not max_norm > 0:
        raise BadArgument(f"max_norm must be > 0, got {max_norm}")
    params = _with_grads(params)
    if not params:
        return 0.0
    kinds = {isinstance(p.grad, torch.Tensor) for p in params}
    if kinds == {True}:
        return _clip_torch([p.grad.detach() for p in params], max_norm)
    if kinds == {False}:
        return _clip_numpy(params, max_norm)
    raise BadArgument("clip_grad_norm got PyTorch and NumPy-engine gradients together; clip "
                      "each model on its own")


def _clip_torch(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """In place; the factor is applied even when it is 1, so no Python `if` waits for a GPU."""
    device = grads[0].device
    norms = torch.stack([torch.linalg.vector_norm(g).to(device) for g in grads])  # (P,)
    total = torch.linalg.vector_norm(norms)  # ||g||: the norm of all gradients concatenated
    scale = torch.clamp(max_norm / (total + EPS), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.device))
    return total


def _clip_numpy(params: list[Any], max_norm: float) -> float:
    """New arrays (a gradient may be shared with another tensor), only when they shrink."""
    total = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))  # ||g||
    scale = min(1.0, max_norm / (total + EPS))
    if scale < 1.0:
        for p in params:
            p.grad = p.grad * np.asarray(scale, dtype=p.grad.dtype)
    return total
