"""dlcamp.course.shift: the covariate-shift lesson's instruments. mAP per condition partitions
the images, errors are found where they were planted, view fusion and flip TTA give the
boxes a mirror-symmetric detector must give, the shift augmentation moves boxes with pixels.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcamp.core.errors import BadArgument
from dlcamp.course.datawork import train_detector
from dlcamp.course.shift import (
    SHIFT_AUGMENT,
    WIDER,
    ShiftAugment,
    by_condition,
    condition_values,
    flip_tta,
    fuse_views,
    gap_closed,
    map_scores,
    predict,
    varied_scenes,
    worst_errors,
)
from dlcamp.data.detection import DetectionSet
from dlcamp.models.detector import Detector


def toy_set(n: int = 6) -> DetectionSet:
    """n 32-px images, image i has one box of class i % 2; conditions for grouping."""
    boxes = [torch.tensor([[2.0 + i, 4.0, 20.0 + i, 24.0]]) for i in range(n)]
    labels = [torch.tensor([i % 2]) for i in range(n)]
    images = [torch.zeros(3, 32, 32, dtype=torch.uint8) for _ in range(n)]
    conditions = {"light": [0.1 * i for i in range(n)], "room": ["a", "b"] * (n // 2),
                  "instances": ["x/cartoon/y.png" if i < 2 else "x/photo.png" for i in range(n)]}
    return DetectionSet.from_lists(images, boxes, labels, ["cat", "dog"], conditions=conditions)


def perfect(data: DetectionSet) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": data.targets(i)["boxes"].float(), "scores": torch.tensor([0.9]),
             "labels": data.targets(i)["labels"]} for i in range(len(data))]


def nothing(data: DetectionSet) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
             "labels": torch.zeros(0, dtype=torch.long)} for _ in range(len(data))]


def test_map_scores_and_groups_partition_the_images():
    data = toy_set()
    assert map_scores(perfect(data), data) == {"map": 1.0, "map_50": 1.0, "map_75": 1.0}
    assert map_scores(nothing(data), data)["map_50"] == 0.0
    mixed = [p if data.conditions["room"][i] == "a" else n for i, (p, n) in
             enumerate(zip(perfect(data), nothing(data), strict=True))]
    rooms = by_condition(mixed, data, "room")
    assert rooms["a"]["map_50"] == 1.0 and rooms["b"]["map_50"] == 0.0
    assert sum(r["images"] for r in rooms.values()) == len(data)
    light = condition_values(data, "light", bins=3)
    assert len(set(light)) == 3 and all(light.count(v) == 2 for v in set(light))
    assert condition_values(data, "style") == ["clip-art"] * 2 + ["photo"] * 4
    with pytest.raises(BadArgument, match="has no condition 'lamp'"):
        condition_values(data, "lamp")
    with pytest.raises(BadArgument, match="detections for"):
        map_scores(perfect(data)[:2], data)


def test_worst_errors_are_the_planted_ones():
    data = toy_set(4)
    found = perfect(data)
    found[1] = {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "scores": torch.tensor([0.8]),
                "labels": torch.tensor([1])}                          # misses image 1's box
    found[2]["scores"] = torch.tensor([0.3])                           # found, but timid
    found[3] = {**found[3], "labels": torch.tensor([0])}               # wrong class
    errors = worst_errors(found, data, k=3)
    fps, fns = errors["false_positives"], errors["false_negatives"]
    assert [(e["image"], e["score"]) for e in fps] == [(3, pytest.approx(0.9)),
                                                      (1, pytest.approx(0.8))]
    assert [(e["image"], e["score"]) for e in fns] == [(1, 0.0), (3, 0.0),
                                                      (2, pytest.approx(0.3))]
    torch.testing.assert_close(fns[0]["box"], data.targets(1)["boxes"][0].float())


def test_fuse_views_averages_agreeing_boxes_and_halves_lonely_ones():
    a = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]]),
         "scores": torch.tensor([0.8, 0.6]), "labels": torch.tensor([0, 0])}
    b = {"boxes": torch.tensor([[12.0, 10.0, 32.0, 30.0]]), "scores": torch.tensor([0.4]),
         "labels": torch.tensor([0])}
    out = fuse_views([a, b])
    w = torch.tensor([0.8, 0.4])[:, None]
    torch.testing.assert_close(out["boxes"][0], (w * torch.cat((a["boxes"][:1], b["boxes"]))
                                                 ).sum(0) / w.sum())
    torch.testing.assert_close(out["scores"], torch.tensor([0.6, 0.3]))  # (0.8+0.4)/2, 0.6/2
    assert fuse_views([nothing(toy_set(2))[0]] * 2)["boxes"].shape == (0, 4)


class BrightSpot(Detector):
    """Finds the bright square of an image: a mirror-symmetric stub detector."""

    num_classes, image_size = 1, 32

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return (images.mean(1),)                                         # (B, H, W)

    def detect(self, outputs, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
        out = []
        for m in outputs[0]:
            ys, xs = torch.nonzero(m > m.mean(), as_tuple=True)
            box = torch.stack((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)).float()
            out.append({"boxes": box[None], "scores": torch.tensor([0.7]),
                        "labels": torch.tensor([0])})
        return out


@pytest.mark.parametrize("merge", ["fuse", "nms"])
def test_flip_tta_of_a_symmetric_detector_finds_the_same_box(merge):
    images = torch.zeros(2, 3, 32, 32)
    images[0, :, 5:15, 3:9] = 1.0
    images[1, :, 20:30, 22:31] = 1.0
    found = flip_tta(BrightSpot().eval(), images, merge)
    torch.testing.assert_close(torch.stack([f["boxes"][0] for f in found]),
                               torch.tensor([[3.0, 5.0, 9.0, 15.0], [22.0, 20.0, 31.0, 30.0]]))
    assert [len(f["boxes"]) for f in found] == [1, 1]
    torch.testing.assert_close(torch.cat([f["scores"] for f in found]), torch.tensor([0.7, 0.7]))
    with pytest.raises(BadArgument, match="merge"):
        flip_tta(BrightSpot(), images, "vote")


def test_shift_augment_moves_boxes_with_the_pixels_and_repeats():
    images = torch.zeros(4, 3, 64, 64)
    images[..., 10:40, 20:50] = 255.0
    boxes = torch.tensor([[[20.0, 10.0, 50.0, 40.0]]]).repeat(4, 1, 1)
    labels = torch.zeros(4, 1, dtype=torch.long)
    aug = ShiftAugment(zoom=(0.5, 0.7), zoom_p=1.0, brightness=0.0, contrast=0.0,
                       saturation=0.0, blur=(0.0, 0.8), noise=(0.0, 0.02))
    out, moved, kept = aug.with_boxes(images, boxes, labels, torch.Generator().manual_seed(0))
    assert torch.equal(kept, labels)
    side = moved[:, 0, 2:] - moved[:, 0, :2]                           # (4, 2)
    assert bool(((side >= 15 - 1e-4) & (side <= 21 + 1e-4)).all())     # 30 px times 0.5-0.7
    for img, (x1, y1, x2, y2) in zip(out, moved[:, 0].round().long().tolist(), strict=True):
        inside = img[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean()
        assert inside > 150 and img.mean() < 0.5 * inside              # the square is the box
    again = aug.with_boxes(images, boxes, labels, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], moved)
    for bad in ({"zoom": (0.5, 1.5)}, {"zoom_p": 2.0}, {"blur": (1.0, 0.5)}, {"gamma": (-1, 1)}):
        with pytest.raises(BadArgument):
            ShiftAugment(**bad)


def test_varied_scenes_cover_more_conditions_than_the_train_split():
    data = varied_scenes("fruit-1", 40)
    c = data.conditions
    assert len(data) == 40 and data.name == "fruit-1-varied"
    assert WIDER["scale"][0] <= min(c["scale"]) and min(c["scale"]) < 0.3  # some far away
    assert min(c["brightness"]) < -0.08 and max(c["blur"]) > 0.6           # dimmer, blurrier
    with pytest.raises(BadArgument):
        varied_scenes("fruit-1", 0)


def test_train_detector_takes_an_augmentation_object_and_a_time_budget():
    data = varied_scenes("fruit-1", 16)
    calls = []

    def counting(images, boxes, labels, generator):
        calls.append(len(images))
        return SHIFT_AUGMENT.with_boxes(images, boxes, labels, generator)

    trainer = train_detector(data, 2, width=4, augment=counting, batch_size=8, max_seconds=60.0)
    assert len(calls) >= 2 and set(calls) == {8}  # every training batch went through it
    assert trainer.config.max_seconds == 60.0 and trainer.global_step == 2
    found = predict(trainer.model, data.select(range(4)), tta="fuse")
    assert len(found) == 4 and all(f["boxes"].shape[1] == 4 for f in found)


def test_gap_closed_is_the_share_of_the_gap():
    base = {"val": {"map_50": 0.9}, "shift": {"map_50": 0.5}}
    cured = {"val": {"map_50": 0.8}, "shift": {"map_50": 0.6}}
    assert gap_closed(base, cured) == pytest.approx(0.25)
    assert gap_closed({"val": {"map_50": 0.5}, "shift": {"map_50": 0.5}}, base) == 0.0
