"""The camp's HTTP API in process: projects, uploads, boxes with versions and replays, counts,
exports that import back identically, tokens and teams, and the guard's refusals."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from campkit import CLASSES, CSRF, box_body, edit_id, phone_photo
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TokenBook

LOCAL = "http://127.0.0.1"


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "camp"), base_url=LOCAL, headers=CSRF) as c:
        yield c


def make_project(c: TestClient, pid: str = "team-1") -> dict:
    r = c.post("/api/projects", json={"id": pid, "name": pid.title(), "classes": CLASSES})
    assert r.status_code == 201, r.text
    return r.json()


def upload(c: TestClient, pid: str, photos: list[bytes], names: list[str] | None = None):
    names = names or [f"IMG_{i:04d}.jpg" for i in range(len(photos))]
    files = [("files", (n, p, "image/jpeg")) for n, p in zip(names, photos, strict=True)]
    return c.post(f"/api/projects/{pid}/images", files=files)


def test_upload_orients_dedupes_and_serves_the_files(client):
    make_project(client)
    photos = [phone_photo(0), phone_photo(1)]
    r = upload(client, "team-1", photos)
    assert r.status_code == 200, r.text
    results = r.json()["images"]
    assert [x["duplicate"] for x in results] == [False, False]
    img = results[0]["image"]
    assert (img["width"], img["height"]) == (960, 720)  # EXIF 6 applied: upright landscape
    again = upload(client, "team-1", [photos[1]], ["copy.jpg"]).json()["images"][0]
    assert again["duplicate"] and again["image"]["id"] == results[1]["image"]["id"]
    assert client.get("/api/projects/team-1/images").json()["total"] == 2
    work = client.get(f"/api/projects/team-1/images/{img['id']}/work")
    assert work.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(work.content)).size == (960, 720)
    original = client.get(f"/api/projects/team-1/images/{img['id']}/original")
    assert original.content == photos[0]
    assert "attachment" in original.headers["content-disposition"]
    thumb = Image.open(io.BytesIO(client.get(
        f"/api/projects/team-1/images/{img['id']}/thumb").content))
    assert max(thumb.size) == 256


def test_a_bad_file_does_not_fail_the_others(client):
    make_project(client)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    r = upload(client, "team-1", [phone_photo(2), svg], ["ok.jpg", "evil.jpg"])
    assert r.status_code == 200
    ok, bad = r.json()["images"]
    assert ok["image"] and bad["image"] is None and "SVG" in bad["error"]
    only_bad = upload(client, "team-1", [svg], ["evil.svg"])
    assert only_bad.status_code == 415
    assert client.get("/api/projects/team-1").json()["counts"]["images"] == 1


def test_boxes_versions_conflicts_and_replays(client):
    make_project(client)
    iid = upload(client, "team-1", [phone_photo(3)]).json()["images"][0]["image"]["id"]
    url = f"/api/projects/team-1/images/{iid}/boxes"
    create = box_body(0, 10, 20, 110, 220)
    made = client.put(f"{url}/b1", json=create)
    assert made.status_code == 200 and made.json()["version"] == 1
    replay = client.put(f"{url}/b1", json=create)  # a retry after a lost answer
    assert replay.json() == made.json()
    moved = client.put(f"{url}/b1", json=box_body(0, 15, 20, 115, 220, base_version=1))
    assert moved.json()["version"] == 2
    stale = client.put(f"{url}/b1", json=box_body(1, 0, 0, 50, 50, base_version=1))
    assert stale.status_code == 409
    assert stale.json()["current"]["x1"] == 15 and stale.json()["current"]["version"] == 2
    resolved = client.put(f"{url}/b1", json=box_body(1, 0, 0, 50, 50, base_version=2))
    assert resolved.json()["label"] == 1
    project = client.get("/api/projects/team-1").json()
    assert project["counts"]["per_class"] == [0, 1, 0]
    assert project["counts"]["labelled"] == 1 and project["counts"]["unlabelled"] == 0
    eid = edit_id()
    gone = client.delete(f"{url}/b1", params={"edit_id": eid, "base_version": 3})
    assert gone.status_code == 200
    assert client.delete(f"{url}/b1", params={"edit_id": eid, "base_version": 3}).json() \
        == gone.json()  # replayed, not a 409 for the tombstone
    late = client.put(f"{url}/b1", json=box_body(0, 1, 1, 9, 9, base_version=3))
    assert late.status_code == 409 and late.json()["current"] is None
    assert client.get(f"/api/projects/team-1/images/{iid}").json()["boxes"] == []
    outside = client.put(f"{url}/b2", json=box_body(0, 900, 10, 2000, 50))
    assert outside.status_code == 422 and "x2" in outside.json()["detail"]
    unknown = client.put(f"{url}/b3", json=box_body(7, 1, 1, 9, 9))
    assert unknown.status_code == 422 and "label" in unknown.json()["detail"]


def test_no_objects_copy_next_and_changes(client):
    make_project(client)
    ids = [x["image"]["id"] for x in upload(
        client, "team-1", [phone_photo(i) for i in range(4, 8)]).json()["images"]]
    seq0 = client.get("/api/projects/team-1").json()["seq"]
    base = "/api/projects/team-1/images"
    client.put(f"{base}/{ids[0]}/boxes/a", json=box_body(0, 1, 2, 30, 40))
    client.put(f"{base}/{ids[0]}/boxes/b", json=box_body(2, 50, 60, 70, 80))
    copied = client.post(f"{base}/{ids[1]}/copy_from/{ids[0]}", json={"edit_id": edit_id()})
    assert sorted((b["label"], b["x1"]) for b in copied.json()["boxes"]) == [(0, 1), (2, 50)]
    empty = client.patch(f"{base}/{ids[2]}", json={"edit_id": edit_id(), "base_version": 1,
                                                   "no_objects": True, "review": "done"})
    assert empty.status_code == 200, empty.text
    assert empty.json()["no_objects"] and empty.json()["review"] == "done"
    stale = client.patch(f"{base}/{ids[2]}", json={"edit_id": edit_id(), "base_version": 1,
                                                   "review": "needs_fix"})
    assert stale.status_code == 409 and stale.json()["current"]["review"] == "done"
    nxt = client.get("/api/projects/team-1/next", params={"after": ids[0]}).json()
    assert nxt["id"] == ids[3]  # 1 has boxes, 2 is "no objects"
    counts = client.get("/api/projects/team-1").json()["counts"]
    assert counts["per_class"] == [2, 0, 2] and counts["no_objects"] == 1
    assert counts["unlabelled"] == 1
    changed = client.get("/api/projects/team-1/changes", params={"since": seq0}).json()
    assert {img["id"] for img in changed["images"]} == set(ids[:3])


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_export_then_import_gives_identical_boxes(client, fmt):
    make_project(client)
    make_project(client, "team-2")
    ids = [x["image"]["id"] for x in upload(
        client, "team-1", [phone_photo(i, side=2400) for i in range(3)]).json()["images"]]
    base = "/api/projects/team-1/images"
    client.put(f"{base}/{ids[0]}/boxes/a", json=box_body(1, 10.5, 20.25, 300, 400))
    client.put(f"{base}/{ids[0]}/boxes/b", json=box_body(2, 0, 0, 2048, 1536))
    client.patch(f"{base}/{ids[2]}", json={"edit_id": edit_id(), "base_version": 1,
                                           "no_objects": True})
    exported = client.get("/api/projects/team-1/export", params={"format": fmt})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert sum(n.lower().endswith(".jpg") for n in names) == 3  # every image, boxed or not
    r = client.post("/api/projects/team-2/import", params={"format": fmt},
                    files={"file": (f"team-1-{fmt}.zip", exported.content)})
    assert r.status_code == 200, r.text
    assert r.json()["images_added"] == 3 and r.json()["boxes_added"] == 2

    def state(pid: str) -> list:
        out = []
        for img in client.get(f"/api/projects/{pid}/images").json()["images"]:
            full = client.get(f"/api/projects/{pid}/images/{img['id']}").json()
            boxes = sorted((b["label"], b["x1"], b["y1"], b["x2"], b["y2"])
                           for b in full["boxes"])
            out.append((img["file_name"], img["width"], img["height"], img["no_objects"],
                        boxes))
        return out

    before, after = state("team-1"), state("team-2")
    tol = 1e-3 if fmt == "yolo" else 1e-6
    for (n1, w1, h1, e1, b1), (n2, w2, h2, e2, b2) in zip(before, after, strict=True):
        assert (n1, w1, h1, e1) == (n2, w2, h2, e2) and len(b1) == len(b2)
        for x, y in zip(b1, b2, strict=True):
            assert x[0] == y[0] and max(abs(p - q) for p, q in zip(x[1:], y[1:], strict=True)) < tol


def test_a_bad_import_stores_nothing(client):
    make_project(client)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [0, 0, -5, 3]}],
            "categories": [{"id": 1, "name": "apple"}]}
    pixels = io.BytesIO()
    Image.new("RGB", (10, 10)).save(pixels, "JPEG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("images/a.jpg", pixels.getvalue())
        z.writestr("annotations.json", json.dumps(coco))
    r = client.post("/api/projects/team-1/import", params={"format": "coco"},
                    files={"file": ("export.zip", archive.getvalue())})
    assert r.status_code == 422
    assert "annotations[0].bbox" in r.json()["detail"]
    assert client.get("/api/projects/team-1").json()["counts"]["images"] == 0


def test_the_guard_refuses_what_a_browser_attack_would_send(tmp_path):
    app = create_app(tmp_path / "camp")
    with TestClient(app, base_url=LOCAL) as c:
        no_header = c.post("/api/projects", json={"id": "x", "name": "x", "classes": CLASSES})
        assert no_header.status_code == 403 and "X-Camp" in no_header.json()["detail"]
        assert c.get("/api/projects").status_code == 200
        page = c.get("/")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    with TestClient(app, base_url="http://attacker.example") as c:
        assert c.get("/api/projects").status_code == 421
    with TestClient(app, base_url=LOCAL, headers=CSRF) as c:
        big = c.post("/api/projects", content=b"{" + b" " * (2 << 20) + b"}",
                     headers={"Content-Type": "application/json"})
        assert big.status_code == 413

        def chunks():
            for _ in range(40):
                yield b" " * 65536

        streamed = c.post("/api/projects", content=chunks(),
                          headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        for bad in ("/api/projects/..%2Fetc", "/api/projects/team-1/images/0",
                    "/api/projects/team-1/images/abc", "/api/projects/NOPE"):
            assert 400 <= c.get(bad).status_code < 500, bad


def test_teams_see_only_their_own_project(tmp_path):
    data = tmp_path / "camp"
    app = create_app(data, lan=True, public_url="http://10.0.0.5:8080/")
    book = TokenBook(data)
    with TestClient(app, base_url="http://10.0.0.5:8080", headers=CSRF) as c:
        assert c.get("/api/projects").status_code == 401
        boss = {"Authorization": f"Bearer {book.instructor}"}
        for pid in ("team-1", "team-2"):
            r = c.post("/api/projects", headers=boss,
                       json={"id": pid, "name": pid, "classes": CLASSES})
            assert r.status_code == 201
        t1 = {"Authorization": f"Bearer {TokenBook(data).team_token('team-1')}"}
        assert [p["id"] for p in c.get("/api/projects", headers=t1).json()] == ["team-1"]
        assert c.get("/api/projects/team-1", headers=t1).status_code == 200
        assert c.get("/api/projects/team-2", headers=t1).status_code == 403
        assert upload(c, "team-2", [phone_photo(0)]).status_code in (401, 403)
        assert c.post("/api/projects", headers=t1,
                      json={"id": "x", "name": "x", "classes": CLASSES}).status_code == 403
        assert c.get("/api/tokens", headers=t1).status_code == 403
        links = c.get("/api/tokens", headers=boss).json()
        assert {row["project"] for row in links} == {"team-1", "team-2"}
        assert links[0]["join_url"].startswith("http://10.0.0.5:8080/?token=")
        qr = c.get("/api/qr", params={"url": links[0]["join_url"]}, headers=boss)
        assert qr.headers["content-type"].startswith("image/svg+xml")
        assert c.get("/api/qr", params={"url": "http://evil.example/"},
                     headers=boss).status_code == 422
        assert c.get("/api/join", params={"token": "wrong"}).status_code == 401
        phone = TestClient(app, base_url="http://10.0.0.5:8080", headers=CSRF)  # own cookies
        token = TokenBook(data).team_token("team-2")
        assert phone.get("/api/join", params={"token": token}).json()["project"] == "team-2"
        # the cookie now authorises plain GETs, e.g. <img src> on the page
        assert phone.get("/api/projects/team-2").status_code == 200
        assert phone.get("/api/projects/team-1").status_code == 403


def test_the_camp_never_unpickles_or_parses_unsafely():
    """No pickle, marshal, shelve or eval in the camp; XML parsed only through defusedxml (the
    standard library's ElementTree may write XML, never read it), YAML only through safe_load:
    an import reads files that strangers made."""
    import ast
    from pathlib import Path

    import dlcamp.camp

    unsafe_modules = {"pickle", "marshal", "shelve", "dill", "xml.dom.minidom", "xml.sax"}
    xml_reads = {"parse", "fromstring", "iterparse", "XML", "XMLParser"}
    for path in Path(dlcamp.camp.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        stdlib_xml = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                stdlib_xml |= {a.asname or a.name for a in node.names
                               if a.name.startswith("xml.")}
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not unsafe_modules & set(names), f"{path.name} imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                # `model.eval()` (no argument) is a torch module's evaluation mode, not eval
                mode_switch = isinstance(node.func, ast.Attribute) and not node.args
                assert mode_switch or name not in {"eval", "exec", "load_all"}, \
                    f"{path.name} calls {name}"
                if isinstance(node.func, ast.Attribute):
                    owner = ast.unparse(node.func.value)
                    assert not (name == "load" and owner in {"yaml", "torch"}), path.name
                    assert not (name in xml_reads and owner in stdlib_xml), \
                        f"{path.name}: {owner}.{name} reads XML without defusedxml"


def test_names_are_cleaned_and_exports_use_the_real_format(client):
    make_project(client)
    odd = ["../../etc/passwd", "\u202egpj.exe", "名" * 250 + ".jpg", "IMG_7.heic"]
    images = upload(client, "team-1", [phone_photo(i) for i in range(4)], odd).json()["images"]
    stored = [x["image"]["file_name"] for x in images]
    assert stored[:2] == ["passwd", "gpj.exe"] and stored[3] == "IMG_7.heic"
    assert len(stored[2].encode()) < 255
    exported = client.get("/api/projects/team-1/export", params={"format": "yolo"})
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    pictures = sorted(n.rsplit("/", 1)[-1] for n in names if n.startswith("images/"))
    assert pictures[:3] == ["IMG_7.jpg", "gpj.jpg", "passwd.jpg"]  # JPEG bytes, .jpg names
    assert all(len(n.rsplit("/", 1)[-1].encode()) < 255 for n in names)
    make_project(client, "team-2")
    again = client.post("/api/projects/team-2/import", params={"format": "yolo"},
                        files={"file": ("t.zip", exported.content)})
    assert again.status_code == 200 and again.json()["images_added"] == 4


def test_numbers_must_be_numbers(client):
    make_project(client)
    iid = upload(client, "team-1", [phone_photo(0)]).json()["images"][0]["image"]["id"]
    url = f"/api/projects/team-1/images/{iid}/boxes/b1"
    for field, value in (("label", True), ("x1", "10"), ("base_version", 0.5)):
        body = dict(box_body(0, 1, 2, 30, 40), **{field: value})
        r = client.put(url, json=body)
        assert r.status_code == 422 and field in r.json()["detail"], (field, r.text)
    huge = 10**23
    assert client.get("/api/projects/team-1/next", params={"after": huge}).status_code == 422
    assert client.get("/api/projects/team-1/changes",
                      params={"since": huge}).status_code == 422
