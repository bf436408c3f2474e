"""Detection end to end: batched anchor labelling equals the per-image one, TinySSD's shapes,
loss and decoding, the detection loader, and `dlcamp train/evaluate` with a detector (on a
small synthetic scene set put in place of the registered ones)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcamp.cli.main import main
from dlcamp.core.config import TrainConfig
from dlcamp.data.detection import DetectionSet
from dlcamp.data.detection_loader import DetectionLoader
from dlcamp.models import create_model
from dlcamp.models.detector import is_detector
from dlcamp.train import detection as detection_runs
from dlcamp.train.task import Detection, default_task
from dlcamp.train.trainer import Trainer
from dlcamp.vision.anchors import (
    encode_offsets,
    match_anchors,
    match_anchors_batched,
    multibox_prior,
    multibox_target,
)
from dlcamp.vision.augment import BatchAugment

COLOURS = torch.tensor([[230, 40, 40], [40, 80, 230]], dtype=torch.uint8)  # class 0, 1


def squares(n: int, size: int = 64, seed: int = 0, classes: int = 1) -> DetectionSet:
    """n images of 1-2 filled squares (class = colour) on dim noise, boxes exact: square k
    lies in the left (k = 0) or right (k = 1) half, so none hides another."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 90, (n, 3, size, size), generator=g, dtype=torch.uint8)
    count = torch.randint(1, 3, (n,), generator=g)
    side = torch.randint(size // 4, size // 2 - 1, (n, 2), generator=g)
    x1 = (torch.rand(n, 2, generator=g) * (size // 2 - side)).long() + torch.tensor([0, size // 2])
    y1 = (torch.rand(n, 2, generator=g) * (size - side)).long()
    boxes = torch.stack((x1, y1, x1 + side, y1 + side), dim=-1).float()  # (n, 2, 4)
    labels = torch.randint(0, classes, (n, 2), generator=g)
    labels[:, 1] = torch.where(count > 1, labels[:, 1], -1)
    boxes[labels < 0] = 0
    ys = torch.arange(size)[None, None, :, None]
    xs = torch.arange(size)[None, None, None, :]
    for k in (0, 1):
        x1k, y1k, x2k, y2k = (boxes[:, k, j, None, None, None] for j in range(4))
        inside = (xs >= x1k) & (xs < x2k) & (ys >= y1k) & (ys < y2k)  # (n, 1, S, S)
        colour = COLOURS[labels[:, k].clamp(min=0)][:, :, None, None]
        images = torch.where(inside & (labels[:, k, None, None, None] >= 0), colour, images)
    names = ["red", "blue"][:classes]
    return DetectionSet(images, boxes, labels, names, ["红", "蓝"][:classes])


# -- labelling anchors: batched == per image ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), m=st.integers(1, 6),
       threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_batched_matching_equals_per_image_matching(seed, batch, m, threshold):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, m, 2, generator=g) * 0.7
    boxes = torch.cat((xy, xy + 0.05 + torch.rand(batch, m, 2, generator=g) * 0.3), dim=-1)
    labels = torch.randint(0, 3, (batch, m), generator=g)
    labels[torch.rand(batch, m, generator=g) < 0.3] = -1       # padding rows anywhere
    boxes[labels < 0] = 0
    anchors = multibox_prior(5, 7, [0.3, 0.15], [1, 2, 0.5])
    batched = match_anchors_batched(boxes, labels, anchors, threshold)  # (B, A)
    for b in range(batch):
        real = torch.nonzero(labels[b] >= 0).flatten()
        alone = match_anchors(boxes[b][real], anchors, threshold)       # into the real boxes
        expected = torch.where(alone >= 0, real[alone.clamp(min=0)] if len(real) else alone,
                               alone)
        assert batched[b].tolist() == expected.tolist()


def test_multibox_target_labels_and_offsets():
    anchors = multibox_prior(4, 4, [0.4, 0.2], [1, 2, 0.5]) * 64
    boxes = torch.tensor([[[4.0, 4, 30, 30], [0, 0, 0, 0]], [[30, 20, 60, 50], [2, 40, 20, 62]]])
    labels = torch.tensor([[1, -1], [0, 2]])
    offsets, mask, classes = multibox_target(anchors, boxes, labels)
    matches = match_anchors_batched(boxes, labels, anchors)
    assert ((classes > 0) == (matches >= 0)).all() and (mask[..., 0] == (classes > 0)).all()
    for b in range(2):
        pos = matches[b] >= 0
        assert set((classes[b][pos] - 1).tolist()) <= set(labels[b][labels[b] >= 0].tolist())
        torch.testing.assert_close(offsets[b][pos],
                                   encode_offsets(anchors[pos], boxes[b][matches[b][pos]]))
        assert (offsets[b][~pos] == 0).all()
    assert (classes[0] > 0).any() and (classes[1] == 3).any()  # every object has an anchor


# -- the model ---------------------------------------------------------------------------------
def test_tinyssd_shapes_and_contract():
    model = create_model("tinyssd", num_classes=2, image_size=128)
    assert is_detector("tinyssd") and not is_detector("cnn")
    assert isinstance(default_task(model), Detection)
    assert model.anchors.shape == ((16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 4, 4)  # 1,364
    assert [m.shape[-1] for m in model.feature_maps(torch.zeros(1, 3, 128, 128))] == [
        16, 8, 4, 2, 1]
    cls, box = model(torch.zeros(2, 3, 128, 128))
    assert cls.shape == (2, 1364, 3) and box.shape == (2, 1364, 4)
    assert "anchors" not in model.state_dict()  # rebuilt from the arguments, not stored
    assert model.describe()["normalize"] == [[0.5] * 3, [0.25] * 3]
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("tinyssd", image_size=100)


def test_the_books_loss_and_ssds_hard_negatives():
    torch.manual_seed(0)
    book = create_model("tinyssd", num_classes=2, image_size=64, hard_negatives=0.0)
    ssd = create_model("tinyssd", num_classes=2, image_size=64, hard_negatives=1e6)  # all
    a = len(book.anchors)
    cls, box = torch.randn(2, a, 3), torch.randn(2, a, 4)
    boxes = torch.tensor([[[4.0, 4, 30, 30], [0, 0, 0, 0]], [[30, 20, 60, 50], [2, 40, 20, 62]]])
    labels = torch.tensor([[1, -1], [0, 1]])
    offsets, mask, classes = multibox_target(book.anchors, boxes, labels)
    ce = torch.nn.functional.cross_entropy(cls.transpose(1, 2), classes, reduction="none")
    l1 = (box * mask - offsets).abs()                                    # (2, A, 4)
    loss, sums = book.loss((cls, box), boxes, labels)                    # d2l 14.7.2
    torch.testing.assert_close(loss, (ce.mean(1) + l1.mean((1, 2))).mean())
    n_pos = (classes > 0).sum(1)
    loss, sums = ssd.loss((cls, box), boxes, labels)                     # every negative kept
    torch.testing.assert_close(sums["cls_loss"], (ce.sum(1) / n_pos).sum())
    torch.testing.assert_close(sums["box_loss"], (l1.sum((1, 2)) / n_pos).sum())
    few = create_model("tinyssd", num_classes=2, image_size=64, hard_negatives=1.0)
    _, sums = few.loss((cls, box), boxes, labels)                        # P hardest negatives
    hardest = torch.where(classes > 0, -1.0, ce).sort(1, descending=True).values
    kept = torch.stack([hardest[b, :n_pos[b]].sum() for b in range(2)])
    torch.testing.assert_close(sums["cls_loss"], ((torch.where(classes > 0, ce, 0).sum(1)
                                                   + kept) / n_pos).sum())


def test_detect_decodes_suppresses_and_ranks():
    model = create_model("tinyssd", num_classes=2, image_size=64).eval()
    a = len(model.anchors)
    cls = torch.full((2, a, 3), -10.0)
    cls[..., 0] = 10.0                                   # everything background...
    box = torch.zeros(2, a, 4)
    first = model.anchors[0]
    same = int(((model.anchors - first).abs().sum(1) < 1e-4).nonzero()[0])
    cls[0, same] = torch.tensor([0.0, 5.0, 0.0])         # ...but image 0's first anchor: class 0
    cls[0, 1] = torch.tensor([0.0, 4.0, 0.0])            # its neighbour, overlapping: suppressed
    cls[1, 5] = torch.tensor([0.0, 0.0, 6.0])            # image 1: class 1
    box[1, 5] = torch.tensor([1.0, 0.0, 0.0, 0.0])        # moved right by 0.1 anchor widths
    found = model.detect((cls, box), score_threshold=0.3, iou_threshold=0.3)
    assert [len(d["boxes"]) for d in found] == [1, 1]
    torch.testing.assert_close(found[0]["boxes"][0], first.clamp(0, 64))
    assert found[0]["labels"].tolist() == [0] and found[1]["labels"].tolist() == [1]
    w = model.anchors[5, 2] - model.anchors[5, 0]
    expected = (model.anchors[5] + torch.tensor([0.1, 0, 0.1, 0]) * w).clamp(0, 64)
    torch.testing.assert_close(found[1]["boxes"][0], expected)
    assert found[0]["scores"][0] > 0.9


# -- the loader --------------------------------------------------------------------------------
def test_loader_normalises_flips_boxes_and_repeats_an_epoch():
    data = squares(10, seed=1)
    plain = next(iter(DetectionLoader(data, 10, normalize=((0.5,) * 3, (0.25,) * 3))))
    torch.testing.assert_close(plain[0], (data.images.float() / 255 - 0.5) / 0.25)
    flipping = DetectionLoader(data, 10, augment=BatchAugment(flip=1.0).with_boxes)
    images, boxes, labels = next(iter(flipping))
    real = labels >= 0
    expected = torch.stack((64 - data.boxes[..., 2], data.boxes[..., 1], 64 - data.boxes[..., 0],
                            data.boxes[..., 3]), dim=-1)
    torch.testing.assert_close(boxes[real], expected[real])
    torch.testing.assert_close(images, plain[0].flip(3))
    shuffled = DetectionLoader(data, 4, shuffle=True, augment=BatchAugment(scale=(0.5, 1)
                                                                          ).with_boxes, seed=3)
    shuffled.set_epoch(2)
    again = [b[1] for b in shuffled]
    assert len(again) == 3 and all(torch.equal(x, y) for x, y in zip(again, [b[1] for b in
                                                                            shuffled], strict=True))


# -- learning ----------------------------------------------------------------------------------
def test_tinyssd_learns_squares():
    """A small TinySSD with SSD's loss (hard negative mining) on 64 px squares: the loss
    falls and mAP@0.5 goes from about 0 (untrained) past 0.5 in ten short epochs (about 0.8
    here; the book's loss, hard_negatives=0, reaches about 0.5 in the same steps)."""
    torch.manual_seed(0)
    train, test = squares(160, seed=0), squares(64, seed=1)
    model = create_model("tinyssd", num_classes=1, image_size=64, width=0.5)  # SSD loss
    norm = model.normalize
    trainer = Trainer(model, TrainConfig(epochs=10, lr=0.05, schedule="onecycle",
                                         weight_decay=5e-4, threads="1"))
    test_loader = DetectionLoader(test, 64, normalize=norm)
    before = trainer.evaluate(test_loader)
    history = trainer.fit(DetectionLoader(train, 32, shuffle=True, normalize=norm,
                                          augment=BatchAugment(flip=0.5).with_boxes),
                          test_loader, eval_split="test")
    after = history[-1]
    assert after["train_loss"] < 0.5 * history[0]["train_loss"]
    assert after["test_loss"] < before["loss"]
    assert before["map_50"] < 0.1 and after["test_map_50"] > 0.5, after


# -- through the command line ------------------------------------------------------------------
@pytest.fixture
def scene_set(monkeypatch):
    """A two-class synthetic scene set "squares" (train, test, shift), registered for the run."""
    splits = {"train": squares(96, seed=0, classes=2), "test": squares(32, seed=1, classes=2),
              "shift": squares(32, seed=2, classes=2)}
    monkeypatch.setattr(detection_runs, "list_scene_sets", lambda: ["squares"])
    monkeypatch.setattr(detection_runs, "load_scene_set", lambda name, split, n=None: splits[split])
    monkeypatch.setenv("DLCAMP_QUIET", "1")
    return splits


def test_train_evaluate_resume_round_trip(scene_set, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "tinyssd", "--dataset", "squares", "--quick", "--epochs", "1",
            "--out", str(out), "--no-progress", "--batch-size", "32", "--threads", "1"]
    assert main(args) == 0
    assert "final test map_50" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.csv", "curves.png",
                                               "checkpoint.pt"}
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    data = ckpt["data"]
    assert data["kind"] == "scenes" and data["classes_zh"] == ["红", "蓝"]
    assert data["image_size"] == 64 and data["normalize"] == [[0.5] * 3, [0.25] * 3]
    assert ckpt["model"]["kwargs"] == {"num_classes": 2, "image_size": 64, "width": 0.5}
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "test_map_50" in header and "test_map" in header

    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    capsys.readouterr()

    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mAP@[.5:.95]" in text and "shift" in text and "red (红)" in text
    assert main(["evaluate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["splits"]) == {"test", "shift"} and result["trained_epochs"] == 2
    for split in result["splits"].values():
        assert 0 <= split["map"] <= split["map_50"] <= 1
        assert set(split["per_class"]) == {"red", "blue"}


def test_bad_model_and_data_pairs_are_refused(scene_set, tmp_path, capsys):
    for model, dataset, says in (("tinyssd", "fashion-mnist", "is a detector"),
                                 ("cnn", "squares", "not a detector"),
                                 ("lstm", "squares", "language model")):
        code = main(["train", "--model", model, "--dataset", dataset, "--out",
                     str(tmp_path / model), "--no-progress"])
        assert code == 2 and says in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
    assert main(["train", "--model", "tinyssd", "--dataset", "squares", "--augment", "twirl",
                 "--out", str(tmp_path / "x")]) == 2
    assert "flip, crop, colour" in capsys.readouterr().err


def test_a_detection_set_on_disk_trains_evaluates_and_travels_with_its_run(tmp_path, capsys,
                                                                           monkeypatch):
    """`--dataset DIR` with DIR/{train,val,test}.safetensors: measured on val while training,
    evaluated on val and test, read from <run>/data once the run carries its sets."""
    monkeypatch.setenv("DLCAMP_QUIET", "1")
    sets = tmp_path / "sets"
    sets.mkdir()
    for split, n, seed in (("train", 48, 0), ("val", 16, 1), ("test", 16, 2)):
        squares(n, seed=seed, classes=2).save(sets / f"{split}.safetensors")
    out = tmp_path / "run"
    assert main(["train", "--model", "tinyssd", "--dataset", str(sets), "--epochs", "1",
                 "--out", str(out), "--no-progress", "--batch-size", "16",
                 "--threads", "1"]) == 0
    assert "final val map_50" in capsys.readouterr().out
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["data"]["dataset"] == str(sets.resolve())
    assert ckpt["data"]["eval_splits"] == ["val", "test"]
    assert "val_map_50" in (out / "metrics.csv").read_text().splitlines()[0]
    assert main(["evaluate", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {s: m["images"] for s, m in first["splits"].items()} == {"val": 16, "test": 16}
    assert first["splits"]["val"]["map"] == pytest.approx(ckpt["metrics"]["val_map"])

    (out / "data").mkdir()
    for f in sets.iterdir():
        f.rename(out / "data" / f.name)  # the sets move into the run: <run>/data is read
    assert main(["evaluate", str(out), "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["splits"]["test"]["map"] == pytest.approx(first["splits"]["test"]["map"])
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 3

    assert main(["train", "--model", "tinyssd", "--dataset", str(sets), "--out",
                 str(tmp_path / "x")]) == 2  # the folder is empty now
    assert "holds no train.safetensors" in capsys.readouterr().err
