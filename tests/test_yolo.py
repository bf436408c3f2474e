"""The YOLO-style detector: grid cells, centre assignment (equal to a per-image loop), box
coding, the detector contract, learning on drawn rectangles (torchmetrics mAP), ONNX export."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.detection import MeanAveragePrecision

from dlcamp.core.errors import BadArgument
from dlcamp.models import create_model, model_recipe
from dlcamp.models.detector import Detector
from dlcamp.vision.grid import assign_centres, decode_boxes, encode_boxes, grid_centres

SEEDS = st.integers(0, 2**31 - 1)


def rect_scenes(n: int, size: int = 64, classes: int = 2, seed: int = 0):
    """n noisy images with 1-2 solid rectangles each, one colour per class, normalised as the
    detector expects; boxes (n, 2, 4) px and labels (n, 2), -1 padding."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 0.4
    boxes, labels = torch.zeros(n, 2, 4), torch.full((n, 2), -1)
    colours = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.2, 1.0]])
    for i in range(n):  # test data only; a handful of images
        for j in range(1 + int(torch.randint(2, (1,), generator=g))):
            w, h = torch.randint(12, 30, (2,), generator=g).tolist()
            x = int(torch.randint(0, size - w, (1,), generator=g))
            y = int(torch.randint(0, size - h, (1,), generator=g))
            c = int(torch.randint(classes, (1,), generator=g))
            images[i, :, y:y + h, x:x + w] = colours[c, :, None, None]
            boxes[i, j] = torch.tensor([x, y, x + w, y + h], dtype=torch.float)
            labels[i, j] = c
    return (images - 0.5) / 0.25, boxes, labels


def random_truth(seed: int, batch: int, m: int, size: float, stride: float):
    """Random padded ground truth, tiny boxes (smaller than a cell) and overlaps included."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, m, 2, generator=g) * size
    wh = torch.rand(batch, m, 2, generator=g) * size * 0.8 + 0.5
    wh[torch.rand(batch, m, generator=g) < 0.2] *= stride / size  # some under one cell
    boxes = torch.cat((xy, (xy + wh).clamp(max=size)), dim=-1)      # (B, M, 4)
    labels = torch.randint(3, (batch, m), generator=g)
    labels[torch.rand(batch, m, generator=g) < 0.3] = -1             # padding rows
    return boxes, labels


def reference_assignment(points, stride, boxes, labels, radius):
    """The rule written as plain loops: one image, one cell, one box at a time."""
    out = torch.full((boxes.shape[0], len(points)), -1, dtype=torch.long)
    for b in range(boxes.shape[0]):
        for n, (px, py) in enumerate(points.tolist()):
            best = math.inf
            for m, (x1, y1, x2, y2) in enumerate(boxes[b].tolist()):
                if labels[b, m] < 0:
                    continue
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                inside = x1 < px < x2 and y1 < py < y2
                near = abs(px - cx) < radius * stride and abs(py - cy) < radius * stride
                own = (px // stride == cx // stride) and (py // stride == cy // stride)
                area = (x2 - x1) * (y2 - y1)
                if ((inside and near) or own) and area < best:
                    best, out[b, n] = area, m
    return out


@pytest.fixture(scope="module")
def trained():
    """A small YOLO overfitted on 16 rectangle scenes (about 3 s on one core)."""
    torch.manual_seed(0)
    x, boxes, labels = rect_scenes(16)
    model = create_model("yolo", num_classes=2, image_size=64, width=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(120):
        loss, _ = model.loss(model(x), boxes, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), x, boxes, labels, losses


def test_forward_shapes_and_contract():
    model = create_model("yolo", num_classes=3).eval()
    assert isinstance(model, Detector) and model.image_size == 128
    obj, cls, deltas = model(torch.randn(2, 3, 128, 128))
    assert obj.shape == (2, 256) and cls.shape == (2, 256, 3) and deltas.shape == (2, 256, 4)
    assert model.describe()["num_classes"] == 3
    small = create_model("yolo", image_size=64)(torch.randn(1, 3, 64, 64))
    assert small[0].shape == (1, 64)
    with pytest.raises(BadArgument, match="multiple of 16"):
        create_model("yolo", image_size=100)


def test_recipe_trains_with_adamw():
    recipe = model_recipe("yolo")
    assert recipe["optimizer"] == "adamw" and recipe["epochs"] > 0 and recipe["batch_size"] > 0


def test_grid_centres_follow_the_flatten_order():
    side, stride = 5, 8
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    flat_rows, flat_cols = rows[None].flatten(1)[0], cols[None].flatten(1)[0]   # (N,)
    centres = grid_centres(side, stride)                                        # (N, 2)
    torch.testing.assert_close(centres[:, 0], (flat_cols + 0.5) * stride, check_dtype=False)
    torch.testing.assert_close(centres[:, 1], (flat_rows + 0.5) * stride, check_dtype=False)
    with pytest.raises(ValueError):
        grid_centres(0, 8)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 3), m=st.integers(0, 5),
       radius=st.sampled_from([0.5, 1.5, 2.5]))
def test_assignment_equals_a_per_image_loop(seed, batch, m, radius):
    side, stride = 6, 8
    points = grid_centres(side, stride)
    boxes, labels = random_truth(seed, batch, m, side * stride, stride)
    ours = assign_centres(points, stride, boxes, labels, radius)
    assert ours.shape == (batch, side * side) and ours.dtype == torch.long
    assert torch.equal(ours, reference_assignment(points, stride, boxes, labels, radius))


@settings(max_examples=40, deadline=None)
@given(x=st.floats(0, 60), y=st.floats(0, 60), w=st.floats(0.5, 60), h=st.floats(0.5, 60))
def test_a_lone_box_always_gets_its_centre_cell(x, y, w, h):
    points = grid_centres(8, 8)
    box = torch.tensor([[[x, y, min(x + w, 64.0), min(y + h, 64.0)]]])  # (1, 1, 4), w, h > 0
    match = assign_centres(points, 8, box, torch.zeros(1, 1, dtype=torch.long))
    cx, cy = ((box[0, 0, :2] + box[0, 0, 2:]) / 2).tolist()
    own = min(int(cy // 8), 7) * 8 + min(int(cx // 8), 7)
    assert match[0, own] == 0


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, stride=st.sampled_from([4, 8, 16]))
def test_decode_inverts_encode(seed, stride):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(20, 2, generator=g) * 128
    boxes = torch.cat((xy, xy + torch.rand(20, 2, generator=g) * 100 + 0.5), dim=1)  # (20, 4)
    points = torch.rand(20, 2, generator=g) * 128                                  # (20, 2)
    deltas = encode_boxes(boxes, points, stride)
    torch.testing.assert_close(decode_boxes(deltas, points, stride), boxes, atol=1e-3, rtol=1e-5)
    # a box one cell wide centred on its cell codes as zeros
    cell = torch.tensor([[stride / 2, stride / 2]])
    assert encode_boxes(torch.tensor([[0.0, 0, stride, stride]]), cell, stride).abs().max() < 1e-6


def test_loss_is_finite_without_objects():
    model = create_model("yolo", image_size=64, width=4)
    outputs = model(torch.randn(2, 3, 64, 64))
    for boxes, labels in [(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long)),
                          (torch.zeros(2, 1, 4), torch.full((2, 1), -1))]:
        loss, sums = model.loss(outputs, boxes, labels)
        assert torch.isfinite(loss) and sums["box_loss"] == 0 and sums["positives"] == 0
        assert sums["obj_loss"] > 0 and sums["cls_loss"] == 0
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0  # negatives still teach objectness


def test_loss_falls_and_the_model_overfits_to_high_map(trained):
    model, x, boxes, labels, losses = trained
    assert losses[-1] < 0.15 * losses[0]
    detections = model.detect(model(x))
    metric = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")
    metric.update(detections, [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]}
                               for b, lab in zip(boxes, labels, strict=True)])
    result = metric.compute()
    assert result["map_50"] >= 0.9, result


def test_detect_returns_the_contracts_dicts(trained):
    model, x, *_ = trained
    outputs = model(x[:5])
    detections = model.detect(outputs, score_threshold=0.1, max_detections=3)
    assert len(detections) == 5
    for d in detections:
        assert set(d) == {"boxes", "scores", "labels"}
        k = len(d["scores"])
        assert 1 <= k <= 3 and d["boxes"].shape == (k, 4) and d["labels"].dtype == torch.long
        assert (d["scores"] > 0.1).all() and (d["scores"].diff() <= 0).all()  # best first
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()
        assert ((d["labels"] >= 0) & (d["labels"] < 2)).all()
    assert all(len(d["scores"]) == 0 for d in model.detect(outputs, score_threshold=1.0))


def test_detect_suppresses_within_a_class_only():
    """Two cells predicting the same box: one survives if they agree on the class, both if not."""
    model = create_model("yolo", num_classes=2, image_size=32).eval()  # 4 x 4 cells
    obj = torch.full((1, 16), -10.0)
    cls = torch.full((1, 16, 2), -10.0)
    deltas = torch.zeros(1, 16, 4)
    obj[0, [5, 6]] = 5.0                           # cells (1, 1) and (1, 2)
    deltas[0, 6, 0] = -1.0                         # cell 6 moves its box one cell left: same box
    for classes, survivors in [((0, 0), 1), ((0, 1), 2)]:
        cls[0, 5, classes[0]], cls[0, 6, classes[1]] = 5.0, 4.0
        (d,) = model.detect((obj, cls, deltas), score_threshold=0.5)
        assert len(d["scores"]) == survivors
        torch.testing.assert_close(d["boxes"][0], torch.tensor([8.0, 8.0, 16.0, 16.0]))
        cls.fill_(-10.0)


@pytest.mark.parametrize("name, kwargs", [("yolo", {"width": 4}),
                                          ("yolo-lite0", {"pretrained": False})])
def test_forward_exports_to_onnx_with_a_dynamic_batch(tmp_path, name, kwargs):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = create_model(name, num_classes=2, image_size=64, **kwargs).eval()
    path = tmp_path / f"{name}.onnx"
    names = ["objectness", "class_logits", "box_deltas"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(2, 3, 64, 64),), str(path), input_names=["image"],
                          output_names=names, dynamo=False, opset_version=17,
                          dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        theirs = session.run(None, {"image": x.numpy()})
        for ours, got in zip(model(x), theirs, strict=True):
            torch.testing.assert_close(torch.from_numpy(got), ours.detach(), atol=1e-4,
                                       rtol=1e-4)
