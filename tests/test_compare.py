"""dlcamp.course.compare: layer shapes, FLOPs vs a hand count, equal-time comparison, its plot."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcamp.course.compare import (
    compare_figure,
    compare_models,
    count_flops,
    histories_figure,
    layer_shapes,
    rows_table,
    shape_table,
    train_model,
    training_flops,
)
from dlcamp.models import count_parameters, create_model
from dlcamp.train import make_config


def tiny() -> nn.Module:
    """conv 1->2 (3x3, pad 1) on 4x4, ReLU, then linear 32->3."""
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


# By hand: each conv output value is 1*3*3 multiply-adds; 2*4*4 outputs; a multiply-add = 2.
CONV = 2 * (2 * 4 * 4) * (1 * 3 * 3)  # 576
LINEAR = 2 * 32 * 3                   # 192


def test_forward_flops_equal_the_hand_count():
    assert count_flops(tiny(), (1, 4, 4)) == CONV + LINEAR == 768


def test_training_flops_add_the_backward_pass():
    # Backward: the linear layer needs gradients of its weights and of its input (2x its
    # forward); the first convolution only of its weights (its input is the data).
    flops = training_flops(tiny(), (1, 4, 4), batch=8)
    assert flops["forward_flops"] == CONV + LINEAR
    assert flops["train_flops"] == (CONV + LINEAR) + (CONV + 2 * LINEAR)


def test_flops_and_shapes_leave_the_model_as_it_was():
    model = create_model("lenet-bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (1, 28, 28))
    training_flops(model, (1, 28, 28))
    layer_shapes(model, (1, 28, 28))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lenet_flops_and_layer_shapes():
    model = create_model("lenet")
    # conv1: 6 maps of 28x28, 25 taps; conv2: 16 maps of 10x10, 6*25 taps; then 400-120-84-10
    by_hand = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
    assert count_flops(model, (1, 28, 28)) == by_hand
    rows = layer_shapes(model, (1, 28, 28))
    assert [r["shape"] for r in rows][:6] == [(1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14),
                                              (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5)]
    assert rows[-1]["shape"] == (1, 10)
    assert sum(r["params"] for r in rows) == count_parameters(model)
    table = shape_table(model, (1, 28, 28))
    assert "(1, 16, 5, 5)" in table and f"{count_parameters(model):,}" in table


def test_train_model_learns_and_returns_loaders():
    cfg = make_config("lenet-bn", quick=True, epochs=2)
    trainer, loaders = train_model(cfg, curves=False, progress=False, log=lambda _: None)
    assert len(trainer.history) == 2 and "test_acc" in trainer.history[-1]
    assert trainer.history[-1]["test_acc"] > 0.5
    assert len(loaders.test_set) == 2000  # quick mode's test subset


def test_compare_models_quick_rows_are_sane():
    steps = 40  # a step budget: the same rows on a fast or a busy machine
    rows = compare_models(["lenet", "lenet-bn"], steps_each=steps, quick=True, batch_size=64,
                          log=lambda _: None)
    assert [r["model"] for r in rows] == ["lenet", "lenet-bn"]
    for row in rows:
        model = create_model(row["model"])
        assert 0.0 <= row["test_acc"] <= 1.0 and row["test_loss"] > 0
        assert row["train_seconds"] > 0
        assert row["examples"] == steps * 64 and row["epochs"] == row["examples"] / 6000
        assert row["params"] == count_parameters(model)
        assert row["flops"] == count_flops(model, (1, 28, 28))
        assert row["book_test_acc"] is not None
    by_name = {r["model"]: r for r in rows}
    # batch norm lets the sigmoid LeNet learn at the book's large step within 40 steps, while
    # the plain sigmoid LeNet is still near chance (0.1)
    assert by_name["lenet-bn"]["test_acc"] > 0.5, by_name["lenet-bn"]
    assert by_name["lenet-bn"]["test_acc"] > by_name["lenet"]["test_acc"] + 0.2
    assert rows_table(rows).splitlines()[1].startswith("lenet-bn")


def test_compare_figure_has_a_log_axis_and_a_label_per_model():
    rows = [{"model": "a", "test_acc": 0.8, "flops": 1e6, "params": 1000},
            {"model": "b", "test_acc": 0.9, "flops": 1e8, "params": 50_000}]
    fig = compare_figure(rows)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert sorted(t.get_text() for t in ax.texts) == ["a", "b"]
    assert compare_figure(rows, x="params").axes[0].get_xlabel().startswith("parameters")
    with pytest.raises(ValueError, match="x must be"):
        compare_figure(rows, x="seconds")


def test_compare_models_rejects_a_missing_or_bad_budget():
    with pytest.raises(ValueError, match="seconds_each"):
        compare_models(["lenet"], seconds_each=0)
    with pytest.raises(ValueError, match="steps_each"):
        compare_models(["lenet"], steps_each=0)
    with pytest.raises(ValueError, match="exactly one"):
        compare_models(["lenet"])
    with pytest.raises(ValueError, match="exactly one"):
        compare_models(["lenet"], seconds_each=1.0, steps_each=10)


def test_histories_figure_draws_one_curve_per_run():
    runs = {"a": [{"epoch": 1, "train_seconds": 2.0, "test_acc": 0.5},
                  {"epoch": 2, "train_seconds": 4.0, "test_acc": 0.7}],
            "b": [{"epoch": 1, "train_seconds": 1.0, "test_acc": 0.6}]}
    ax = histories_figure(runs, x="train_seconds").axes[0]
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert list(ax.lines[0].get_xdata()) == [2.0, 4.0] and ax.get_xlabel() == "training seconds"
