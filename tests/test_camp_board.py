"""The hidden test set, submissions and the leaderboard over HTTP (LAN mode, real tokens):
teams never reach the test set, submissions are limited, scored and ranked, freezing fixes
the final ranking, bad uploads get 4xx with reasons; and the CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from campkit import CSRF
from dlcamp.camp import api_board, board, coco, scoring, testset
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.interchange import Annotations, BoxAnn, ClassDef, ImageAnn
from dlcamp.camp.storage import CampStore
from dlcamp.cli.camp import add_parser as add_camp_parser
from dlcamp.models.registry import create_model
from dlcamp.train.checkpoint import save_checkpoint

LAN = "http://10.0.0.5:8080"
NAMES = ["apple", "mug"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def png(seed: int, w: int = 96, h: int = 72) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def make_testset_zip(n: int = 12, conditions: str | None = None) -> bytes:
    """A COCO export of n noise images with 1-2 boxes each, plus conditions.csv."""
    images = []
    for i in range(n):
        boxes = [BoxAnn(i % 2, 5 + i, 6, 40 + i, 50)] + ([BoxAnn(1, 50, 10, 90, 60)] if i % 3
                                                          else [])
        images.append(ImageAnn(f"t{i}.png", 96, 72, boxes, data=png(i)))
    data = coco.export_coco(Annotations([ClassDef(c) for c in NAMES], images))
    if conditions is None:
        conditions = "file_name,lighting,distance\n" + "".join(
            f"t{i}.png,{['dark', 'bright'][i % 2]},{1 + i % 3}\n" for i in range(n))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("conditions.csv", conditions)
    return out.getvalue()


@pytest.fixture
def camp(tmp_path):
    """(client, data, {"boss", "team-a", "team-b": auth headers}) with a test set imported."""
    data = tmp_path / "camp"
    with TestClient(create_app(data, lan=True), base_url=LAN, headers=CSRF) as c:
        book = TokenBook(data)
        auth = {"boss": bearer(book.instructor)}
        for pid in ("team-a", "team-b"):
            r = c.post("/api/projects", headers=auth["boss"], json={
                "id": pid, "name": pid.title(), "classes": [{"name": n} for n in NAMES]})
            assert r.status_code == 201, r.text
            auth[pid] = bearer(r.json()["token"])
        r = c.post("/api/testset?format=coco", headers=auth["boss"],
                   files={"file": ("test.zip", make_testset_zip(), "application/zip")})
        assert r.status_code == 201, r.text
        assert r.json()["images_added"] == 12 and r.json()["tagged"] == 12
        yield c, data, auth


def truth(c: TestClient, auth: dict) -> list[dict]:
    """Perfect COCO results, read through the instructor's routes."""
    out = []
    for img in c.get("/api/projects/test/images?limit=100", headers=auth["boss"]).json()["images"]:
        for b in c.get(f"/api/projects/test/images/{img['id']}", headers=auth["boss"]).json()[
                "boxes"]:
            out.append({"image_id": img["id"], "category": NAMES[b["label"]],
                        "bbox": [b["x1"], b["y1"], b["x2"] - b["x1"], b["y2"] - b["y1"]],
                        "score": 0.5 + len(out) / 1000})
    return out


def submit_json(c, pid, auth, results, edit_id):
    return c.post(f"/api/projects/{pid}/submissions", headers=auth,
                  files={"file": ("p.json", json.dumps(results).encode(), "application/json")},
                  data={"edit_id": edit_id})


def test_teams_never_reach_the_test_set(camp):
    c, _, auth = camp
    team = auth["team-a"]
    summary = c.get("/api/testset", headers=auth["boss"]).json()
    assert summary["images"] == 12 and summary["classes"] == NAMES
    assert summary["conditions"] == {"distance": [1, 2, 3], "lighting": ["bright", "dark"]}
    assert summary["public"] + summary["private"] == 12
    assert [p["id"] for p in c.get("/api/projects", headers=team).json()] == ["team-a"]
    for url in ("/api/projects/test", "/api/projects/test/images", "/api/projects/test/images/1",
                "/api/projects/test/images/1/work", "/api/projects/test/export?format=coco",
                "/api/projects/test/submissions"):
        assert c.get(url, headers=team).status_code == 403, url
    assert c.get("/api/testset", headers=team).json() == {
        "images": 12, "classes": 2, "release_images": False}
    assert c.get("/api/testset/images", headers=team).status_code == 403
    assert c.get("/api/event", headers=team).json()["test"] is None
    assert c.put("/api/event", headers=team, json={"edit_id": "e1", "state": "frozen"}
                 ).status_code == 403
    assert c.post("/api/testset?format=coco", headers=team, files={"file": (
        "t.zip", make_testset_zip(), "application/zip")}).status_code == 403
    r = submit_json(c, "team-a", team, [], "x1")  # predictions need released images
    assert r.status_code == 403 and "released" in r.json()["detail"]
    c.put("/api/event", headers=auth["boss"], json={"edit_id": "e2", "release_images": True})
    images = c.get("/api/testset/images", headers=team).json()["images"]
    assert len(images) == 12 and "boxes" not in images[0]
    work = c.get(f"/api/testset/images/{images[0]['id']}/work", headers=team)
    assert work.status_code == 200 and Image.open(io.BytesIO(work.content)).size == (96, 72)
    assert c.get(f"/api/projects/test/images/{images[0]['id']}",
                 headers=team).status_code == 403  # still no boxes


def test_submissions_are_scored_limited_ranked_and_frozen(camp):
    c, data, auth = camp
    boss = auth["boss"]
    assert c.put("/api/event", headers=boss, json={
        "edit_id": "e1", "release_images": True, "max_submissions": 2}).status_code == 200
    perfect = truth(c, auth)
    apples = [r for r in perfect if r["category"] == "apple"]
    a1 = submit_json(c, "team-a", auth["team-a"], apples, "a1")
    assert a1.status_code == 202, a1.text
    again = submit_json(c, "team-a", auth["team-a"], apples, "a1")  # a retry: same answer
    assert again.json()["id"] == a1.json()["id"]
    a2 = submit_json(c, "team-a", auth["team-a"], perfect, "a2").json()
    r = submit_json(c, "team-a", auth["team-a"], perfect, "a3")
    assert r.status_code == 409 and "all 2 submissions" in r.json()["detail"]
    b1 = submit_json(c, "team-b", auth["team-b"], perfect[::2], "b1").json()
    mine = c.get("/api/projects/team-a/submissions", headers=auth["team-a"]).json()
    assert mine["left"] == 0 and [s["status"] for s in mine["submissions"]] == ["done"] * 2
    replay = submit_json(c, "team-a", auth["team-a"], apples, "a1").json()  # scored by now
    for row in [*mine["submissions"], replay]:  # open: no private or whole-set score anywhere
        assert row["private_map"] is None and not {"private", "map"} & set(row.get("report")
                                                                           or {}), row
        assert row["test_id"] is None and row["current"]  # the test project's id: hidden
    seen = c.get(f"/api/projects/team-a/submissions/{a2['id']}", headers=auth["team-a"]).json()
    assert seen["report"]["public"]["map"] == 1.0 and "private" not in seen["report"]
    assert seen["private_map"] is None
    full = c.get(f"/api/projects/team-a/submissions/{a2['id']}", headers=boss).json()
    assert full["report"]["map"] == 1.0 and full["report"]["private"]["map"] == 1.0
    assert {c["value"] for c in full["report"]["conditions"]["lighting"]} == {"dark", "bright"}
    png_url = f"/api/projects/team-a/submissions/{a1.json()['id']}/worst.png"
    assert c.get(png_url, headers=auth["team-a"]).status_code == 403
    assert c.get(png_url, headers=boss).headers["content-type"] == "image/png"
    board_ = c.get("/api/leaderboard", headers=auth["team-b"]).json()
    assert [r["project"] for r in board_["public"]] == ["team-a", "team-b"]
    assert "final" not in board_ and board_["public"][0]["private_map"] is None
    assert c.get("/api/leaderboard", headers=boss).json()["counts"] == {"team-a": 2,
                                                                        "team-b": 1}
    # team-a picks its worse submission for the final ranking, then the event freezes
    r = c.post(f"/api/projects/team-a/submissions/{a1.json()['id']}/select",
               headers=auth["team-a"], json={"edit_id": "s1"})
    assert r.status_code == 200 and r.json()["selected"] and r.json()["private_map"] is None
    assert "private" not in r.json()["report"]
    c.put("/api/event", headers=boss, json={"edit_id": "e2", "state": "frozen"})
    r = submit_json(c, "team-b", auth["team-b"], perfect, "b2")
    assert r.status_code == 409 and "frozen" in r.json()["detail"]
    assert c.post(f"/api/projects/team-b/submissions/{b1['id']}/select",
                  headers=auth["team-b"], json={"edit_id": "s2"}).status_code == 409
    final = c.get("/api/leaderboard", headers=auth["team-a"]).json()["final"]
    pa, pb = _private(c, boss, "team-a", a1.json()["id"]), _private(c, boss, "team-b", b1["id"])
    assert pa != pb and 0 < min(pa, pb) < 1
    expected = [(pa, "team-a"), (pb, "team-b")] if pa > pb else [(pb, "team-b"), (pa, "team-a")]
    assert [r["project"] for r in final] == [p for _, p in expected]
    assert c.get(png_url, headers=auth["team-a"]).status_code == 200  # frozen: shown
    assert c.get("/api/leaderboard.csv", headers=auth["team-a"]).status_code == 403
    rows = list(csv.DictReader(io.StringIO(c.get("/api/leaderboard.csv", headers=boss).text)))
    assert [r["project"] for r in rows] == [p for _, p in expected]
    assert rows[0]["final_rank"] == "1" and rows[0]["submissions"] in ("1", "2")


def _private(c, boss, pid, sid) -> float:
    return c.get(f"/api/projects/{pid}/submissions/{sid}", headers=boss).json()["private_map"]


def yolo_checkpoint(path, classes=NAMES, name="yolo", **extra) -> None:
    torch.manual_seed(0)
    kwargs = {"num_classes": len(classes), "image_size": 64, **extra}
    model = create_model(name, **kwargs)
    save_checkpoint(path, {"model": {"name": name, "kwargs": kwargs},
                           "data": {"classes": classes, **model.describe()},
                           "trainer": {"model": model.state_dict(), "epoch": 0},
                           "metrics": {"val_map": 0.5, "val_map_50": 0.7}})


def test_runs_and_checkpoints_are_scored_and_bad_ones_refused(camp, tmp_path):
    c, data, auth = camp
    team = auth["team-a"]
    run = data / "runs" / "team-a" / "20261206-093015"
    run.mkdir(parents=True)
    yolo_checkpoint(run / "checkpoint.pt")
    (run / "camp.json").write_text(json.dumps({"state": "running"}))
    url = "/api/projects/team-a/submissions"
    r = c.post(url, headers=team, json={"edit_id": "r1", "run": run.name})
    assert r.status_code == 409 and "running" in r.json()["detail"]
    (run / "camp.json").write_text(json.dumps({"state": "done"}))
    r = c.post(url, headers=team, json={"edit_id": "r1", "run": run.name})
    assert r.status_code == 202, r.text
    done = c.get(f"{url}/{r.json()['id']}", headers=auth["boss"]).json()
    assert done["status"] == "done", done
    assert done["report"]["val"] == {"map": 0.5, "map_50": 0.7}
    assert done["report"]["gap"] == pytest.approx(0.5 - done["report"]["map"])
    assert c.post(url, headers=team, json={"edit_id": "r2", "run": "nope"}).status_code == 404
    assert c.post(url, headers=team, json={"edit_id": "r2"}).status_code == 422
    assert c.post("/api/projects/team-b/submissions", headers=team,
                  json={"edit_id": "r3", "run": run.name}).status_code == 403
    assert c.post("/api/projects/test/submissions", headers=auth["boss"],
                  json={"edit_id": "r3", "run": run.name}).status_code == 422
    ckpt = tmp_path / "c.pt"
    yolo_checkpoint(ckpt, classes=["APPLE", "pear"], width=8)  # < guard's 1 MB JSON cap
    up = c.post(url, headers=team, data={"edit_id": "u1"},
                files={"file": ("checkpoint.pt", ckpt.read_bytes())})
    assert up.status_code == 202, up.text
    rep = c.get(f"{url}/{up.json()['id']}", headers=auth["boss"]).json()["report"]
    assert rep["unmatched_classes"] == ["pear"] and rep["per_class"]["mug"]["ap"] == 0.0
    lenet = tmp_path / "l.pt"
    save_checkpoint(lenet, {"model": {"name": "lenet", "kwargs": {}}, "data": {},
                            "trainer": {"model": create_model("lenet").state_dict()}})
    bad = {"not a detector": lenet.read_bytes(), "not a usable checkpoint": b"PK\x03\x04junk"}
    for k, (reason, blob) in enumerate(bad.items()):
        r = c.post(url, headers=team, data={"edit_id": f"b{k}"}, files={"file": ("x", blob)})
        assert r.status_code == 422 and reason in r.json()["detail"], r.text
    c.put("/api/event", headers=auth["boss"], json={"edit_id": "e", "release_images": True})
    r = c.post(url, headers=team, data={"edit_id": "b9"}, files={"file": ("x", b"\x00junk")})
    assert r.status_code == 422 and "neither a checkpoint" in r.json()["detail"]
    r = submit_json(c, "team-a", team, [{"image_id": 10**6, "category_id": 1,
                                         "bbox": [0, 0, 1, 1], "score": 1}], "p1")
    assert r.status_code == 422 and "image_id" in r.json()["detail"]
    r = c.post(url, headers=team, files={"file": ("p.json", b"[]")})
    assert r.status_code == 422 and "edit_id" in r.json()["detail"]
    assert len(c.get(url, headers=team).json()["submissions"]) == 2  # no bad one stored


def test_a_bad_conditions_file_stores_nothing(tmp_path):
    with CampStore(tmp_path / "camp") as store:
        bad = make_testset_zip(conditions="file_name,lighting\nnot-there.png,dark\n")
        with pytest.raises(Exception, match="match no image"):
            testset.import_testset(store, bad, "coco")
        assert store.list_projects() == [] and testset.event(store)["test"] is None
        made = testset.import_testset(store, make_testset_zip(n=4), "coco", "hidden")
        assert made["images_added"] == 4 and testset.project_kind(store, "hidden") == "test"
        assert testset.event(store)["test"] == "hidden"


def test_cli_imports_scores_and_exports(tmp_path, capsys):
    data = tmp_path / "camp"
    parser = argparse.ArgumentParser()
    add_camp_parser(parser.add_subparsers())
    (tmp_path / "t.zip").write_bytes(make_testset_zip(n=6))

    def run(*argv: str) -> str:
        args = parser.parse_args(["camp", *argv, "--data", str(data)])
        assert args.func(args) == 0
        return capsys.readouterr().out

    assert "6 images" in run("testset", str(tmp_path / "t.zip"), "--format", "coco")
    with CampStore(data) as store:
        store.create_project("team-a", "A", [{"name": n} for n in NAMES])
    run_dir = data / "runs" / "team-a" / "r1"
    run_dir.mkdir(parents=True)
    yolo_checkpoint(run_dir / "checkpoint.pt")
    assert "gap" in run("score", "team-a", "r1")
    out = run("leaderboard", "--csv", str(tmp_path / "lb.csv"))
    assert "team-a" in out
    rows = list(csv.DictReader(open(tmp_path / "lb.csv", encoding="utf-8")))
    assert rows[0]["project"] == "team-a" and rows[0]["final_rank"] == "1"


def test_uploads_leave_no_stray_file_and_a_replay_keeps_the_stored_one(camp, tmp_path):
    c, data, auth = camp
    url, folder = "/api/projects/team-a/submissions", data / "submissions" / "team-a"
    first, other = tmp_path / "first.pt", tmp_path / "other.pt"
    yolo_checkpoint(first, width=8)
    yolo_checkpoint(other, classes=["pear", "plum"], width=8)

    def post(path, edit_id):
        return c.post(url, headers=auth["team-a"], data={"edit_id": edit_id},
                      files={"file": ("checkpoint.pt", path.read_bytes())})

    c.put("/api/event", headers=auth["boss"], json={"edit_id": "e1", "max_submissions": 1})
    sid = post(first, "u1").json()["id"]
    kept = folder / f"submission-{sid}.pt"
    assert sorted(p.name for p in folder.iterdir()) == [kept.name]
    assert post(other, "u1").json()["id"] == sid  # the same edit_id again, other bytes
    assert kept.read_bytes() == first.read_bytes()
    assert post(other, "u2").status_code == 409  # no submissions left
    c.put("/api/event", headers=auth["boss"], json={"edit_id": "e2", "state": "frozen"})
    assert post(other, "u3").status_code == 409
    assert sorted(p.name for p in folder.iterdir()) == [kept.name]


def test_only_the_current_test_set_is_counted_ranked_and_selectable(camp):
    c, _, auth = camp
    boss, team = auth["boss"], auth["team-a"]
    c.put("/api/event", headers=boss, json={"edit_id": "e1", "release_images": True,
                                            "max_submissions": 1})
    old = submit_json(c, "team-a", team, truth(c, auth), "a1").json()
    r = c.post("/api/testset?format=coco&id=test2", headers=boss,
               files={"file": ("t.zip", make_testset_zip(n=4), "application/zip")})
    assert r.status_code == 201, r.text
    c.put("/api/event", headers=boss, json={"edit_id": "e2", "test": "test2"})
    board_ = c.get("/api/leaderboard", headers=boss).json()
    assert board_["public"] == board_["final"] == []
    assert board_["counts"] == {"team-a": 0, "team-b": 0}
    assert c.get("/api/projects/team-a/submissions", headers=team).json()["left"] == 1
    r = c.post(f"/api/projects/team-a/submissions/{old['id']}/select", headers=team,
               json={"edit_id": "s1"})
    assert r.status_code == 409 and "another test set" in r.json()["detail"]
    new = submit_json(c, "team-a", team, [], "a2")
    assert new.status_code == 202, new.text
    assert [r["submission"] for r in c.get("/api/leaderboard", headers=boss).json()[
        "public"]] == [new.json()["id"]]


def test_a_run_is_scored_as_it_was_when_submitted(camp, monkeypatch):
    c, data, auth = camp
    run = data / "runs" / "team-a" / "r1"
    run.mkdir(parents=True)
    yolo_checkpoint(run / "checkpoint.pt")
    (run / "camp.json").write_text(json.dumps({"state": "done"}))

    async def later(app, sid):  # scoring waits, as behind another team's
        pass

    monkeypatch.setattr(api_board, "_score", later)
    r = c.post("/api/projects/team-a/submissions", headers=auth["team-a"],
               json={"edit_id": "r1", "run": "r1"})
    assert r.status_code == 202, r.text
    yolo_checkpoint(run / "checkpoint.pt", classes=["pear", "plum"])  # a resume rewrites it
    sub = board.score_submission(c.app.state.store, data, r.json()["id"])
    assert sub["status"] == "done" and sub["report"]["model_classes"] == NAMES


def test_any_scoring_crash_fails_the_submission_and_bad_normalize_is_refused(
        camp, monkeypatch, tmp_path):
    c, _, auth = camp
    team, url = auth["team-a"], "/api/projects/team-a/submissions"
    c.put("/api/event", headers=auth["boss"], json={"edit_id": "e1", "release_images": True})

    def boom(*args, **kwargs):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(scoring, "score_predictions", boom)
    r = submit_json(c, "team-a", team, [], "p1")
    assert r.status_code == 202, r.text
    sub = c.get(f"{url}/{r.json()['id']}", headers=team).json()
    assert sub["status"] == "failed" and "RuntimeError: out of cheese" in sub["error"]
    assert c.get(url, headers=team).json()["left"] == 10  # failed ones do not count
    ckpt = tmp_path / "n.pt"
    yolo_checkpoint(ckpt, width=8)
    payload = torch.load(ckpt, weights_only=True)
    payload["data"]["normalize"] = [[0.5, 0.5, 0.5], [0.25, 0.0, 0.25]]  # std 0: x / 0
    save_checkpoint(ckpt, {k: v for k, v in payload.items() if k not in ("format", "version")})
    r = c.post(url, headers=team, data={"edit_id": "n1"},
               files={"file": ("checkpoint.pt", ckpt.read_bytes())})
    assert r.status_code == 422 and "normalize" in r.json()["detail"], r.text


def test_the_event_takes_a_test_set_only_once_it_is_complete(tmp_path, monkeypatch):
    seen, real = [], testset.import_project

    def spy(store, *args, **kwargs):
        out = real(store, *args, **kwargs)
        seen.append(testset.event(store)["test"])  # images and boxes in, tags not yet
        return out

    monkeypatch.setattr(testset, "import_project", spy)
    with CampStore(tmp_path / "camp") as store:
        testset.import_testset(store, make_testset_zip(n=4), "coco", "hidden")
        assert seen == [None] and testset.event(store)["test"] == "hidden"
        assert all(t.tags for t in testset.load_test(store, "hidden").images)


def test_a_scene_split_becomes_a_test_set_with_its_boxes_and_tags(tmp_path):
    from dlcamp.camp.transfer import scene_zip
    from dlcamp.vision.scene_sets import load_scene_set

    hidden = load_scene_set("fruit-1", "shift", n=6)
    data = scene_zip(hidden, tags=("scale_bucket", "brightness"), prefix="h")
    with CampStore(tmp_path / "camp") as store:
        made = testset.import_testset(store, data, "coco")
        test = testset.load_test(store, made["project"])
    assert made["images_added"] == 6 and test.classes == ["fruit"]
    for i, image in enumerate(test.images):
        keep = hidden.labels[i] >= 0
        assert image.file_name == f"h{i:04d}.png"
        got, want = (sorted(b.tolist()) for b in (image.boxes, hidden.boxes[i][keep]))
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-4)
        assert image.tags["scale_bucket"] == hidden.conditions["scale_bucket"][i]
        assert image.tags["brightness"] == pytest.approx(hidden.conditions["brightness"][i])
        with Image.open(image.path) as work:  # lossless: the very pixels
            assert torch.equal(torch.from_numpy(np.array(work.convert("RGB"))).permute(2, 0, 1),
                               hidden.images[i])
    with pytest.raises(Exception, match="no condition 'weather'"):
        scene_zip(hidden, tags=("weather",))
