"""Anchor boxes: generating them, matching them to ground truth, and their offsets.

The book's way (d2l 14.4 "Anchor Boxes"): every pixel of a feature map is the centre of
n + m - 1 anchors, for sizes s_1..s_n (fractions of the image) and aspect ratios r_1..r_m
(width / height): all sizes with r_1, and s_1 with every other ratio. An anchor learns the
*offset* from itself to the object it is matched with; the offsets are the ones Faster R-CNN
uses (Ren et al. 2015, eq. 2), scaled by (10, 10, 5, 5) as in the book and in torchvision's
detection models.

Matching is vectorised (no loop over anchors or boxes): each anchor takes the ground-truth box
it overlaps most if that IoU reaches the threshold, and every ground-truth box also claims the
anchors that overlap it most, so no object is left without an anchor. This is torchvision's
`Matcher(t, t, allow_low_quality_matches=True)` rule; the book's greedy version (take the
largest IoU, strike out its row and column, repeat) is shown in the lesson and agrees with it
except when two boxes want the same anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dlcamp.vision.boxes import box_center_to_corner, box_corner_to_center, box_iou

OFFSET_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the book's 0.1 and 0.2 "variances", inverted
MAX_LOG_SCALE = math.log(1000.0 / 16)    # torchvision's clip on exp() when decoding


def multibox_prior(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float],
                   device: torch.device | str = "cpu") -> Tensor:
    """Anchors centred on every pixel of a height x width feature map, in corner format with
    coordinates in [0, 1] (fractions of the width and height).

    Returns (height * width * (len(sizes) + len(ratios) - 1), 4): the anchors of pixel (0, 0)
    first, then (0, 1), ... For size s and ratio r the anchor is s * sqrt(r) * height / width
    wide and s / sqrt(r) high (fractions), so that r = 1 gives a square in pixels.
    Raises ValueError for an empty or non-positive size or ratio list.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the feature map must be at least 1 x 1, got {height} x {width}")
    if not sizes or not ratios or min(sizes) <= 0 or min(ratios) <= 0:
        raise ValueError(f"sizes and ratios must be non-empty and positive, got {sizes}, {ratios}")
    size = torch.tensor([*sizes, *[sizes[0]] * (len(ratios) - 1)], device=device)
    ratio = torch.tensor([*[ratios[0]] * len(sizes), *ratios[1:]], device=device)
    w = size * ratio.sqrt() * height / width                             # (k,) fractions
    h = size / ratio.sqrt()                                              # (k,)
    cy = (torch.arange(height, device=device) + 0.5) / height            # (H,)
    cx = (torch.arange(width, device=device) + 0.5) / width              # (W,)
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")                       # (H, W) each
    centres = torch.stack((cx, cy), dim=-1).reshape(-1, 1, 2)            # (H*W, 1, 2)
    half = torch.stack((w, h), dim=-1)[None] / 2                         # (1, k, 2)
    return torch.cat((centres - half, centres + half), dim=-1).reshape(-1, 4)


def match_anchors(ground_truth: Tensor, anchors: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """For each anchor, the index of its ground-truth box, or -1 (background).

    ground_truth (G, 4), anchors (A, 4), corner format, same units -> (A,) int64. An anchor
    whose best IoU reaches `iou_threshold` takes that box; every box with some overlap also
    takes the anchors it overlaps most (ties included), each of which then points at its own
    best box. No ground truth: every anchor is background.
    """
    matches = torch.full((len(anchors),), -1, dtype=torch.long, device=anchors.device)
    if len(ground_truth) == 0 or len(anchors) == 0:
        return matches
    iou = box_iou(ground_truth, anchors)                                 # (G, A)
    best_iou, best_box = iou.max(dim=0)                                  # (A,), (A,)
    matches = torch.where(best_iou >= iou_threshold, best_box, matches)
    best_per_box = iou.max(dim=1, keepdim=True).values                   # (G, 1)
    claimed = ((iou == best_per_box) & (best_per_box > 0)).any(dim=0)    # (A,)
    return torch.where(claimed, best_box, matches)


def encode_offsets(anchors: Tensor, boxes: Tensor,
                   weights: Sequence[float] = OFFSET_WEIGHTS) -> Tensor:
    """The offsets that move each anchor onto its box: (N, 4) and (N, 4) corners -> (N, 4).

    (wx * (x_box - x_anc) / w_anc, wy * (y_box - y_anc) / h_anc, ww * log(w_box / w_anc),
    wh * log(h_box / h_anc)), with centres x, y and sizes w, h. Boxes of zero width or height
    give -inf: match only real boxes.
    """
    a, b = box_corner_to_center(anchors), box_corner_to_center(boxes)
    wx, wy, ww, wh = weights
    xy = (b[:, :2] - a[:, :2]) / a[:, 2:] * torch.tensor([wx, wy], dtype=a.dtype,
                                                          device=a.device)
    size = torch.log(b[:, 2:] / a[:, 2:]) * torch.tensor([ww, wh], dtype=a.dtype,
                                                         device=a.device)
    return torch.cat((xy, size), dim=1)


def decode_offsets(anchors: Tensor, offsets: Tensor,
                   weights: Sequence[float] = OFFSET_WEIGHTS) -> Tensor:
    """The boxes that `offsets` (N, 4) make of `anchors` (N, 4): the inverse of
    `encode_offsets`, with the log-scales clipped at log(1000/16) so that an untrained
    network cannot ask for an overflowing exp(). Returns (N, 4) corners."""
    a = box_corner_to_center(anchors)
    w = torch.tensor(weights, dtype=offsets.dtype, device=offsets.device)
    d = offsets / w
    xy = a[:, :2] + d[:, :2] * a[:, 2:]
    size = a[:, 2:] * torch.exp(d[:, 2:].clamp(max=MAX_LOG_SCALE))
    return box_center_to_corner(torch.cat((xy, size), dim=1))


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair within each image: (B, N, 4) and (N2, 4) or (B, N2, 4) corners ->
    (B, N, N2). Degenerate boxes (zero area, such as padding) have IoU 0 with everything;
    nothing is checked, so that a training step never waits on a device sync."""
    boxes2 = boxes2.expand(len(boxes1), *boxes2.shape[-2:]) if boxes2.dim() == 2 else boxes2
    area1 = ((boxes1[..., 2] - boxes1[..., 0]).clamp(min=0)
             * (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0))               # (B, N)
    area2 = ((boxes2[..., 2] - boxes2[..., 0]).clamp(min=0)
             * (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0))               # (B, N2)
    top_left = torch.max(boxes1[:, :, None, :2], boxes2[:, None, :, :2])     # (B, N, N2, 2)
    bottom_right = torch.min(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)              # (B, N, N2)
    union = area1[:, :, None] + area2[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny),
                       torch.zeros_like(union))


def match_anchors_batched(boxes: Tensor, labels: Tensor, anchors: Tensor,
                          iou_threshold: float = 0.5) -> Tensor:
    """`match_anchors` for a whole padded batch at once, with no loop over images.

    boxes (B, M, 4) and anchors (A, 4) corner format in the same units, labels (B, M) int64
    with -1 marking padding rows -> (B, A) int64: the index (into M) of each anchor's box, or
    -1 (background). Row b equals `match_anchors(boxes[b][labels[b] >= 0], anchors)` with its
    indices mapped back to M (tests/test_detection.py checks this).
    """
    valid = labels >= 0                                                      # (B, M)
    iou = batched_box_iou(boxes, anchors)                                    # (B, M, A)
    iou = torch.where(valid[:, :, None], iou, torch.full_like(iou, -1.0))    # padding never wins
    best_iou, best_box = iou.max(dim=1)                                      # (B, A) each
    none = torch.full_like(best_box, -1)
    matches = torch.where(best_iou >= iou_threshold, best_box, none)
    best_per_box = iou.max(dim=2, keepdim=True).values                       # (B, M, 1)
    claimed = ((iou == best_per_box) & (best_per_box > 0)).any(dim=1)       # (B, A)
    return torch.where(claimed, best_box, matches)


def multibox_target(anchors: Tensor, boxes: Tensor, labels: Tensor, iou_threshold: float = 0.5,
                    weights: Sequence[float] = OFFSET_WEIGHTS) -> tuple[Tensor, Tensor, Tensor]:
    """Label every anchor of every image of a batch: the book's `multibox_target` (d2l 14.4),
    vectorised over the batch.

    anchors (A, 4), boxes (B, M, 4) in the same units, labels (B, M) int64 (-1: padding) ->
    (offsets (B, A, 4): `encode_offsets` from each anchor to its box, 0 for background;
    mask (B, A, 4) float: 1 where the anchor has an object; classes (B, A) int64: the matched
    box's label + 1, 0 for background).
    """
    matches = match_anchors_batched(boxes, labels, anchors, iou_threshold)  # (B, A)
    positive = matches >= 0
    index = matches.clamp(min=0)                                            # (B, A)
    matched = boxes.gather(1, index[..., None].expand(-1, -1, 4))           # (B, A, 4)
    classes = torch.where(positive, labels.gather(1, index) + 1, torch.zeros_like(index))
    b, a = matches.shape
    # background anchors get their own box as target (offset 0), so log() stays finite
    target = torch.where(positive[..., None], matched, anchors.expand(b, a, 4))
    offsets = encode_offsets(anchors.expand(b, a, 4).reshape(-1, 4), target.reshape(-1, 4),
                             weights).reshape(b, a, 4)
    mask = positive[..., None].expand(b, a, 4).to(offsets.dtype)
    return offsets * mask, mask, classes
