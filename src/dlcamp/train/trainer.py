"""A generic training loop: the task supplies loss and metrics, callbacks do everything else.

    trainer = Trainer(model, TrainConfig(epochs=5, lr=0.1), callbacks=[ProgressBar()])
    history = trainer.fit(loaders.train, loaders.test)
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
from dlcamp.train.speed import SpeedPlan, compile_cache_dir, num_threads, plan_speed
from dlcamp.train.task import Task, default_task


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

    Training runs in the precision, memory layout and thread count of `self.speed`
    (dlcamp.train.speed.plan_speed, from the config's "auto" or explicit settings);
    evaluation always computes in fp32, as `dlcamp evaluate` and the server do.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 task: Task | None = None, callbacks: Iterable[Any] = ()) -> None:
        self.config = cfg = config or TrainConfig()
        self.device = pick_device(cfg.device)
        self.speed: SpeedPlan = plan_speed(self.device, model, cfg.precision, cfg.channels_last,
                                           cfg.threads, cfg.compile)
        self.model = model.to(self.device)
        if self.speed.channels_last.value:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The compiled wrapper shares the parameters; state_dict() stays on the plain model,
        # so checkpoints look the same with or without compilation.
        self.step_model = self.model
        if cfg.compile:
            compile_cache_dir()  # a kernel cache per CPU capability
            self.step_model = torch.compile(self.model)
        self.task = task or default_task(model, cfg.label_smoothing)
        self.callbacks = list(callbacks)
        self.optimizer = make_optimizer(self.model.parameters(), cfg)
        lr_at(0.0, cfg)  # fail early on an unknown schedule name
        self.epoch = 0            # epochs completed
        self.global_step = 0
        self.train_seconds = 0.0  # time spent in training steps, evaluation excluded
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.total_steps = 0
        self.clock = time.perf_counter  # seconds; tests put a fake clock here

    # -- events ---------------------------------------------------------------------------
    def _emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event, lambda *a: None)(self, *args)

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

    # -- training -------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None) -> list[dict[str, float]]:
        with num_threads(self.speed.threads.value):
            return self._fit(train_loader, val_loader)

    def _fit(self, train_loader, val_loader=None) -> list[dict[str, float]]:
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
            if val_loader is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
            self.history.append(record)
            self.epoch = epoch + 1
            self._emit("on_epoch_end", record)
        self._emit("on_fit_end")
        return self.history

    def _train_epoch(self, loader, start: float) -> tuple[dict[str, float], int]:
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(loader):
            lr = self.next_lr(start)
            if lr is None:
                break
            batch = self.to_device(batch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                loss, batch_sums = self.task.step(self.step_model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                clip_grad_norm(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            for k, v in batch_sums.items():  # stays on the device: no sync per batch
                sums[k] = sums[k] + v if k in sums else v.clone()
            self.global_step += 1
            self._emit("on_batch_end", i, loss)
        if not sums:
            return {}, 0
        totals = {k: float(v) for k, v in sums.items()}
        return self.task.summarize(totals), int(totals["n"])

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        """Metrics of the task over a whole loader, in eval mode and in fp32."""
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        with num_threads(self.speed.threads.value):
            for batch in loader:
                _, batch_sums = self.task.step(self.step_model, self.to_device(batch))
                for k, v in batch_sums.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
        return self.task.summarize({k: float(v) for k, v in sums.items()})

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "global_step": self.global_step,
            "train_seconds": self.train_seconds, "history": self.history, "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.train_seconds, self.history = state["train_seconds"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
