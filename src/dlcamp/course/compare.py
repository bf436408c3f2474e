"""Looking inside CNNs and comparing them fairly: shapes, FLOPs, equal time budgets, one plot.

    print(shape_table(create_model("lenet"), (1, 28, 28)))   # layer by layer
    count_flops(create_model("lenet"), (1, 28, 28))            # forward FLOPs of one example
    trainer, loaders = train_model(make_config("lenet", quick=True))  # build + fit
    histories_figure({"lenet": trainer.history})               # accuracy per epoch
    rows = compare_models(["lenet", "resnet18"], seconds_each=60)   # or steps_each=500
    print(rows_table(rows)); compare_figure(rows)

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode: convolutions and matrix
products, a multiply-add counting as 2 FLOPs. Element-wise work (activations, pooling, batch
norm, the optimizer) is not counted; for CNNs it is a small share of the arithmetic, though
not of the time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlcamp.core.errors import UnknownName
from dlcamp.data.loader import Loaders
from dlcamp.models import book_config, count_parameters, create_model
from dlcamp.train.plot import PlotCurves
from dlcamp.train.run import RunConfig, build, make_config
from dlcamp.train.trainer import Trainer

# More epochs than any budget allows: with `max_seconds` the clock, not the epoch count, ends
# training (and the learning-rate schedule is stretched over the clock).
BUDGET_EPOCHS = 10_000


# -- looking inside a model -----------------------------------------------------------------
def _dummy_input(model: nn.Module, input_shape: Sequence[int], batch: int) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.randn(batch, *input_shape, device=device)  # (B, C, H, W)

# Quick-mode lessons train this many steps (batch 64 on the 6,000-image subset): a step budget
# gives the same result on a fast or a busy machine, where a time budget would not.
QUICK_STEPS = 60


def layer_shapes(model: nn.Module, input_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Run one dummy example through `model` and record each top-level layer's output.

    Returns one row per direct child, in the order they ran: {"name", "layer" (class name),
    "shape" (output shape, batch of 1), "params"}. The model runs in eval mode (batch norm
    with a single example) and is put back in its previous mode.
    """
    rows: list[dict[str, Any]] = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            rows.append({"name": name, "layer": type(module).__name__,
                         "shape": tuple(output.shape), "params": count_parameters(module)})
        return hook

    handles = [child.register_forward_hook(record(name))
               for name, child in model.named_children()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(_dummy_input(model, input_shape, 1))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows


def shape_table(model: nn.Module, input_shape: Sequence[int]) -> str:
    """`layer_shapes` as text: index, layer, output shape and parameters, one line each."""
    lines = [f"{'':>3} {'layer':<18} {'output shape':<22} {'params':>10}",
             f"{'':>3} {'input':<18} {str((1, *input_shape)):<22} {'':>10}"]
    for row in layer_shapes(model, input_shape):
        lines.append(f"{row['name']:>3} {row['layer']:<18} {str(row['shape']):<22} "
                     f"{row['params']:>10,}")
    lines.append(f"{'':>3} {'total':<18} {'':<22} {count_parameters(model):>10,}")
    return "\n".join(lines)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one example of `input_shape` (C, H, W), in eval mode."""
    was_training = model.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(_dummy_input(model, input_shape, 1))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def describe_model(name: str, image_size: int = 28, **kwargs: Any) -> tuple[nn.Module, int, int]:
    """Build the registered model `name` for 1 x image_size x image_size inputs (plus its
    `kwargs`), print its `shape_table` and its parameters and forward FLOPs per image, and
    return (model, parameters, FLOPs per image). The lessons of Part 2 show each model this
    way at the book's input size and at the laptop's 28 x 28.
    """
    if image_size != 28:
        kwargs["image_size"] = image_size
    model = create_model(name, **kwargs)
    shape = (1, image_size, image_size)
    params, flops = count_parameters(model), count_flops(model, shape)
    print(shape_table(model, shape))
    amount = f"{flops / 1e9:.2f} GFLOPs" if flops >= 1e9 else f"{flops / 1e6:.1f} MFLOPs"
    print(f"{params:,} parameters, {amount} per image")
    return model, params, flops


def training_flops(model: nn.Module, input_shape: Sequence[int],
                   batch: int = 8) -> dict[str, float]:
    """Forward and forward + backward FLOPs per example of one training step.

    Counted on a copy in training mode over a batch (batch norm needs more than one example),
    so `model` itself is left untouched. The backward pass costs about twice the forward one:
    a gradient for the weights and one for the layer's input (none for the first layer's).
    """
    model = copy.deepcopy(model).train()
    x = _dummy_input(model, input_shape, batch)
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    fwd, bwd = forward.get_total_flops() / batch, backward.get_total_flops() / batch
    return {"forward_flops": fwd, "train_flops": fwd + bwd}


def input_shape_of(cfg: RunConfig, loaders: Loaders) -> tuple[int, int, int]:
    """(C, H, W) that the model of a built run sees: the data's shape after `resize`."""
    channels, height, width = loaders.train_set.shape
    return (channels, cfg.resize, cfg.resize) if cfg.resize else (channels, height, width)


# -- training a run, the lessons' way --------------------------------------------------------
def train_model(cfg: RunConfig, test_every_epoch: bool = True, curves: bool = True,
                progress: bool = True, log: Callable[[str], Any] = print
                ) -> tuple[Trainer, Loaders]:
    """Build the run `cfg` (dlcamp.train.run.build: data, model, recipe) and fit it in memory.

    Nothing is written to disk. With `test_every_epoch` the held-out split (`loaders.eval`:
    the test set for images, the val split for a text corpus, as `loaders.eval_split` says)
    is evaluated after every epoch (`test_acc` in the history; `val_ppl` for a language
    model); otherwise only training runs (evaluate afterwards with
    `trainer.evaluate(loaders.eval)`). `curves` draws the learning curves live in Jupyter.
    Returns the trained Trainer (`history`, `train_seconds`, `model`) and the run's loaders.
    """
    trainer, loaders, _ = build(cfg, None, progress=progress, log=log)
    if curves:
        trainer.add_callback(PlotCurves(title=f"{cfg.model} on {cfg.dataset}"))
    trainer.fit(loaders.train, loaders.eval if test_every_epoch else None, loaders.eval_split)
    return trainer, loaders



def lesson_run(name: str, quick: bool, steps: int = QUICK_STEPS
               ) -> tuple[RunConfig, Trainer, Loaders, float]:
    """A Part 2 lesson's training run: the registered recipe in full mode; in quick mode batch
    64 and `steps` steps on the small subset. Prints the config and the test accuracy."""
    cfg = make_config(name, quick=quick, **(dict(batch_size=64, max_steps=steps) if quick else {}))
    print(cfg)
    trainer, loaders = train_model(cfg)
    acc = trainer.history[-1]["test_acc"]
    print(f"test accuracy {acc:.3f} after {trainer.train_seconds:.1f} s of training")
    return cfg, trainer, loaders, acc

# -- equal time for every model ---------------------------------------------------------------
def compare_models(names: Sequence[str], seconds_each: float | None = None, quick: bool = False,
                   dataset: str = "fashion-mnist", log: Callable[[str], Any] = print,
                   steps_each: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train each registered model by its own recipe for the same budget, then test it.

    The budget is `seconds_each` seconds of training (the lessons' and benchmarks' equal-time
    race: the recipe's schedule is stretched over the clock, so every run has annealed its
    learning rate by the end; evaluation is not part of it) or `steps_each` optimiser steps
    (the same result on a fast or a busy machine: what tests use). Give exactly one.
    `overrides` go to every `make_config`. Returns one row per model: test accuracy and loss,
    training seconds, examples seen, epochs, parameters, forward FLOPs per example, and the
    book's published accuracy for the architecture (None where the book has none).
    Raises ValueError for a missing, doubled or non-positive budget.
    """
    if (seconds_each is None) == (steps_each is None):
        raise ValueError("give exactly one budget: seconds_each or steps_each")
    if seconds_each is not None and not seconds_each > 0:
        raise ValueError(f"seconds_each must be > 0, got {seconds_each}")
    if steps_each is not None and steps_each < 1:
        raise ValueError(f"steps_each must be >= 1, got {steps_each}")
    budget = {"max_seconds": seconds_each} if seconds_each else {"max_steps": steps_each}
    rows = []
    for name in names:
        cfg = make_config(name, dataset, quick=quick,
                          **{"epochs": BUDGET_EPOCHS, **overrides, **budget})
        trainer, loaders = train_model(cfg, test_every_epoch=False, curves=False,
                                       progress=False, log=lambda _: None)
        test = trainer.evaluate(loaders.eval)
        examples = sum(record["train_examples"] for record in trainer.history)
        try:
            book_acc = book_config(name)["book_test_acc"]
        except UnknownName:
            book_acc = None
        row = {"model": name, "test_acc": test["acc"], "test_loss": test["loss"],
               "train_seconds": trainer.train_seconds, "examples": examples,
               "epochs": examples / len(loaders.train_set),
               "params": count_parameters(trainer.model),
               "flops": count_flops(trainer.model, input_shape_of(cfg, loaders)),
               "book_test_acc": book_acc}
        log(f"{name:<13} test accuracy {row['test_acc']:.3f} after {row['train_seconds']:.1f} s "
            f"({row['epochs']:.2f} epochs)")
        rows.append(row)
    return rows


def rows_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of `compare_models` as an aligned text table, best test accuracy first."""
    lines = [f"{'model':<13} {'test acc':>8} {'seconds':>8} {'epochs':>7} {'params':>11} "
             f"{'MFLOP/ex':>9} {'book acc':>8}"]
    for row in sorted(rows, key=lambda r: -r["test_acc"]):
        book = "–" if row["book_test_acc"] is None else f"{row['book_test_acc']:.3f}"
        lines.append(f"{row['model']:<13} {row['test_acc']:>8.3f} {row['train_seconds']:>8.1f} "
                     f"{row['epochs']:>7.2f} {row['params']:>11,} {row['flops'] / 1e6:>9.1f} "
                     f"{book:>8}")
    return "\n".join(lines)


def histories_figure(histories: dict[str, Sequence[dict[str, float]]], key: str = "test_acc",
                     x: str = "epoch", title: str = "", fig: Figure | None = None) -> Figure:
    """One curve per run: `key` (a Trainer history column) against the epoch, or against
    `x="train_seconds"` (time spent training so far) to compare how fast runs learn."""
    fig = fig if fig is not None else Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
    for label, history in histories.items():
        ax.plot([r[x] for r in history], [r[key] for r in history], marker="o", label=label)
    ax.set_xlabel({"epoch": "epoch", "train_seconds": "training seconds"}.get(x, x))
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def compare_figure(rows: Sequence[dict[str, Any]], x: str = "flops", title: str = "",
                   fig: Figure | None = None) -> Figure:
    """Test accuracy against FLOPs per example (or `x="params"`), log x, one labelled point
    per model. Pass `fig=plt.figure()` in a lesson to have pyplot show it."""
    labels = {"flops": "forward FLOPs per example", "params": "parameters"}
    if x not in labels:
        raise ValueError(f"x must be one of {', '.join(labels)}, got {x!r}")
    fig = fig if fig is not None else Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    xs = [row[x] for row in rows]
    ys = [row["test_acc"] for row in rows]
    ax.scatter(xs, ys, s=40, zorder=3)
    for row, xv, yv in zip(rows, xs, ys, strict=True):
        ax.annotate(row["model"], (xv, yv), textcoords="offset points", xytext=(5, 4),
                    fontsize=9)
    ax.set_xscale("log")
    if xs and min(xs) > 0:  # a margin on the log axis so labels stay inside
        ax.set_xlim(min(xs) / 2, max(xs) * 3)
    low = min(ys, default=0.0)
    ax.set_ylim(max(0.0, math.floor(low * 10) / 10 - 0.05), 1.0)
    ax.set_xlabel(labels[x] + " (log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
