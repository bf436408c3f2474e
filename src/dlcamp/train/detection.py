"""Detection runs: scene data for `dlcamp train --model tinyssd|yolo --dataset <scene set>`,
and `dlcamp evaluate` of a detector checkpoint on the test and the shifted test split.

A dataset may also be a **detection set on disk**: a directory holding `train.safetensors`,
`val.safetensors` and optionally `test.safetensors` (DetectionSet.save), e.g. the `data/`
folder of a camp run. Such a run is measured on "val" while it trains; `dlcamp evaluate`
reports val and (when present) test, reading the sets from `<run>/data` first, so a run
directory that was moved or copied still evaluates. A run on such a set with a time budget
(`max_seconds`, the camp's) counts an epoch as enough passes over a small set to make at
least MIN_EPOCH_STEPS steps: its epochs are only the points where it is measured, and
measuring a few photos after every step or two would cost more than the training.

The loss and the mAP are the `Detection` task's (dlcamp.train.task); this module gives the
run its data (`scene_sets`, `scene_data`, `scene_loaders`), the box-moving augmentation a
recipe names (`detection_augment`), and the evaluation report (`evaluate_detector`,
`format_detection`). A detector checkpoint's "data" holds what `dlcamp detect`, the server
and export need: class names (English and Chinese), the image size and the normalisation.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
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
SET_SPLITS = ("val", "test")       # ... trained on a detection set on disk (if present)
MIN_EPOCH_STEPS = 50  # budgeted runs on a set on disk: steps between two evaluations at least
QUICK_TRAIN, QUICK_TEST = 256, 128  # images per split in quick mode
AUGMENTS = {"flip": {"flip": 0.5}, "crop": {"scale": (0.3, 1.0)},
            "colour": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3}}


def scene_sets() -> list[str]:
    """The names of the detection data sets (dlcamp.vision.scene_sets)."""
    return list_scene_sets()


def is_set_dir(name: str | Path) -> bool:
    """Whether `name` is a directory holding a detection set on disk (train.safetensors) and
    not the name of a scene set (a name in the registry always means the registered set)."""
    return (str(name) not in scene_sets() and Path(name).is_dir()
            and (Path(name) / "train.safetensors").is_file())


def set_dir_splits(name: str | Path) -> tuple[str, ...]:
    """The evaluation splits (SET_SPLITS) a detection set on disk holds."""
    return tuple(s for s in SET_SPLITS if (Path(name) / f"{s}.safetensors").is_file())


def eval_split_of(name: str) -> str:
    """The split a run on `name` is measured on while it trains: "val" for a detection set
    on disk, "test" for a scene set."""
    return "val" if is_set_dir(name) else "test"


def locate_dataset(recorded: str, run_dir: Path | None) -> str:
    """Where the data of a detector run is: `<run_dir>/data` when it holds a detection set
    and the recorded name is not a scene set (the run was moved, or the set is its own
    copy), else the recorded name."""
    local = Path(run_dir) / "data" if run_dir is not None else None
    if local is not None and recorded not in scene_sets() and is_set_dir(local):
        return str(local.resolve())
    return recorded


def load_scenes(name: str, split: str, quick: bool = False) -> DetectionSet:
    """One split of a scene set, or of a detection set on disk (`name` a directory: its
    `<split>.safetensors`); quick mode takes the first images (QUICK_TRAIN, QUICK_TEST:
    drawn in seconds when a scene split is not cached yet). DatasetNotFound for a split
    file that is not there."""
    if is_set_dir(name):
        data = DetectionSet.load(Path(name) / f"{split}.safetensors")
        n = QUICK_TRAIN if split == "train" else QUICK_TEST
        return data.select(range(n)) if quick and len(data) > n else data
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
    """The train split and the split measured while training ("test" of a scene set, "val"
    of a set on disk) of `cfg.dataset`, the detector's arguments (num_classes, image_size
    from the data unless `model_kwargs` give them) and the checkpoint's "data" (its
    "dataset" is the resolved directory of a set on disk; normalisation is added once the
    model exists: `scene_loaders`)."""
    held_out = eval_split_of(cfg.dataset)
    sets = {split: load_scenes(cfg.dataset, split, cfg.quick) for split in ("train", held_out)}
    train = sets["train"]
    h, w = train.image_size
    if h != w:
        raise BadArgument(f"{cfg.dataset} has {h} x {w} images; the detectors take squares")
    if list(sets[held_out].class_names) != list(train.class_names) or (
            sets[held_out].image_size != train.image_size):
        raise BadArgument(f"{cfg.dataset}: the {held_out} split's classes or image size differ "
                          "from the train split's")
    kwargs = {"num_classes": train.num_classes, "image_size": h, **cfg.model_kwargs}
    data = {"dataset": cfg.dataset, "kind": "scenes", "classes": list(train.class_names),
            "classes_zh": list(train.class_names_zh), "image_size": h}
    if held_out == "val":  # a set on disk
        data.update(dataset=str(Path(cfg.dataset).resolve()),
                    eval_splits=list(set_dir_splits(cfg.dataset)))
    else:
        data["shift_split"] = "shift"
    return sets, kwargs, data


def scene_loaders(cfg: RunConfig, sets: dict[str, DetectionSet], device: Any,
                  normalize: Normalize, augment: str = "none") -> Loaders:
    """Shuffled, augmented training batches and the held-out split (`scene_data`'s second
    one: test or val), normalised as the detector says (its `normalize`)."""
    train = DetectionLoader(sets["train"], cfg.batch_size, shuffle=True, device=device,
                            seed=cfg.train.seed, augment=detection_augment(augment),
                            normalize=normalize)
    held_out = next(split for split in sets if split != "train")
    test = DetectionLoader(sets[held_out], 64, device=device, normalize=normalize)
    if held_out == "val" and cfg.train.max_seconds and len(train) < MIN_EPOCH_STEPS:
        train = Repeated(train, -(-MIN_EPOCH_STEPS // len(train)))
    return Loaders(train, test, sets["train"], sets[held_out], eval_split=held_out)


class Repeated:
    """`times` passes over a DetectionLoader as one epoch, each pass shuffled afresh (pass r
    of epoch e is the loader's epoch e * times + r, so a resumed run repeats them)."""

    def __init__(self, loader: DetectionLoader, times: int) -> None:
        self.loader, self.times, self.epoch = loader, max(1, int(times)), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.times * len(self.loader)

    def __iter__(self):
        for r in range(self.times):
            self.loader.set_epoch(self.epoch * self.times + r)
            yield from self.loader


def evaluate_detector(ckpt: dict[str, Any], dataset: str | None = None,
                      splits: tuple[str, ...] | None = None, device: str = "auto",
                      quick: bool = False, run_dir: Path | None = None) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@0.5 and per-class AP of a detector checkpoint on each split
    (torchmetrics MeanAveragePrecision, pycocotools backend), images normalised as in
    training. `splits` None: EVAL_SPLITS of a scene set, val and test (those present) of a
    set on disk, looked for in `<run_dir>/data` first (`locate_dataset`). Returns
    {"kind": "detection", "model", "dataset", "classes", "classes_zh", "splits": {split:
    {"images", "map", "map_50", "map_75", "loss", "per_class": {name: {"ap", "ap50"}}}},
    "trained_epochs"}. CheckpointError when the images do not fit the model."""
    data_meta = ckpt["data"]
    name = dataset or locate_dataset(data_meta["dataset"], run_dir)
    if splits is None:
        splits = set_dir_splits(name) if is_set_dir(name) else EVAL_SPLITS
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

