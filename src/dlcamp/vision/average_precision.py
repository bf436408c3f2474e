"""Average precision the COCO way, written out: the number `dlcamp evaluate` prints.

The rules are the COCO detection evaluation's, as its reference code implements them
(pycocotools `COCOeval`: `evaluateImg`, `accumulate`, `summarize`; Lin et al. 2014,
"Microsoft COCO: Common Objects in Context", and cocodataset.org "Detection Evaluation"):

1. Per class and per image, detections are sorted by score (highest first, a stable sort) and
   only the first 100 are kept; "100 per image" is per image *and class*, as COCO does it.
2. For each IoU threshold t in 0.50, 0.55, ..., 0.95, each detection in turn takes the
   ground-truth box of its class with the highest IoU >= t that no earlier detection took
   (ties: the later box). Taken: a true positive. Left without one: a false positive, so a
   duplicate of an already found object counts against the detector.
3. Over all images, one class's detections are sorted by score again; running counts give
   precision TP/(TP+FP) and recall TP/(number of ground-truth boxes). Precision is made
   monotone (each point takes the best precision at any higher recall) and read at the
   101 recalls 0, 0.01, ..., 1 (the first detection reaching that recall; 0 where none does).
   AP = the mean of those 101 values: "101-point interpolated AP".
4. mAP@[.5:.95] ("map") is the mean of AP over classes and the ten thresholds; map_50 and
   map_75 use one threshold. A class with no ground-truth box has no AP (-1 in the per-class
   list) and is left out of the means, as COCO leaves it out.

Object sizes. COCO also reports AP for small (area <= 32^2 px), medium (32^2..96^2) and large
(>= 96^2) objects. A ground-truth box outside the range is not removed but *ignored*: a
detection matched to it counts neither way, and so does an unmatched detection outside the
range. pycocotools takes a ground truth's area from its `area` field (for COCO itself that is
the area of the segmentation mask, not of the box) and a detection's area as box width x
height; torchmetrics and this module use a target's optional `area` where it is > 0 and the
box's w x h otherwise. "map", "map_50", "map_75" and the per-class AP use the range "all".

Inputs are torchmetrics' (`MeanAveragePrecision`): one dict per image, predictions with
`boxes` (K, 4) corner format (x1, y1, x2, y2) in pixels, `scores` (K,), `labels` (K,) int;
targets with `boxes` (M, 4), `labels` (M,) and optionally `area` (M,). Crowd annotations
("iscrowd") are not supported. The output has torchmetrics' keys (class_metrics=True) and
equals it with the pycocotools backend (tests/test_average_precision.py). IoU is computed in
float64 from the corners; pycocotools gets (x, y, w, h) from torchmetrics with w, h rounded in
float32, so on arbitrary float32 boxes an IoU within ~1e-7 of a threshold can fall either way.

torchmetrics' defaults are `torch.linspace` in float32 (0.55 becomes 0.5500000119...); ours are
pycocotools' own `np.linspace` values. Pass theirs (`metric.iou_thresholds`,
`metric.rec_thresholds`) to reproduce its default exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from dlcamp.core.errors import BadArgument
from dlcamp.vision.boxes import box_iou

COCO_IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())      # 0.50:0.05:0.95
COCO_RECALL_THRESHOLDS = tuple(np.linspace(0.0, 1.0, 101).tolist())   # 0:0.01:1
COCO_MAX_DETECTIONS = (1, 10, 100)                                    # per image and class
COCO_AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2),
                    "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}  # px^2, inclusive
_EPS = float(np.spacing(1))  # pycocotools' guard in TP / (TP + FP + eps)


def match_detections(iou: Tensor, iou_thresholds: Sequence[float],
                     gt_ignore: Tensor | None = None) -> Tensor:
    """COCO's greedy matching for one image and class, at every threshold at once.

    iou (D, G): detections sorted by score, highest first, against ground-truth boxes.
    iou_thresholds (T,). gt_ignore (G,) or (A, G) bool: boxes that are ignored (outside an
    area range); a detection takes an ignored box only if no other box qualifies.
    Returns int64 (T, D), or (A, T, D) for a 2-D gt_ignore: the index of the box each
    detection took, or -1 (a false positive). The loop runs over detections (each depends on
    what the ones before it took); thresholds, area ranges and boxes are vectorised.
    """
    if iou.dim() != 2:
        raise BadArgument(f"iou must be (detections, boxes), got shape {tuple(iou.shape)}")
    n_det, n_gt = iou.shape
    squeeze = gt_ignore is None or gt_ignore.dim() == 1
    if gt_ignore is None:
        gt_ignore = torch.zeros(n_gt, dtype=torch.bool)
    if gt_ignore.shape[-1:] != (n_gt,) or gt_ignore.dim() > 2:
        raise BadArgument(f"gt_ignore must be ({n_gt},) or (A, {n_gt}), got "
                          f"{tuple(gt_ignore.shape)}")
    ignore = gt_ignore.detach().cpu().bool().numpy()
    ignore = ignore[None] if squeeze else ignore                                    # (A, G)
    thr = np.minimum(np.asarray(iou_thresholds, dtype=np.float64), 1 - 1e-10)       # (T,)
    matches = np.full((len(ignore), len(thr), n_det), -1, dtype=np.int64)           # (A, T, D)
    free = np.ones((len(ignore), len(thr), n_gt), dtype=bool)                      # (A, T, G)
    ious = iou.detach().cpu().double().numpy()
    for d in range(n_det if n_gt else 0):
        row = ious[d]                                                              # (G,)
        if row.max() < thr.min():
            continue                                                               # no match
        ok = free & (row >= thr[:, None])                                          # (A, T, G)
        real = ok & ~ignore[:, None, :]
        ok = np.where(real.any(-1, keepdims=True), real, ok)   # a real box beats an ignored one
        best = n_gt - 1 - np.where(ok, row, -1.0)[..., ::-1].argmax(-1)            # last of ties
        taken = ok.any(-1)                                                         # (A, T)
        matches[..., d] = np.where(taken, best, -1)
        a, t = np.nonzero(taken)
        free[a, t, best[a, t]] = False
    out = torch.from_numpy(matches)
    return out[0] if squeeze else out


def interpolated_precision(matched: Tensor, ignored: Tensor, num_gt: Tensor | int,
                           rec_thresholds: Sequence[float] = COCO_RECALL_THRESHOLDS
                           ) -> tuple[Tensor, Tensor]:
    """Precision read at fixed recalls, from detections already sorted by score.

    matched, ignored (..., N) bool: each detection found an object / counts neither way.
    num_gt: the number of (not ignored) ground-truth boxes, an int or shaped like (...,).
    Returns (precision (..., R), final recall (...,)), float64. Precision is TP/(TP+FP)
    made monotone (its running maximum from the right); at recall r it is the precision of the
    first detection whose recall reaches r, 0 where no detection does. AP = its mean.
    """
    matched, ignored = matched.bool(), ignored.bool()
    counts = ~ignored
    tp = (matched & counts).double().cumsum(-1)                                    # (..., N)
    fp = (~matched & counts).double().cumsum(-1)
    n_gt = torch.as_tensor(num_gt, dtype=torch.float64)[..., None]
    recall = tp / n_gt                                                             # (..., N)
    precision = tp / (fp + tp + _EPS)
    precision = precision.flip(-1).cummax(-1).values.flip(-1)                      # monotone
    thr = torch.tensor(rec_thresholds, dtype=torch.float64)
    n = matched.shape[-1]
    if n == 0:
        shape = matched.shape[:-1]
        return torch.zeros(*shape, len(thr), dtype=torch.float64), torch.zeros(shape).double()
    idx = torch.searchsorted(recall.contiguous(), thr.expand(*recall.shape[:-1], -1).contiguous(),
                             side="left")                                          # (..., R)
    at = precision.gather(-1, idx.clamp(max=n - 1))
    return torch.where(idx < n, at, torch.zeros_like(at)), recall[..., -1]


def _image(item: Mapping[str, Tensor], i: int, what: str) -> dict[str, Tensor]:
    keys = ("boxes", "scores", "labels") if what == "preds" else ("boxes", "labels")
    missing = [k for k in keys if k not in item]
    if missing:
        raise BadArgument(f"{what}[{i}] has no {missing}: give a dict with keys {keys}")
    boxes = torch.as_tensor(item["boxes"]).detach().cpu().double().reshape(-1, 4)  # (K, 4)
    labels = torch.as_tensor(item["labels"]).detach().cpu()
    if labels.is_floating_point() or labels.shape != (len(boxes),):
        raise BadArgument(f"{what}[{i}]['labels'] must be {len(boxes)} integers, one per box")
    if bool(((boxes[:, 2:] - boxes[:, :2]) < 0).any()):
        raise BadArgument(f"{what}[{i}] has a box with x2 < x1 or y2 < y1; "
                          "boxes must be corner format (x1, y1, x2, y2)")
    out = {"boxes": boxes, "labels": labels.long()}
    wh_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])          # (K,)
    if what == "preds":
        out["scores"] = torch.as_tensor(item["scores"]).detach().cpu().double()
        if out["scores"].shape != (len(boxes),):
            raise BadArgument(f"preds[{i}]['scores'] must have shape ({len(boxes)},)")
        out["area"] = wh_area
    else:
        if "iscrowd" in item and bool(torch.as_tensor(item["iscrowd"]).any()):
            raise BadArgument(f"targets[{i}] has crowd boxes (iscrowd=1), which are not "
                              "supported: drop them or use torchmetrics' MeanAveragePrecision")
        area = torch.as_tensor(item.get("area", torch.zeros(len(boxes)))).cpu().double()
        out["area"] = torch.where(area > 0, area, wh_area)
    return out


def _outside(area: Tensor, ranges: Tensor) -> Tensor:
    """(N,) areas, (A, 2) ranges -> (A, N): outside the range (the ends count as inside)."""
    return (area < ranges[:, :1]) | (area > ranges[:, 1:])


def _evaluate_image(pred: dict[str, Tensor], target: dict[str, Tensor], label: int,
                    iou_thresholds: Sequence[float]) -> dict[str, Tensor] | None:
    """One image, one class: scores (D,), matched/ignored (A, T, D), boxes counted (A,).
    `pred` carries the image's IoU matrix and both `outside` masks (all classes)."""
    det = torch.nonzero(pred["labels"] == label).flatten()
    det = det[torch.sort(pred["scores"][det], descending=True, stable=True).indices]
    det = det[:COCO_MAX_DETECTIONS[-1]]                                  # the top 100, by score
    gt = torch.nonzero(target["labels"] == label).flatten()
    if len(det) == 0 and len(gt) == 0:
        return None
    gt_ignore = target["outside"][:, gt]                                 # (A, G)
    match = match_detections(pred["iou"][det][:, gt], iou_thresholds, gt_ignore)  # (A, T, D)
    matched = match >= 0
    took_ignored = torch.zeros_like(matched) if len(gt) == 0 else torch.gather(
        gt_ignore[:, None, :].expand(-1, match.shape[1], -1), 2, match.clamp(min=0)) & matched
    ignored = took_ignored | (~matched & pred["outside"][:, None, det])    # (A, T, D)
    return {"scores": pred["scores"][det], "matched": matched, "ignored": ignored,
            "num_gt": (~gt_ignore).sum(-1)}


def _mean(values: Tensor) -> Tensor:
    """COCO's summary: the mean of the entries that exist (> -1), or -1 if none does."""
    valid = values[values > -1]
    return valid.mean() if len(valid) else torch.tensor(-1.0, dtype=torch.float64)


def mean_average_precision(preds: Sequence[Mapping[str, Tensor]],
                           targets: Sequence[Mapping[str, Tensor]],
                           iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
                           rec_thresholds: Sequence[float] = COCO_RECALL_THRESHOLDS
                           ) -> dict[str, Tensor]:
    """COCO mAP of detections against ground truth, one dict per image (see the module doc).

    Returns float64 0-d tensors "map" (mAP@[.5:.95]), "map_50", "map_75", "map_small",
    "map_medium", "map_large", "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium",
    "mar_large" (mean recall with at most 1/10/100 detections per image and class);
    "classes" (K,) int64 (every label in preds or targets, sorted), "map_per_class" and
    "mar_100_per_class" (K,) (-1 for a class with no ground truth); "precision"
    (T, R, K, A, M) and "recall" (T, K, A, M) as pycocotools' `eval` holds them (A: all, small,
    medium, large; M: 1, 10, 100 detections), -1 where a class has no ground truth in range.
    map_50 / map_75 are -1 when 0.5 / 0.75 is not among `iou_thresholds`. Raises BadArgument
    for mismatched lists, missing keys, wrong shapes or swapped corners.
    """
    if len(preds) != len(targets):
        raise BadArgument(f"got {len(preds)} prediction dicts but {len(targets)} target dicts; "
                          "give one of each per image")
    preds = [_image(p, i, "preds") for i, p in enumerate(preds)]
    targets = [_image(t, i, "targets") for i, t in enumerate(targets)]
    labels = [x["labels"] for x in (*preds, *targets)]
    classes = torch.cat(labels).unique() if labels else torch.zeros(0, dtype=torch.long)
    ranges = torch.tensor(list(COCO_AREA_RANGES.values()), dtype=torch.float64)    # (A, 2)
    n_t, n_r, n_k, n_a, n_m = (len(iou_thresholds), len(rec_thresholds), len(classes),
                               len(ranges), len(COCO_MAX_DETECTIONS))
    for p, t in zip(preds, targets, strict=True):                       # once per image
        p["iou"] = box_iou(p["boxes"], t["boxes"])                      # (D, G), every class
        p["outside"], t["outside"] = _outside(p["area"], ranges), _outside(t["area"], ranges)
    precision = -torch.ones(n_t, n_r, n_k, n_a, n_m, dtype=torch.float64)
    recall = -torch.ones(n_t, n_k, n_a, n_m, dtype=torch.float64)
    for k, label in enumerate(classes.tolist()):
        evals = [e for p, t in zip(preds, targets, strict=True)
                 if (e := _evaluate_image(p, t, label, iou_thresholds)) is not None]
        if not evals:
            continue
        num_gt = torch.stack([e["num_gt"] for e in evals]).sum(0)                  # (A,)
        for m, max_det in enumerate(COCO_MAX_DETECTIONS):
            scores = torch.cat([e["scores"][:max_det] for e in evals])             # (N,)
            order = torch.sort(scores, descending=True, stable=True).indices
            matched = torch.cat([e["matched"][..., :max_det] for e in evals], -1)[..., order]
            ignored = torch.cat([e["ignored"][..., :max_det] for e in evals], -1)[..., order]
            prec, rec = interpolated_precision(matched, ignored, num_gt[:, None],
                                               rec_thresholds)                     # (A, T, R)
            has_gt = num_gt > 0                                                    # (A,)
            precision[:, :, k, has_gt, m] = prec[has_gt].permute(1, 2, 0)
            recall[:, k, has_gt, m] = rec[has_gt].T
    return _summarize(precision, recall, classes, iou_thresholds)


def _summarize(precision: Tensor, recall: Tensor, classes: Tensor,
               iou_thresholds: Sequence[float]) -> dict[str, Tensor]:
    """pycocotools' `summarize`: the twelve numbers, plus AP and AR per class."""
    at = {name: i for i, name in enumerate(COCO_AREA_RANGES)}
    last = len(COCO_MAX_DETECTIONS) - 1
    thr = list(iou_thresholds)
    result = {
        "map": _mean(precision[..., at["all"], last]),
        "map_50": _mean(precision[[i for i, t in enumerate(thr) if t == 0.5], ..., 0, last]),
        "map_75": _mean(precision[[i for i, t in enumerate(thr) if t == 0.75], ..., 0, last]),
    }
    for size in ("small", "medium", "large"):
        result[f"map_{size}"] = _mean(precision[..., at[size], last])
    for m, max_det in enumerate(COCO_MAX_DETECTIONS):
        result[f"mar_{max_det}"] = _mean(recall[..., at["all"], m])
    for size in ("small", "medium", "large"):
        result[f"mar_{size}"] = _mean(recall[..., at[size], last])
    n_k = len(classes)
    result["map_per_class"] = torch.stack([_mean(precision[:, :, k, 0, last])
                                           for k in range(n_k)]) if n_k else torch.zeros(0)
    result["mar_100_per_class"] = torch.stack([_mean(recall[:, k, 0, last])
                                               for k in range(n_k)]) if n_k else torch.zeros(0)
    result.update(classes=classes, precision=precision, recall=recall)
    return result
