"""Scoring on the hidden test set: equal to pycocotools' COCOeval run directly, perfect = 1,
class names matched, conditions broken down, a trained checkpoint scored as `dlcamp evaluate`
scores it, and bad checkpoints and predictions refused with reasons."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import dlcamp.train.detection as detection_runs
from dlcamp.camp import scoring, submitted
from dlcamp.camp.scoring import (
    TestImage,
    TestSet,
    Unscorable,
    half,
    score_detector,
    score_predictions,
)
from dlcamp.cli.main import main
from dlcamp.models.registry import create_model
from dlcamp.train.checkpoint import load_checkpoint, save_checkpoint
from dlcamp.train.detection import evaluate_detector
from test_detection import squares

CLASSES = ["apple", "mug", "pen"]


def random_test(tmp_path, n: int = 24, seed: int = 0, tags: bool = False) -> TestSet:
    """n noise images (64-96 px wide) with 0-4 random boxes of 3 classes, saved as PNG."""
    g = np.random.default_rng(seed)
    images = []
    for i in range(n):
        w, h = int(g.integers(64, 97)), int(g.integers(48, 80))
        path = tmp_path / f"img{i}.png"
        Image.fromarray(g.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        k = int(g.integers(0, 5))
        xy = g.uniform(0, 0.6, (k, 2)) * [w, h]
        wh = g.uniform(0.1, 0.4, (k, 2)) * [w, h]
        boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(g.integers(0, 3, k), dtype=torch.long)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        tag = {"lighting": ["dark", "bright"][i % 2], "distance": 1 + i % 3} if tags else {}
        images.append(TestImage(i + 1, f"img{i}.png", sha, w, h, boxes, labels, path, tag))
    return TestSet(list(CLASSES), images)


def noisy_results(test: TestSet, seed: int = 1) -> list[dict]:
    """COCO results: each true box jittered (some dropped, some relabelled) plus clutter."""
    g = np.random.default_rng(seed)
    out = []
    for t in test.images:
        for box, label in zip(t.boxes.tolist(), t.labels.tolist(), strict=True):
            if g.random() < 0.2:
                continue
            x1, y1, x2, y2 = (v + g.normal(0, 2) for v in box)
            label = int(g.integers(0, 3)) if g.random() < 0.15 else label
            out.append({"image_id": t.id, "category_id": label + 1,
                        "bbox": [x1, y1, max(x2 - x1, 1), max(y2 - y1, 1)],
                        "score": float(g.random())})
        for _ in range(int(g.integers(0, 3))):
            x, y = g.uniform(0, 40, 2)
            out.append({"image_id": t.id, "category_id": int(g.integers(1, 4)),
                        "bbox": [x, y, 15.0, 12.0], "score": float(g.random() * 0.5)})
    return out


def cocoeval(test: TestSet, results: list[dict], image_ids=None) -> np.ndarray:
    """The oracle: pycocotools' COCOeval on the same data -> stats (12,). Its thresholds are
    torchmetrics' (torch.linspace in float32: 0.55 is 0.550000011920929): a recall of exactly
    k/100 (1 of 4 objects found) falls on the other side of them than of COCOeval's float64
    ones, so the stock thresholds can differ by ~1/300 in such cases."""
    gt = {"images": [{"id": t.id, "width": t.width, "height": t.height} for t in test.images],
          "categories": [{"id": k + 1, "name": c} for k, c in enumerate(test.classes)],
          "annotations": []}
    for t in test.images:
        for (x1, y1, x2, y2), label in zip(t.boxes.tolist(), t.labels.tolist(), strict=True):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": t.id,
                                      "category_id": label + 1, "iscrowd": 0,
                                      "bbox": [x1, y1, x2 - x1, y2 - y1],
                                      "area": (x2 - x1) * (y2 - y1)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dets = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dets, "bbox")
        ev.params.iouThrs = np.array(torch.linspace(0.5, 0.95, 10).tolist())
        ev.params.recThrs = np.array(torch.linspace(0.0, 1.0, 101).tolist())
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_scores_equal_cocoeval_run_directly(tmp_path):
    test = random_test(tmp_path)
    results = noisy_results(test)
    report = score_predictions(results, test)
    stats = cocoeval(test, results)
    assert report["map"] == pytest.approx(stats[0], abs=1e-5)
    assert report["map_50"] == pytest.approx(stats[1], abs=1e-5)
    assert report["map_75"] == pytest.approx(stats[2], abs=1e-5)
    assert 0.2 < report["map"] < 0.95  # a real, non-trivial case
    public = [t.id for t in test.images if half(t.sha256) == "public"]
    assert 0 < len(public) < len(test.images)
    assert report["public"]["map"] == pytest.approx(cocoeval(test, results, public)[0], abs=1e-5)
    assert report["public"]["images"] + report["private"]["images"] == len(test.images)


def test_perfect_predictions_score_one_and_a_missing_class_scores_zero(tmp_path):
    test = random_test(tmp_path)
    perfect = [{"image_id": t.id, "category": CLASSES[lb].upper() + " ", "score": 0.9,
                "bbox": [x1, y1, x2 - x1, y2 - y1]}
               for t in test.images
               for (x1, y1, x2, y2), lb in zip(t.boxes.tolist(), t.labels.tolist(), strict=True)]
    report = score_predictions(perfect, test)
    assert report["map"] == report["map_50"] == report["private"]["map"] == 1.0
    assert all(c["ap"] == 1.0 for c in report["per_class"].values())
    assert report["worst"]["counts"] == {"false_positives": 0, "missed": 0}
    no_pens = [r for r in perfect if r["category"].strip() != "PEN"]
    no_pens.append({"file_name": "img0.png", "category": "spoon", "bbox": [1, 1, 5, 5],
                    "score": 1.0})  # a class the test lacks: dropped
    report = score_predictions(no_pens, test)
    assert report["per_class"]["pen"] == {"ap": 0.0, "ap50": 0.0}
    assert report["per_class"]["apple"]["ap"] == 1.0
    assert report["map"] == pytest.approx(2 / 3, abs=1e-6)


def test_conditions_are_broken_down_with_numbers_kept(tmp_path):
    test = random_test(tmp_path, tags=True)
    dark = [{"image_id": t.id, "category_id": lb + 1, "score": 0.5 + t.id / 100,  # no ties
             "bbox": [x1, y1, x2 - x1, y2 - y1]}
            for t in test.images if t.tags["lighting"] == "dark"
            for (x1, y1, x2, y2), lb in zip(t.boxes.tolist(), t.labels.tolist(), strict=True)]
    picture = tmp_path / "reports" / "worst.png"
    report = score_predictions(dark, test, picture)
    lighting = {c["value"]: c for c in report["conditions"]["lighting"]}
    assert lighting["dark"]["map"] == 1.0 and lighting["bright"]["map"] == 0.0
    assert [c["value"] for c in report["conditions"]["distance"]] == [1, 2, 3]
    assert sum(c["images"] for c in report["conditions"]["distance"]) == len(test.images)
    ids = [t.id for t in test.images if t.tags["distance"] == 2]
    only = [r for r in dark if r["image_id"] in ids]
    two = report["conditions"]["distance"][1]
    sub = TestSet(test.classes, [t for t in test.images if t.id in ids])
    assert two["map"] == pytest.approx(cocoeval(sub, only)[0], abs=1e-5)
    assert len(report["worst"]["missed"]) == scoring.WORST
    assert Image.open(picture).format == "PNG" and report["picture"] == "worst.png"


@pytest.mark.parametrize("bad, reason", [
    ({"a": 1}, "JSON list"),
    ([{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "image_id"),
    ([{"file_name": "nope.png", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}],
     "not a test image"),
    ([{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 1}], "category_id"),
    ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "category"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}], "bbox"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, float("nan"), 1], "score": 1}], "bbox"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}], "score"),
])
def test_bad_predictions_are_refused_with_a_reason(tmp_path, bad, reason):
    with pytest.raises(Unscorable, match=reason):
        score_predictions(bad, random_test(tmp_path, n=3))


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory):
    """A YOLO-style detector trained a few epochs on two-class squares (seconds)."""
    data = {"train": squares(64, seed=0, classes=2), "test": squares(12, seed=1, classes=2)}
    out = tmp_path_factory.mktemp("score") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(detection_runs, "list_scene_sets", lambda: ["squares"])
        mp.setattr(detection_runs, "load_scene_set", lambda name, split, n=None: data[split])
        mp.setenv("DLCAMP_QUIET", "1")
        assert main(["train", "--model", "yolo", "--dataset", "squares", "--quick", "--epochs",
                     "3", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
        expected = evaluate_detector(load_checkpoint(out), splits=("test",))
    return out, data["test"], expected["splits"]["test"]


def squares_test(tmp_path, data, names) -> TestSet:
    images = []
    for i in range(len(data)):
        path = tmp_path / f"sq{i}.png"
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(path)
        real = data.labels[i] >= 0
        images.append(TestImage(i + 1, path.name, hashlib.sha256(path.read_bytes()).hexdigest(),
                                64, 64, data.boxes[i][real], data.labels[i][real], path))
    return TestSet(names, images)


def test_a_trained_checkpoint_scores_as_dlcamp_evaluate_does(tmp_path, yolo_run):
    run, data, expected = yolo_run
    test = squares_test(tmp_path, data, ["red", "blue"])
    report = score_detector(run / "checkpoint.pt", test, tmp_path / "w.png")
    assert report["map"] == pytest.approx(expected["map"], abs=1e-4)
    assert report["map_50"] == pytest.approx(expected["map_50"], abs=1e-4)
    assert report["val"]["map"] == pytest.approx(expected["map"], abs=1e-4)  # run's test split
    assert report["gap"] == pytest.approx(0.0, abs=1e-4)
    # class names matched whatever their order and case; a class the model lacks scores 0
    swapped = squares_test(tmp_path, data, ["BLUE", "Red"])
    swapped.images = [TestImage(t.id, t.file_name, t.sha256, 64, 64, t.boxes, 1 - t.labels,
                                t.path) for t in swapped.images]
    assert score_detector(run, swapped)["map"] == pytest.approx(report["map"], abs=1e-6)
    extra = squares_test(tmp_path, data, ["red", "blue", "green"])
    extra.images[0].labels = torch.full_like(extra.images[0].labels, 2)
    third = score_detector(run, extra)
    assert third["per_class"]["green"] == {"ap": 0.0, "ap50": 0.0}


def test_bad_checkpoints_are_refused_before_building(tmp_path, monkeypatch):
    test = random_test(tmp_path, n=2)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(Unscorable, match="not a usable checkpoint"):
        score_detector(garbage, test)
    cnn = tmp_path / "cnn.pt"
    save_checkpoint(cnn, {"model": {"name": "lenet", "kwargs": {}}, "data": {},
                          "trainer": {"model": create_model("lenet").state_dict()}})
    with pytest.raises(Unscorable, match="not a detector"):
        score_detector(cnn, test)
    huge = tmp_path / "huge.pt"
    save_checkpoint(huge, {"model": {"name": "yolo", "kwargs": {"image_size": 4096,
                                                                "num_classes": 3}},
                           "data": {"classes": CLASSES}, "trainer": {"model": {}}})
    with pytest.raises(Unscorable, match="image_size"):
        score_detector(huge, test)
    wide = tmp_path / "wide.pt"
    save_checkpoint(wide, {"model": {"name": "yolo", "kwargs": {"image_size": 64,
                                                                "num_classes": 3,
                                                                "width": 10**6}},
                           "data": {"classes": CLASSES}, "trainer": {"model": {}}})
    with pytest.raises(Unscorable, match="width"):
        score_detector(wide, test)
    monkeypatch.setattr(submitted, "MAX_CHECKPOINT_BYTES", 10)
    with pytest.raises(Unscorable, match="at most 10"):
        score_detector(cnn, test)


def detector_checkpoint(path, name="yolo", weights=None, **data) -> None:
    """A small yolo (width 8) checkpoint; `weights` (a state dict) and `data` replace its own."""
    kwargs = {"num_classes": 3, "image_size": 64, "width": 8}
    model = create_model("yolo", **kwargs)
    kwargs = {**kwargs, **data.pop("kwargs", {})}
    save_checkpoint(path, {"model": {"name": name, "kwargs": kwargs},
                           "data": {"classes": CLASSES, **model.describe(), **data},
                           "trainer": {"model": model.state_dict() if weights is None
                                       else weights}})


@pytest.mark.parametrize("name, width", [("yolo", 128), ("yolo", 1024), ("tinyssd", 1024)])
def test_a_model_bigger_than_its_weights_is_refused_unbuilt(tmp_path, monkeypatch, name,
                                                            width):
    """width=1024 would allocate gigabytes: the size is read on the meta device first."""
    devices, real = [], submitted.create_model

    def spy(*args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device the model lands on
        return real(*args, **kwargs)

    monkeypatch.setattr(submitted, "create_model", spy)
    path = tmp_path / "big.pt"
    detector_checkpoint(path, name, kwargs={"width": width})
    with pytest.raises(Unscorable, match="parameters; the checkpoint holds"):
        submitted.load_detector(path)
    assert devices == ["meta"]
    detector_checkpoint(path)  # a fitting one is built for real after the meta count
    assert submitted.load_detector(path)[0].image_size == 64 and devices[1:] == ["meta", "cpu"]
    monkeypatch.setattr(submitted, "MAX_PARAMETERS", 1000)
    with pytest.raises(Unscorable, match="at most 1,000 are scored"):
        submitted.load_detector(path)


@pytest.mark.parametrize("normalize", [
    [[0.5, 0.5, 0.5], [0.25, 0.0, 0.25]], [[0.5, 0.5, 0.5], [0.25, -1.0, 0.25]],
    [[0.5, 0.5], [0.25, 0.25]], [[0.5, float("nan"), 0.5], [0.25, 0.25, 0.25]],
    [[0.5, 0.5, 0.5]], [["a", "b", "c"], [1, 1, 1]], "mean"])
def test_a_bad_normalize_is_refused(tmp_path, normalize):
    path = tmp_path / "n.pt"
    detector_checkpoint(path, normalize=normalize)
    with pytest.raises(Unscorable, match="normalize"):
        submitted.load_detector(path)


def test_a_zip_bomb_is_refused_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pt"
    detector_checkpoint(path)
    submitted.load_detector(path)  # fine as torch.save wrote it (entries stored)
    monkeypatch.setattr(submitted, "MAX_UNPACKED_BYTES", path.stat().st_size // 2)
    with pytest.raises(Unscorable, match="would unpack to"):
        submitted.load_detector(path)
    monkeypatch.undo()
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/data/99", bytes(20 * 1024**2))  # 20 MB of zeros in ~20 kB
    with pytest.raises(Unscorable, match="compressed"):
        submitted.load_detector(path)
