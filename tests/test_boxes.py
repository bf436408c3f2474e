"""dlcamp.vision.boxes equals torchvision.ops: formats, area, IoU, NMS, batched NMS."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import ops

from dlcamp.vision.boxes import (
    batched_nms,
    box_area,
    box_center_to_corner,
    box_corner_to_center,
    box_iou,
    nms,
)


def random_boxes(seed: int, n: int, size: float = 100.0, dtype=torch.float32) -> torch.Tensor:
    """n corner boxes inside a size x size image (some thin, some empty, many overlapping)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 2
    wh[torch.rand(n, generator=g) < 0.1] = 0.0  # empty boxes too
    return torch.cat((xy, xy + wh), dim=1).to(dtype)  # (n, 4)


SEEDS = st.integers(0, 2**31 - 1)
SIZES = st.integers(0, 40)


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, n=SIZES)
def test_formats_area_and_iou_equal_torchvision(seed, n):
    boxes, other = random_boxes(seed, n), random_boxes(seed + 1, n // 2 + 1)
    centre = box_corner_to_center(boxes)
    torch.testing.assert_close(centre, ops.box_convert(boxes, "xyxy", "cxcywh"))
    torch.testing.assert_close(box_center_to_corner(centre), boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(box_area(boxes), ops.box_area(boxes))
    ours, theirs = box_iou(boxes, other), ops.box_iou(boxes, other)  # (n, m)
    # torchvision gives 0/0 = nan for two empty boxes; ours says 0 (they do not overlap)
    torch.testing.assert_close(ours, torch.nan_to_num(theirs, nan=0.0), atol=1e-6, rtol=1e-5)
    assert ((ours >= 0) & (ours <= 1 + 1e-6)).all()


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, n=SIZES, threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_nms_equals_torchvision(seed, n, threshold):
    boxes = random_boxes(seed, n, dtype=torch.float64)
    scores = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).double()  # no ties
    assert nms(boxes, scores, threshold).tolist() == ops.nms(boxes, scores, threshold).tolist()


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, n=SIZES, classes=st.integers(1, 4))
def test_batched_nms_equals_torchvision(seed, n, classes):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(seed, n, dtype=torch.float64)
    scores = torch.randperm(n, generator=g).double()
    labels = torch.randint(0, classes, (n,), generator=g)
    ours = batched_nms(boxes, scores, labels, 0.5)
    assert ours.tolist() == ops.batched_nms(boxes, scores, labels, 0.5).tolist()


def test_iou_by_hand_and_nms_of_the_books_dog():
    """A box against itself, half of it and a disjoint one; three overlapping dog boxes."""
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0], [3.0, 3.0, 4.0, 4.0]])
    assert box_iou(a, b).tolist() == [[1.0, 0.5, 0.0]]
    dogs = torch.tensor([[0.10, 0.08, 0.52, 0.92], [0.08, 0.20, 0.56, 0.95],
                         [0.15, 0.30, 0.62, 0.91], [0.55, 0.20, 0.90, 0.88]])  # the book's 14.4
    assert nms(dogs, torch.tensor([0.9, 0.8, 0.7, 0.9]), 0.5).tolist() == [0, 3]


def test_bad_boxes_are_refused_with_a_reason():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="float"):
        box_area(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="x2 < x1"):
        box_area(torch.tensor([[5.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                       0.5).tolist() == []
