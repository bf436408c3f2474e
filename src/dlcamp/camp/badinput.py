"""Malformed requests and imports the camp must refuse with a 4xx and a readable reason.

`malformed_requests(target)` lists raw HTTP requests (method, path, headers, body, the status
the server must answer); `send(host, port, request)` sends one over a fresh connection and
returns (status, reason). tests/test_camp_process.py sends them all to a real
`dlcamp camp serve` process, bench/camp.py to the benchmarked one. Each entry is a kind of
fault, not an instance: a new kind found in the wild is added here, once, for both.

Entries with `lan=True` go to a server bound to a non-loopback address (tokens required);
the others to a loopback server. Neither list needs the other's server to be in any state
beyond what `Target` describes.
"""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image

from dlcamp.camp.ingest import MAX_UPLOAD_BYTES

BOUNDARY = "dlcampcampboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
CSRF = {"X-Camp": "1"}
JSON = {"Content-Type": "application/json", **CSRF}
JSON_CAP = 1024 * 1024  # guard.JSON_LIMIT


class CampRequest(NamedTuple):
    name: str
    method: str
    path: str
    headers: dict[str, str]  # Host is added by send() unless given here
    body: bytes
    status: int  # the status the server must answer with
    lan: bool = False  # send to the LAN-mode server (tokens on) instead of the loopback one
    chunked: bool = False  # send the body with Transfer-Encoding: chunked, no Content-Length


@dataclass(frozen=True)
class Target:
    """What the requests aim at. Loopback server: `project` with 3 classes, its image `image`
    (`width` x `height` px) holding the live box `box` at version `box_version`. LAN server:
    `team_token` opens `own_project`; `other_project` is another team's."""

    project: str
    image: int
    width: int
    height: int
    box: str
    box_version: int
    own_project: str = ""
    other_project: str = ""
    team_token: str = ""


def multipart(field: str, files: list[tuple[str, bytes, str]]) -> bytes:
    """A multipart/form-data body (boundary BOUNDARY): one part per (filename, data, type)."""
    out = b""
    for filename, data, ctype in files:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def zip_bytes(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buffer.getvalue()


def zip_bomb(entries: int = 60, size: int = 10 * 1024 * 1024) -> bytes:
    """A real zip bomb: `entries` files of `size` zero bytes each (600 MB by default) in about
    10 kB. Written by hand so the deflate stream is computed once, not per entry."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(bytes(size)) + packer.flush()
    crc = zlib.crc32(bytes(size))
    local, central = b"", b""
    for i in range(entries):
        name = f"images/zero{i:03d}.png".encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0)
        central += struct.pack("<IH", 0x02014B50, 20) + fields + \
            struct.pack("<HHHII", 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<I", 0x04034B50) + fields + name + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, len(central),
                      len(local), 0)
    return local + central + end


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _json(payload: object) -> bytes:
    return json.dumps(payload, allow_nan=True).encode()


def _box(t: Target, **change: object) -> bytes:
    body = {"edit_id": "bad-input-edit", "base_version": 0, "label": 0, "x1": 1.0, "y1": 1.0,
            "x2": 10.0, "y2": 10.0}
    body.update(change)
    return _json({k: v for k, v in body.items() if v is not ...})


def _imports(t: Target) -> list[CampRequest]:
    """Malformed imports: each must be refused whole (422, or 413 past the cap)."""
    png = tiny_png()
    coco_doc = {"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 3}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                 "bbox": [1, 1, -2, 1]}],
                "categories": [{"id": 1, "name": "apple"}]}
    yaml_text = b"train: images/train\nval: images/train\nnames: {0: apple}\n"
    voc_xml = b"<annotation><filename>a.png</filename><size><width>4</wid"
    bad = [
        ("zip bomb (600 MB of zeros in ~10 kB)", "coco", zip_bomb()),
        ("zip slip (../ in an entry name)", "coco",
         zip_bytes([("annotations.json", _json(coco_doc)), ("../../evil.png", png)])),
        ("zip entry with an absolute path", "yolo",
         zip_bytes([("data.yaml", yaml_text), ("/etc/cron.d/evil", b"x")])),
        ("COCO: a box of negative width", "coco",
         zip_bytes([("annotations.json", _json(coco_doc)), ("images/a.png", png)])),
        ("COCO: JSON syntax error", "coco", b'{"images": [1, 2,'),
        ("COCO: JSON is a list", "coco", b"[]"),
        ("YOLO: a label line with 4 numbers", "yolo",
         zip_bytes([("data.yaml", yaml_text), ("images/train/a.png", png),
                    ("labels/train/a.txt", b"0 0.5 0.5 0.2\n")])),
        ("YOLO: class index not in names", "yolo",
         zip_bytes([("data.yaml", yaml_text), ("images/train/a.png", png),
                    ("labels/train/a.txt", b"7 0.5 0.5 0.2 0.2\n")])),
        ("YOLO: not a zip", "yolo", b"this is not a zip file"),
        ("VOC: truncated XML", "voc",
         zip_bytes([("Annotations/a.xml", voc_xml), ("JPEGImages/a.png", png)])),
        ("VOC: XML entity expansion (billion laughs)", "voc",
         zip_bytes([("Annotations/a.xml", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l '
                     b'"lol"><!ENTITY l2 "&l;&l;&l;&l;&l;">]><annotation>&l2;</annotation>'),
                    ("JPEGImages/a.png", png)])),
    ]
    path = f"/api/projects/{t.project}/import?format="
    out = [CampRequest(f"import {name}", "POST", path + fmt,
                       {"Content-Type": MULTIPART, **CSRF},
                       multipart("file", [("upload.zip", data, "application/zip")]), 422)
           for name, fmt, data in bad]
    out += [
        CampRequest("import: unknown format", "POST", path + "exe",
                    {"Content-Type": MULTIPART, **CSRF},
                    multipart("file", [("x.zip", zip_bytes([("a", b"a")]), "application/zip")]),
                    422),
        CampRequest("import: the zip sent as raw JSON body", "POST", path + "coco", JSON,
                    _json(coco_doc), 415),
        CampRequest("import: multipart without the field `file`", "POST", path + "coco",
                    {"Content-Type": MULTIPART, **CSRF},
                    multipart("upload", [("x.json", _json(coco_doc), "application/json")]),
                    422),
    ]
    return out


def _proposals(t: Target) -> list[CampRequest]:
    """Malformed requests to accept a model's proposals, or to ask for them."""
    accept = f"/api/projects/{t.project}/images/{t.image}/accept"
    bad = [("box_ids is a string", {"edit_id": "bad-acc", "box_ids": "all"}, 422),
           ("501 box ids (cap 500)", {"edit_id": "bad-acc", "box_ids": ["b"] * 501}, 422),
           ("a box id with ../", {"edit_id": "bad-acc", "box_ids": ["../x"]}, 422),
           ("edit_id missing", {"box_ids": [t.box]}, 422),
           ("an unknown box id", {"edit_id": "bad-acc", "box_ids": ["no-such-box"]}, 404)]
    out = [CampRequest(f"accept: {name}", "POST", accept, JSON, _json(body), status)
           for name, body, status in bad]
    propose = f"/api/projects/{t.project}/propose"
    return out + [
        CampRequest("accept on an unknown image", "POST",
                    f"/api/projects/{t.project}/images/{2**40}/accept", JSON,
                    _json({"edit_id": "bad-acc"}), 404),
        CampRequest("propose: the body is a list", "POST", propose, JSON, b"[1]", 422),
        CampRequest("propose: edit_id missing", "POST", propose, JSON,
                    _json({"run": "20261206-093015"}), 422),
    ]


def _uploads(t: Target) -> list[CampRequest]:
    """Uploads that are not photos, or not uploads at all."""
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)  # an iPhone photo's start
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    svg = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
           b'height="10"><script>alert(1)</script></svg>')
    html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
    path = f"/api/projects/{t.project}/images"
    form = {"Content-Type": MULTIPART, **CSRF}

    def up(name: str, files: list[tuple[str, bytes, str]], status: int) -> CampRequest:
        return CampRequest(name, "POST", path, form, multipart("files", files), status)

    return [
        up("upload SVG (with a script) named .jpg", [("cat.jpg", svg, "image/jpeg")], 415),
        up("upload HTML named .png", [("cat.png", html, "image/png")], 415),
        up("upload PDF", [("scan.pdf", pdf, "application/pdf")], 415),
        # a HEIC start that no decoder can read: 415 without pillow-heif, 422 (damaged) with
        up("upload HEIC (header only)", [("IMG_0001.HEIC", heic, "image/heic")],
           422 if importlib.util.find_spec("pillow_heif") else 415),
        up("upload a truncated PNG", [("cut.png", tiny_png(64, 64)[:60], "image/png")], 422),
        up("upload of one photo over 25 MB",
           [("huge.jpg", b"\xff\xd8\xff\xe0" + bytes(MAX_UPLOAD_BYTES), "image/jpeg")], 413),
        CampRequest("upload declaring 300 MB (Content-Length; cap 200 MB)", "POST", path,
                    {**form, "Content-Length": str(300 * 1024 * 1024)}, b"--", 413),
        up("upload of 201 files (cap 200)",
           [(f"f{i}.png", b"x", "image/png") for i in range(201)], 400),
        CampRequest("upload as application/json", "POST", path, JSON,
                    _json({"files": ["a.jpg"]}), 415),
        CampRequest("upload: empty multipart (closing boundary only)", "POST", path, form,
                    f"--{BOUNDARY}--\r\n".encode(), 422),
        CampRequest("upload: multipart without the field `files`", "POST", path, form,
                    multipart("photo", [("a.png", tiny_png(), "image/png")]), 422),
        CampRequest("upload: broken multipart", "POST", path, form, b"--nonsense\r\n", 400),
    ]


def malformed_requests(t: Target) -> list[CampRequest]:
    """Every malformed request, each with the status the camp must answer (see the names)."""
    p, i, b = t.project, t.image, t.box
    box = f"/api/projects/{p}/images/{i}/boxes/new-box"
    old = f"/api/projects/{p}/images/{i}/boxes/{b}"
    big = _json({"edit_id": "x", "pad": "A" * (JSON_CAP + 10)})

    def put(name: str, body: bytes, status: int = 422, path: str = box) -> CampRequest:
        return CampRequest(name, "PUT", path, JSON, body, status)

    def get(name: str, path: str, status: int, **kw: object) -> CampRequest:
        return CampRequest(name, "GET", path, kw.pop("headers", {}), b"", status, **kw)

    lan_auth = {"Authorization": f"Bearer {t.team_token}", **JSON}
    requests = [
        # --- the guard: CSRF header, Host, body caps
        CampRequest("PUT without the X-Camp header", "PUT", box,
                    {"Content-Type": "application/json"}, _box(t), 403),
        CampRequest("PUT with X-Camp: 0", "PUT", box,
                    {"Content-Type": "application/json", "X-Camp": "0"}, _box(t), 403),
        CampRequest("foreign Host header (DNS rebinding)", "PUT", box,
                    {"Host": "evil.example:8080", **JSON}, _box(t), 421),
        get("foreign Host header on a GET", f"/api/projects/{p}", 421,
            headers={"Host": "attacker.test"}),
        put("JSON body over 1 MB (Content-Length)", big, 413),
        CampRequest("JSON body over 1 MB, chunked (no Content-Length)", "PUT", box, JSON, big,
                    413, chunked=True),
        # --- bodies that are not the box
        put("malformed JSON", b'{"edit_id": "x", "label": '),
        put("JSON is a list", b"[1, 2, 3]"),
        put("empty body", b""),
        CampRequest("box JSON sent as text/plain", "PUT", box,
                    {"Content-Type": "text/plain", **CSRF}, _box(t), 422),
        put("label is a string", _box(t, label="apple")),
        put("x1 is a string", _box(t, x1="10px")),
        put("edit_id missing", _box(t, edit_id=...)),
        put("an unknown field", _json({**json.loads(_box(t)), "colour": "red"})),
        put("NaN coordinate", _box(t, x1=float("nan"))),
        put("Infinity coordinate", _box(t, x2=float("inf"))),
        put("coordinate 1e300", _box(t, y2=1e300)),
        put("x1 >= x2", _box(t, x1=50.0, x2=50.0)),
        put("y1 > y2", _box(t, y1=60.0, y2=20.0)),
        put("box outside the image", _box(t, x2=t.width + 50.0)),
        put("negative coordinate", _box(t, x1=-5.0)),
        put("unknown label (class 7 of 3)", _box(t, label=7)),
        put("negative label", _box(t, label=-1)),
        put("bad edit_id (spaces, quotes)", _box(t, edit_id="x' OR 1=1 --")),
        put("edit_id of 65 characters", _box(t, edit_id="e" * 65)),
        put("base_version negative", _box(t, base_version=-1)),
        # --- ids in the path
        put("project id with ..%2F (path traversal)", _box(t),
            404, f"/api/projects/..%2F..%2Fetc/images/{i}/boxes/x"),
        put("project id with %00", _box(t), 422, f"/api/projects/{p}%00/images/{i}/boxes/x"),
        put("project id in capitals", _box(t), 422, f"/api/projects/TEAM/images/{i}/boxes/x"),
        put("box id ..", _box(t), 422, f"/api/projects/{p}/images/{i}/boxes/.."),
        put("box id with ..%2F", _box(t), 404,
            f"/api/projects/{p}/images/{i}/boxes/..%2F..%2Fx"),
        put("box id with %00", _box(t), 422, f"/api/projects/{p}/images/{i}/boxes/a%00b"),
        put("box id of 65 characters", _box(t), 422,
            f"/api/projects/{p}/images/{i}/boxes/{'b' * 65}"),
        get("image id not an integer", f"/api/projects/{p}/images/abc", 422),
        get("image id 10^20", f"/api/projects/{p}/images/{10**20}", 422),
        get("image id 0", f"/api/projects/{p}/images/0", 422),
        get("image id -1", f"/api/projects/{p}/images/-1", 422),
        get("image id 1e3", f"/api/projects/{p}/images/1e3", 422),
        get("unknown image", f"/api/projects/{p}/images/{2**40}", 404),
        get("unknown project", "/api/projects/no-such-team", 404),
        put("box on an unknown project", _box(t), 404,
            f"/api/projects/no-such-team/images/{i}/boxes/x"),
        get("image file `secret` (not work/thumb/original)",
            f"/api/projects/{p}/images/{i}/secret", 422),
        get("image file ..%2F..%2Fcamp.sqlite3",
            f"/api/projects/{p}/images/{i}/..%2F..%2Fcamp.sqlite3", 404),
        get("static file ..%2F..%2Fapi.py", "/static/..%2F..%2Fapi.py", 404),
        # --- query abuse
        get("limit=10^9", f"/api/projects/{p}/images?limit=1000000000", 422),
        get("limit=0", f"/api/projects/{p}/images?limit=0", 422),
        get("offset=-1", f"/api/projects/{p}/images?offset=-1", 422),
        get("status=everything", f"/api/projects/{p}/images?status=everything", 422),
        get("since=-1", f"/api/projects/{p}/changes?since=-1", 422),
        get("since=abc", f"/api/projects/{p}/changes?since=abc", 422),
        get("export format=exe", f"/api/projects/{p}/export?format=exe", 422),
        get("QR code for another site", "/api/qr?url=https://evil.example/", 422),
        # --- optimistic concurrency and other writes
        put("stale base_version (409)", _box(t, base_version=t.box_version + 5), 409, old),
        put("create over an existing box with other content (409)",
            _box(t, x2=t.width - 1.0), 409, old),
        CampRequest("delete with a stale base_version (409)", "DELETE",
                    f"{old}?edit_id=bad-del&base_version={t.box_version + 5}", CSRF, b"", 409),
        CampRequest("delete without edit_id", "DELETE", f"{old}?base_version=1", CSRF, b"",
                    422),
        CampRequest("delete of a box that never existed", "DELETE",
                    f"{box}?edit_id=bad-del2&base_version=1", CSRF, b"", 404),
        CampRequest("PATCH review=maybe", "PATCH", f"/api/projects/{p}/images/{i}", JSON,
                    _json({"edit_id": "bad-patch", "base_version": 1, "review": "maybe"}),
                    422),
        CampRequest("copy an image's boxes onto itself", "POST",
                    f"/api/projects/{p}/images/{i}/copy_from/{i}", JSON,
                    _json({"edit_id": "bad-copy"}), 422),
        CampRequest("create a project with id ../x", "POST", "/api/projects", JSON,
                    _json({"id": "../x", "name": "x", "classes": [{"name": "a"}]}), 422),
        CampRequest("create a project that exists (409)", "POST", "/api/projects", JSON,
                    _json({"id": p, "name": "x", "classes": [{"name": "a"}]}), 409),
        CampRequest("classes: two with the same name", "PUT", f"/api/projects/{p}/classes",
                    JSON, _json({"edit_id": "bad-cls", "classes": [{"name": "a"},
                                                                   {"name": "A"}]}), 422),
        CampRequest("DELETE a whole project (no such route)", "DELETE", f"/api/projects/{p}",
                    CSRF, b"", 405),
        *_proposals(t),
        *_uploads(t),
        *_imports(t),
    ]
    if t.team_token:
        requests += [
            get("LAN: no token", f"/api/projects/{t.own_project}", 401, lan=True),
            get("LAN: an unknown token", f"/api/projects/{t.own_project}", 401, lan=True,
                headers={"Authorization": "Bearer not-a-token-at-all"}),
            get("LAN: Basic instead of Bearer", f"/api/projects/{t.own_project}", 401,
                lan=True, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
            get("LAN: /api/join with a wrong token", "/api/join?token=guess", 401, lan=True),
            get("LAN: another team's project", f"/api/projects/{t.other_project}", 403,
                lan=True, headers=lan_auth),
            CampRequest("LAN: write a box in another team's project", "PUT",
                        f"/api/projects/{t.other_project}/images/1/boxes/x", lan_auth,
                        _box(t), 403, lan=True),
            CampRequest("LAN: a team creates a project", "POST", "/api/projects", lan_auth,
                        _json({"id": "mine", "name": "x", "classes": [{"name": "a"}]}), 403,
                        lan=True),
            get("LAN: a team lists the tokens", "/api/tokens", 403, lan=True,
                headers=lan_auth),
            CampRequest("LAN: accept proposals in another team's project", "POST",
                        f"/api/projects/{t.other_project}/images/1/accept", lan_auth,
                        _json({"edit_id": "bad-acc"}), 403, lan=True),
        ]
    return requests


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


def send(host: str, port: int, req: CampRequest, timeout: float = 30
         ) -> tuple[int, str]:
    """Send `req` on a fresh connection -> (status, reason). The reason is the JSON
    "detail", or for an upload the per-file "error"s; "" when the body has neither.
    Status 0: the connection was cut without an answer."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Host": f"127.0.0.1:{port}", **req.headers}
    try:
        # http.client, not urllib: the server may answer 413 before the whole body is sent,
        # and the answer must still be read.
        conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        if req.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif "Content-Length" not in headers and (req.body or req.method != "GET"):
            conn.putheader("Content-Length", str(len(req.body)))
        conn.endheaders()
        try:
            if req.chunked:
                for part in _chunks(req.body):
                    conn.send(b"%x\r\n%s\r\n" % (len(part), part))
                conn.send(b"0\r\n\r\n")
            elif req.body:
                conn.send(req.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is waiting
        try:
            answer = conn.getresponse()
            status, data = answer.status, answer.read()
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return 0, ""
    finally:
        conn.close()
    return status, reason(data)


def reason(data: bytes) -> str:
    """The readable reason in an error answer's JSON body ("" when there is none)."""
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("detail"), str):
        return body["detail"]
    files = body.get("images")
    if isinstance(files, list):
        return "; ".join(str(f.get("error")) for f in files
                         if isinstance(f, dict) and f.get("error"))
    return ""
