"""A generic training loop: the task supplies loss and metrics, callbacks do everything else.

    trainer = Trainer(model, TrainConfig(epochs=5, lr=0.1), callbacks=[ProgressBar()])
    history = trainer.fit(loaders.train, loaders.test, eval_split="test")  # test_acc, ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dlcamp.core.config import TrainConfig
from dlcamp.core.errors import BadArgument
from dlcamp.core.gradients import clip_grad_norm
from dlcamp.core.utils import pick_device
from dlcamp.train.callbacks import HOOKS, callback_states, check_callback, load_callback_states
from dlcamp.train.speed import SpeedPlan, compile_cache_dir, num_threads, plan_speed
from dlcamp.train.task import Task, add_sums, default_task


def make_optimizer(params: Iterable[Any], cfg: TrainConfig, library: Any = torch.optim) -> Any:
    """The optimiser `cfg` names, from torch.optim (or another `library` with the same classes:
    dlcamp.engine.optim). Impossible settings (a negative lr) give a BadArgument, and so do
    nan and inf, which the optimisers themselves accept and then train on silently."""
    if not (math.isfinite(cfg.lr) and math.isfinite(cfg.weight_decay)):
        raise BadArgument(f"lr and weight_decay must be finite numbers, got {cfg.lr} and "
                          f"{cfg.weight_decay}")
    params = list(params)
    # torch's fused kernels update every parameter in one pass (about 3% faster LeNet steps)
    fused = {"fused": True} if library is torch.optim and params and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) else {}
    try:
        if cfg.optimizer == "sgd":
            return library.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, **fused)
        if cfg.optimizer in ("adam", "adamw"):
            opt = library.AdamW if cfg.optimizer == "adamw" else library.Adam
            return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    except ValueError as e:
        raise BadArgument(f"cannot build the {cfg.optimizer} optimizer: {e}") from e
    raise BadArgument(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adam or adamw")


def lr_at(t: float, cfg: TrainConfig) -> float:
    """Learning rate at progress `t` in [0, 1]: a pure function, so resuming needs no state.

    onecycle: linear warm-up from lr/10 to lr over the first `warmup` fraction of the steps,
    then linear decay to lr/1000 (Smith & Topin's one-cycle policy, linear variant).
    cosine: half a cosine from lr to 0.
    """
    t = min(max(t, 0.0), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "onecycle":
        if t < cfg.warmup:
            return cfg.lr * (0.1 + 0.9 * t / cfg.warmup)
        return cfg.lr * (1.0 - (1.0 - 1e-3) * (t - cfg.warmup) / (1.0 - cfg.warmup))
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose constant, onecycle or cosine")


class Trainer:
    """Fit and evaluate a model. State (for checkpoints and resume) is `state_dict()`.

    The loop (epochs, schedule, budgets, metric sums, callbacks) is written once, here. What
    touches the model is in a few methods that another engine overrides (the NumPy engine's
    ScratchTrainer does): `plan`, `prepare_model`, `build_task`, `build_optimizer` at
    construction; `train_step` and `eval_step` per batch; the `*_state` pairs for checkpoints.

    Training runs in the precision, memory layout and thread count of `self.speed`
    (dlcamp.train.speed.plan_speed, from the config's "auto" or explicit settings);
    evaluation always computes in fp32, as `dlcamp evaluate` and the server do.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 task: Task | None = None, callbacks: Iterable[Any] = ()) -> None:
        self.config = config or TrainConfig()
        lr_at(0.0, self.config)  # fail early on an unknown schedule name
        self.device, self.speed = self.plan(model)
        self.model, self.step_model = self.prepare_model(model)
        self.task = self.build_task(task)
        self.optimizer = self.build_optimizer()
        self.callbacks: list[Any] = []
        for callback in callbacks:
            self.add_callback(callback)
        self.epoch = 0            # epochs completed
        self.global_step = 0
        self.train_seconds = 0.0  # time spent in training steps, evaluation excluded
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.total_steps = 0
        self.eval_split = "val"   # prefix of the evaluation metrics: set by fit
        self.clock = time.perf_counter  # seconds; tests put a fake clock here

    # -- construction hooks ---------------------------------------------------------------
    def plan(self, model: nn.Module) -> tuple[torch.device, SpeedPlan]:
        """The device, and the speed switches for `model` on it."""
        cfg = self.config
        device = pick_device(cfg.device)
        return device, plan_speed(device, model, cfg.precision, cfg.channels_last,
                                  cfg.threads, cfg.compile)

    def prepare_model(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(the model on the device, in its layout; the module the steps call).

        The compiled wrapper shares the parameters; state_dict() stays on the plain model,
        so checkpoints look the same with or without compilation.
        """
        model = model.to(self.device)
        if self.speed.channels_last.value:
            model = model.to(memory_format=torch.channels_last)
        if not self.config.compile:
            return model, model
        compile_cache_dir()  # a kernel cache per CPU capability
        return model, torch.compile(model)

    def build_task(self, task: Task | None) -> Task:
        """`task`, or the model's default one (dlcamp.train.task.default_task)."""
        return task or default_task(self.model, self.config.label_smoothing)

    def build_optimizer(self) -> Any:
        return make_optimizer(self.model.parameters(), self.config)

    def add_callback(self, callback: Any) -> None:
        """Add `callback` in its place by `order` (see dlcamp.train.callbacks.Callback).
        Raises BadArgument if it has an `on_...` method that is not a hook."""
        check_callback(callback)
        order = getattr(callback, "order", 0)
        at = sum(1 for cb in self.callbacks if getattr(cb, "order", 0) <= order)
        self.callbacks.insert(at, callback)

    # -- events ---------------------------------------------------------------------------
    def _emit(self, event: str, *args: Any) -> None:
        if event not in HOOKS:  # a typo here would silently call nothing
            raise ValueError(f"{event!r} is not a callback hook: {', '.join(HOOKS)}")
        for cb in self.callbacks:
            hook = getattr(cb, event, None)
            if hook is not None:
                hook(self, *args)

    def progress(self, elapsed: float = 0.0) -> float:
        """Fraction of training done: by steps, or by time when a time budget is set.

        With `max_seconds`, the schedule is stretched over the budget (budgeted training), so
        a run cut by the clock has still annealed its learning rate.
        """
        by_steps = self.global_step / max(self.total_steps, 1)
        if not self.config.max_seconds:
            return by_steps
        return max(by_steps, (self.train_seconds + elapsed) / self.config.max_seconds)

    def next_lr(self, epoch_start: float) -> float | None:
        """The learning rate of the next step, or None when the time or step budget is spent."""
        budget = self.config.max_seconds
        t = self.progress(self.clock() - epoch_start if budget else 0.0)
        if (budget and t >= 1.0) or 0 < self.config.max_steps <= self.global_step:
            self.should_stop = True  # stop in mid-epoch
            return None
        return lr_at(t, self.config)

    def autocast(self):
        """bf16 autocast when the speed plan chose bf16, else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.speed.bf16)

    def to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Move a batch to the device; images (4-d) in the layout of the speed plan."""
        batch = tuple(part.to(self.device, non_blocking=True) for part in batch)
        if self.speed.channels_last.value and batch and batch[0].dim() == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return batch

    # -- steps: what an engine computes for one batch ---------------------------------------
    def train_step(self, batch: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        """One optimiser step on `batch`: (the loss, the task's sums for the batch)."""
        batch = self.to_device(batch)
        with self.autocast():
            loss, batch_sums = self.task.step(self.step_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        if self.config.grad_clip:
            clip_grad_norm(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, batch_sums

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of `loss` (data-parallel training weights it: dlcamp.train.distributed)."""
        loss.backward()

    def reduce_sums(self, sums: dict[str, Any]) -> dict[str, float]:
        """The metric sums as floats: the one sync of an epoch (or of an evaluation). Several
        processes add theirs up here (dlcamp.train.distributed)."""
        return {k: float(v) for k, v in sums.items()}

    def eval_step(self, batch: tuple[Any, ...]) -> dict[str, Any]:
        """The task's sums for one batch, in fp32 (called in eval mode, without gradients)."""
        return self.task.step(self.step_model, self.to_device(batch))[1]

    # -- training -------------------------------------------------------------------------
    def fit(self, train_loader, eval_loader=None, eval_split: str = "val"
            ) -> list[dict[str, float]]:
        """Train to `config.epochs` (or a budget, or early stopping) and return the history.

        After each epoch `eval_loader`, if given, is evaluated; its metrics are recorded under
        `eval_split`: `fit(loaders.train, loaders.test, eval_split="test")` records test_loss
        and test_acc, the default records val_loss and val_acc.
        """
        if not eval_split.isidentifier() or eval_split == "train":
            raise BadArgument(f"eval_split names the evaluated split (val, test, ...), not "
                              f"{eval_split!r}")
        self.eval_split = eval_split
        with num_threads(self.speed.threads.value):
            return self._fit(train_loader, eval_loader)

    def _fit(self, train_loader, eval_loader=None) -> list[dict[str, float]]:
        cfg = self.config
        self.total_steps = cfg.epochs * len(train_loader)
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.should_stop = False
        self._emit("on_fit_start")
        for epoch in range(self.epoch, cfg.epochs):
            if self.should_stop:
                break
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            self._emit("on_epoch_start", epoch, len(train_loader))
            start = self.clock()
            train_metrics, n = self._train_epoch(train_loader, start)
            if n == 0:  # the time budget ran out before this epoch's first step
                break
            seconds = self.clock() - start
            self.train_seconds += seconds
            record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_metrics.items()},
                      "lr": self.optimizer.param_groups[0]["lr"], "train_examples": n,
                      "epoch_seconds": seconds,
                      "train_seconds": self.train_seconds, "examples_per_s": n / seconds}
            if eval_loader is not None:
                record.update({f"{self.eval_split}_{k}": v
                               for k, v in self.evaluate(eval_loader).items()})
            self.history.append(record)
            self.epoch = epoch + 1
            self._emit("on_epoch_end", record)
        self._emit("on_fit_end")
        return self.history

    def _train_epoch(self, loader, start: float) -> tuple[dict[str, float], int]:
        self.model.train()
        sums: dict[str, Any] = {}
        for i, batch in enumerate(loader):
            lr = self.next_lr(start)
            if lr is None:
                break
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, batch_sums = self.train_step(batch)
            add_sums(sums, batch_sums)
            self.global_step += 1
            self._emit("on_batch_end", i, loss)
        if not sums:
            return {}, 0
        totals = self.reduce_sums(sums)
        return self.task.summarize(totals), int(totals["n"])

    def evaluate(self, loader) -> dict[str, float]:
        """Metrics of the task over a whole loader, in eval mode, without gradients, in fp32."""
        self.model.eval()
        sums: dict[str, Any] = {}
        self.task.start_eval()  # a metric of the whole split (mAP) collects from here
        with torch.no_grad(), num_threads(self.speed.threads.value):
            for batch in loader:
                add_sums(sums, self.eval_step(batch))
            metrics = self.task.summarize(self.reduce_sums(sums))
            return {**metrics, **self.task.finish_eval()}

    # -- state ----------------------------------------------------------------------------
    def model_state(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def rng_state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return rng

    def load_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only: loads with weights_only=True."""
        return {
            "model": self.model_state(), "optimizer": self.optimizer_state(),
            "epoch": self.epoch, "global_step": self.global_step,
            "train_seconds": self.train_seconds, "history": self.history,
            "rng": self.rng_state(), "callbacks": callback_states(self.callbacks),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (checkpoints written before callbacks had state load too)."""
        self.load_model_state(state["model"])
        self.load_optimizer_state(state["optimizer"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.train_seconds, self.history = state["train_seconds"], list(state["history"])
        self.load_rng_state(state["rng"])
        load_callback_states(self.callbacks, state.get("callbacks", {}))
