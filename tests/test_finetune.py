"""dlcamp.course.finetune: the fine-tuning lesson's target set and training runs."""

from __future__ import annotations

import pytest
import torch

from dlcamp.core.errors import BadArgument
from dlcamp.course.finetune import (
    BatchLoader,
    GroupLRTrainer,
    _config,
    frozen_features_run,
    single_object_scenes,
    timed_run,
)
from dlcamp.models.efficientnet import efficientnet_lite0


def _tiny_set(n: int = 8, side: int = 32, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, side, side), generator=gen, dtype=torch.uint8)
    return images, torch.arange(n) % classes


def test_single_object_scenes_have_one_object_each():
    images, labels, names, names_zh = single_object_scenes("test", 4, image_size=32)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (4,) and labels.min() >= 0 and labels.max() < len(names) == 8
    assert len(names_zh) == 8 and images.float().std() > 10  # real pictures, not blank


def test_batch_loader_visits_every_example_once_per_epoch_in_a_new_order():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    loader = BatchLoader(x, y, batch_size=4)
    assert len(loader) == 3
    orders = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        order = torch.cat([yb for _, yb in loader])
        assert sorted(order.tolist()) == list(range(10))
        orders.append(order)
    assert not torch.equal(*orders)


def test_one_budget_exactly():
    with pytest.raises(BadArgument, match="not both"):
        _config(seconds=1.0, steps=2, lr=1e-3, weight_decay=0.0, seed=0)
    with pytest.raises(BadArgument):
        _config(seconds=0.0, steps=0, lr=1e-3, weight_decay=0.0, seed=0)


def test_the_head_keeps_ten_times_the_schedules_rate():
    model = efficientnet_lite0(num_classes=3, pretrained=False)
    trainer = timed_run(model, _tiny_set(), _tiny_set(4, seed=1), size=32, lr=1e-3, steps=3,
                        head_lr_scale=10, batch_size=4)
    assert isinstance(trainer, GroupLRTrainer) and trainer.global_step == 3
    backbone, head = trainer.optimizer.param_groups
    assert head["lr"] == pytest.approx(10 * backbone["lr"]) and backbone["lr"] > 0
    assert head["params"] == [model._fc.weight, model._fc.bias]
    assert "test_acc" in trainer.history[-1]


def test_frozen_features_train_only_a_linear_head_and_count_the_extraction():
    backbone = efficientnet_lite0(pretrained=False)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    trainer = frozen_features_run(backbone, _tiny_set(), _tiny_set(4, seed=1), size=32,
                                  num_classes=3, steps=4, batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert isinstance(trainer.model, torch.nn.Linear) and trainer.model.in_features == 1280
    assert trainer.global_step == 4
    assert trainer.history[0]["train_seconds"] >= trainer.extract_seconds > 0
