"""Train scratch networks with dlcamp's Trainer: same loop, schedules, callbacks and run files.

`ScratchTrainer` replaces only what touches the engine: the training step, evaluation and the
state. Everything else (epochs, time and step budgets, one-cycle schedule, progress bar, CSV,
curves, checkpoints) is the Trainer's. Checkpoints store the weights under PyTorch's names, so
`dlcamp evaluate RUN` can rebuild a scratch-trained network in PyTorch and check it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.gradients import clip_grad_norm
from dlcamp.engine import nn, optim
from dlcamp.engine.tensor import Tensor, cross_entropy, no_grad
from dlcamp.train.speed import Choice, SpeedPlan
from dlcamp.train.trainer import TrainConfig, Trainer, make_optimizer


class ClassificationMetrics:
    """What the Trainer and EarlyStopping need to know about the task."""

    monitor, mode = "acc", "max"


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU torch tensor's memory, seen by NumPy without a copy."""
    return x.detach().cpu().numpy()


@contextlib.contextmanager
def torch_single_threaded() -> Iterator[None]:
    """Run PyTorch on one thread inside the block (restored afterwards).

    The loaders still use a few small torch ops per batch. With a thread pool, PyTorch's idle
    OpenMP workers keep spinning for a while after each op, on the very cores that NumPy's BLAS
    wants next: measured on 2 cores, one MLP epoch took 3.6 s that way and 1.0 s without.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ScratchTrainer(Trainer):
    """The Trainer with a scratch model and optimiser; data comes from the usual loaders."""

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 callbacks: Any = ()) -> None:
        self.config = cfg = config or TrainConfig()
        if cfg.device not in ("auto", "cpu"):
            raise BadArgument(f"the scratch engine runs on NumPy, on the CPU; got --device "
                              f"{cfg.device}")
        self.device = torch.device("cpu")
        self.speed = SpeedPlan(
            Choice("fp32", "fp32", "the scratch engine computes in float32 NumPy"),
            Choice("off", False, "NumPy arrays in NCHW (im2col)"),
            Choice("1", 1, "PyTorch waits on one thread while NumPy's BLAS computes"))
        self.model = model
        self.task = ClassificationMetrics()
        self.callbacks = list(callbacks)
        self.optimizer = make_optimizer(model.parameters(), cfg, library=optim)
        self.epoch = self.global_step = self.total_steps = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.clock = time.perf_counter
        nn.manual_seed(cfg.seed + 1)  # dropout masks; the weights were drawn at construction

    def fit(self, train_loader, val_loader=None) -> list[dict[str, float]]:
        with torch_single_threaded():
            return super().fit(train_loader, val_loader)

    def _train_epoch(self, loader, start: float) -> tuple[dict[str, float], int]:
        self.model.train()
        loss_sum, correct, n = 0.0, 0, 0
        for i, (xb, yb) in enumerate(loader):
            lr = self.next_lr(start)
            if lr is None:
                break
            self.optimizer.param_groups[0]["lr"] = lr
            x, y = Tensor(to_numpy(xb)), to_numpy(yb)
            logits = self.model(x)
            loss = cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            if self.config.grad_clip:
                clip_grad_norm(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
            self.global_step += 1
            self._emit("on_batch_end", i, loss)
        if not n:
            return {}, 0
        return {"loss": loss_sum / n, "acc": correct / n}, n

    def evaluate(self, loader) -> dict[str, float]:
        self.model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        with no_grad(), torch_single_threaded():
            for xb, yb in loader:
                y = to_numpy(yb)
                logits = self.model(Tensor(to_numpy(xb)))
                loss_sum += cross_entropy(logits, y).item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                n += len(y)
        return {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1)}

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers, strings and dicts: loads with torch.load(weights_only=True).

        "rng" holds torch's generator state and the engine's (dropout masks), so a resumed
        run draws the masks an uninterrupted one would have drawn.
        """
        opt = self.optimizer.state_dict()
        return {
            "engine": "scratch",
            "model": {k: torch.from_numpy(np.array(v)) for k, v in self.model.state_dict().items()},
            "optimizer": {"settings": {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in opt["settings"].items()},
                          "state": [{k: torch.from_numpy(np.array(v)) for k, v in s.items()}
                                    for s in opt["state"]]},
            "epoch": self.epoch, "global_step": self.global_step,
            "train_seconds": self.train_seconds, "history": self.history,
            "rng": {"torch": torch.get_rng_state(), "scratch": nn.get_rng_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict({k: v.numpy() for k, v in state["model"].items()})
        opt = state["optimizer"]
        self.optimizer.load_state_dict({
            "settings": opt["settings"],
            "state": [{k: v.numpy() for k, v in s.items()} for s in opt["state"]]})
        for s in self.optimizer.state:  # the step counter of Adam is a plain number
            if "t" in s:
                s["t"] = int(s["t"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.train_seconds, self.history = state["train_seconds"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        if "scratch" in state["rng"]:  # checkpoints before it was saved resume with a new stream
            nn.set_rng_state(state["rng"]["scratch"])
