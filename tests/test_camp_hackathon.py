"""The hackathon in a test (issue 16, point 6): an instructor and three simulated teams drive a
real camp app over HTTP (LAN mode, each with its own token). The instructor uploads the hidden
test set (the shift split of fruit-1, with its condition tags); each team uploads synthetic
photos, annotates them with the synthesiser's boxes (team C with a hurried annotator's noise),
trains the camp's detector for half a minute, and submits its run. Once
the event is frozen, both teams with clean boxes rank above the team with noisy boxes on the
shifted test set, and every team scores lower there than on its own validation photos.

    team A  varied photos (the train split: many backgrounds and lights), clean boxes
    team B  narrow photos (one table, one lamp: datawork.narrow_scenes), clean boxes
    team C  the same kind of narrow photos, noisy boxes: missed, loose, wrong class

DLCAMP_HACKATHON_SEED (default 0) picks other photos and other noise, to check the margin.
"""

from __future__ import annotations

import csv
import io
import os
import time

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from campkit import CSRF, box_body, edit_id
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.training import ENDED
from dlcamp.camp.transfer import scene_zip
from dlcamp.course.datawork import corrupt_labels, narrow_scenes
from dlcamp.data.detection import DetectionSet
from dlcamp.vision.scene_sets import load_scene_set

LAN = "http://10.0.0.5:8080"
SEED = int(os.environ.get("DLCAMP_HACKATHON_SEED", "0"))
CLASSES = [{"name": "fruit", "name_zh": "水果"},
           {"name": "mug", "name_zh": "杯子"}]  # a decoy: the test set has fruit only
PHOTOS = 56  # per team (the camp's val split takes ~20% of them)
HIDDEN = 64  # shifted test images: ~half public, ~half private (the final ranking's)
MINUTES = 0.5  # a short budget (POST .../train takes 0.25 to 60 minutes)
TAGS = ("scale_bucket", "background_source", "n_objects")  # condition columns of the test set
NOISE = {"grow": (0.2, 0.4), "drop": 0.3, "wrong": 0.25}  # team C's annotator
WAIT_SECONDS = 3 * (MINUTES * 60 + 120)  # generous: the three runs queue one after another


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def png(pixels: torch.Tensor) -> bytes:
    """(3, H, W) uint8 -> PNG bytes (lossless: the working copy keeps the pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, "PNG")
    return buffer.getvalue()


def real_boxes(data: DetectionSet, i: int) -> list[tuple[int, list[float]]]:
    """Image i's (label, [x1, y1, x2, y2] px) without the padding rows."""
    keep = data.labels[i] >= 0
    return list(zip(data.labels[i][keep].tolist(), data.boxes[i][keep].tolist(), strict=True))


def hurried(data: DetectionSet, seed: int) -> DetectionSet:
    """A hurried annotator's labels: loose boxes, missed boxes (datawork.corrupt_labels) and
    a share of the rest given the decoy class (label 1, "mug")."""
    noisy = corrupt_labels(data, grow=NOISE["grow"], drop=NOISE["drop"], seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    wrong = (torch.rand(noisy.labels.shape, generator=gen) < NOISE["wrong"]) & (noisy.labels >= 0)
    noisy.labels = torch.where(wrong, 1, noisy.labels)
    return noisy


def upload_and_annotate(c: TestClient, pid: str, team: dict, data: DetectionSet) -> int:
    """Upload data's images as PNG photos (one multipart request) and draw their boxes, one
    PUT per box, as the page does. Returns the boxes drawn."""
    files = [("files", (f"{pid}-{i:03d}.png", png(data.images[i]), "image/png"))
             for i in range(len(data))]
    r = c.post(f"/api/projects/{pid}/images", headers=team, files=files)
    assert r.status_code == 200, r.text
    added = r.json()["images"]
    assert [a["error"] for a in added] == [None] * len(data)
    assert not any(a["duplicate"] for a in added)
    drawn = 0
    for i, a in enumerate(added):
        iid = a["image"]["id"]
        assert (a["image"]["width"], a["image"]["height"]) == (128, 128)
        for k, (label, box) in enumerate(real_boxes(data, i)):
            r = c.put(f"/api/projects/{pid}/images/{iid}/boxes/{pid}-{iid}-{k}", headers=team,
                      json=box_body(label, *box))
            assert r.status_code == 200, r.text
            drawn += 1
    return drawn


def wait_for_run(c: TestClient, pid: str, team: dict, run: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        state = c.get(f"/api/projects/{pid}/runs/{run}", headers=team).json()
        if state["state"] in ENDED:
            return state
        time.sleep(1.0)
    raise AssertionError(f"run {run} of {pid} did not end in {WAIT_SECONDS} s")


@pytest.mark.slow
def test_the_team_with_varied_photos_and_clean_boxes_wins_on_the_shifted_test(tmp_path):
    hidden = load_scene_set("fruit-1", "shift", n=HIDDEN)
    narrow = narrow_scenes("fruit-1", 2 * PHOTOS, seed=SEED)
    teams = {"team-a": load_scene_set("fruit-1", "train", n=PHOTOS * (SEED + 1)).select(
                 range(PHOTOS * SEED, PHOTOS * (SEED + 1))),
             "team-b": narrow.select(range(PHOTOS)),
             "team-c": hurried(narrow.select(range(PHOTOS, 2 * PHOTOS)), SEED)}
    data_dir = tmp_path / "camp"
    app = create_app(data_dir, lan=True, public_url=f"{LAN}/")
    with TestClient(app, base_url=LAN, headers=CSRF) as c:
        boss = bearer(TokenBook(data_dir).instructor)
        # the instructor: the hidden test set, then one project per team
        zipped = scene_zip(hidden, "coco", TAGS)  # PNG images, COCO boxes, conditions.csv
        r = c.post("/api/testset?format=coco", headers=boss,
                   files={"file": ("hidden.zip", zipped, "application/zip")})
        assert r.status_code == 201, r.text
        assert r.json()["images_added"] == HIDDEN and r.json()["tagged"] == HIDDEN
        summary = c.get("/api/testset", headers=boss).json()
        assert summary["classes"] == ["fruit"] and set(summary["conditions"]) == set(TAGS)
        auth = {}
        for pid in teams:
            r = c.post("/api/projects", headers=boss,
                       json={"id": pid, "name": pid.title(), "classes": CLASSES})
            assert r.status_code == 201, r.text
            auth[pid] = bearer(r.json()["token"])

        # the teams never see the test set
        team = auth["team-a"]
        assert [p["id"] for p in c.get("/api/projects", headers=team).json()] == ["team-a"]
        for url in ("/api/projects/test", "/api/projects/test/images",
                    "/api/projects/test/export?format=coco", "/api/testset/images"):
            assert c.get(url, headers=team).status_code == 403, url

        # photos and boxes; team C's annotator misses boxes and picks the decoy class
        drawn = {pid: upload_and_annotate(c, pid, auth[pid], data) for pid, data in teams.items()}
        assert drawn["team-c"] < drawn["team-b"]
        counts = {pid: c.get(f"/api/projects/{pid}", headers=auth[pid]).json()
                  for pid in teams}
        assert all(p["images"] == PHOTOS for p in counts.values()), counts

        # training: three jobs queue up; each team waits for its own run
        runs = {}
        for pid in teams:
            r = c.post(f"/api/projects/{pid}/train", headers=auth[pid],
                       json={"edit_id": edit_id(), "minutes": MINUTES})
            assert r.status_code == 202, r.text
            runs[pid] = r.json()["run"]
        deadline = time.monotonic() + WAIT_SECONDS
        done = {pid: wait_for_run(c, pid, auth[pid], runs[pid], deadline) for pid in teams}
        for pid, state in done.items():
            log = (data_dir / "runs" / pid / runs[pid] / "train.log").read_text()
            assert state["state"] == "done", log[-2000:]
            assert state["model"] == "yolo-lite0" and state["image_size"] == 128
            assert state["images"]["train"] + state["images"]["val"] <= PHOTOS
            assert state["val_map"] is not None and state["history"]

        # submissions, scored as they come in
        subs = {}
        for pid in teams:
            r = c.post(f"/api/projects/{pid}/submissions", headers=auth[pid],
                       json={"edit_id": edit_id(), "run": runs[pid]})
            assert r.status_code == 202, r.text
            subs[pid] = r.json()["id"]
        reports = {}
        for pid in teams:
            sub = c.get(f"/api/projects/{pid}/submissions/{subs[pid]}", headers=boss).json()
            assert sub["status"] == "done", sub
            reports[pid] = sub["report"]
        public = c.get("/api/leaderboard", headers=auth["team-b"]).json()
        assert {r["project"] for r in public["public"]} == set(teams) and "final" not in public

        # the instructor freezes the event: the final (private) ranking
        r = c.put("/api/event", headers=boss, json={"edit_id": edit_id(), "state": "frozen"})
        assert r.status_code == 200 and r.json()["state"] == "frozen"
        final = c.get("/api/leaderboard", headers=auth["team-c"]).json()["final"]
        rank = {r["project"]: r["rank"] for r in final}
        scores = {pid: (round(reports[pid]["val"]["map"], 3), round(reports[pid]["map"], 3),
                        round(reports[pid]["private"]["map"], 3)) for pid in teams}
        print(f"seed {SEED}: (val mAP, test mAP, private mAP) {scores}; ranks {rank}")
        assert set(rank) == set(teams)
        # clean boxes beat noisy ones, by far (seeds 0-2: test mAP 0.24-0.32 and 0.17-0.26
        # against 0.04-0.06); A over B holds too but by less than its spread (seed 1: 0.239
        # vs 0.260 on the whole test set), so it is not asserted
        assert rank["team-a"] < rank["team-c"] and rank["team-b"] < rank["team-c"], scores
        assert reports["team-a"]["map"] > reports["team-c"]["map"] + 0.1, scores
        assert reports["team-b"]["map"] > reports["team-c"]["map"] + 0.05, scores

        # the shift report: own validation vs hidden test, per condition
        for pid, rep in reports.items():
            assert rep["val"]["map"] == pytest.approx(done[pid]["val_map"], abs=1e-6)
            assert rep["gap"] == pytest.approx(rep["val"]["map"] - rep["map"], abs=1e-5)
            assert rep["gap"] > 0, scores  # the shifted test is harder than the team's photos
            assert rep["unmatched_classes"] == ["mug"]
            assert set(rep["conditions"]) == set(TAGS)
            for tag in TAGS:
                rows = rep["conditions"][tag]
                assert sum(row["images"] for row in rows) == HIDDEN
                assert all(0 <= row["map"] <= 1 for row in rows if row["map"] is not None)
        seen = c.get(f"/api/projects/team-a/submissions/{subs['team-a']}",
                     headers=auth["team-a"]).json()["report"]  # frozen: the team sees it all
        assert seen["map"] == reports["team-a"]["map"] and "conditions" in seen
        worst = c.get(f"/api/projects/team-c/submissions/{subs['team-c']}/worst.png",
                      headers=auth["team-c"])
        assert worst.status_code == 200 and worst.content[:4] == b"\x89PNG"

        # the instructor's CSV export lists every team, in the final order
        assert c.get("/api/leaderboard.csv", headers=auth["team-a"]).status_code == 403
        rows = list(csv.DictReader(io.StringIO(c.get("/api/leaderboard.csv",
                                                     headers=boss).text)))
        assert [row["project"] for row in rows] == [r["project"] for r in final]
        assert {row["project"] for row in rows} == set(teams)
