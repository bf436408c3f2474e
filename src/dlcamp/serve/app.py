"""The HTTP app: POST an image, get the top-k labels; a web page to draw or upload one.

    POST /predict   multipart/form-data with a `file` field, or JSON {"image": "<base64>"}
                    (line breaks allowed; optional "top_k"; `?top_k=` works for both)
                    -> labels, probabilities, ms
    POST /detect    (a detector's server) the same bodies, `?score=0.3` -> boxes in the
                    image's pixels (dlcamp.serve.detect)
    GET  /healthz   {"status": "ok", ...}
    GET  /          the page: draw on a canvas or choose a photo, see the answer
    GET  /docs      OpenAPI documentation (FastAPI)

Every bad request gets a 4xx with {"detail": "<what was wrong>"}; the server stays up.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from dlcamp.serve.batching import MicroBatcher
from dlcamp.serve.detect import DEFAULT_SCORE, detect_bytes, is_detector_model, parse_score
from dlcamp.serve.model import ServedModel
from dlcamp.serve.preprocess import ImageError, formats_sentence

MAX_BODY = 8 * 1024 * 1024  # bytes; a phone photo is 2-5 MB
MAX_TOP_K = 100
_WHITESPACE = b" \t\r\n"  # removed from base64 text before strict decoding


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it exceeds `limit`, whatever Content-Length said."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ImageError(f"the request body is {int(declared):,} bytes; the limit is "
                         f"{limit:,}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageError(f"the request body is over the limit of {limit:,} bytes",
                             status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _top_k(value: Any) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError) as e:
        raise ImageError(f"top_k must be a whole number, got {value!r}", status=422) from e
    if not 1 <= k <= MAX_TOP_K:
        raise ImageError(f"top_k must be between 1 and {MAX_TOP_K}, got {k}", status=422)
    return k


async def _image_bytes(request: Request, max_body: int) -> tuple[bytes, Any]:
    """The image bytes and the requested top_k (None: default) from either kind of request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            raise ImageError(f"the request body is {int(declared):,} bytes; the limit is "
                             f"{max_body:,}", status=413)
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=max_body)
        except MultiPartException as e:
            raise ImageError(f"the multipart body could not be read: {e.message}") from e
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            fields = ", ".join(sorted(form.keys())) or "none"
            raise ImageError(f"no image in the form field 'file' (fields sent: {fields})",
                             status=422)
        data = await upload.read(max_body + 1)
        if len(data) > max_body:
            raise ImageError(f"the file is over the limit of {max_body:,} bytes", status=413)
        return data, form.get("top_k")
    if ctype == "application/json":
        body = await _read_capped(request, max_body)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ImageError(f"the body is not valid JSON: {e}") from e
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise ImageError('JSON must be an object with a base64 string "image"', status=422)
        text = payload["image"]
        if text.startswith("data:") and "," in text:  # a data: URL from a browser canvas
            text = text.split(",", 1)[1]
        try:  # `base64` and encodebytes break lines (76 characters, \n or \r\n): join them
            compact = text.encode("ascii").translate(None, _WHITESPACE)
            data = base64.b64decode(compact, validate=True)  # anything else: 400
        except (binascii.Error, ValueError) as e:  # (UnicodeEncodeError is a ValueError)
            raise ImageError(f'"image" is not valid base64: {e}') from e
        return data, payload.get("top_k")
    if not ctype:
        raise ImageError("no Content-Type: send multipart/form-data (field 'file') or "
                         "application/json", status=415)
    raise ImageError(f"unsupported Content-Type {ctype!r}: send multipart/form-data "
                     "(field 'file') or application/json ({\"image\": base64})", status=415)


def create_app(model: ServedModel, max_body: int = MAX_BODY, batching: bool = False,
               max_batch: int = 32, max_wait_ms: float = 2.0) -> FastAPI:
    """The app around a loaded model. `batching` groups concurrent requests into one forward
    pass (dlcamp.serve.batching.MicroBatcher)."""
    app = FastAPI(title="dlcamp model server",
                  description=f"{model.meta['model']} trained on {model.meta['dataset']}: "
                  "POST an image to /predict.")
    app.state.model = model
    detector = is_detector_model(model)
    batcher = MicroBatcher(model.predict, max_batch, max_wait_ms) \
        if batching and not detector else None
    app.state.batcher = batcher
    page = resources.files("dlcamp.serve").joinpath("static/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": model.meta["model"], "backend": model.backend,
                "classes": len(model.classes), "batching": batcher is not None,
                **({"kind": "detection"} if detector else {})}

    @app.post("/predict", summary="Classify an image",
              description="multipart/form-data with a `file` field, or JSON "
              '{"image": "<base64 image>", "top_k": 3}; line breaks in the base64 are fine. '
              f"Image formats: {formats_sentence()}.")
    async def predict(request: Request) -> JSONResponse:
        start = time.perf_counter()
        try:
            if detector:
                raise ImageError(f"this server runs a detector ({model.meta['model']}): POST "
                                 "the image to /detect for boxes", status=404)
            data, k = await _image_bytes(request, max_body)
            k = _top_k(request.query_params.get("top_k", k if k is not None else 3))
            decoded = time.perf_counter()
            pixels = model.preprocess(data)
            prepared = time.perf_counter()
            if batcher is not None:
                predictions = await batcher.submit(pixels, k)
            else:
                predictions = model.predict([pixels], top_k=k)[0]
        except ImageError as e:
            return _error(e.status, str(e))
        done = time.perf_counter()
        return JSONResponse({
            "predictions": predictions, "model": model.meta["model"], "backend": model.backend,
            "timing_ms": {"read": round((decoded - start) * 1e3, 3),
                          "preprocess": round((prepared - decoded) * 1e3, 3),
                          "inference": round((done - prepared) * 1e3, 3),
                          "total": round((done - start) * 1e3, 3)}})

    @app.post("/detect", summary="Find objects in an image (a detector's server)",
              description="The same bodies as /predict; `?score=` (0-1, default "
              f"{DEFAULT_SCORE}) is the lowest score kept. Boxes [x1, y1, x2, y2] are in "
              "the uploaded image's pixels.")
    async def detect(request: Request) -> JSONResponse:
        start = time.perf_counter()
        try:
            if not detector:
                raise ImageError(f"this server runs an image classifier ({model.meta['model']}"
                                 "), not a detector: POST the image to /predict", status=404)
            data, _ = await _image_bytes(request, max_body)
            score = parse_score(request.query_params.get("score", DEFAULT_SCORE))
            answer = detect_bytes(model, data, score)
        except ImageError as e:
            return _error(e.status, str(e))
        answer["timing_ms"] = {"total": round((time.perf_counter() - start) * 1e3, 3)}
        return JSONResponse(answer)

    return app


ENV = "DLCAMP_SERVE"  # settings handed to worker processes (JSON)


def app_from_env() -> FastAPI:
    """The app factory each uvicorn worker process calls (settings from $DLCAMP_SERVE)."""
    settings = json.loads(os.environ[ENV])
    threads = settings.pop("threads")
    model = ServedModel.load(settings.pop("path"), threads=threads)
    return create_app(model, **settings)


def serve(path: Path | str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          threads: int | None = None, batching: bool = True, max_batch: int = 32,
          max_wait_ms: float = 2.0) -> None:
    """Run the app with uvicorn (blocks). Several workers are processes that each load the
    model; they share the port. With more than one, each computes on one thread by default
    (threads fighting over the same cores only slow each other down)."""
    import torch
    import uvicorn

    if threads is None and workers > 1:
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    settings = {"path": str(path), "threads": threads, "batching": batching,
                "max_batch": max_batch, "max_wait_ms": max_wait_ms}
    ServedModel.load(path, threads=threads)  # fail here, with one clear error, not per worker
    os.environ[ENV] = json.dumps(settings)
    uvicorn.run("dlcamp.serve.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False)
