"""Detectors as a product: `dlcamp detect` draws boxes in the photo's own pixels, the server's
POST /detect answers boxes and refuses bad input like /predict, ONNX equals PyTorch."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.ops import box_iou

import dlcamp.train.detection as detection_runs
from dlcamp.cli.main import main
from dlcamp.models.registry import create_model
from dlcamp.serve import detect
from dlcamp.serve.app import create_app
from dlcamp.serve.badinput import malformed_requests
from dlcamp.serve.detect import COLOURS, Letterbox, detector_for, letterbox
from dlcamp.serve.export import export_onnx
from dlcamp.serve.model import ServedModel
from dlcamp.serve.preprocess import Preprocess
from dlcamp.train.checkpoint import save_checkpoint
from test_detection import squares

SIDE = 64  # the squares' image size


def png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scenes():
    return {"train": squares(96, seed=0, classes=2), "test": squares(8, seed=1, classes=2),
            "shift": squares(8, seed=2, classes=2)}


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory, scenes):
    """A YOLO-style detector trained a few epochs on two-class squares (seconds)."""
    out = tmp_path_factory.mktemp("detect") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(detection_runs, "list_scene_sets", lambda: ["squares"])
        mp.setattr(detection_runs, "load_scene_set", lambda name, split, n=None: scenes[split])
        mp.setenv("DLCAMP_QUIET", "1")
        assert main(["train", "--model", "yolo", "--dataset", "squares", "--quick", "--epochs",
                     "4", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    return out


def random_checkpoint(path, name: str, data: dict, **kwargs) -> None:
    """A checkpoint of model `name` with its initial weights (learning is not the point)."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    extra = model.describe() if hasattr(model, "describe") else {}
    save_checkpoint(path, {"model": {"name": name, "kwargs": kwargs}, "data": {**data, **extra},
                           "trainer": {"model": model.state_dict(), "epoch": 0}})


SCENE_DATA = {"dataset": "squares", "kind": "scenes", "classes": ["red", "blue"],
              "classes_zh": ["红", "蓝"], "image_size": SIDE}


def scene_photo(scenes, i: int = 0) -> tuple[Image.Image, torch.Tensor]:
    """Test image i cropped to 64 x 48 (not square) and its true boxes (M, 4)."""
    data = scenes["test"]
    img = Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).crop((0, 0, SIDE, 48))
    return img, data.boxes[i][data.labels[i] >= 0]


# -- the letterbox and its inverse --------------------------------------------------------------
def test_letterbox_mapping_is_exact_for_a_known_resize():
    box = Letterbox.fit(256, 128, 128)  # halved: 128 x 64, centred 32 px from the top
    assert (box.scale_x, box.scale_y, box.left, box.top, box.inner) == (0.5, 0.5, 0, 32, (128, 64))
    model_px = torch.tensor([[10.0, 42.0, 50.0, 82.0], [0.0, 0.0, 128.0, 128.0]])
    expected = torch.tensor([[20.0, 20.0, 100.0, 100.0], [0.0, 0.0, 256.0, 128.0]])  # clipped
    assert torch.equal(box.to_original(model_px).float(), expected)
    tall = Letterbox.fit(30, 90, 60)  # x 2/3: 20 x 60, 20 px from the left
    assert (tall.left, tall.top, tall.inner) == (20, 0, (20, 60))
    assert torch.allclose(tall.to_original(torch.tensor([[20.0, 0.0, 40.0, 60.0]])),
                          torch.tensor([[0.0, 0.0, 30.0, 90.0]], dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([64, 128, 320]))
def test_the_pasted_image_maps_back_onto_the_whole_original(width, height, side):
    box = Letterbox.fit(width, height, side)
    w, h = box.inner
    assert max(w, h) == side and 0 <= box.left <= side - w and 0 <= box.top <= side - h
    inner = torch.tensor([[box.left, box.top, box.left + w, box.top + h]], dtype=torch.float64)
    assert torch.allclose(box.to_original(inner),
                          torch.tensor([[0, 0, width, height]], dtype=torch.float64))


def test_letterbox_pads_with_the_mean_colour_and_keeps_proportions():
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    square, box = letterbox(img, 64, (128, 128, 128))
    a = np.asarray(square)
    assert a.shape == (64, 64, 3) and box.top == 16 and box.inner == (64, 32)
    assert (a[:16] == 128).all() and (a[48:] == 128).all() and (a[16:48] == (200, 10, 10)).all()


def test_draw_boxes_outlines_and_labels_in_english_or_chinese(monkeypatch):
    img = Image.new("RGB", (200, 160), (100, 100, 100))
    boxes = [{"index": 1, "label": "blue", "label_zh": "蓝", "score": 0.9,
              "box": [10.0, 40.0, 110.0, 140.0]}]
    for lang in ("en", "zh"):
        out, note = detect.draw_boxes(img, boxes, lang)
        a = np.asarray(out).astype(int)
        assert out.size == img.size and note is None
        assert (a[139, 12:108] == COLOURS[1]).all() and (a[60:120, 10] == COLOURS[1]).all()
        assert (a[90, 20:100] == 100).all()  # inside: untouched
        assert (a[20:40, 10:40] != 100).any()  # the label sits above the box
    monkeypatch.setattr(detect, "cjk_font_file", lambda: None)
    out, note = detect.draw_boxes(img, boxes, "zh")
    assert "no CJK font" in note and (np.asarray(out)[139, 12:108] == COLOURS[1]).all()


# -- dlcamp detect ------------------------------------------------------------------------------
def test_cli_detect_prints_and_draws_boxes_in_original_pixels(yolo_run, scenes, tmp_path, capsys):
    crop, truth = scene_photo(scenes)  # 64 x 48
    big = crop.resize((128, 96), Image.Resampling.NEAREST)  # the photo: 2x the crop
    photo, drawn = tmp_path / "photo.png", tmp_path / "boxed.png"
    big.save(photo)
    assert main(["detect", str(yolo_run), str(photo), "--out", str(drawn), "--json",
                 "--score", "0.05"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["width"], result["height"]) == (128, 96) and result["boxes"]
    got = torch.tensor([b["box"] for b in result["boxes"]])  # (K, 4) photo px

    # what the model finds in the crop letterboxed by hand (2x shrink of a 2x nearest
    # enlargement gives back the crop's pixels): the same boxes, x2, shifted up by the band
    served = ServedModel.load(yolo_run)
    det = detector_for(served)
    square = Image.new("RGB", (SIDE, SIDE), det.fill)
    square.paste(crop, (0, 8))
    x = (np.asarray(square, dtype=np.float32) / 255 - det.mean) / det.std
    outputs = served.forward(torch.from_numpy(x).permute(2, 0, 1)[None])
    ref = det.decoder.detect(outputs, score_threshold=0.05)[0]
    expected = ((ref["boxes"] - torch.tensor([0, 8, 0, 8])) * 2)
    expected = expected.clamp(min=0).minimum(torch.tensor([128, 96, 128, 96]))
    assert torch.allclose(got, expected.float(), atol=0.01)
    assert [b["score"] for b in result["boxes"]] == pytest.approx(ref["scores"].tolist(), abs=1e-4)
    # the trained detector found the square(s) that the crop keeps, in photo pixels
    seen = truth[truth[:, 3] <= 48] * 2
    assert len(seen) > 0  # image 0 keeps a whole square in the crop
    if len(seen):
        assert box_iou(seen, got).max(dim=1).values.min() > 0.5, (seen, got)

    out = Image.open(drawn).convert("RGB")
    assert out.size == (128, 96)
    assert not np.array_equal(np.asarray(out), np.asarray(big))  # boxes were drawn

    assert main(["detect", str(yolo_run), str(photo), str(photo), "--out-dir",
                 str(tmp_path / "many"), "--lang", "zh", "--score", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "photo.png (128 x 96 px)" in text and ("红" in text or "蓝" in text)
    assert (tmp_path / "many" / "photo-boxed.png").is_file()


def test_cli_detect_errors_are_one_readable_line(yolo_run, tmp_path, capsys):
    classifier = tmp_path / "cnn.pt"
    random_checkpoint(classifier, "lenet", {"dataset": "mnist", "kind": "image",
                                            "classes": list("0123456789"),
                                            "classes_zh": list("0123456789"), "mean": 0.1,
                                            "std": 0.3, "shape": [1, 28, 28]})
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    photo = tmp_path / "ok.png"
    Image.new("RGB", (30, 20)).save(photo)
    for args, says in (([str(classifier), str(photo)], "not a detector"),
                       ([str(yolo_run), str(tmp_path / "missing.png")], "no image file"),
                       ([str(yolo_run), str(text)], "not an image"),
                       ([str(tmp_path / "nothing"), str(photo)], "no checkpoint"),
                       ([str(yolo_run), str(photo), str(photo), "--out", "x.png"], "--out-dir")):
        assert main(["detect", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


# -- POST /detect -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(yolo_run):
    return TestClient(create_app(ServedModel.load(yolo_run)))


def test_detect_endpoint_answers_boxes_in_the_uploads_pixels(client, scenes):
    crop, _ = scene_photo(scenes)
    big = crop.resize((128, 96), Image.Resampling.NEAREST)
    data = png(big)
    r = client.post("/detect?score=0.05", files={"file": ("p.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"], body["model"]) == (128, 96, "yolo")
    assert body["boxes"] and set(body["boxes"][0]) >= {"label", "label_zh", "score", "box"}
    for b in body["boxes"]:
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 <= x2 <= 128 and 0 <= y1 <= y2 <= 96 and b["score"] >= 0.05
        assert (b["label"], b["label_zh"]) in (("red", "红"), ("blue", "蓝"))
    as_json = client.post("/detect?score=0.05",
                          json={"image": base64.b64encode(data).decode()}).json()
    assert as_json["boxes"] == body["boxes"]  # the same answer for either kind of body
    small = client.post("/detect?score=0.05", files={"file": ("p.png", png(crop), "image/png")})
    halves = [[v / 2 for v in b["box"]] for b in body["boxes"]]
    assert np.allclose([b["box"] for b in small.json()["boxes"]], halves, atol=0.02)

    r = client.post("/detect?score=2", files={"file": ("p.png", data, "image/png")})
    assert r.status_code == 422 and "score" in r.json()["detail"]
    r = client.post("/predict", files={"file": ("p.png", data, "image/png")})
    assert r.status_code == 404 and "/detect" in r.json()["detail"]
    assert client.get("/healthz").json()["kind"] == "detection"
    assert "detect?score" in client.get("/").text  # the page posts a detector's photos there


def test_detect_endpoint_refuses_bad_input_like_predict(client):
    good = png(Image.new("RGB", (40, 30), (90, 90, 90)))
    cases = [c for c in malformed_requests(good) if "top_k" not in c.name]  # /detect has none
    assert len(cases) > 20
    for case in cases:
        headers = {"content-type": case.content_type} if case.content_type else {}
        r = client.post("/detect", content=case.body, headers=headers)
        assert r.status_code == case.status, (case.name, r.status_code, r.text)
        assert len(r.json()["detail"]) > 10, case.name


def test_a_classifier_server_refuses_detect():
    meta = {"model": "lenet", "classes": ["a", "b"], "classes_zh": ["甲", "乙"],
            "dataset": "x", "preprocess": Preprocess().to_dict()}
    served = ServedModel(meta, lambda x: np.zeros((len(x), 2), np.float32), "torch")
    client = TestClient(create_app(served, batching=False))
    good = png(Image.new("L", (28, 28)))
    r = client.post("/detect", files={"file": ("p.png", good, "image/png")})
    assert r.status_code == 404 and "/predict" in r.json()["detail"]
    assert client.post("/predict", files={"file": ("p.png", good, "image/png")}).status_code == 200


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["yolo", "tinyssd"])
def test_onnx_export_equals_torch_and_serves_detect(name, yolo_run, tmp_path, scenes):
    if name == "yolo":
        run = yolo_run
    else:
        run = tmp_path / "ssd.pt"
        random_checkpoint(run, "tinyssd", SCENE_DATA, num_classes=2, image_size=SIDE, width=0.5)
    path = export_onnx(run, tmp_path / f"{name}.onnx")
    torch_model = ServedModel.load(run)
    x = torch.randn(3, 3, SIDE, SIDE)  # a batch of 3: the batch axis is dynamic
    want = torch_model.forward(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})
    assert len(got) == len(want) >= 2
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        np.testing.assert_allclose(g, w.numpy(), atol=2e-4, rtol=1e-4)

    onnx_model = ServedModel.load(path)
    assert onnx_model.backend == "onnx" and onnx_model.module is None
    data = png(Image.fromarray(scenes["test"].images[1].permute(1, 2, 0).numpy()))
    answers = [TestClient(create_app(m)).post("/detect?score=0.05", files={
        "file": ("p.png", data, "image/png")}).json() for m in (torch_model, onnx_model)]
    assert answers[1]["backend"] == "onnx"
    a, b = (ans["boxes"] for ans in answers)
    assert len(a) == len(b) and [x["label"] for x in a] == [x["label"] for x in b]
    assert np.allclose([x["box"] for x in a], [x["box"] for x in b], atol=0.05)
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-3)
