"""A task tells the training loop what loss to minimise and what to measure.

The loop never knows whether it trains a classifier, a regressor or a language model: it asks
the task for `step(model, batch) -> (loss, sums)`, adds the `sums` up on the device (no
`.item()` per batch), and asks the task to `summarize` the totals at the end of an epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, ...]


class Task:
    """Base class. `monitor`/`mode` name the metric that decides 'best' and early stopping."""

    monitor: str = "loss"
    mode: str = "min"

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums.get("n", 0.0), 1.0)
        return {"loss": sums["loss"] / n}


class Classification(Task):
    """Cross-entropy on logits; reports mean loss and accuracy."""

    monitor, mode = "acc", "max"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        logits = model(x)  # (B, num_classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        sums = {
            "loss": loss.detach() * len(y),
            "correct": (logits.argmax(1) == y).sum(),
            "n": torch.tensor(len(y)),
        }
        return loss, sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        return {"loss": sums["loss"] / n, "acc": sums["correct"] / n}


class Regression(Task):
    """Mean squared error; reports MSE and RMSE."""

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        pred = model(x).reshape(y.shape)
        loss = F.mse_loss(pred.float(), y.float())
        return loss, {"loss": loss.detach() * len(y), "n": torch.tensor(len(y))}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["loss"] / max(sums["n"], 1.0)
        return {"loss": mse, "rmse": mse**0.5}
