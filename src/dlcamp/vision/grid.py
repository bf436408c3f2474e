"""Grid cells as detectors: centre-based target assignment and box coding without anchors.

A one-stage, anchor-free detector (the YOLO-style one of Part 4, `dlcamp.models.yolo`) cuts
the input image into a grid of cells, `stride` pixels apart, and lets every cell predict
"is there an object centred near me, which class, and where is its box". This module holds
the three pieces that are box arithmetic rather than network:

- `grid_centres`: the centre of every cell, in pixels of the input image;
- `encode_boxes` / `decode_boxes`: a box relative to a cell, as YOLOX codes it (Ge et al.,
  2021, "YOLOX: Exceeding YOLO Series in 2021", sec. 2.1): the offset of the box centre from
  the cell centre in strides, and the log of its width and height in strides;
- `assign_centres`: which cell learns which ground-truth box. A cell is positive for a box
  when its centre lies inside the box AND within `radius` strides of the box's centre (the
  "centre sampling" of FCOS, Tian et al., 2019, sec. 3.2 / FCOS v2), and the one cell that
  holds the box centre is always positive (YOLO v1's rule, Redmon et al., 2016, sec. 2), so a
  box smaller than a cell is never lost. A cell claimed by several boxes takes the smallest
  one (FCOS's rule for ambiguous locations).

The assignment is vectorised over the whole batch: one (B, N, M) comparison, no Python loop
over images or boxes. Boxes are corner format (x1, y1, x2, y2) in pixels; ground truth is
padded, `labels` -1 marking padding rows, as `dlcamp.models.detector` says.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# exp() of a log-size is clamped here: log(1000 / 16), torchvision's BoxCoder bound
LOG_SIZE_CLIP = math.log(1000.0 / 16)


def grid_centres(side: int, stride: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Centres of a `side` x `side` grid of cells `stride` px apart: (side*side, 2) (x, y) px.

    Cells are listed row by row (y outer, x inner), the order of `feature.flatten(2)`; cell
    (i, j) has centre ((j + 0.5) * stride, (i + 0.5) * stride). ValueError if side or stride
    is not positive.
    """
    if side < 1 or stride < 1:
        raise ValueError(f"side and stride must be positive, got side={side}, stride={stride}")
    steps = (torch.arange(side, device=device, dtype=dtype) + 0.5) * stride  # (side,)
    ys, xs = torch.meshgrid(steps, steps, indexing="ij")                    # (side, side) each
    return torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1)            # (N, 2)


def encode_boxes(boxes: Tensor, points: Tensor, stride: float) -> Tensor:
    """Boxes relative to cell centres: (..., 4) corner px and (..., 2) points -> (..., 4).

    Returns (dx, dy, tw, th): dx = (cx - px) / stride, dy likewise, tw = log(w / stride),
    th = log(h / stride) (YOLOX's parametrisation). Boxes must have w, h > 0 (log of 0 is -inf).
    """
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)   # (..., 2)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2           # (..., 2)
    return torch.cat(((centre - points) / stride, torch.log(wh / stride)), dim=-1)


def decode_boxes(deltas: Tensor, points: Tensor, stride: float) -> Tensor:
    """The inverse of `encode_boxes`: (..., 4) deltas and (..., 2) points -> (..., 4) corner px.

    Log-sizes are clamped at log(1000/16) before exp(), as torchvision's BoxCoder does, so an
    untrained head cannot overflow.
    """
    centre = points + deltas[..., :2] * stride                         # (..., 2)
    wh = torch.exp(deltas[..., 2:].clamp(max=LOG_SIZE_CLIP)) * stride  # (..., 2)
    return torch.cat((centre - wh / 2, centre + wh / 2), dim=-1)


def assign_centres(points: Tensor, stride: float, boxes: Tensor, labels: Tensor,
                   radius: float = 1.5) -> Tensor:
    """Which ground-truth box each cell learns: (B, N) int64, the box's row in `boxes`, -1 none.

    points (N, 2) cell centres px; boxes (B, M, 4) corner px; labels (B, M), -1 for padding.
    A cell is positive for a box when (inside the box and within `radius` * stride of its
    centre on both axes) or when it is the cell that holds the box's centre; among several
    boxes it takes the one of smallest area. Vectorised over images, cells and boxes at once.
    ValueError on mismatched shapes.
    """
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
        raise ValueError(f"boxes must be (B, M, 4) and labels (B, M), got "
                         f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
    px, py = points[None, :, None, 0], points[None, :, None, 1]        # (1, N, 1) each
    x1, y1, x2, y2 = (boxes[:, None, :, k] for k in range(4))           # (B, 1, M) each
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2                               # (B, 1, M)
    inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)              # (B, N, M)
    reach = radius * stride
    near = ((px - cx).abs() < reach) & ((py - cy).abs() < reach)        # (B, N, M)
    # the cell holding the centre: same integer cell coordinates
    own = (torch.floor(px / stride) == torch.floor(cx / stride)) & \
          (torch.floor(py / stride) == torch.floor(cy / stride))        # (B, N, M)
    candidate = ((inside & near) | own) & (labels[:, None, :] >= 0)    # (B, N, M)
    area = ((x2 - x1) * (y2 - y1)).expand_as(candidate)                # (B, N, M)
    cost = torch.where(candidate, area, torch.full_like(area, math.inf))
    best_cost, best = cost.min(dim=-1) if cost.shape[-1] else (
        cost.new_full(cost.shape[:2], math.inf), cost.new_zeros(cost.shape[:2], dtype=torch.long))
    return torch.where(torch.isfinite(best_cost), best, torch.full_like(best, -1))  # (B, N)
