"""Covariate shift at the hackathon (Part 5): measure the gap, find where it comes from, cure it.

A team's detector scores well on its own validation photos and worse on the organisers' test
set shot elsewhere. On the synthetic camp the in-domain `test` split plays the team's
validation photos and the `shift` split the organisers' (vision/scene_sets.py: other
backgrounds, smaller objects, darker, blurrier, noisier). The lesson (lessons/part5/02) and
bench/hackathon.py share these helpers:

    found = predict(model, shift)                       # detections per image
    scores = map_scores(found, shift)                   # {'map', 'map_50', 'map_75'}
    by_condition(found, shift, "scale_bucket")          # {'small': {...}, 'medium': {...}}
    worst_errors(found, shift, k=6)                     # the surest false positives, the
                                                        # objects missed worst
    trainer = train_detector(data, 300, augment=SHIFT_AUGMENT.with_boxes)   # cure 1
    wider = varied_scenes("fruit-1", 200)               # cure 2: photos in more conditions
    found_tta = predict(model, shift, tta="fuse")       # cure 3: flip test-time augmentation

Boxes are corner pixels; detections are `dlcamp.models.detector.Detections`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from dlcamp.core.errors import BadArgument
from dlcamp.data.detection import DetectionSet
from dlcamp.models.detector import Detections, Detector, detect_flip_tta, mirror_boxes
from dlcamp.vision.augment import (
    BatchAugment,
    add_noise,
    adjust_gamma,
    gaussian_blur,
    sample_uniform,
    sample_zooms,
    zoom_out,
    zoom_out_boxes,
)
from dlcamp.vision.scene_sets import build_split, get_scene_set

VARIED_SEED = 700  # varied scenes draw from their own seeds, never the images of a split
SCORE_THRESHOLD, MAX_DETECTIONS = 0.01, 100  # as the Detection task evaluates


# -- cure 1: augmentation aimed at the shift ---------------------------------------------------
@dataclass(frozen=True)
class ShiftAugment:
    """Flip and colour jitter (`BatchAugment`), then what another room and camera do, each
    image its own draw: with probability `zoom_p` a zoom-out by a factor in `zoom` (objects
    get smaller; the canvas is filled with the image's mean colour), a gamma in `gamma`,
    a Gaussian blur of sigma in `blur` px and noise of sigma in `noise` (fraction of the pixel
    range). None switches a step off. Pixels are float in [0, `bound`].
    `with_boxes` has DetectionLoader's `BoxAugment` signature."""

    flip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    zoom: tuple[float, float] | None = (0.5, 1.0)
    zoom_p: float = 0.5
    gamma: tuple[float, float] | None = (0.8, 1.4)
    blur: tuple[float, float] | None = (0.0, 1.2)
    noise: tuple[float, float] | None = (0.0, 0.04)
    bound: float = 255.0

    def __post_init__(self) -> None:  # refuse bad settings when built
        BatchAugment(self.flip, brightness=self.brightness, contrast=self.contrast,
                     saturation=self.saturation, bound=self.bound)
        if self.zoom is not None:
            sample_zooms(0, 1, 1, self.zoom)
        if not 0 <= self.zoom_p <= 1:
            raise BadArgument(f"zoom_p is a probability in [0, 1], got {self.zoom_p}")
        for name in ("gamma", "blur", "noise"):
            value = getattr(self, name)
            if value is not None and (value[0] < 0 or value[0] > value[1]):
                raise BadArgument(f"{name} must be a range 0 <= low <= high, got {value}")

    def with_boxes(self, images: Tensor, boxes: Tensor, labels: Tensor,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, C, H, W) float, boxes (B, M, 4) corner px, labels (B, M) (-1 padding)
        -> the same, augmented; the boxes move with the pixels."""
        colour = BatchAugment(self.flip, brightness=self.brightness, contrast=self.contrast,
                              saturation=self.saturation, bound=self.bound)
        images, boxes, labels = colour.with_boxes(images, boxes, labels, generator)
        b, _, height, width = images.shape
        if self.zoom is not None:
            zooms = sample_zooms(b, height, width, self.zoom, generator)     # (B, 3)
            skip = sample_uniform(b, (0.0, 1.0), generator) >= self.zoom_p   # (B,)
            zooms[skip] = torch.tensor([1.0, 0.0, 0.0])
            images = zoom_out(images, zooms, images.mean(dim=(2, 3)))
            boxes = zoom_out_boxes(boxes, labels, zooms)
        if self.gamma is not None:
            images = adjust_gamma(images, sample_uniform(b, self.gamma, generator), self.bound)
        if self.blur is not None:
            images = gaussian_blur(images, sample_uniform(b, self.blur, generator))
        if self.noise is not None:
            images = add_noise(images, sample_uniform(b, self.noise, generator), self.bound,
                               generator)
        return images, boxes, labels


SHIFT_AUGMENT = ShiftAugment()


# -- cure 2: photos in more conditions ---------------------------------------------------------
WIDER = dict(scale=(0.2, 0.6), brightness=(-0.15, 0.08), contrast=(0.65, 1.15),
             gamma=(0.85, 1.4), gradient=0.4, blur=(0.0, 1.2), noise=(0.0, 0.04))


def varied_scenes(name: str, n: int, seed: int = 0) -> DetectionSet:
    """n scenes of set `name`'s *train* instances on its in-domain backgrounds, shot in more
    conditions than the train split: near and far (objects 0.2-0.6 of the image), bright and
    dim, soft and harsh light, steady and shaky hands (`WIDER`), as a team that follows the
    checklist of lesson 5.01 does. The organisers' backgrounds stay unseen. Drawn from seeds
    no split uses. BadArgument if n < 1; UnknownName for an unknown set."""
    spec = get_scene_set(name)
    if n < 1:
        raise BadArgument(f"varied_scenes needs n >= 1, got {n}")
    wide = replace(spec, name=f"{name}-varied", config=replace(spec.config, **WIDER),
                   seed=spec.seed * 1000 + VARIED_SEED + seed)
    data = build_split(wide, "train", n)
    data.name = wide.name
    return data


# -- cure 3: flip test-time augmentation, and predictions --------------------------------------
def flip_tta(model: Detector, images: Tensor, merge: str = "fuse",
             score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = 0.5,
             max_detections: int = MAX_DETECTIONS) -> Detections:
    """Flip test-time augmentation on images (B, 3, H, W) (normalised): detect on the images
    and on their mirrors, mirror those boxes back, merge the two views. merge "nms": per-class
    NMS keeps the best box of each object (`models.detector.detect_flip_tta`); "fuse":
    `fuse_views` averages the two views' boxes and scores. BadArgument for another merge."""
    if merge == "nms":
        return detect_flip_tta(model, images, score_threshold, iou_threshold, max_detections)
    if merge != "fuse":
        raise BadArgument(f"merge must be 'nms' or 'fuse', got {merge!r}")
    batch, width = len(images), float(images.shape[-1])
    found = model.detect(model(torch.cat((images, images.flip(-1)))), score_threshold,
                         iou_threshold, max_detections)                 # 2B images
    out = []
    for plain, mirrored in zip(found[:batch], found[batch:], strict=True):
        back = {**mirrored, "boxes": mirror_boxes(mirrored["boxes"], width)}
        out.append(fuse_views([plain, back], iou_threshold, max_detections))
    return out


def fuse_views(views: Detections, iou_threshold: float = 0.5,
               max_detections: int = MAX_DETECTIONS) -> dict[str, Tensor]:
    """Merge one image's detections from V views (boxes in the same frame): per-class NMS
    picks the clusters; each kept box becomes the score-weighted mean of the boxes of its
    class overlapping it by IoU >= `iou_threshold`, and its score the mean over the views of
    each view's best score in the cluster (0 for a view that missed it): an object seen in
    every view keeps its score, one seen in a single view loses (V - 1) / V of it (the idea
    of weighted boxes fusion, Solovyev et al. 2021). Returns boxes (K, 4), scores (K,),
    labels (K,), best first."""
    boxes = torch.cat([v["boxes"].float() for v in views])              # (D, 4)
    scores = torch.cat([v["scores"] for v in views])                    # (D,)
    labels = torch.cat([v["labels"] for v in views])
    view = torch.cat([torch.full((len(v["scores"]),), k, device=scores.device)
                      for k, v in enumerate(views)])
    if len(scores) == 0:
        return {"boxes": boxes, "scores": scores, "labels": labels}
    keep = batched_nms(boxes, scores, labels, iou_threshold)            # (K,)
    member = (box_iou(boxes[keep], boxes) >= iou_threshold) & (
        labels[keep][:, None] == labels[None, :])                       # (K, D)
    weight = member * scores[None, :]                                   # (K, D)
    fused = weight @ boxes / weight.sum(1, keepdim=True)                # (K, 4)
    best = torch.stack([torch.where(view[None, :] == k, weight, 0.0).amax(1)
                        for k in range(len(views))], 1)                 # (K, V)
    fused_scores = best.mean(1)
    order = fused_scores.argsort(descending=True)[:max_detections]
    return {"boxes": fused[order], "scores": fused_scores[order], "labels": labels[keep][order]}


@torch.no_grad()
def predict(model: Detector, data: DetectionSet, tta: str | None = None, batch_size: int = 64
            ) -> Detections:
    """The model's detections on every image of `data` (score >= 0.01, at most 100, as
    `dlcamp evaluate` keeps them); `tta` "nms" or "fuse" adds flip test-time augmentation
    (`flip_tta`). One dict per image, on the CPU."""
    from dlcamp.data.detection_loader import DetectionLoader

    model.eval()
    device = next(model.parameters()).device
    loader = DetectionLoader(data, batch_size, device=device, normalize=model.normalize)
    found: Detections = []
    for images, _, _ in loader:
        batch = (flip_tta(model, images, tta) if tta else
                 model.detect(model(images), SCORE_THRESHOLD, max_detections=MAX_DETECTIONS))
        found += [{k: v.cpu() for k, v in d.items()} for d in batch]
    return found


def _truth(data: DetectionSet, i: int) -> dict[str, Tensor]:
    t = data.targets(i)
    return {"boxes": t["boxes"].float(), "labels": t["labels"].long()}


def map_scores(found: Detections, data: DetectionSet,
               index: list[int] | None = None) -> dict[str, float]:
    """COCO mAP@[.5:.95] ("map"), mAP@0.5 ("map_50"), mAP@0.75 ("map_75") of detections
    `found` (one per image of `data`) on the images `index` (default all): torchmetrics
    MeanAveragePrecision, pycocotools backend, as `dlcamp evaluate` computes them."""
    from torchmetrics.detection import MeanAveragePrecision

    if len(found) != len(data):
        raise BadArgument(f"{len(found)} detections for {len(data)} images")
    index = list(range(len(data))) if index is None else index
    metric = MeanAveragePrecision(backend="pycocotools", box_format="xyxy")
    metric.update([found[i] for i in index], [_truth(data, i) for i in index])
    with warnings.catch_warnings():  # an empty group
        warnings.simplefilter("ignore")
        result = metric.compute()
    return {k: max(float(result[k]), 0.0) for k in ("map", "map_50", "map_75")}


# -- where the gap comes from ------------------------------------------------------------------
def condition_values(data: DetectionSet, key: str, bins: int = 3) -> list[Any]:
    """Each image's value of condition `key`, numbers cut into `bins` groups of equal size
    ("0.61-0.87" labels); "style" (photo or clip-art, from the instances) is derived.
    BadArgument names the conditions there are when `key` is not one."""
    if key == "style" and "instances" in data.conditions:
        return ["clip-art" if "/cartoon/" in v else "photo" for v in data.conditions["instances"]]
    if key not in data.conditions:
        raise BadArgument(f"{data.name or 'the set'} has no condition {key!r}; it has "
                          f"{', '.join(sorted(data.conditions)) or 'none'}")
    values = data.conditions[key]
    if not values or not all(isinstance(v, int | float) for v in values):
        return list(values)
    order = sorted(range(len(values)), key=lambda i: values[i])
    labels: list[Any] = [None] * len(values)
    for g in range(bins):
        part = order[g * len(order) // bins:(g + 1) * len(order) // bins]
        for i in part:
            labels[i] = f"{values[part[0]]:.2f}-{values[part[-1]]:.2f}"
    return labels


def by_condition(found: Detections, data: DetectionSet, key: str, bins: int = 3
                 ) -> dict[Any, dict[str, float]]:
    """mAP (`map_scores`) per value of condition `key` (see `condition_values`), each with
    "images"; numeric bins from low to high, names sorted."""
    values = condition_values(data, key, bins)
    raw = data.conditions.get(key, values)
    first = {}  # each group's smallest raw value: numeric bins in their order, names sorted
    for v, r in zip(values, raw, strict=True):
        first[v] = min(first.get(v, r), r) if isinstance(r, int | float) else v
    out = {}
    for value in sorted(first, key=lambda v: (str(type(first[v])), first[v])):
        index = [i for i, v in enumerate(values) if v == value]
        out[value] = {"images": len(index), **map_scores(found, data, index)}
    return out


def worst_errors(found: Detections, data: DetectionSet, k: int = 6, iou: float = 0.5
                 ) -> dict[str, list[dict[str, Any]]]:
    """The surest false positives (detections matching no true box of their class with IoU
    >= `iou`, highest score first) and the worst false negatives (true boxes whose best
    same-class detection, by IoU >= `iou`, has the lowest score; 0 when none overlaps).
    Each entry: {"image", "box" (4,), "label", "score"}; at most k of each."""
    fps, fns = [], []
    for i, d in enumerate(found):
        t = _truth(data, i)
        same = t["labels"][:, None] == d["labels"][None, :]                   # (K, D)
        hit = (box_iou(t["boxes"], d["boxes"].float()) >= iou) & same         # (K, D)
        for j in torch.nonzero(~hit.any(0)).flatten().tolist():
            fps.append({"image": i, "box": d["boxes"][j], "label": int(d["labels"][j]),
                        "score": float(d["scores"][j])})
        best = torch.where(hit, d["scores"][None, :], 0.0).amax(1) if len(d["scores"]) else (
            torch.zeros(len(t["labels"])))
        fns += [{"image": i, "box": t["boxes"][j], "label": int(t["labels"][j]),
                 "score": float(best[j])} for j in range(len(t["labels"]))]
    fps.sort(key=lambda e: -e["score"])
    fns.sort(key=lambda e: e["score"])
    return {"false_positives": fps[:k], "false_negatives": fns[:k]}


def gap_closed(base: dict[str, float], cured: dict[str, float], key: str = "map_50") -> float:
    """The share of the baseline's gap (in-domain minus shifted score, `key`) that a cure's
    gain on the shifted test closes: (cured shift - base shift) / (base val - base shift).
    base and cured hold "val" and "shift" scores dicts. 0 when there is no gap."""
    gap = base["val"][key] - base["shift"][key]
    return (cured["shift"][key] - base["shift"][key]) / gap if gap > 0 else 0.0


def show_errors(data: DetectionSet, errors: dict[str, list[dict[str, Any]]], ncols: int = 6,
                scale: float = 2.0) -> Any:
    """A picture of `worst_errors`: one row of false positives (red, with the score) and one
    of false negatives (blue, with the best score a matching detection had). Returns the
    matplotlib Figure."""
    import matplotlib.pyplot as plt

    from dlcamp.course.plot import draw_boxes

    rows = [(kind, e) for kind in ("false_positives", "false_negatives")
            for e in errors[kind][:ncols]]
    if not rows:
        raise BadArgument("no errors to show")
    fig, axes = plt.subplots(2, ncols, figsize=(ncols * scale, 2 * scale * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, kind in enumerate(("false_positives", "false_negatives")):
        for c, e in enumerate(errors[kind][:ncols]):
            ax = axes[r, c]
            ax.imshow(data.images[e["image"]].permute(1, 2, 0).numpy())
            colour = "tab:red" if kind == "false_positives" else "tab:blue"
            draw_boxes(ax, e["box"][None], [f"{e['score']:.2f}"], colour, linewidth=1.5)
            ax.set_title(f"{'FP' if r == 0 else 'FN'} #{e['image']} "
                         f"{data.class_names[e['label']]}", fontsize=8)
    fig.tight_layout()
    return fig
