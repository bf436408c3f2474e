"""Score a team's detector (or its predictions) on the hidden test set: COCO mAP and the shift
report.

    report = score_detector(run_dir / "checkpoint.pt", test, picture=reports / "7.png")
    report = score_predictions(json.loads(upload), test)

The engine is torchmetrics' `MeanAveragePrecision(backend="pycocotools")`, i.e. the COCO
evaluation itself (Lin et al. 2014, cocodataset.org/#detection-eval): `map` is AP averaged over
IoU 0.50:0.05:0.95 and the classes, `map_50` and `map_75` at one IoU. A report holds the whole
test set's block {map, map_50, map_75, per_class, conditions, images, boxes}, the same block
for the `public` and `private` halves (an image's half is fixed by its SHA-256: the leaderboard
shows public while the event is open, private once it is frozen), the run's own validation
scores (`val`), `gap` = val map - test map (the covariate shift the lesson is about), and
`worst`: the most confident false positives and the missed objects, drawn into one PNG.

Classes are matched by name, ignoring case and surrounding spaces: a test class the model
lacks scores AP 0 (its objects are all missed), a model class the test lacks is dropped.
Boxes are corner format (x1, y1, x2, y2) in pixels of the test image's working copy.
A submitted checkpoint is checked and rebuilt by camp/submitted.py (`load_detector`,
`Unscorable` and `MAX_CHECKPOINT_BYTES` are also importable from here).
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from dlcamp.camp.dataset import fit_photo
from dlcamp.camp.submitted import MAX_CHECKPOINT_BYTES as MAX_CHECKPOINT_BYTES
from dlcamp.camp.submitted import Unscorable as Unscorable
from dlcamp.camp.submitted import load_detector as load_detector
from dlcamp.core.io import atomic_write_bytes
from dlcamp.train.task import class_ap
from dlcamp.vision.letterbox import Letterbox

MAX_PREDICTIONS = 100  # per image, the COCO evaluation's largest maxDets
MAX_CONDITION_VALUES = 12  # a tag with more distinct values is not broken down
SCORE_MIN = 0.01  # detections kept for mAP (the Detection task's threshold)
FP_SCORE, FN_SCORE, MATCH_IOU, WORST = 0.05, 0.3, 0.5, 6
BATCH, TILE = 16, 160
CACHE_BYTES = 256 * 1024**2
_FITS: OrderedDict[tuple[str, int], tuple[torch.Tensor, Letterbox]] = OrderedDict()
_LOCK = threading.Lock()


@dataclass
class TestImage:
    """One test image: ground truth `boxes` (K, 4) float32 px of the working copy at `path`,
    `labels` (K,) int64 test class ids, condition `tags`."""

    __test__ = False  # not a pytest class
    id: int
    file_name: str
    sha256: str
    width: int
    height: int
    boxes: torch.Tensor
    labels: torch.Tensor
    path: Path
    tags: dict = field(default_factory=dict)


@dataclass
class TestSet:
    """The test project's class names and images."""

    __test__ = False
    classes: list[str]
    images: list[TestImage]


def half(sha256: str) -> str:
    """'public' or 'private': the parity of the SHA-256's last hex digit (fixed forever)."""
    return "public" if int(sha256[-1], 16) % 2 == 0 else "private"


def value_order(value: Any) -> tuple:
    """A sort key for condition values: numbers (by value) before text, bools, None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, f"{type(value).__name__}:{value}")


# ------------------------------------------------------------------ the model's detections
def _load_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _fitted(path: Path, side: int) -> tuple[torch.Tensor, Letterbox]:
    """A working copy letterboxed exactly as training saw it (camp.dataset.fit_photo), kept
    in a cache of CACHE_BYTES (blobs are named by their content: never stale), so decoding the
    photos, the slow part, is paid by a test set's first scoring only."""
    key = (str(path), side)
    with _LOCK:
        if key in _FITS:
            _FITS.move_to_end(key)
            return _FITS[key]
    with Image.open(path) as img:
        img.load()
        fitted = fit_photo(img, side)
    with _LOCK:
        _FITS[key] = fitted
        while sum(t.numel() for t, _ in _FITS.values()) > CACHE_BYTES:
            _FITS.popitem(last=False)
    return fitted


@torch.no_grad()
def predict(model: torch.nn.Module, test: TestSet, batch: int = BATCH) -> list[dict]:
    """Detections per test image in its working copy's pixels: [{"boxes" (K, 4), "scores" (K,),
    "labels" (K,) model class ids}], images letterboxed to model.image_size as in training
    (camp.dataset.fit_photo), normalised as model.normalize says, run in batches (eval mode,
    no gradients)."""
    side = int(model.image_size)
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)
                 for v in model.normalize)
    out: list[dict] = []
    with ThreadPoolExecutor(4) as pool:
        for start in range(0, len(test.images), batch):
            chunk = test.images[start:start + batch]
            boxed = list(pool.map(lambda t: _fitted(t.path, side), chunk))
            x = torch.stack([b[0] for b in boxed]).float() / 255.0           # (B, 3, S, S)
            found = model.detect(model((x - mean) / std), SCORE_MIN, 0.5, MAX_PREDICTIONS)
            for det, (_, fit) in zip(found, boxed, strict=True):
                out.append({"boxes": fit.to_original(det["boxes"]).float(),
                            "scores": det["scores"].float(),
                            "labels": det["labels"].long()})
    return out


def score_detector(ckpt_path: Path, test: TestSet, picture: Path | None = None) -> dict:
    """The report of a checkpoint on the test set (module docstring); `val` from the
    checkpoint's own metrics (val_map / val_map_50, or test_* for a scene-set run).
    Raises Unscorable."""
    model, classes, metrics = load_detector(ckpt_path)
    index = {c.strip().lower(): k for k, c in enumerate(test.classes)}  # names, any case
    mapping = {i: index[c.strip().lower()] for i, c in enumerate(classes)
               if c.strip().lower() in index}
    preds = []
    for p in predict(model, test):
        keep = torch.tensor([int(k) in mapping for k in p["labels"]], dtype=torch.bool)
        labels = torch.tensor([mapping[int(k)] for k in p["labels"][keep]], dtype=torch.long)
        preds.append({"boxes": p["boxes"][keep], "scores": p["scores"][keep], "labels": labels})
    report = evaluate(preds, test, picture)
    report["val"] = val_scores(metrics)
    val = report["val"]
    report["gap"] = None if not val or report["map"] is None else round(
        val["map"] - report["map"], 6)
    report["model_classes"] = classes
    report["unmatched_classes"] = [c for i, c in enumerate(classes) if i not in mapping]
    return report


def val_scores(metrics: dict) -> dict | None:
    """{"map", "map_50"} from a run's metrics row (val_* keys, else test_*), or None."""
    for prefix in ("val_", "test_"):
        if f"{prefix}map" in metrics:
            return {"map": float(metrics[f"{prefix}map"]),
                    "map_50": float(metrics.get(f"{prefix}map_50", float("nan")))}
    return None


# ------------------------------------------------------------------ predictions files
def score_predictions(results: Any, test: TestSet, picture: Path | None = None) -> dict:
    """The report of a COCO results list (parse_predictions). Raises Unscorable."""
    report = evaluate(parse_predictions(results, test), test, picture)
    report.update(val=None, gap=None)
    return report


def parse_predictions(results: Any, test: TestSet) -> list[dict]:
    """A COCO results list [{"image_id" (a test image id) or "file_name", "category_id"
    (1-based, in the test's class order) or "category" (a class name), "bbox": [x, y, width,
    height] px of the working copy, "score"}] -> detections per test image (evaluate's
    `preds`), at most MAX_PREDICTIONS per image (the best). Raises Unscorable naming the
    first bad entry."""
    if not isinstance(results, list):
        raise Unscorable("a predictions file is a JSON list of {image_id, category_id, bbox, "
                         "score} (COCO results format)")
    if len(results) > MAX_PREDICTIONS * max(len(test.images), 1):
        raise Unscorable(f"{len(results)} predictions: at most {MAX_PREDICTIONS} per image")
    by_id = {t.id: k for k, t in enumerate(test.images)}
    by_name: dict[str, int] = {}
    for k, t in enumerate(test.images):
        by_name[t.file_name] = -1 if t.file_name in by_name else k
    names = {c.strip().lower(): k for k, c in enumerate(test.classes)}
    rows: list[list[tuple]] = [[] for _ in test.images]
    for n, r in enumerate(results):
        where = f"predictions[{n}]"
        if not isinstance(r, dict):
            raise Unscorable(f"{where}: must be an object")
        if "image_id" in r:
            k = by_id.get(r["image_id"]) if type(r["image_id"]) is int else None
            if k is None:
                raise Unscorable(f"{where}.image_id: {str(r['image_id'])[:40]!r} is no test "
                                 "image's id")
        elif isinstance(r.get("file_name"), str):
            k = by_name.get(r["file_name"])
            if k is None or k < 0:
                raise Unscorable(f"{where}.file_name: {r['file_name'][:60]!r} is "
                                 f"{'not a test image' if k is None else 'ambiguous'}")
        else:
            raise Unscorable(f"{where}: needs image_id or file_name")
        if "category_id" in r:
            c = r["category_id"]
            if type(c) is not int or not 1 <= c <= len(test.classes):
                raise Unscorable(f"{where}.category_id: must be 1..{len(test.classes)}")
            label = c - 1
        elif isinstance(r.get("category"), str):
            label = names.get(r["category"].strip().lower(), -1)
        else:
            raise Unscorable(f"{where}: needs category_id or category (a class name)")
        bbox, score = r.get("bbox"), r.get("score")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in bbox)) or bbox[2] <= 0 or bbox[3] <= 0:
            raise Unscorable(f"{where}.bbox: must be [x, y, width, height], finite numbers, "
                             "width and height > 0")
        if not isinstance(score, int | float) or isinstance(score, bool) or not (
                math.isfinite(score)):
            raise Unscorable(f"{where}.score: must be a finite number")
        if label >= 0:  # a class the test lacks is dropped
            x, y, w, h = (float(v) for v in bbox)
            rows[k].append((float(score), label, x, y, x + w, y + h))
    preds = []
    for r in rows:
        r = sorted(r, key=lambda t: -t[0])[:MAX_PREDICTIONS]
        a = torch.tensor(r, dtype=torch.float64).reshape(-1, 6)
        preds.append({"boxes": a[:, 2:].float(), "scores": a[:, 0].float(),
                      "labels": a[:, 1].long()})
    return preds


# ------------------------------------------------------------------ the evaluation
def _map(preds: list[dict], test: TestSet, keep: list[int], per_class: bool) -> dict:
    """torchmetrics mAP of the images `keep`: {"map", "map_50", "map_75", "images", "boxes"}
    (+ "per_class": {name: {"ap", "ap50"}}); the maps are None without ground truth."""
    from torchmetrics.detection import MeanAveragePrecision

    truth = [{"boxes": test.images[k].boxes, "labels": test.images[k].labels} for k in keep]
    boxes = sum(len(t["labels"]) for t in truth)
    block: dict[str, Any] = {"images": len(keep), "boxes": boxes}
    if not boxes:
        block.update(map=None, map_50=None, map_75=None)
        if per_class:
            block["per_class"] = {c: None for c in test.classes}
        return block
    metric = MeanAveragePrecision(backend="pycocotools", box_format="xyxy",
                                  class_metrics=per_class, extended_summary=per_class)
    metric.update([preds[k] for k in keep], truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = metric.compute()
    block.update({k: round(max(float(result[k]), 0.0), 6) for k in ("map", "map_50", "map_75")})
    if per_class:
        aps = class_ap(result)
        present = {int(v) for t in truth for v in t["labels"]}
        block["per_class"] = {
            c: {"ap": round(aps.get(f"ap_{i}", 0.0), 6), "ap50": round(aps.get(f"ap50_{i}", 0.0),
                                                                        6)}
            if i in present else None for i, c in enumerate(test.classes)}
    return block


def _conditions(preds: list[dict], test: TestSet, keep: list[int]) -> dict:
    """{tag: [{"value", "images", "boxes", "map", "map_50", "map_75"}]} over the images
    `keep`, for each tag with at most MAX_CONDITION_VALUES distinct values (numbers stay
    numbers; sorted by value)."""
    groups: dict[str, dict[Any, list[int]]] = {}
    for k in keep:
        for tag, value in test.images[k].tags.items():
            if isinstance(value, str | int | float | bool) or value is None:
                groups.setdefault(tag, {}).setdefault(value, []).append(k)
    out = {}
    for tag in sorted(groups):
        values = groups[tag]
        if len(values) > MAX_CONDITION_VALUES:
            continue
        out[tag] = [{"value": v, **_map(preds, test, values[v], False)}
                    for v in sorted(values, key=value_order)]
    return out


def evaluate(preds: list[dict], test: TestSet, picture: Path | None = None) -> dict:
    """The report of per-image detections `preds` ([{"boxes" (K, 4) px, "scores" (K,),
    "labels" (K,) test class ids}], in test.images order) — see the module docstring."""
    if not test.images:
        raise Unscorable("the test set has no images")
    every = list(range(len(test.images)))
    report = _map(preds, test, every, True)
    report["conditions"] = _conditions(preds, test, every)
    report["classes"] = list(test.classes)
    for name in ("public", "private"):
        keep = [k for k in every if half(test.images[k].sha256) == name]
        report[name] = _map(preds, test, keep, True)
        report[name]["conditions"] = _conditions(preds, test, keep) if name == "public" else {}
    report["worst"] = worst(preds, test)
    if picture is not None:
        atomic_write_bytes(Path(picture), draw_worst(report["worst"], test))
        report["picture"] = Path(picture).name
    return report


def worst(preds: list[dict], test: TestSet) -> dict:
    """{"false_positives": the WORST most confident detections (score >= FP_SCORE) that match
    no object of their class at IoU >= MATCH_IOU, "missed": the largest objects no detection
    with score >= FN_SCORE found}; each {"image_id", "file_name", "label", "box", "score"?}.
    Matching is greedy by score per image and class, as in the COCO evaluation."""
    from torchvision.ops import box_iou

    fps, missed = [], []
    for pred, img in zip(preds, test.images, strict=True):
        used = torch.zeros(len(img.labels), dtype=torch.bool)
        found = torch.zeros(len(img.labels), dtype=torch.bool)
        iou = box_iou(pred["boxes"].float(), img.boxes.float()) if len(img.labels) else None
        for j in torch.argsort(pred["scores"], descending=True).tolist():
            score, label = float(pred["scores"][j]), int(pred["labels"][j])
            hit = -1
            if iou is not None:
                cand = iou[j].clone()                                         # (K,)
                cand[(img.labels != label) | used] = -1
                if float(cand.max()) >= MATCH_IOU:
                    hit = int(cand.argmax())
            if hit >= 0:
                used[hit] = True
                found[hit] |= score >= FN_SCORE
            elif score >= FP_SCORE:
                fps.append((score, img, label, pred["boxes"][j]))
        for g in torch.nonzero(~found).flatten().tolist():
            b = img.boxes[g]
            missed.append((float((b[2] - b[0]) * (b[3] - b[1])), img, int(img.labels[g]), b))

    def row(item: tuple, with_score: bool) -> dict:
        value, img, label, box = item
        out = {"image_id": img.id, "file_name": img.file_name, "label": test.classes[label],
               "box": [round(float(v), 1) for v in box]}
        return {**out, "score": round(value, 4)} if with_score else out

    fps.sort(key=lambda t: -t[0])
    missed.sort(key=lambda t: -t[0])
    return {"false_positives": [row(t, True) for t in fps[:WORST]],
            "missed": [row(t, False) for t in missed[:WORST]],
            "counts": {"false_positives": len(fps), "missed": len(missed)}}


def draw_worst(found: dict, test: TestSet) -> bytes:
    """A PNG: top row the worst false positives (red), bottom row the missed objects (orange),
    each a TILE px crop around its box with a caption."""
    paths = {t.id: t.path for t in test.images}
    rows = [("false positive", (230, 25, 75), found["false_positives"]),
            ("missed", (245, 130, 48), found["missed"])]
    cols = max(1, *(len(r[2]) for r in rows))
    sheet = Image.new("RGB", (cols * TILE, 2 * (TILE + 16)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for r, (what, colour, items) in enumerate(rows):
        y0 = r * (TILE + 16)
        if not items:
            pen.text((4, y0 + 4), f"no {what}s", fill=(0, 0, 0))
        for c, item in enumerate(items):
            x1, y1, x2, y2 = item["box"]
            w, h = max(x2 - x1, 8), max(y2 - y1, 8)
            crop = (x1 - w / 2, y1 - h / 2, x2 + w / 2, y2 + h / 2)
            img = _load_image(paths[item["image_id"]]).crop(tuple(round(v) for v in crop))
            s = TILE / max(img.width, img.height)
            img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
            tile = ImageDraw.Draw(img)
            tile.rectangle([(x1 - crop[0]) * s, (y1 - crop[1]) * s, (x2 - crop[0]) * s,
                            (y2 - crop[1]) * s], outline=colour, width=3)
            sheet.paste(img, (c * TILE, y0))
            score = f" {item['score']:.2f}" if "score" in item else ""
            pen.text((c * TILE + 2, y0 + TILE + 2), f"{item['label']}{score}"[:24],
                     fill=colour)
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return buffer.getvalue()
