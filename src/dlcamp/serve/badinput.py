"""Hard requests every server must survive: malformed ones get a 4xx with a reason, unusual but
valid images get an answer (200); never a 5xx or a crash.

`malformed_requests(good_png)` and `unusual_images(good_png)` return raw requests (name,
content type, body, expected status). tests/test_serve.py sends them through the in-process
test client, bench/serve.py to the real server process over loopback. Each entry is a kind of
fault, not an instance: a new kind found in the wild is added here, once, for both.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from dlcamp.serve.preprocess import MAX_PIXELS

BOUNDARY = "dlcampboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class RawRequest(NamedTuple):
    name: str
    content_type: str | None
    body: bytes
    status: int  # the status the server must answer with


def multipart(field: str, data: bytes, filename: str = "x.png",
              ctype: str = "image/png") -> bytes:
    """A multipart/form-data body with one part (boundary BOUNDARY)."""
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + data + \
        f"\r\n--{BOUNDARY}--\r\n".encode()


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """The bytes of `img` saved as `fmt` (Pillow options pass through)."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 pixels (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or
    (H, W, 4) RGBA, written by hand: Pillow writes only the first of these."""
    h, w = pixels.shape[:2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[1 if pixels.ndim == 2 else pixels.shape[2]]
    rows = pixels.astype(">u2").reshape(h, -1)  # big-endian samples, row after row
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def malformed_requests(good_png: bytes, max_body: int = 8 * 1024 * 1024) -> list[RawRequest]:
    """Requests that must get the 4xx in their `status`, each with a readable reason."""
    img = Image.open(io.BytesIO(good_png)).convert("L")
    jpeg, gif = encode(img, "JPEG"), encode(Image.new("L", (1, 1)), "GIF")
    bomb = encode(Image.new("1", (20_000, 20_000)))  # 400 megapixels in a few kB
    over_cap = encode(Image.new("1", (6000, MAX_PIXELS // 6000 + 1)))  # one row too many
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)  # an iPhone photo's start
    b64 = base64.b64encode(good_png).decode()
    lines = base64.encodebytes(good_png).decode().splitlines()
    garbage_lines = "\n".join(lines[:1] + ["<not base64!>"] + lines[1:])
    big = b"\x89PNG" + b"0" * (max_body + 1024)
    return [
        RawRequest("not an image", MULTIPART, multipart("file", b"hello, I am text"), 415),
        RawRequest("truncated PNG", MULTIPART, multipart("file", good_png[:len(good_png) // 2]),
                   400),
        RawRequest("truncated JPEG", MULTIPART, multipart("file", jpeg[:300]), 400),
        RawRequest("PNG header only", MULTIPART, multipart("file", good_png[:33]), 415),
        RawRequest("GIF cut after its header", MULTIPART, multipart("file", gif[:10]), 415),
        RawRequest("HEIC photo", MULTIPART, multipart("file", heic, "IMG_0001.HEIC"), 415),
        RawRequest("TGA (a format not accepted)", MULTIPART,
                   multipart("file", encode(img, "TGA"), "x.tga"), 415),
        RawRequest("empty file", MULTIPART, multipart("file", b""), 400),
        RawRequest("empty body", "application/json", b"", 400),
        RawRequest("wrong form field", MULTIPART, multipart("image", good_png), 422),
        RawRequest("multipart without a file", MULTIPART,
                   f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                   f"hi\r\n--{BOUNDARY}--\r\n".encode(), 422),
        RawRequest("broken multipart", MULTIPART, b"--nonsense", 400),
        RawRequest("decompression bomb", MULTIPART, multipart("file", bomb), 413),
        RawRequest("one row over the pixel cap", MULTIPART, multipart("file", over_cap), 413),
        RawRequest("body over the cap", MULTIPART, multipart("file", big), 413),
        RawRequest("JSON over the cap", "application/json", _json({"image": "A" * max_body}),
                   413),
        RawRequest("text/plain", "text/plain", good_png, 415),
        RawRequest("no content type", None, good_png, 415),
        RawRequest("invalid base64", "application/json", _json({"image": "not base64!!"}), 400),
        RawRequest("base64 lines with garbage between", "application/json",
                   _json({"image": garbage_lines}), 400),
        RawRequest("base64 of text", "application/json",
                   _json({"image": base64.b64encode(b"plain").decode()}), 415),
        RawRequest("empty base64", "application/json", _json({"image": ""}), 400),
        RawRequest("JSON without image", "application/json", _json({"picture": b64}), 422),
        RawRequest("JSON image is a number", "application/json", _json({"image": 3}), 422),
        RawRequest("JSON is a list", "application/json", _json([1, 2]), 422),
        RawRequest("malformed JSON", "application/json", b"{nope", 400),
        RawRequest("top_k zero", "application/json", _json({"image": b64, "top_k": 0}), 422),
        RawRequest("top_k text", "application/json", _json({"image": b64, "top_k": "many"}),
                   422),
    ]


def unusual_images(good_png: bytes) -> list[RawRequest]:
    """Valid images of every awkward kind: each must be answered 200.

    Extreme shapes (a 200,000 x 1 strip is a few hundred bytes and a legal image: it is
    shrunk to 28 x 1 and padded, so it gets an answer, not a 4xx), an image right at the
    pixel cap, 16/32-bit and float pixels, alpha, palettes, 1-bit, CMYK, and base64 with the
    line breaks that `base64` and `base64.encodebytes` write.
    """
    grey = np.asarray(Image.open(io.BytesIO(good_png)).convert("L"))  # (H, W) uint8
    deep = grey.astype(np.uint16) * 257  # the same picture in 16 bits
    opaque = np.full_like(deep, 65535)
    strip = np.zeros((1, 200_000), dtype=np.uint8)
    strip[0, ::7] = 255
    at_cap = Image.new("1", (6000, MAX_PIXELS // 6000), 1)  # white paper, 24 megapixels
    ImageDraw.Draw(at_cap).rectangle((1500, 1000, 4500, 3000), fill=0)  # a dark object
    palette = Image.fromarray(grey).convert("P")
    palette.info["transparency"] = 0
    lines = base64.encodebytes(good_png).decode()  # 76-character lines ending in \n
    files = [
        ("200000 x 1 PNG", encode(Image.fromarray(strip))),
        ("1 x 200000 PNG", encode(Image.fromarray(strip.T.copy()))),
        ("1 x 1 PNG", encode(Image.new("L", (1, 1), 200))),
        ("PNG at the pixel cap", encode(at_cap)),
        ("16-bit greyscale PNG", encode(Image.fromarray(deep))),
        ("16-bit greyscale + alpha PNG", png16(np.stack([deep, opaque], axis=-1))),
        ("48-bit RGB PNG", png16(np.stack([deep] * 3, axis=-1))),
        ("16-bit TIFF", encode(Image.fromarray(deep), "TIFF")),
        ("32-bit integer TIFF", encode(Image.fromarray(deep.astype(np.int32)), "TIFF")),
        ("32-bit float TIFF", encode(Image.fromarray(grey.astype(np.float32) / 255), "TIFF")),
        ("1-bit PNG", encode(Image.fromarray(grey > 127))),
        ("palette PNG with transparency", encode(palette)),
        ("CMYK JPEG", encode(Image.fromarray(grey).convert("CMYK"), "JPEG")),
    ]
    return [RawRequest(name, MULTIPART, multipart("file", data), 200) for name, data in files] + [
        RawRequest("base64 with \\n line breaks", "application/json", _json({"image": lines}),
                   200),
        RawRequest("base64 with \\r\\n line breaks", "application/json",
                   _json({"image": lines.replace("\n", "\r\n")}), 200),
    ]
