"""Malformed requests every server must survive: a 4xx with a reason, never a 5xx or a crash.

`malformed_requests(good_png)` returns raw requests (name, content type, body, expected
status). tests/test_serve.py sends them through the in-process test client, bench/serve.py to
the real server process over loopback.
"""

from __future__ import annotations

import base64
import io
import json
from typing import NamedTuple

from PIL import Image

BOUNDARY = "dlcampboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class BadRequest(NamedTuple):
    name: str
    content_type: str | None
    body: bytes
    status: int


def multipart(field: str, data: bytes, filename: str = "x.png",
              ctype: str = "image/png") -> bytes:
    """A multipart/form-data body with one part (boundary BOUNDARY)."""
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + data + \
        f"\r\n--{BOUNDARY}--\r\n".encode()


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


def malformed_requests(good_png: bytes, max_body: int = 8 * 1024 * 1024) -> list[BadRequest]:
    img = Image.open(io.BytesIO(good_png))
    jpeg, bomb, gif = io.BytesIO(), io.BytesIO(), io.BytesIO()
    img.convert("L").save(jpeg, "JPEG")
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")  # 400 megapixels in a few kB
    Image.new("L", (1, 1)).save(gif, "GIF")
    b64 = base64.b64encode(good_png).decode()
    big = b"\x89PNG" + b"0" * (max_body + 1024)
    return [
        BadRequest("not an image", MULTIPART, multipart("file", b"hello, I am text"), 415),
        BadRequest("truncated PNG", MULTIPART, multipart("file", good_png[:len(good_png) // 2]),
                   400),
        BadRequest("truncated JPEG", MULTIPART, multipart("file", jpeg.getvalue()[:300]), 400),
        BadRequest("PNG header only", MULTIPART, multipart("file", good_png[:33]), 415),
        BadRequest("GIF cut after its header", MULTIPART, multipart("file", gif.getvalue()[:10]),
                   415),
        BadRequest("empty file", MULTIPART, multipart("file", b""), 400),
        BadRequest("empty body", "application/json", b"", 400),
        BadRequest("wrong form field", MULTIPART, multipart("image", good_png), 422),
        BadRequest("multipart without a file", MULTIPART,
                   f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                   f"hi\r\n--{BOUNDARY}--\r\n".encode(), 422),
        BadRequest("broken multipart", MULTIPART, b"--nonsense", 400),
        BadRequest("decompression bomb", MULTIPART, multipart("file", bomb.getvalue()), 413),
        BadRequest("body over the cap", MULTIPART, multipart("file", big), 413),
        BadRequest("JSON over the cap", "application/json", _json({"image": "A" * max_body}),
                   413),
        BadRequest("text/plain", "text/plain", good_png, 415),
        BadRequest("no content type", None, good_png, 415),
        BadRequest("invalid base64", "application/json", _json({"image": "not base64!!"}), 400),
        BadRequest("base64 of text", "application/json",
                   _json({"image": base64.b64encode(b"plain").decode()}), 415),
        BadRequest("empty base64", "application/json", _json({"image": ""}), 400),
        BadRequest("JSON without image", "application/json", _json({"picture": b64}), 422),
        BadRequest("JSON image is a number", "application/json", _json({"image": 3}), 422),
        BadRequest("JSON is a list", "application/json", _json([1, 2]), 422),
        BadRequest("malformed JSON", "application/json", b"{nope", 400),
        BadRequest("top_k zero", "application/json", _json({"image": b64, "top_k": 0}), 422),
        BadRequest("top_k text", "application/json", _json({"image": b64, "top_k": "many"}),
                   422),
    ]
