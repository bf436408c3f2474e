"""Train NumPy-engine networks with dlcamp's Trainer: same loop, schedules, callbacks and run files.

`ScratchTrainer` replaces only what touches the engine: the set-up (device, speed plan,
optimiser), the training and evaluation steps and the state's tensors. Everything else (the
loop, epochs, time and step budgets, one-cycle schedule, metric sums, progress bar, CSV,
curves, checkpoints, callback state) is the Trainer's. Checkpoints store the weights under
PyTorch's names, so `dlcamp evaluate RUN` can rebuild such a network in PyTorch and check it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.gradients import clip_grad_norm
from dlcamp.engine import nn, optim
from dlcamp.engine.tensor import Tensor, cross_entropy, no_grad
from dlcamp.train.speed import Choice, SpeedPlan
from dlcamp.train.task import Classification
from dlcamp.train.trainer import Trainer, make_optimizer


class ClassificationMetrics(Classification):
    """The Trainer's view of a scratch classifier: `monitor`/`mode` for early stopping and
    `summarize` for the sums of ScratchTrainer's steps (its `step` is the steps' own)."""


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU torch tensor's memory, seen by NumPy without a copy."""
    return x.detach().cpu().numpy()


class ScratchTrainer(Trainer):
    """The Trainer with a NumPy-engine model and optimiser; data comes from the usual loaders.

    PyTorch runs on one thread (the speed plan's), so its idle OpenMP workers do not spin on
    the cores that NumPy's BLAS wants next: measured on 2 cores, one MLP epoch took 3.6 s with
    a torch thread pool and 1.0 s without.
    """

    def plan(self, model: nn.Module) -> tuple[torch.device, SpeedPlan]:
        if self.config.device not in ("auto", "cpu"):
            raise BadArgument(f"the NumPy engine runs on NumPy, on the CPU; got --device "
                              f"{self.config.device}")
        return torch.device("cpu"), SpeedPlan(
            Choice("fp32", "fp32", "the NumPy engine computes in float32 NumPy"),
            Choice("off", False, "NumPy arrays in NCHW (im2col)"),
            Choice("1", 1, "PyTorch waits on one thread while NumPy's BLAS computes"))

    def prepare_model(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        nn.manual_seed(self.config.seed + 1)  # dropout masks; the weights are drawn already
        return model, model

    def build_task(self, task: Any) -> ClassificationMetrics:
        if task is not None and not isinstance(task, Classification):
            raise BadArgument("the NumPy engine trains classifiers only; leave out `task`")
        return ClassificationMetrics()

    def build_optimizer(self) -> Any:
        return make_optimizer(self.model.parameters(), self.config, library=optim)

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> tuple[Tensor, dict[str, float]]:
        x, y = Tensor(to_numpy(batch[0])), to_numpy(batch[1])
        logits = self.model(x)
        loss = cross_entropy(logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.grad_clip:
            clip_grad_norm(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, self._sums(logits, loss, y)

    def eval_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        y = to_numpy(batch[1])
        with no_grad():
            logits = self.model(Tensor(to_numpy(batch[0])))
            return self._sums(logits, cross_entropy(logits, y), y)

    @staticmethod
    def _sums(logits: Tensor, loss: Tensor, y: np.ndarray) -> dict[str, float]:
        """Plain numbers: NumPy has computed them already, there is no device to wait for."""
        return {"loss": loss.item() * len(y), "correct": int((logits.argmax(1) == y).sum()),
                "n": len(y)}

    # The state: plain tensors, numbers, strings and dicts (loads with weights_only=True);
    # the weights under PyTorch's names.
    def model_state(self) -> dict[str, Any]:
        return {k: torch.from_numpy(np.array(v)) for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict({k: v.numpy() for k, v in state.items()})

    def optimizer_state(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {"settings": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in opt["settings"].items()},
                "state": [{k: torch.from_numpy(np.array(v)) for k, v in s.items()}
                          for s in opt["state"]]}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict({
            "settings": state["settings"],
            "state": [{k: v.numpy() for k, v in s.items()} for s in state["state"]]})
        for s in self.optimizer.state:  # the step counter of Adam is a plain number
            if "t" in s:
                s["t"] = int(s["t"])

    def rng_state(self) -> dict[str, Any]:
        """torch's generator and the engine's (dropout masks), so a resumed run draws the
        masks an uninterrupted one would have drawn."""
        return {"torch": torch.get_rng_state(), "engine": nn.get_rng_state()}

    def load_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"])
        engine = rng.get("engine", rng.get("scratch"))  # "scratch": before issue 13's rename
        if engine is not None:  # checkpoints before it was saved resume with a new stream
            nn.set_rng_state(engine)

    def state_dict(self) -> dict[str, Any]:
        return {"engine": "numpy", **super().state_dict()}
