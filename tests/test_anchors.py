"""dlcamp.vision.anchors: the book's anchors and figures; matching and offsets equal
torchvision's detection utilities (Matcher, BoxCoder)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder, Matcher

from dlcamp.vision.anchors import (
    OFFSET_WEIGHTS,
    decode_offsets,
    encode_offsets,
    match_anchors,
    multibox_prior,
)
from dlcamp.vision.boxes import box_iou


def test_the_books_anchor_figure():
    """d2l 14.4: a 561 x 728 image, sizes (0.75, 0.5, 0.25), ratios (1, 2, 0.5): 5 anchors a
    pixel, and pixel (250, 250)'s first anchor is about (0.06, 0.07, 0.63, 0.82)."""
    anchors = multibox_prior(561, 728, [0.75, 0.5, 0.25], [1, 2, 0.5])
    assert anchors.shape == (561 * 728 * 5, 4)
    first = anchors.reshape(561, 728, 5, 4)[250, 250, 0]
    torch.testing.assert_close(first, torch.tensor([0.06, 0.07, 0.63, 0.82]), atol=5e-3, rtol=0)
    square = anchors.reshape(561, 728, 5, 4)[0, 0, 0]                   # ratio 1: square pixels
    assert (square[2] - square[0]) * 728 == pytest.approx((square[3] - square[1]) * 561)


def test_the_books_labelled_anchors():
    """d2l 14.4: a dog and a cat, five anchors -> classes (background 0, dog 1, cat 2)."""
    truth = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.55, 0.2, 0.9, 0.88]])
    anchors = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                            [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])
    matches = match_anchors(truth, anchors, 0.5)
    assert (matches + 1).tolist() == [0, 1, 2, 0, 2]


def scene(seed: int, n_boxes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_boxes, 2, generator=g) * 0.7
    boxes = torch.cat((xy, xy + 0.05 + torch.rand(n_boxes, 2, generator=g) * 0.25), dim=1)
    return boxes, multibox_prior(6, 8, [0.3, 0.15], [1, 2, 0.5])


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8),
       threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_matching_equals_torchvisions_matcher(seed, n, threshold):
    truth, anchors = scene(seed, n)
    assert (box_iou(truth, anchors).max(dim=1).values > 0).all()  # every box meets an anchor
    theirs = Matcher(threshold, threshold, allow_low_quality_matches=True)(
        box_iou(truth, anchors))
    assert match_anchors(truth, anchors, threshold).tolist() == theirs.clamp(min=-1).tolist()


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 30))
def test_offsets_equal_torchvisions_box_coder(seed, n):
    anchors, _ = scene(seed, n)
    boxes, _ = scene(seed + 1, n)
    coder = BoxCoder(OFFSET_WEIGHTS)
    offsets = encode_offsets(anchors, boxes)
    torch.testing.assert_close(offsets, coder.encode_single(boxes, anchors))
    torch.testing.assert_close(decode_offsets(anchors, offsets), boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(decode_offsets(anchors, offsets),
                               coder.decode_single(offsets, anchors), atol=1e-5, rtol=0)


def test_edges():
    anchors = multibox_prior(2, 2, [0.5], [1])
    assert match_anchors(torch.zeros(0, 4), anchors).tolist() == [-1] * 4  # no objects
    far = torch.tensor([[5.0, 5.0, 6.0, 6.0]])                             # overlaps nothing
    assert match_anchors(far, anchors).tolist() == [-1] * 4
    huge = decode_offsets(anchors[:1], torch.tensor([[0.0, 0.0, 1e4, 1e4]]))
    assert torch.isfinite(huge).all()                                      # exp() clipped
    with pytest.raises(ValueError, match="positive"):
        multibox_prior(2, 2, [0.5, -1], [1])
    with pytest.raises(ValueError, match="at least 1 x 1"):
        multibox_prior(0, 2, [0.5], [1])
