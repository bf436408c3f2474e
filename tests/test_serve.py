"""Serving: the API answers like `dlcamp evaluate`, phone photos work, ONNX equals PyTorch,
bad input gets a readable 4xx, and the real server process answers on loopback."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import SERVE_IMAGES as N_IMAGES
from dlcamp.data import load_dataset
from dlcamp.data.datasets import ImageSet
from dlcamp.data.loader import TensorLoader
from dlcamp.serve.app import create_app
from dlcamp.serve.badinput import malformed_requests
from dlcamp.serve.export import export_onnx
from dlcamp.serve.model import ServedModel
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint
from test_cli import assert_one_line_error, dlcamp


@pytest.fixture(scope="module")
def client(run_dir):
    return TestClient(create_app(ServedModel.load(run_dir)))


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def post_file(client, data: bytes, name: str = "x.png", field: str = "file", **kwargs):
    return client.post("/predict", files={field: (name, data, "image/png")}, **kwargs)


def evaluate_probabilities(run_dir, pixels: np.ndarray) -> np.ndarray:
    """What `dlcamp evaluate` computes: the checkpoint's model on a TensorLoader batch
    normalised with the checkpoint's statistics."""
    ckpt = load_checkpoint(run_dir)
    data = ckpt["data"]
    images = torch.from_numpy(pixels)[:, None]  # (N, 1, 28, 28) uint8
    subset = ImageSet("x", "test", images, torch.zeros(len(images), dtype=torch.long),
                      data["classes"], data["classes_zh"], data["mean"], data["std"])
    x, _ = next(iter(TensorLoader(subset, batch_size=len(images))))
    with torch.no_grad():
        return torch.softmax(model_from_checkpoint(ckpt)(x), dim=1).numpy()


def test_multipart_and_json_answers(client):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model": "cnn", "backend": "torch", "classes": 10,
                      "batching": False}
    ds = load_dataset("fashion-mnist", "test")
    data = png(ds.images[0, 0].numpy())
    answer = post_file(client, data).json()
    preds = answer["predictions"]
    assert len(preds) == 3 and preds[0]["probability"] >= preds[1]["probability"]
    assert {"index", "label", "label_zh", "probability"} <= set(preds[0])
    assert preds[0]["label_zh"] in ds.classes_zh and answer["timing_ms"]["total"] > 0
    as_json = client.post("/predict", json={"image": base64.b64encode(data).decode(),
                                            "top_k": 5}).json()
    assert as_json["predictions"][:3] == preds and len(as_json["predictions"]) == 5
    data_url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert client.post("/predict?top_k=1", json={"image": data_url}).json()["predictions"] \
        == preds[:1]
    page = client.get("/")
    assert page.status_code == 200 and 'id="canvas"' in page.text
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_api_equals_evaluate_on_test_images(client, run_dir, test_images):
    pixels, _ = test_images
    expected = evaluate_probabilities(run_dir, pixels)
    for i in range(0, N_IMAGES, 4):
        top = post_file(client, png(pixels[i]), params={"top_k": 10}).json()["predictions"]
        got = np.zeros(10)
        for p in top:
            got[p["index"]] = p["probability"]
        np.testing.assert_allclose(got, expected[i], atol=2e-6)


def _phone_photo(pixels: np.ndarray, paper: int = 255) -> bytes:
    """The garment as a phone would see it: dark on light paper, 960 px, RGB, JPEG, stored
    rotated, with an EXIF orientation tag that says how to turn it upright. It fills the frame
    as Fashion-MNIST's garments do (preprocessing does not crop; lesson 4.01 measures that)."""
    ink = (255 - pixels.astype(np.float32)) * (paper / 255.0)  # paper colour where it was 0
    upright = Image.fromarray(ink.astype(np.uint8)).resize((960, 960),
                                                           Image.Resampling.BICUBIC)
    stored = upright.convert("RGB").rotate(90, expand=True)  # as the sensor stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def test_phone_photos_get_the_same_answer(client, run_dir, test_images):
    pixels, _ = test_images
    probs = evaluate_probabilities(run_dir, pixels)
    confident = [i for i in range(N_IMAGES) if probs[i].max() > 0.9][:12]
    assert len(confident) >= 6
    preprocess = ServedModel.load(run_dir).preprocess
    for paper in (255, 200):  # white paper, and grey paper in a dim room
        same = 0
        for i in confident:
            photo = _phone_photo(pixels[i], paper=paper)
            # upright, inverted, background at 0, back at 28 x 28: close to the original
            restored = preprocess(photo).astype(np.float32)
            assert np.abs(restored - pixels[i]).mean() < 14, (paper, i)
            answer = post_file(client, photo, name="IMG_0001.jpg").json()
            same += answer["predictions"][0]["index"] == int(probs[i].argmax())
        assert same >= len(confident) - 1, (paper, same, len(confident))


def test_bad_input_sweep_all_4xx_and_the_server_stays_up(client, test_images):
    cases = malformed_requests(png(test_images[0][0]))
    assert len(cases) >= 20
    for case in cases:
        headers = {"content-type": case.content_type} if case.content_type else {}
        response = client.post("/predict", content=case.body, headers=headers)
        assert response.status_code == case.status, (case.name, response.status_code,
                                                      response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10, (case.name, detail)
    response = post_file(client, png(test_images[0][0]), params={"top_k": "many"})
    assert response.status_code == 422  # the query parameter is checked too
    assert client.get("/predict").status_code == 405
    assert client.get("/healthz").json()["status"] == "ok"


def test_onnx_export_equals_pytorch_with_dynamic_batch(run_dir, test_images, tmp_path):
    path = export_onnx(run_dir, tmp_path / "model.onnx")
    pixels, _ = test_images
    eager, onnx = ServedModel.load(run_dir), ServedModel.load(path)
    assert onnx.backend == "onnx" and onnx.classes == eager.classes
    for batch in (1, 7, N_IMAGES):
        np.testing.assert_allclose(onnx.logits(list(pixels[:batch])),
                                   eager.logits(list(pixels[:batch])), atol=1e-4, rtol=1e-4)
    client = TestClient(create_app(onnx))
    answer = post_file(client, png(pixels[3])).json()
    assert answer["backend"] == "onnx"
    assert answer["predictions"][0]["index"] == int(eager.logits([pixels[3]]).argmax())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model_path):
    """`dlcamp serve MODEL --port P` as a real process on loopback; yields its base URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlcamp", "serve", str(model_path),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "DLCAMP_QUIET": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "the server did not come up"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15), proc.stdout.read().decode()[-2000:]


def test_real_server_process_on_loopback(run_dir, test_images):
    pixels, _ = test_images
    with running_server(run_dir) as base:
        body = json.dumps({"image": base64.b64encode(png(pixels[0])).decode()}).encode()
        request = urllib.request.Request(f"{base}/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert len(json.load(r)["predictions"]) == 3
        bad = urllib.request.Request(f"{base}/predict", data=b"garbage",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=10)
        assert e.value.code == 400 and "JSON" in json.load(e.value)["detail"]
        with urllib.request.urlopen(f"{base}/", timeout=5) as r:
            assert b"canvas" in r.read()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:  # still up
            assert json.load(r)["status"] == "ok"


def test_cli_export_and_refusals(run_dir, tmp_path):
    out = dlcamp("export", str(run_dir), "--out", str(tmp_path / "m.onnx")).stdout
    assert "m.onnx" in out and (tmp_path / "m.onnx").stat().st_size > 1000
    assert_one_line_error(dlcamp("export", str(tmp_path / "nothing"), check=False),
                          "no checkpoint")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    assert_one_line_error(dlcamp("serve", str(tmp_path / "bad.onnx"), check=False),
                          "not a loadable ONNX model")


def test_micro_batching_gives_the_same_answers(run_dir, test_images):
    """16 concurrent requests share forward passes and get exactly their own answers."""
    import asyncio

    import httpx

    pixels, _ = test_images
    model = ServedModel.load(run_dir)
    app = create_app(model, batching=True, max_batch=8, max_wait_ms=20)
    expected = model.predict(list(pixels[:16]), top_k=3)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*[
                client.post("/predict", files={"file": ("x.png", png(pixels[i]), "image/png")})
                for i in range(16)])
        return [r.json()["predictions"] for r in responses]

    got = asyncio.run(run())
    for answer, want in zip(got, expected, strict=True):
        assert [p["index"] for p in answer] == [p["index"] for p in want]
        for a, b in zip(answer, want, strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    batcher = app.state.batcher
    assert batcher.items == 16 and batcher.batches < 16  # some requests shared a batch
