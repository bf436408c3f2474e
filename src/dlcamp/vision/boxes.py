"""Bounding boxes written out: the two formats, area, IoU and non-maximum suppression.

Part 4's lessons compute these by hand, the way the book does (d2l 14.3 "Object Detection and
Bounding Boxes", 14.4 "Anchor Boxes"); tests/test_boxes.py checks every function against
`torchvision.ops` (box_convert, box_area, box_iou, nms, batched_nms), which the detectors may
call directly where the lesson is not the point.

Boxes are float tensors of shape (..., 4) in pixels:
  corner format (x1, y1, x2, y2): top-left and bottom-right corners (torchvision's "xyxy");
  centre format (cx, cy, w, h): centre, width and height (torchvision's "cxcywh").
A box with x2 < x1 or y2 < y1 is not a box: `box_area` and `box_iou` raise ValueError for it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape (..., 4), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {boxes.dtype}")


def box_corner_to_center(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h); shape (..., 4) kept."""
    _check_boxes(boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_center_to_corner(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2); shape (..., 4) kept."""
    _check_boxes(boxes)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas of corner-format boxes: (..., 4) -> (...). Raises ValueError for a box whose
    corners are swapped (x2 < x1 or y2 < y1); a zero-width box has area 0."""
    _check_boxes(boxes)
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    if bool((w < 0).any() or (h < 0).any()):
        raise ValueError("a box has x2 < x1 or y2 < y1; boxes must be (x1, y1, x2, y2)")
    return w * h


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: (N, 4) and (M, 4) corner boxes -> (N, M).

    IoU = |A ∩ B| / |A ∪ B| (the Jaccard index). Two empty boxes have IoU 0 (not 0/0).
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1, area2 = box_area(boxes1), box_area(boxes2)                  # (N,), (M,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])      # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)        # (N, M)
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny),
                       torch.zeros_like(union))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: the indices of the boxes kept, highest score first.

    boxes (N, 4) corner format, scores (N,). Take the highest-scoring box, drop every other
    box whose IoU with it is above `iou_threshold`, repeat with what is left. The IoU matrix is
    computed once; the loop runs once per *kept* box. Returns int64 indices (K,).
    """
    _check_boxes(boxes)
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])                          # (N, N), sorted
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= iou[i] <= iou_threshold                               # drops i's overlaps
        alive[: i + 1] = False
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each class: boxes of different `labels` (N,) never suppress each other.

    Each class's boxes are moved by their own offset, larger than every coordinate, so that
    boxes of two classes cannot overlap; then one `nms` runs (the trick torchvision uses).
    Returns the kept indices, highest score first.
    """
    _check_boxes(boxes)
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"labels must have shape ({boxes.shape[0]},), got {tuple(labels.shape)}")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes + (labels.to(boxes) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
