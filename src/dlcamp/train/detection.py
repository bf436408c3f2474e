"""Detection runs: scene data for `dlcamp train --model tinyssd|yolo --dataset <scene set>`,
and `dlcamp evaluate` of a detector checkpoint on the test and the shifted test split.

The loss and the mAP are the `Detection` task's (dlcamp.train.task); this module gives the
run its data (`scene_sets`, `scene_data`, `scene_loaders`), the box-moving augmentation a
recipe names (`detection_augment`), and the evaluation report (`evaluate_detector`,
`format_detection`). A detector checkpoint's "data" holds what `dlcamp detect`, the server
and export need: class names (English and Chinese), the image size and the normalisation.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from dlcamp.core.config import RunConfig, TrainConfig
from dlcamp.core.errors import BadArgument, CheckpointError
from dlcamp.core.utils import pick_device
from dlcamp.data.detection import DetectionSet
from dlcamp.data.detection_loader import BoxAugment, DetectionLoader, Normalize
from dlcamp.data.loader import Loaders
from dlcamp.train.checkpoint import model_from_checkpoint
from dlcamp.train.task import Detection
from dlcamp.train.trainer import Trainer
from dlcamp.vision.augment import BatchAugment
from dlcamp.vision.scene_sets import list_scene_sets, load_scene_set

EVAL_SPLITS = ("test", "shift")    # what `dlcamp evaluate` reports for a detector
QUICK_TRAIN, QUICK_TEST = 256, 128  # images per split in quick mode
AUGMENTS = {"flip": {"flip": 0.5}, "crop": {"scale": (0.3, 1.0)},
            "colour": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3}}


def scene_sets() -> list[str]:
    """The names of the detection data sets (dlcamp.vision.scene_sets)."""
    return list_scene_sets()


def load_scenes(name: str, split: str, quick: bool = False) -> DetectionSet:
    """One split of a scene set; quick mode takes its first images (QUICK_TRAIN, QUICK_TEST:
    drawn in seconds when the split is not cached yet)."""
    if not quick:
        return load_scene_set(name, split)
    return load_scene_set(name, split, n=QUICK_TRAIN if split == "train" else QUICK_TEST)


def detection_augment(spec: str | None) -> BoxAugment | None:
    """'none', or '+'-joined parts: 'flip' (mirror half the images), 'crop' (random resized
    crop keeping 30-100% of the area), 'colour' (brightness, contrast, saturation 0.3):
    dlcamp.vision.augment.BatchAugment, which moves the boxes with the pixels."""
    parts = set(str(spec or "none").replace(",", "+").split("+")) - {"none", ""}
    parts = {"colour" if p == "color" else p for p in parts}
    if parts - set(AUGMENTS):
        raise BadArgument(f"unknown augmentation {spec!r} for a detector; use none or a "
                          f"'+'-joined choice of {', '.join(AUGMENTS)} (e.g. flip+crop)")
    if not parts:
        return None
    settings: dict[str, Any] = {"flip": 0.0}
    for part in parts:
        settings.update(AUGMENTS[part])
    return BatchAugment(**settings).with_boxes


def scene_data(cfg: RunConfig) -> tuple[dict[str, DetectionSet], dict[str, Any], dict[str, Any]]:
    """The train and test splits of `cfg.dataset`, the detector's arguments (num_classes,
    image_size from the data unless `model_kwargs` give them) and the checkpoint's "data"
    (normalisation is added once the model exists: `scene_loaders`)."""
    sets = {split: load_scenes(cfg.dataset, split, cfg.quick)
            for split in ("train", "test")}
    train = sets["train"]
    h, w = train.image_size
    if h != w:
        raise BadArgument(f"{cfg.dataset} has {h} x {w} images; the detectors take squares")
    kwargs = {"num_classes": train.num_classes, "image_size": h, **cfg.model_kwargs}
    data = {"dataset": cfg.dataset, "kind": "scenes", "classes": list(train.class_names),
            "classes_zh": list(train.class_names_zh), "image_size": h,
            "shift_split": "shift"}
    return sets, kwargs, data


def scene_loaders(cfg: RunConfig, sets: dict[str, DetectionSet], device: Any,
                  normalize: Normalize, augment: str = "none") -> Loaders:
    """Shuffled, augmented training batches and the test split, normalised as the detector
    says (its `normalize`)."""
    train = DetectionLoader(sets["train"], cfg.batch_size, shuffle=True, device=device,
                            seed=cfg.train.seed, augment=detection_augment(augment),
                            normalize=normalize)
    test = DetectionLoader(sets["test"], 64, device=device, normalize=normalize)
    return Loaders(train, test, sets["train"], sets["test"], eval_split="test")


def evaluate_detector(ckpt: dict[str, Any], dataset: str | None = None,
                      splits: tuple[str, ...] = EVAL_SPLITS, device: str = "auto",
                      quick: bool = False) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@0.5 and per-class AP of a detector checkpoint on each split
    (torchmetrics MeanAveragePrecision, pycocotools backend), images normalised as in
    training. Returns {"kind": "detection", "model", "dataset", "classes", "classes_zh", "splits":
    {split: {"images", "map", "map_50", "map_75", "loss", "per_class": {name: {"ap",
    "ap50"}}}}, "trained_epochs"}. CheckpointError when the images do not fit the model."""
    data_meta = ckpt["data"]
    name = dataset or data_meta["dataset"]
    model = model_from_checkpoint(ckpt)
    normalize = tuple(tuple(v) for v in data_meta["normalize"])
    cfg = TrainConfig.from_dict({**ckpt.get("config", {}).get("train", {}), "device": device,
                                 "compile": False})
    trainer = Trainer(model, cfg, task=Detection(class_metrics=True))
    classes = list(data_meta["classes"])
    result: dict[str, Any] = {"kind": "detection", "model": ckpt["model"]["name"],
                              "dataset": name, "classes": classes,
                              "classes_zh": list(data_meta["classes_zh"]), "splits": {},
                              "trained_epochs": ckpt["trainer"]["epoch"]}
    for split in splits:
        data = load_scenes(name, split, quick)
        if list(data.image_size) != [data_meta["image_size"]] * 2 or (
                list(data.class_names) != classes):
            raise CheckpointError(
                f"the checkpoint detects {classes} in {data_meta['image_size']} px images; "
                f"{name} {split} has {data.class_names} in {data.image_size} px images.")
        loader = DetectionLoader(data, 64, device=pick_device(device), normalize=normalize)
        metrics = trainer.evaluate(loader)
        per_class = {c: {"ap": metrics.get(f"ap_{i}", 0.0), "ap50": metrics.get(f"ap50_{i}", 0.0)}
                     for i, c in enumerate(classes)}
        result["splits"][split] = {"images": len(data), "map": metrics["map"],
                                   "map_50": metrics["map_50"], "map_75": metrics["map_75"],
                                   "loss": metrics["loss"], "per_class": per_class}
    return result


def format_detection(result: dict[str, Any]) -> str:
    """`evaluate_detector`'s result as a table: one row per split, then AP per class."""
    lines = [f"{result['model']} on {result['dataset']} "
             f"({result['trained_epochs']} epochs of training)",
             f"{'split':<8}{'images':>8}{'mAP@[.5:.95]':>14}{'mAP@0.5':>10}{'mAP@0.75':>10}"]
    for split, m in result["splits"].items():
        lines.append(f"{split:<8}{m['images']:>8}{m['map']:>14.4f}{m['map_50']:>10.4f}"
                     f"{m['map_75']:>10.4f}")
    names, zh = result["classes"], result["classes_zh"]
    width = max(_shown_width(f"{n} ({z})") for n, z in zip(names, zh, strict=True)) + 2
    lines.append("AP per class (AP@[.5:.95] / AP@0.5): "
                 + "  ".join(f"{split}" for split in result["splits"]))
    for name, z in zip(names, zh, strict=True):
        label = f"{name} ({z})" if z else name
        cells = "  ".join(f"{m['per_class'][name]['ap']:.3f} / {m['per_class'][name]['ap50']:.3f}"
                          for m in result["splits"].values())
        lines.append(f"  {label}{' ' * (width - _shown_width(label))}{cells}")
    return "\n".join(lines)


def _shown_width(text: str) -> int:
    """Columns `text` takes in a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

