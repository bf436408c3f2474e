"""Data work for the hackathon (Part 5): how much data, how varied, how well labelled.

The synthetic scenes stand in for a team's phone photos, so each question becomes an
experiment with the same detector and the same step budget:

    narrow = narrow_scenes("fruit-1", 100, background="mate/nature/Wood.jpg")  # one table, one lamp
    condition_counts(narrow, "background")          # {'mate/nature/Wood.jpg': 100}
    sloppy = corrupt_labels(train, grow=(0.2, 0.3), drop=0.3, seed=0)    # loose and missed boxes
    trainer = train_detector(sloppy, steps=150)      # the yolo recipe, a fixed step budget
    detector_scores(trainer, test)                   # {'map': ..., 'map_50': ..., 'map_75': ...}
    found_at(trainer, test, score_threshold=0.5)     # {"recall": ..., "precision": ...}

Boxes are (N, M, 4) corner pixels and labels (N, M) with -1 for padding, as in
`dlcamp.data.detection.DetectionSet`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import torch
from torchvision.ops import box_iou

from dlcamp.core.errors import BadArgument
from dlcamp.core.utils import seed_everything
from dlcamp.data.detection import DetectionSet
from dlcamp.data.detection_loader import BoxAugment, DetectionLoader
from dlcamp.models import create_model
from dlcamp.train.detection import scene_loaders
from dlcamp.train.run import make_config
from dlcamp.train.task import Detection
from dlcamp.train.trainer import Trainer
from dlcamp.vision.scene_sets import build_split, get_scene_set

# Lighting knobs of a SceneConfig that narrow_scenes pins to the middle of their range.
LIGHTING = ("brightness", "contrast", "gamma", "blur", "noise")
NARROW_SEED = 500  # narrow scenes draw from their own seeds, never the images of a split
BUDGET_EPOCHS = 100_000  # more than any step budget needs: `steps` ends training


# -- variety: what the photos have in common ---------------------------------------------------
def condition_counts(data: DetectionSet, key: str) -> dict[Any, int]:
    """How many images carry each value of the condition tag `key` (e.g. "background"),
    most common first. BadArgument names the tags there are when `key` is not one."""
    if key not in data.conditions:
        raise BadArgument(f"{data.name or 'the set'} has no condition {key!r}; it has "
                          f"{', '.join(sorted(data.conditions)) or 'none'}")
    return dict(Counter(data.conditions[key]).most_common())


def select_condition(data: DetectionSet, key: str, value: Any) -> DetectionSet:
    """The images whose condition `key` equals `value` (a new set; may be empty).
    BadArgument when `key` is not a condition of `data`."""
    condition_counts(data, key)  # checks the key
    return data.select([i for i, v in enumerate(data.conditions[key]) if v == value])


def narrow_scenes(name: str, n: int, background: str | None = None, seed: int = 0
                  ) -> DetectionSet:
    """n scenes of set `name`'s *train* instances shot in one place: one background photo
    (default: the set's first) and one lighting (brightness, contrast, gamma, blur and noise
    fixed at the middle of the set's ranges, no lighting gradient). Objects still vary in
    position, size, rotation and colour, as a team's photos on one table do.

    Drawn by the synthesiser from seeds no split uses, so the images are never those of the
    train, test or shift split. BadArgument if `background` is not one of the set's in-domain
    backgrounds or n < 1; UnknownName for an unknown set.
    """
    spec = get_scene_set(name)
    if n < 1:
        raise BadArgument(f"narrow_scenes needs n >= 1, got {n}")
    background = background or spec.backgrounds[0]
    if background not in spec.backgrounds:
        raise BadArgument(f"{background!r} is not a background of {name}; choose from "
                          f"{', '.join(spec.backgrounds)}")
    fixed = {k: (sum(getattr(spec.config, k)) / 2,) * 2 for k in LIGHTING}
    config = replace(spec.config, gradient=0.0, **fixed)
    narrow = replace(spec, name=f"{name}-narrow", config=config, backgrounds=(background,),
                     seed=spec.seed * 1000 + NARROW_SEED + seed)
    data = build_split(narrow, "train", n)
    data.name = narrow.name
    return data


# -- label quality: what a hurried annotator does ----------------------------------------------
def loosen_boxes(boxes: torch.Tensor, labels: torch.Tensor, image_size: tuple[int, int],
                 grow: tuple[float, float] = (0.2, 0.3),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Loose boxes: each real box's width and height grow by a factor drawn from `grow`
    (0.2-0.3 = 20-30% larger), the extra margin split at random between the two sides, then
    clipped to the image (H, W). A loose box still contains the object, and stays inside
    the image. boxes (N, M, 4) corner px, labels (N, M) (-1 rows are left alone).
    Returns new boxes (N, M, 4). BadArgument on mismatched shapes or a bad range."""
    if boxes.shape[:-1] != labels.shape or boxes.shape[-1] != 4:
        raise BadArgument(f"boxes (N, M, 4) and labels (N, M) must match, got "
                          f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
    if not 0 <= grow[0] <= grow[1]:
        raise BadArgument(f"grow must be a range 0 <= low <= high, got {grow}")
    shape = boxes.shape[:-1]
    factor = torch.empty(*shape, 2).uniform_(*grow, generator=generator)   # (N, M, 2) w, h
    share = torch.rand(*shape, 2, generator=generator)                      # (N, M, 2)
    size = boxes[..., 2:] - boxes[..., :2]                                   # (N, M, 2)
    extra = size * factor                                                    # (N, M, 2)
    low = boxes[..., :2] - extra * share                                     # (N, M, 2)
    high = boxes[..., 2:] + extra * (1 - share)
    h, w = image_size
    limit = torch.tensor([w, h], dtype=boxes.dtype)
    loose = torch.cat([low.clamp(min=0), torch.minimum(high, limit)], -1)   # (N, M, 4)
    return torch.where((labels >= 0)[..., None], loose, boxes)


def drop_boxes(labels: torch.Tensor, rate: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Missed boxes: each real label (>= 0) is set to -1 with probability `rate`, as if the
    annotator never drew that box (the object stays in the photo, unlabelled).
    labels (N, M) -> new labels (N, M). BadArgument unless 0 <= rate <= 1."""
    if not 0 <= rate <= 1:
        raise BadArgument(f"rate must lie in [0, 1], got {rate}")
    missed = torch.rand(labels.shape, generator=generator) < rate           # (N, M)
    return torch.where(missed & (labels >= 0), -1, labels)


def corrupt_labels(data: DetectionSet, grow: tuple[float, float] | None = None,
                   drop: float = 0.0, seed: int = 0) -> DetectionSet:
    """The same images with worse labels: `grow` loosens every box (`loosen_boxes`), `drop`
    removes that share of boxes (`drop_boxes`). Reproducible from `seed`; the pixels are
    shared with `data`. The instance masks are left out (they no longer match the boxes);
    conditions are kept and `meta["label_noise"]` records what was done."""
    gen = torch.Generator().manual_seed(seed)
    boxes, labels = data.boxes, data.labels
    if grow is not None:
        boxes = loosen_boxes(boxes, labels, data.image_size, grow, gen)
    if drop:
        labels = drop_boxes(labels, drop, gen)
    keep = labels >= 0                                                       # (N, M)
    out = DetectionSet.from_lists(data.images, [b[k] for b, k in zip(boxes, keep, strict=True)],
                                  [lab[k] for lab, k in zip(labels, keep, strict=True)],
                                  list(data.class_names), list(data.class_names_zh),
                                  conditions={k: list(v) for k, v in data.conditions.items()},
                                  name=data.name, split=data.split, meta=dict(data.meta))
    out.meta["label_noise"] = {"grow": list(grow) if grow else None, "drop": drop, "seed": seed}
    return out


# -- the measuring instrument: one detector, one budget ----------------------------------------
def train_detector(train: DetectionSet, steps: int, seed: int = 0, model: str = "yolo",
                   batch_size: int | None = None, augment: str | BoxAugment | None = None,
                   max_seconds: float | None = None, **model_kwargs: Any) -> Trainer:
    """Train a registered detector by its recipe (optimiser, schedule, augmentation) on
    `train` for exactly `steps` optimiser steps, so runs on 25 or 1,000 images cost the
    same. Seeded by `seed` (weights, shuffling, augmentation). `augment` replaces the
    recipe's augmentation: a name as `dlcamp train --augment` takes (e.g. "flip+colour") or
    a box-moving batch augmentation (the `BoxAugment` signature of DetectionLoader).
    `max_seconds` also stops training at that much training time (the schedule is stretched
    over the budget; whichever budget ends first ends the run). Returns the Trainer (its
    `model`, `history`, `train_seconds`). BadArgument if steps < 1 or `train` is empty."""
    if steps < 1 or len(train) == 0:
        raise BadArgument(f"train_detector needs steps >= 1 and images, got {steps} steps, "
                          f"{len(train)} images")
    named = augment if isinstance(augment, str) else None
    cfg = make_config(model, dataset=train.name or "scenes", epochs=BUDGET_EPOCHS,
                      max_steps=steps, seed=seed, batch_size=batch_size, augment=named,
                      max_seconds=max_seconds)
    seed_everything(seed)
    h, _ = train.image_size
    detector = create_model(model, num_classes=train.num_classes, image_size=h, **model_kwargs)
    trainer = Trainer(detector, cfg.train, task=Detection())
    loaders = scene_loaders(cfg, {"train": train, "test": train}, trainer.device,
                            detector.normalize, "none" if callable(augment) else cfg.augment)
    if callable(augment):
        loaders.train.augment = augment
    trainer.fit(loaders.train, None, "test")
    return trainer


def detector_scores(trainer: Trainer, data: DetectionSet) -> dict[str, float]:
    """COCO mAP@[.5:.95] ("map"), mAP@0.5 ("map_50") and mAP@0.75 ("map_75") of the
    trainer's detector on `data` (torchmetrics, as `dlcamp evaluate` computes them)."""
    loader = DetectionLoader(data, 64, device=trainer.device,
                             normalize=trainer.model.normalize)
    metrics = trainer.evaluate(loader)
    return {k: metrics[k] for k in ("map", "map_50", "map_75")}


def recall_precision(found: list[dict[str, torch.Tensor]], boxes: torch.Tensor,
                     labels: torch.Tensor, iou: float = 0.5) -> dict[str, float]:
    """Detections against the truth, as a person reading them sees it. found: one dict per
    image with "boxes" (D, 4) and "labels" (D,) (what `Detector.detect` returns); boxes
    (B, M, 4) corner px and labels (B, M), -1 for padding. "recall": the share of true
    objects that a detection of the same class overlaps with IoU >= `iou`; "precision": the
    share of detections that overlap a true object so (1.0 when there is nothing to count)."""
    objects = hits = shown = right = 0
    for d, b, lab in zip(found, boxes, labels, strict=True):
        truth, truth_labels = b[lab >= 0], lab[lab >= 0]                  # (K, 4), (K,)
        match = (box_iou(truth.float(), d["boxes"].float()) >= iou) & (
            truth_labels[:, None] == d["labels"][None, :])                 # (K, D)
        objects, hits = objects + len(truth), hits + int(match.any(1).sum())
        shown, right = shown + len(d["boxes"]), right + int(match.any(0).sum())
    return {"recall": hits / objects if objects else 1.0,
            "precision": right / shown if shown else 1.0}


def found_at(trainer: Trainer, data: DetectionSet, score_threshold: float = 0.5,
             iou: float = 0.5) -> dict[str, float]:
    """`recall_precision` of the trainer's detector on `data`, keeping the detections with
    score >= `score_threshold`: what a user of the detector sees at that threshold. (mAP
    ranks detections and ignores the threshold; a detector that is right but timid loses
    recall here.)"""
    model = trainer.model.eval()
    loader = DetectionLoader(data, 64, device=trainer.device, normalize=model.normalize)
    found, boxes, labels = [], [], []
    with torch.no_grad():
        for images, b, lab in loader:
            found += model.detect(model(images), score_threshold)
            boxes += list(b)
            labels += list(lab)
    return recall_precision(found, boxes, labels, iou)
