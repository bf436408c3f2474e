"""Optimisers for the NumPy engine, with PyTorch's update rules (checked against torch.optim).

Like torch.optim they keep their settings in `param_groups[0]` (so a schedule can change the
learning rate) and their per-parameter memory in `state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from dlcamp.engine.tensor import Tensor


class Optimizer:
    def __init__(self, params: Iterable[Tensor], **settings: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimiser got no parameters to update")
        self.param_groups = [{"params": self.params, **settings}]
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        group = self.param_groups[0]
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is not None:
                self.update(p, p.grad, state, group)

    def update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any],
               group: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"settings": settings, "state": [dict(s) for s in self.state]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if len(saved["state"]) != len(self.params):
            raise ValueError(f"optimiser state for {len(saved['state'])} parameters, "
                             f"this one has {len(self.params)}")
        self.param_groups[0].update(saved["settings"])
        self.state = [{k: np.array(v) for k, v in s.items()} for s in saved["state"]]


class SGD(Optimizer):
    """v <- momentum * v + g;  p <- p - lr * v   (Nesterov: p <- p - lr * (g + momentum * v)).

    Weight decay adds `weight_decay * p` to the gradient first (L2 regularisation).
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("lr, momentum and weight_decay must not be negative")
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0")
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)

    def update(self, p, grad, state, group) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        m = group["momentum"]
        if m:
            if "velocity" not in state:
                state["velocity"] = grad.copy()
            else:
                state["velocity"] *= m
                state["velocity"] += grad
            grad = grad + m * state["velocity"] if group["nesterov"] else state["velocity"]
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-parameter steps from running moments of the gradient.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - lr * m_hat / (sqrt(v_hat) + eps)
    with the bias corrections m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
    `decoupled=True` is AdamW: weight decay shrinks p directly instead of joining the gradient.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False) -> None:
        if lr < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam needs lr >= 0 and betas in [0, 1), got {lr}, {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must not be negative")
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         decoupled=decoupled)

    def update(self, p, grad, state, group) -> None:
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        if wd and group["decoupled"]:
            p.data *= 1 - lr * wd
        elif wd:
            grad = grad + wd * p.data
        if "m" not in state:
            state["m"], state["v"], state["t"] = np.zeros_like(p.data), np.zeros_like(p.data), 0
        state["t"] += 1
        m, v, t = state["m"], state["v"], state["t"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        denom = np.sqrt(v / (1 - b2**t)) + group["eps"]
        p.data -= (lr / (1 - b1**t)) * m / denom


def AdamW(params: Iterable[Tensor], lr: float = 1e-3, weight_decay: float = 1e-2,
          **kwargs: Any) -> Adam:
    return Adam(params, lr=lr, weight_decay=weight_decay, decoupled=True, **kwargs)
