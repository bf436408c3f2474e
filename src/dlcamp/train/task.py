"""A task tells the training loop what loss to minimise and what to measure.

The loop never knows whether it trains a classifier, a regressor or a language model: it asks
the task for `step(model, batch) -> (loss, sums)`, adds the `sums` up on the device (no
`.item()` per batch), and asks the task to `summarize` the totals at the end of an epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.models.rnn import RNNLM

Batch = tuple[torch.Tensor, ...]


def add_sums(sums: dict[str, Any], batch_sums: dict[str, Any]) -> None:
    """Add one batch's sums into `sums`, in place. Tensors stay on their device (no sync per
    batch); plain numbers (the NumPy engine's) add up as numbers."""
    for k, v in batch_sums.items():
        if k in sums:
            sums[k] = sums[k] + v
        else:
            sums[k] = v.clone() if isinstance(v, torch.Tensor) else v


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
    """Cross-entropy on logits; reports mean loss and accuracy.

    With `label_smoothing` = eps > 0 the training step minimises the smoothed objective
    (1 - eps) * CE + eps * mean over classes of -log p (Szegedy et al., 2016, as
    `F.cross_entropy(label_smoothing=eps)` computes it), but the reported `loss` is always the
    plain cross-entropy, the number the book and `dlcamp evaluate` report; the objective
    itself is reported as `loss_smoothed` (training only).
    """

    monitor, mode = "acc", "max"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        logits = model(x)  # (B, num_classes)
        log_p = F.log_softmax(logits.float(), dim=1)  # (B, num_classes)
        nll = F.nll_loss(log_p, y, reduction="none")  # (B,) plain cross-entropy
        sums = {
            "loss": nll.detach().sum(),
            "correct": (logits.argmax(1) == y).sum(),
            "n": torch.tensor(len(y)),
        }
        eps = self.label_smoothing
        if eps and torch.is_grad_enabled():  # training; evaluation reports plain CE only
            smoothed = (1.0 - eps) * nll - eps * log_p.mean(dim=1)  # (B,)
            sums["loss_smoothed"] = smoothed.detach().sum()
            return smoothed.mean(), sums
        return nll.mean(), sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        out = {"loss": sums["loss"] / n, "acc": sums["correct"] / n}
        if "loss_smoothed" in sums:
            out["loss_smoothed"] = sums["loss_smoothed"] / n
        return out


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


def detach_state(state):
    """Cut the graph at the batch boundary: keep the values, drop the history (truncated BPTT)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class LanguageModel(Task):
    """Next-token prediction: mean cross-entropy per token; reports loss and perplexity.

    Batches are (X, Y, fresh) from a SeqDataLoader. The hidden state is carried from one batch
    to the next (detached, so gradients stop at the batch boundary) unless `fresh` says the
    rows do not continue the previous batch (random sampling, or a new epoch).
    """

    monitor, mode = "ppl", "min"

    def __init__(self) -> None:
        self.state = None

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        fresh = len(batch) < 3 or bool(batch[2])
        state = None if fresh or self._batch_size() != len(x) else detach_state(self.state)
        logits, self.state = model(x, state)  # (B, T, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, {"loss": loss.detach() * y.numel(), "n": torch.tensor(y.numel())}

    def _batch_size(self) -> int:
        if self.state is None:
            return -1
        h = self.state[0] if isinstance(self.state, tuple) else self.state
        return h.shape[1]

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss"] / max(sums["n"], 1.0)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def default_task(model: object, label_smoothing: float = 0.0) -> Task:
    """The task a model trains on unless one is given: next-token prediction for a language
    model (`dlcamp.models.rnn.RNNLM`), else classification (with `label_smoothing`)."""
    if isinstance(model, RNNLM):
        return LanguageModel()
    return Classification(label_smoothing)
