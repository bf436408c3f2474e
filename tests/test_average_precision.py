"""dlcamp.vision.average_precision equals torchmetrics' MeanAveragePrecision (pycocotools backend)
on random detections, and gives the hand-computed numbers on small cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.detection import MeanAveragePrecision

from dlcamp.core.errors import BadArgument
from dlcamp.vision.average_precision import (
    COCO_IOU_THRESHOLDS,
    COCO_RECALL_THRESHOLDS,
    interpolated_precision,
    match_detections,
    mean_average_precision,
)
from dlcamp.vision.boxes import box_iou

SUMMARY = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10",
           "mar_100", "mar_small", "mar_medium", "mar_large", "map_per_class", "mar_100_per_class")


def grid(x: torch.Tensor) -> torch.Tensor:
    """Coordinates on a 1/16 px grid: exact in float32 and in x2 - x1, so that pycocotools'
    (x, y, w, h) and our corners give bit-identical IoUs and areas (no threshold coin flips)."""
    return torch.round(x * 16) / 16


def random_scene(seed: int, images: int, classes: int, tied_scores: bool, with_area: bool):
    """Ground truth of every size (small to large), 0-2 noisy detections per object (some of
    the wrong class), random false positives, images with no ground truth or no detections."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(images):
        m = int(torch.randint(0, 6, (), generator=g))
        xy = torch.rand(m, 2, generator=g) * 300
        wh = 4 + torch.rand(m, 2, generator=g) ** 2 * 150                 # small to large
        truth = grid(torch.cat((xy, xy + wh), 1))                           # (m, 4)
        truth_labels = torch.randint(0, classes, (m,), generator=g)
        copies = torch.randint(0, 3, (m,), generator=g)
        near = truth.repeat_interleave(copies, 0)
        near = near + (torch.rand(near.shape, generator=g) - 0.5) * 0.4 * wh.repeat_interleave(
            copies, 0).repeat(1, 2)                                         # shaken by <= 20%
        near = grid(torch.cat((near[:, :2], torch.maximum(near[:, 2:], near[:, :2])), 1))
        near_labels = truth_labels.repeat_interleave(copies, 0)
        wrong = torch.rand(len(near_labels), generator=g) < 0.15
        near_labels[wrong] = torch.randint(0, classes, (int(wrong.sum()),), generator=g)
        f = int(torch.randint(0, 5, (), generator=g))
        fxy = torch.rand(f, 2, generator=g) * 300
        false = grid(torch.cat((fxy, fxy + torch.rand(f, 2, generator=g) * 150), 1))
        boxes = torch.cat((near, false))
        labels = torch.cat((near_labels, torch.randint(0, classes, (f,), generator=g)))
        scores = torch.rand(len(boxes), generator=g)
        if tied_scores:
            scores = torch.round(scores * 4) / 4                            # many equal scores
        preds.append({"boxes": boxes, "scores": scores, "labels": labels})
        target = {"boxes": truth, "labels": truth_labels}
        if with_area:  # a given area (COCO's mask area), 0 for "use the box's w x h"
            area = torch.rand(m, generator=g) * 12000
            target["area"] = torch.where(torch.rand(m, generator=g) < 0.3, 0.0, area)
        targets.append(target)
    return preds, targets


def torchmetrics_map(preds, targets, coco_thresholds: bool = True):
    thresholds = ({"iou_thresholds": list(COCO_IOU_THRESHOLDS),
                   "rec_thresholds": list(COCO_RECALL_THRESHOLDS)} if coco_thresholds else {})
    metric = MeanAveragePrecision(iou_type="bbox", backend="pycocotools", class_metrics=True,
                                  **thresholds)
    metric.warn_on_many_detections = False  # the 100-per-image cut is tested on purpose
    metric.update(preds, targets)
    return metric, metric.compute()


def assert_same(ours, theirs):
    assert ours["classes"].tolist() == theirs["classes"].reshape(-1).tolist()  # 1 class: 0-d
    for key in SUMMARY:
        # torchmetrics returns float32; ours is float64: 1e-6 is float32's rounding, no more
        torch.testing.assert_close(ours[key].float(), theirs[key].reshape(ours[key].shape),
                                   atol=1e-6, rtol=0, msg=key)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), images=st.integers(1, 6), classes=st.integers(1, 4),
       tied_scores=st.booleans(), with_area=st.booleans())
def test_equals_torchmetrics_pycocotools(seed, images, classes, tied_scores, with_area):
    preds, targets = random_scene(seed, images, classes, tied_scores, with_area)
    _, theirs = torchmetrics_map(preds, targets)
    assert_same(mean_average_precision(preds, targets), theirs)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), images=st.integers(1, 5))
def test_equals_torchmetrics_default_thresholds(seed, images):
    """torchmetrics' own defaults are float32 linspace values; passed to us, the same answer."""
    preds, targets = random_scene(seed, images, 3, tied_scores=False, with_area=False)
    metric, theirs = torchmetrics_map(preds, targets, coco_thresholds=False)
    assert_same(mean_average_precision(preds, targets, metric.iou_thresholds,
                                       metric.rec_thresholds), theirs)


def test_more_than_100_detections_keeps_the_top_100():
    g = torch.Generator().manual_seed(0)
    xy = grid(torch.rand(150, 2, generator=g) * 200)
    boxes = torch.cat((xy, xy + 30), 1)
    preds = [{"boxes": boxes, "scores": torch.rand(150, generator=g),
              "labels": torch.zeros(150, dtype=torch.long)}]
    targets = [{"boxes": boxes[::2], "labels": torch.zeros(75, dtype=torch.long)}]
    metric, theirs = torchmetrics_map(preds, targets)
    assert_same(mean_average_precision(preds, targets), theirs)
    assert mean_average_precision(preds, targets)["mar_100"] < 1  # some of the 75 cut off


def one(boxes, labels, scores=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
           "labels": torch.tensor(labels) if labels else torch.zeros(0, dtype=torch.long)}
    if scores is not None:
        out["scores"] = torch.tensor(scores)
    return out


def test_a_perfect_detector_scores_one():
    truth = [one([[10, 10, 60, 60], [100, 20, 200, 90]], [0, 1]), one([[5, 5, 300, 200]], [1])]
    preds = [{**t, "scores": torch.tensor([0.9, 0.3][: len(t["labels"])])} for t in truth]
    result = mean_average_precision(preds, truth)
    for key in ("map", "map_50", "map_75", "mar_1", "mar_100"):
        assert result[key].item() == pytest.approx(1.0), key
    assert result["map_per_class"].tolist() == pytest.approx([1.0, 1.0])
    assert result["map_small"] == -1 and result["map_large"] == pytest.approx(1.0)  # none small


def test_a_duplicate_is_a_false_positive():
    """Two objects; the detector finds A twice (0.9, 0.8) before B (0.7). Curve: TP, FP, TP;
    monotone precision is 1 up to recall 0.5 (51 of the 101 points) and 2/3 after."""
    truth = [one([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    preds = [one([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7])]
    iou = box_iou(preds[0]["boxes"], truth[0]["boxes"])
    assert match_detections(iou, [0.5]).tolist() == [[0, -1, 1]]           # the copy gets none
    result = mean_average_precision(preds, truth)
    assert result["map"].item() == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert result["mar_100"].item() == pytest.approx(1.0)
    assert_same(result, torchmetrics_map(preds, truth)[1])
    without = mean_average_precision([one([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0],
                                          [0.9, 0.7])], truth)
    assert without["map"].item() == pytest.approx(1.0)


def test_classes_without_ground_truth_are_left_out():
    truth = [one([[0, 0, 10, 10]], [0]), one([], [])]
    preds = [one([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 3], [0.5, 0.9]),
             one([[0, 0, 10, 10]], [0], [0.4])]          # image 2 has no objects: a false positive
    result = mean_average_precision(preds, truth)
    assert result["classes"].tolist() == [0, 3]
    # class 0: TP at 0.5, then the empty image's FP at 0.4: precision 1 at every recall
    assert result["map_per_class"].tolist() == pytest.approx([1.0, -1.0])
    assert result["map"].item() == pytest.approx(1.0)                     # class 3 not averaged
    preds[1]["scores"] = torch.tensor([0.6])                              # now the FP comes first
    assert mean_average_precision(preds, truth)["map"].item() == pytest.approx(0.5)
    assert_same(mean_average_precision(preds, truth), torchmetrics_map(preds, truth)[1])


def test_matching_rules():
    truth = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20]])                # IoU 0.5 between
    iou = box_iou(torch.tensor([[0.0, 0, 10, 20], [0, 0, 10, 10]]), truth)  # (2 detections, 2)
    # detection 0 (higher score) takes its best box 1; detection 1 then takes box 0
    assert match_detections(iou, [0.5]).tolist() == [[1, 0]]
    # IoU exactly 0.5 counts at t = 0.5, not at t = 0.55
    single = box_iou(torch.tensor([[0.0, 0, 10, 10]]), truth[1:])
    assert match_detections(single, [0.5, 0.55]).tolist() == [[0], [-1]]
    # an ignored box is taken only when no real box qualifies, even if it overlaps more
    both = torch.tensor([[0.6, 0.9]])
    assert match_detections(both, [0.5], torch.tensor([[False, True]])).tolist() == [[[0]]]
    assert match_detections(both, [0.7], torch.tensor([[False, True]])).tolist() == [[[1]]]
    assert match_detections(torch.zeros(3, 0), [0.5]).tolist() == [[-1, -1, -1]]


def test_ties_are_broken_as_pycocotools_does():
    """A detection halfway between two boxes (IoU 0.6 with each) takes the later box, leaving
    the earlier one to the next detection; equal scores keep image order (a stable sort)."""
    truth = [one([[0, 0, 10, 10], [5, 0, 15, 10]], [0, 0])]
    preds = [one([[2.5, 0, 12.5, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    iou = box_iou(preds[0]["boxes"], truth[0]["boxes"])
    assert iou[0, 0] == iou[0, 1] == 0.6
    assert match_detections(iou, [0.5]).tolist() == [[1, 0]]
    result = mean_average_precision(preds, truth)
    assert result["map_50"].item() == pytest.approx(1.0)
    assert_same(result, torchmetrics_map(preds, truth)[1])
    truth = [one([], []), one([[0, 0, 10, 10]], [0])]
    preds = [one([[0, 0, 10, 10]], [0], [0.5]), one([[0, 0, 10, 10]], [0], [0.5])]
    result = mean_average_precision(preds, truth)      # image 0's false positive comes first
    assert result["map"].item() == pytest.approx(0.5)
    assert_same(result, torchmetrics_map(preds, truth)[1])


def test_interpolated_precision_by_hand():
    """TP, FP, TP, FP with 4 objects: recall .25, .25, .5, .5; precision 1, .5, .67, .5 ->
    monotone 1, .67, .67, .5; read at 0, .25 (1.0), .26-.5 (2/3), above .5 (0)."""
    matched = torch.tensor([True, False, True, False])
    precision, recall = interpolated_precision(matched, torch.zeros(4, dtype=torch.bool), 4)
    assert recall.item() == 0.5
    assert precision[:26].tolist() == pytest.approx([1.0] * 26)
    assert precision[26:51].tolist() == pytest.approx([2 / 3] * 25)
    assert precision[51:].tolist() == [0.0] * 50
    empty, none_found = interpolated_precision(torch.zeros(0, dtype=torch.bool),
                                               torch.zeros(0, dtype=torch.bool), 3)
    assert empty.tolist() == [0.0] * 101 and none_found.item() == 0


def test_object_sizes():
    """A small (20 x 20) object found and a large one (120 x 120) missed."""
    truth = [one([[0, 0, 20, 20], [100, 100, 220, 220]], [0, 0])]
    preds = [one([[0, 0, 20, 20], [400, 400, 520, 520]], [0, 0], [0.9, 0.8])]
    result = mean_average_precision(preds, truth)
    assert result["map_small"].item() == pytest.approx(1.0)
    assert result["map_large"].item() == 0.0 and result["map_medium"].item() == -1
    assert result["map"].item() == pytest.approx(51 / 101)
    assert_same(result, torchmetrics_map(preds, truth)[1])


def test_bad_input_is_rejected():
    truth = [one([[0, 0, 10, 10]], [0])]
    with pytest.raises(BadArgument, match="one of each per image"):
        mean_average_precision([], truth)
    with pytest.raises(BadArgument, match="scores"):
        mean_average_precision([one([[0, 0, 10, 10]], [0])], truth)
    with pytest.raises(BadArgument, match="x2 < x1"):
        mean_average_precision([one([[10, 0, 0, 10]], [0], [0.5])], truth)
    with pytest.raises(BadArgument, match="integers"):
        mean_average_precision([one([[0, 0, 10, 10]], [0.0], [0.5])], truth)
    with pytest.raises(BadArgument, match="crowd"):
        mean_average_precision([one([[0, 0, 10, 10]], [0], [0.5])],
                               [{**truth[0], "iscrowd": torch.tensor([1])}])
