"""Fine-tuning (lesson 4.02, the book's section 13.2): a small target set and three ways to
spend one time budget on it.

    train, test = single_object_scenes("train", 240, 96), single_object_scenes("test", 160, 96)
    runs = {
        "frozen": frozen_features_run(pretrained, train, test, size=96, seconds=20),
        "fine-tuned": timed_run(pretrained, train, test, size=96, seconds=20, lr=5e-4,
                                head_lr_scale=10),
        "scratch": timed_run(scratch, train, test, size=96, seconds=20, lr=2e-3),
    }

The target set is one object per image from the scene synthesiser's `objects-8` classes
(`dlcamp.vision.scene_sets`): train images use the train instances, test images the held-out
instances, so the test asks for new objects of known classes. Every run trains with the
project's `Trainer` under `max_seconds` (the schedule stretched over the budget) and evaluates
the test set after each epoch; `history[i]["train_seconds"]` is the x axis of the comparison.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from dlcamp.core.config import TrainConfig
from dlcamp.core.errors import BadArgument
from dlcamp.data.detection import DetectionSet
from dlcamp.models.efficientnet import (
    NUM_FEATURES,
    EfficientNetLite,
    extract_features,
    normalize_pixels,
    resize_pixels,
)
from dlcamp.train.trainer import Trainer, make_optimizer
from dlcamp.vision.scene_sets import build_split, get_scene_set

BUDGET_EPOCHS = 10_000
OBJECT_SCALE = (0.55, 0.85)  # the clock (max_seconds), not the epoch count, ends every run


def single_object_scenes(split: str, n: int, image_size: int = 128,
                         scale: tuple[float, float] = OBJECT_SCALE, set_name: str = "objects-8"
                         ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """n scenes of `set_name` with exactly one object each, as a classification set.

    `scale`: the object's longest side as a fraction of the image side (larger than in the
    detection set: a classification photo is mostly its object, as in ImageNet).
    Returns images (n', 3, S, S) uint8, labels (n',) int64, class names (English, Chinese);
    n' <= n (a scene whose object was removed as too hidden is dropped; with one object it
    does not happen at the set's settings). Synthesised now, deterministic (seconds).
    """
    spec = get_scene_set(set_name)
    one = {"objects": (1, 1), "image_size": image_size, "scale": scale}
    spec = replace(spec, config=replace(spec.config, **one),
                   shift_config=replace(spec.shift_config, **one))
    data: DetectionSet = build_split(spec, split, n=n)
    keep = (data.num_objects() == 1).nonzero().flatten()                 # (n',)
    return (data.images[keep], data.labels[keep, 0], list(data.class_names),
            list(data.class_names_zh))


class BatchLoader:
    """Shuffled (x, y) minibatches of in-memory tensors; a new order each epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32,
                 shuffle: bool = True, seed: int = 0) -> None:
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.x[idx], self.y[idx]


def pixel_loader(images: torch.Tensor, labels: torch.Tensor, size: int, batch_size: int = 32,
                 shuffle: bool = True) -> BatchLoader:
    """Batches of images resized to size x size once and normalised as Lite0 expects."""
    return BatchLoader(normalize_pixels(resize_pixels(images, size)), labels, batch_size, shuffle)


class GroupLRTrainer(Trainer):
    """The Trainer, with the optimizer over `model.parameter_groups(lr, head_lr_scale)`.

    Each group keeps its ratio to the schedule: the Trainer sets every group's learning rate
    to the schedule's value before each step, and this step multiplies it by the group's
    `lr_scale` (1 for the backbone, `head_lr_scale` for the new head).
    """

    def __init__(self, model: EfficientNetLite, config: TrainConfig,
                 head_lr_scale: float = 10.0) -> None:
        self.head_lr_scale = head_lr_scale
        super().__init__(model, config)

    def build_optimizer(self) -> Any:
        groups = self.model.parameter_groups(self.config.lr, self.head_lr_scale)
        optimizer = make_optimizer(groups[0]["params"], self.config)
        for group in groups[1:]:
            optimizer.add_param_group({"params": group["params"]})
        for group, spec in zip(optimizer.param_groups, groups, strict=True):
            group["lr_scale"] = spec["lr"] / self.config.lr
        return optimizer

    def train_step(self, batch: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        for group in self.optimizer.param_groups:
            group["lr"] *= group["lr_scale"]
        return super().train_step(batch)


def _config(seconds: float, steps: int, lr: float, weight_decay: float, seed: int
            ) -> TrainConfig:
    if (seconds > 0) == (steps > 0):
        raise BadArgument(f"give a time budget (seconds) or a step budget, not both or neither; "
                          f"got seconds={seconds}, steps={steps}")
    return TrainConfig(epochs=BUDGET_EPOCHS, lr=lr, optimizer="adamw", weight_decay=weight_decay,
                       schedule="onecycle", warmup=0.1, max_seconds=seconds, max_steps=steps,
                       seed=seed, precision="fp32")


def timed_run(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
              test: tuple[torch.Tensor, torch.Tensor], size: int, lr: float,
              seconds: float = 0.0, steps: int = 0, head_lr_scale: float | None = None,
              weight_decay: float = 0.01, batch_size: int = 32, seed: int = 0) -> Trainer:
    """Train the whole `model` on (images uint8, labels) at size x size for `seconds` of
    training time or for `steps` optimizer steps (one of the two; BadArgument otherwise).

    AdamW with a one-cycle schedule over the budget; with `head_lr_scale` the model's
    `parameter_groups` give its new head that many times the learning rate. Returns the
    Trainer: `history` has test_acc and train_seconds after each epoch.
    """
    torch.manual_seed(seed)
    cfg = _config(seconds, steps, lr, weight_decay, seed)
    trainer = (GroupLRTrainer(model, cfg, head_lr_scale) if head_lr_scale
               else Trainer(model, cfg))
    trainer.fit(pixel_loader(*train, size, batch_size),
                pixel_loader(*test, size, 128, shuffle=False), eval_split="test")
    return trainer


def frozen_features_run(backbone: EfficientNetLite, train: tuple[torch.Tensor, torch.Tensor],
                        test: tuple[torch.Tensor, torch.Tensor], size: int, num_classes: int,
                        seconds: float = 0.0, steps: int = 0, lr: float = 1e-2,
                        batch_size: int = 32, seed: int = 0) -> Trainer:
    """A frozen pretrained backbone: features computed once, then only a linear head trains.

    Extracting the training set's features counts against `seconds` (they are added to
    every `train_seconds` of the history); the test features are part of evaluation. The
    head is a Linear(1280, num_classes) trained with AdamW for the time that is left, or for
    `steps` steps when a step budget is given instead.
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    train_x = extract_features(backbone, train[0], size)                   # (N, 1280)
    spent = time.perf_counter() - start
    test_x = extract_features(backbone, test[0], size)                     # (M, 1280)
    head = nn.Linear(NUM_FEATURES, num_classes)
    left = max(seconds - spent, 1e-3) if seconds > 0 else 0.0
    trainer = Trainer(head, _config(left, steps, lr, 1e-3, seed))
    trainer.fit(BatchLoader(train_x, train[1], batch_size, seed=seed),
                BatchLoader(test_x, test[1], 1024, shuffle=False), eval_split="test")
    for record in trainer.history:
        record["train_seconds"] += spent
    trainer.train_seconds += spent
    trainer.extract_seconds = spent
    return trainer
