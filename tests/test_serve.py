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
import tracemalloc
import urllib.request

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, features

from conftest import SERVE_IMAGES as N_IMAGES
from dlcamp.data import load_dataset
from dlcamp.data.datasets import ImageSet
from dlcamp.data.loader import TensorLoader
from dlcamp.serve.app import create_app
from dlcamp.serve.badinput import encode, malformed_requests, png16, unusual_images
from dlcamp.serve.export import export_onnx
from dlcamp.serve.model import ServedModel
from dlcamp.serve.preprocess import (
    MAX_PIXELS,
    Preprocess,
    accepted_formats,
    formats_sentence,
    value_range,
)
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
    as Fashion-MNIST's garments do (preprocessing does not crop; lesson 10.01 measures that)."""
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


def test_bad_input_sweep_4xx_unusual_images_200_server_stays_up(client, test_images):
    good = png(test_images[0][0])
    cases = malformed_requests(good)
    assert len(cases) >= 20
    for case in cases + unusual_images(good):
        headers = {"content-type": case.content_type} if case.content_type else {}
        response = client.post("/predict", content=case.body, headers=headers)
        assert response.status_code == case.status, (case.name, response.status_code,
                                                      response.text)
        if case.status == 200:  # an unusual but valid image: an answer
            assert len(response.json()["predictions"]) == 3, case.name
            continue
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10, (case.name, detail)
    response = post_file(client, png(test_images[0][0]), params={"top_k": "many"})
    assert response.status_code == 422  # the query parameter is checked too
    assert client.get("/predict").status_code == 405
    assert client.get("/healthz").json()["status"] == "ok"


def test_deep_images_are_scaled_not_clipped(client, test_images):
    """16-bit, 32-bit and float images give the pixels and the answer of their 8-bit twin."""
    pixels, _ = test_images
    pre = Preprocess()
    for eight in pixels[:6]:
        deep = eight.astype(np.uint16) * 257  # (28, 28): v -> v * 257, 255 -> 65535
        twins = {
            "16-bit PNG": encode(Image.fromarray(deep)),
            "16-bit grey + alpha PNG": png16(np.stack([deep, np.full_like(deep, 65535)], -1)),
            "48-bit RGB PNG": png16(np.stack([deep] * 3, axis=-1)),
            "16-bit TIFF": encode(Image.fromarray(deep), "TIFF"),
            "32-bit integer TIFF": encode(Image.fromarray(deep.astype(np.int32)), "TIFF"),
            "32-bit float TIFF": encode(Image.fromarray(eight.astype(np.float32) / 255), "TIFF"),
        }
        want = pre(png(eight))
        for name, data in twins.items():
            np.testing.assert_array_equal(pre(data), want, err_msg=name)
        big_endian = Image.frombytes("I;16B", (28, 28), deep.astype(">u2").tobytes())
        np.testing.assert_array_equal(pre.to_array(big_endian), want)
    # scaled to 8 bits before shrinking: a bigger, non-square twin gives the same pixels too
    big = Image.fromarray(pixels[1]).resize((70, 56), Image.Resampling.NEAREST)
    deep_big = Image.fromarray(np.asarray(big).astype(np.uint16) * 257)
    np.testing.assert_array_equal(pre(encode(deep_big)), pre(encode(big)))
    answers = [post_file(client, data, params={"top_k": 10}).json()["predictions"]
               for data in (png(pixels[0]), encode(Image.fromarray(pixels[0].astype(np.uint16)
                                                                   * 257)))]
    assert answers[0] == answers[1]


def test_value_range_rule():
    """What becomes 0 and 255: full scale for 16 bits, the image's own range otherwise."""
    def image(values, dtype):
        return Image.fromarray(np.array([values], dtype=dtype))

    assert value_range(Image.new("L", (2, 2))) == (0, 255)
    assert value_range(Image.new("I;16", (2, 2))) == (0, 65535)
    assert value_range(image([0, 1000], np.int32)) == (0, 65535)  # 16-bit data in 32 bits
    assert value_range(image([0, 70_000], np.int32)) == (0, 70_000)
    assert value_range(image([-5, 10], np.int32)) == (-5, 10)
    assert value_range(image([0.0, 0.5], np.float32)) == (0, 1)
    assert value_range(image([-1.0, 3.0], np.float32)) == (-1, 3)
    assert value_range(image([2.0, np.nan, 4.0, np.inf], np.float32)) == (2, 4)
    assert value_range(image([5.0, 5.0], np.float32)) == (5, 6)  # constant: black
    float_nan = np.zeros((28, 28), np.float32)
    float_nan[8:20, 8:20], float_nan[0, 0] = 2.0, np.nan
    assert Preprocess()(encode(Image.fromarray(float_nan), "TIFF")).max() == 255


def test_extreme_shapes_and_huge_images_use_bounded_memory():
    """The image is shrunk before numpy sees it: a 200,000 x 1 strip (a few hundred bytes of
    PNG) is not padded to a 200,000-pixel square (40 GB before this was fixed), and a
    24-megapixel photo of grey paper is not copied as float32 (216 MB before). tracemalloc
    counts numpy's and Python's allocations; the sweep above sends the strips end to end."""
    pre = Preprocess()
    pre(png(np.zeros((3, 5), np.uint8)))  # imports and plugin registration: not counted
    strip = np.zeros((1, 200_000), dtype=np.uint8)
    strip[0, 80_000:120_000] = 255  # a bright segment in the middle fifth
    paper = Image.new("L", (6000, MAX_PIXELS // 6000), 180)  # grey paper, at the pixel cap
    ImageDraw.Draw(paper).rectangle((1500, 1000, 4500, 3000), fill=30)
    for name, img in (("200000 x 1", Image.fromarray(strip)),
                      ("1 x 200000", Image.fromarray(strip.T.copy())), ("paper", paper)):
        data = encode(img)
        tracemalloc.start()
        try:
            out = pre(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        decoded = img.width * img.height  # bytes of the decoded 8-bit image
        # at most one copy of the decoded image, plus the PNG decoder's read buffers
        assert peak < decoded + 256 * 1024, (name, peak, decoded)
        assert out.shape == (28, 28) and out.dtype == np.uint8
        lit_rows, lit_cols = np.nonzero(out.any(axis=1))[0], np.nonzero(out.any(axis=0))[0]
        if name == "200000 x 1":  # a line across the middle, the segment in its middle
            assert lit_rows.tolist() == [13] and 10 <= lit_cols.min() <= lit_cols.max() <= 17
        elif name == "1 x 200000":
            assert lit_cols.tolist() == [13] and 10 <= lit_rows.min() <= lit_rows.max() <= 17
        else:  # the dark object, inverted and stretched onto a black background
            assert out[0].max() == 0 and out[14, 14] == 255


def test_base64_with_line_breaks_is_accepted(client, test_images):
    data = png(test_images[0][3])
    plain = client.post("/predict", json={"image": base64.b64encode(data).decode()})
    lines = base64.encodebytes(data).decode()  # as the `base64` command: 76-character lines
    assert lines.count("\n") > 2
    for text in (lines, lines.replace("\n", "\r\n"), " " + lines.replace("\n", " \n\t ")):
        response = client.post("/predict", json={"image": text})
        assert response.json()["predictions"] == plain.json()["predictions"]
    for garbage in (lines.replace("\n", "\n*", 1), lines + "!", lines.replace("\n", "\x0b")):
        response = client.post("/predict", json={"image": garbage})
        assert response.status_code == 400 and "base64" in response.json()["detail"]


def test_messages_list_the_formats_this_pillow_decodes(client, test_images):
    sentence = formats_sentence()
    for name in ("PNG", "JPEG", "GIF", "BMP", "TIFF"):
        assert name in sentence
    assert ("WebP" in sentence) == features.check_module("webp")
    assert ("AVIF" in sentence) == ("avif" in features.modules and features.check("avif"))
    picture = Image.fromarray(test_images[0][0]).convert("RGB")
    for fmt in accepted_formats():  # every format named really decodes
        if fmt in Image.SAVE:
            assert Preprocess()(encode(picture, fmt)).shape == (28, 28), fmt
    cases = {"not an image": (b"hello, I am text", 415), "empty": (b"", 400),
             "HEIC": (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64), 415),
             "TGA": (encode(picture, "TGA"), 415)}
    for name, (data, status) in cases.items():
        response = post_file(client, data)
        assert response.status_code == status, name
        assert sentence in response.json()["detail"], name
    assert "HEIC" in post_file(client, cases["HEIC"][0]).json()["detail"]


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
