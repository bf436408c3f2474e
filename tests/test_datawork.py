"""Data work for the hackathon lessons (dlcamp.course.datawork): narrow scenes, condition
subsets, label corruption, and the detector used to measure them."""

from __future__ import annotations

import pytest
import torch

from dlcamp.core.errors import BadArgument
from dlcamp.course import datawork
from dlcamp.data.detection import DetectionSet
from dlcamp.vision import scene_sets

WOOD = "mate/nature/Wood.jpg"


@pytest.fixture(scope="module")
def varied():
    return scene_sets.load_scene_set("fruit-1", "train", n=40)


@pytest.fixture(scope="module")
def narrow():
    return datawork.narrow_scenes("fruit-1", 16, background=WOOD)


def _random_boxes(n: int, m: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, m, 4) valid corner boxes inside a size x size image, labels with some padding."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, m, 2, 2, generator=gen) * size                     # (n, m, 2 corners, 2)
    lo, hi = xy.min(2).values, xy.max(2).values + 1                       # (n, m, 2)
    boxes = torch.cat([lo, hi.clamp(max=size)], -1)                       # (n, m, 4)
    labels = torch.randint(0, 3, (n, m), generator=gen)
    labels[:, -1] = -1                                                    # one padding row each
    boxes[:, -1] = 0
    return boxes, labels


# -- narrow scenes and conditions ------------------------------------------------------------
def test_narrow_scenes_have_one_background_and_one_lighting(narrow):
    assert len(narrow) == 16 and narrow.name == "fruit-1-narrow"
    assert datawork.condition_counts(narrow, "background") == {WOOD: 16}
    for key in ("brightness", "contrast", "gamma", "blur", "noise"):
        assert len(set(narrow.conditions[key])) == 1, key
    assert set(narrow.conditions["gradient"]) == {0.0}
    # Objects are train instances only, so the test split's held-out fruits stay unseen.
    train_keys = {k for k, _ in scene_sets.get_scene_set("fruit-1").instances("train")}
    pasted = {k for s in narrow.conditions["instances"] for k in s.split("|")}
    assert pasted <= train_keys and len(pasted) > 3  # objects still vary


def test_narrow_scenes_are_new_images_and_reproducible(narrow, varied):
    again = datawork.narrow_scenes("fruit-1", 4, background=WOOD)
    assert torch.equal(again.images, narrow.images[:4])  # image i depends on (seed, i) only
    other = datawork.narrow_scenes("fruit-1", 4, background=WOOD, seed=1)
    assert not torch.equal(other.images, again.images)
    flat = varied.images.flatten(1)
    assert not any((flat == img.flatten()).all(1).any() for img in narrow.images)


def test_narrow_scenes_refuse_a_foreign_background():
    with pytest.raises(BadArgument, match="not a background of fruit-1"):
        datawork.narrow_scenes("fruit-1", 4, background="gimp/Stone/granite1.pat")
    with pytest.raises(BadArgument, match="n >= 1"):
        datawork.narrow_scenes("fruit-1", 0)


def test_condition_counts_and_select_condition(varied):
    counts = datawork.condition_counts(varied, "background")
    assert sum(counts.values()) == len(varied) and len(counts) > 3
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    value, count = next(iter(counts.items()))
    picked = datawork.select_condition(varied, "background", value)
    assert len(picked) == count and set(picked.conditions["background"]) == {value}
    index = [i for i, v in enumerate(varied.conditions["background"]) if v == value]
    assert torch.equal(picked.images, varied.images[index])
    assert len(datawork.select_condition(varied, "background", "nowhere.jpg")) == 0
    with pytest.raises(BadArgument, match="no condition 'lamp'.*background"):
        datawork.condition_counts(varied, "lamp")


# -- label corruption ---------------------------------------------------------------------------
def test_loose_boxes_stay_inside_the_image_and_contain_the_object():
    boxes, labels = _random_boxes(500, 4, 128, seed=0)
    gen = torch.Generator().manual_seed(1)
    loose = datawork.loosen_boxes(boxes, labels, (128, 128), (0.2, 0.3), gen)
    real = labels >= 0
    b, lo = boxes[real], loose[real]                                      # (K, 4)
    assert (lo[:, :2] >= 0).all() and (lo[:, 2:] <= 128).all()
    assert (lo[:, :2] <= b[:, :2] + 1e-4).all() and (lo[:, 2:] >= b[:, 2:] - 1e-4).all()
    assert torch.equal(loose[~real], boxes[~real])                        # padding untouched
    # Away from the border nothing is clipped: each side grows by 20-30%.
    size, new = b[:, 2:] - b[:, :2], lo[:, 2:] - lo[:, :2]
    inside = ((lo[:, :2] > 0) & (lo[:, 2:] < 128)).all(1)
    ratio = (new / size)[inside]
    assert inside.sum() > 50
    assert ratio.min() >= 1.2 - 1e-4 and ratio.max() <= 1.3 + 1e-4 and ratio.std() > 0.01


def test_loosen_boxes_checks_its_input():
    boxes, labels = _random_boxes(2, 3, 64, seed=0)
    with pytest.raises(BadArgument, match="must match"):
        datawork.loosen_boxes(boxes, labels[:, :2], (64, 64))
    with pytest.raises(BadArgument, match="grow"):
        datawork.loosen_boxes(boxes, labels, (64, 64), (0.3, 0.2))


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_drop_boxes_drops_the_asked_share_of_real_boxes(rate):
    labels = torch.randint(0, 3, (2000, 5), generator=torch.Generator().manual_seed(0))
    labels[:, 4] = -1
    dropped = datawork.drop_boxes(labels, rate, torch.Generator().manual_seed(2))
    assert (dropped[:, 4] == -1).all()                                    # padding stays padding
    kept = dropped[:, :4] >= 0
    assert torch.equal(dropped[:, :4][kept], labels[:, :4][kept])         # kept labels unchanged
    assert abs((1 - kept.float().mean().item()) - rate) < 0.02            # 8,000 real boxes


def test_drop_boxes_rejects_a_bad_rate():
    with pytest.raises(BadArgument, match=r"\[0, 1\]"):
        datawork.drop_boxes(torch.zeros(2, 2, dtype=torch.long), 1.5)


def test_corrupt_labels_keeps_pixels_and_compacts_boxes(varied):
    sloppy = datawork.corrupt_labels(varied, grow=(0.2, 0.3), drop=0.3, seed=3)
    assert isinstance(sloppy, DetectionSet) and torch.equal(sloppy.images, varied.images)
    assert sloppy.masks is None and sloppy.conditions == varied.conditions
    assert sloppy.meta["label_noise"] == {"grow": [0.2, 0.3], "drop": 0.3, "seed": 3}
    assert sloppy.num_objects().sum() < varied.num_objects().sum()
    for i in range(len(varied)):  # real rows first, then padding
        real = sloppy.labels[i] >= 0
        assert real.tolist() == sorted(real.tolist(), reverse=True)
    again = datawork.corrupt_labels(varied, grow=(0.2, 0.3), drop=0.3, seed=3)
    assert torch.equal(again.boxes, sloppy.boxes) and torch.equal(again.labels, sloppy.labels)
    same = datawork.corrupt_labels(varied)  # nothing asked: the same labels
    assert torch.equal(same.boxes, varied.boxes) and torch.equal(same.labels, varied.labels)


# -- measuring a detector -----------------------------------------------------------------------
def test_recall_precision_counts_matches_by_class_and_iou():
    truth = torch.tensor([[[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 0, 0]]], dtype=torch.float)
    labels = torch.tensor([[0, 1, -1]])
    perfect = [{"boxes": truth[0, :2], "labels": torch.tensor([0, 1])}]
    assert datawork.recall_precision(perfect, truth, labels) == {"recall": 1.0, "precision": 1.0}
    # one right, one of the wrong class, one far away: recall 1/2, precision 1/3
    found = [{"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 40, 40], [60, 60, 70, 70.]]),
              "labels": torch.tensor([0, 0, 1])}]
    assert datawork.recall_precision(found, truth, labels) == {"recall": 0.5, "precision": 1 / 3}
    # a box 25% wider on each axis has IoU 1/1.5625 = 0.64: found at 0.5, missed at 0.75
    wide = [{"boxes": torch.tensor([[0, 0, 12.5, 12.5]]), "labels": torch.tensor([0])}]
    assert datawork.recall_precision(wide, truth, labels, iou=0.5)["recall"] == 0.5
    assert datawork.recall_precision(wide, truth, labels, iou=0.75)["recall"] == 0.0
    nothing = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    assert datawork.recall_precision(nothing, truth, labels) == {"recall": 0.0, "precision": 1.0}


def test_train_detector_learns_within_its_step_budget(varied):
    test = scene_sets.load_scene_set("fruit-1", "test", n=32)
    before = datawork.train_detector(varied, steps=1, seed=0, width=8)
    after = datawork.train_detector(varied, steps=60, seed=0, width=8)
    assert before.global_step == 1 and after.global_step == 60  # 60 steps on 40 images
    first, last = (datawork.detector_scores(t, test) for t in (before, after))
    assert set(last) == {"map", "map_50", "map_75"}
    assert last["map_50"] >= first["map_50"] + 0.3, (first, last)
    found = datawork.found_at(after, test, score_threshold=0.3)
    assert found["recall"] >= 0.3 and 0 < found["precision"] <= 1
    with pytest.raises(BadArgument, match="steps >= 1"):
        datawork.train_detector(varied, steps=0)
