"""Training a camp project: the project as detection sets (letterboxed photos, accepted boxes
only, a val split fixed by each photo's hash), a budgeted run that is a normal dlcamp run
(evaluate, detect), interrupted and resumed, and the HTTP side: the job queue, progress as
server-sent events, cancel, and one team kept out of another's runs."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from campkit import CSRF, _scenes
from dlcamp.camp import training
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.dataset import MIN_IMAGES, project_sets, val_split
from dlcamp.camp.ingest import ingest_photo
from dlcamp.camp.jobs import JobQueue
from dlcamp.camp.storage import CampStore
from dlcamp.cli.main import main
from dlcamp.core.errors import BadArgument
from dlcamp.serve.detect import Letterbox, detect_files, letterbox
from dlcamp.train.evaluate import evaluate_checkpoint

SIDE = 64
SMALL = {"model": "yolo", "image_size": SIDE, "model_kwargs": {"width": 8}}
SMALL_ARGS = ["--model", "yolo", "--image-size", str(SIDE), "--model-kwargs", '{"width": 8}']
SIZES = [(160, 120), (120, 160), (160, 120), (96, 128), (160, 120), (128, 96), (160, 120),
         (140, 100)]  # photo i's working-copy size: wide and tall, all letterboxed
LABELLED = 6  # photos 0..5 get boxes, 6 and 7 stay unlabelled


def photo(i: int) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """Scene i as a PNG of SIZES[i] px, its boxes (K, 4) in those pixels and labels (K,)."""
    images, boxes = _scenes()
    w, h = SIZES[i]
    img = Image.fromarray(images[i]).resize((w, h), Image.Resampling.BILINEAR)
    img.putpixel((0, 0), (i, 0, 0))  # distinct bytes for each photo
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    b = torch.as_tensor(boxes[i]).reshape(-1, 4)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # padding rows are all zero
    side = images.shape[1]
    return buffer.getvalue(), b[keep] * torch.tensor([w / side, h / side] * 2), \
        torch.zeros(int(keep.sum()), dtype=torch.int64)


def make_camp(data, pid: str = "team-1", n: int = len(SIZES), labelled: int = LABELLED,
              extra: list[str] = ()) -> dict[int, torch.Tensor]:
    """A camp in `data` with project `pid` (classes fruit, mug): n photos, the first
    `labelled` with their boxes. Returns {image id: boxes} of the labelled ones."""
    truth = {}
    with CampStore(data) as store:
        for p in (pid, *extra):
            store.create_project(p, p, [{"name": "fruit", "name_zh": "水果"},
                                        {"name": "mug", "name_zh": "杯子"}])
        for i in range(n):
            data_bytes, boxes, labels = photo(i)
            ph = ingest_photo(data_bytes, f"p{i}.png")
            image, _ = store.add_image(pid, ph.original, f"p{i}.png", ph.work, ph.thumb,
                                       ph.width, ph.height, ph.orig_width, ph.orig_height)
            assert (image["width"], image["height"]) == SIZES[i]
            if i >= labelled:
                continue
            for k, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
                store.put_box(pid, image["id"], f"b{i}-{k}", f"e{i}-{k}", 0, label, *box)
            truth[image["id"]] = boxes
    return truth


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    data = tmp_path_factory.mktemp("camp")
    return data, make_camp(data)


def test_project_sets_letterbox_photos_and_keep_accepted_boxes(tmp_path):
    data = tmp_path
    make_camp(data)
    with CampStore(data) as store:
        ids = [img["id"] for img in store.list_images("team-1", limit=100)[0]]
        first_box = store.get_image("team-1", ids[0])["boxes"][0]
    conn = sqlite3.connect(data / "camp.sqlite3")  # a model's proposal: not ground truth
    with conn:
        conn.execute("UPDATE boxes SET proposed = 1 WHERE id = ?", (first_box["id"],))
    conn.close()
    with CampStore(data) as store:
        train, val = project_sets(store, "team-1", SIDE)
        for split in (train, val):
            assert split.images.shape[1:] == (3, SIDE, SIDE)
            assert split.class_names == ["fruit", "mug"] and split.class_names_zh[1] == "杯子"
            for row, iid in enumerate(split.meta["image_ids"]):
                image = store.get_image("team-1", iid)
                fit = Letterbox.fit(image["width"], image["height"], SIDE)  # the server's
                live = [b for b in image["boxes"] if b["id"] != first_box["id"]]
                want = torch.tensor([[b["x1"] * fit.scale_x + fit.left,
                                      b["y1"] * fit.scale_y + fit.top,
                                      b["x2"] * fit.scale_x + fit.left,
                                      b["y2"] * fit.scale_y + fit.top] for b in live])
                got = split.targets(row)
                assert torch.allclose(got["boxes"], want.reshape(-1, 4), atol=1e-4)
                assert got["labels"].tolist() == [b["label"] for b in live]
                with Image.open(store.image_blob("team-1", iid, "work")) as work:
                    square, _ = letterbox(work.convert("RGB"), SIDE, (127, 127, 127))
                pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1)
                assert torch.equal(split.images[row], pixels)  # the server's pixels too
        used = set(train.meta["image_ids"]) | set(val.meta["image_ids"])
        accepted = {iid for iid in ids if any(b["id"] != first_box["id"] for b in
                                              store.get_image("team-1", iid)["boxes"])}
        assert used == accepted and len(accepted) >= LABELLED - 1
        assert not set(train.meta["image_ids"]) & set(val.meta["image_ids"])


def test_a_reviewed_photo_with_open_proposals_does_not_train_as_background(tmp_path):
    make_camp(tmp_path)
    with CampStore(tmp_path) as store:
        iid = store.list_images("team-1", "unlabelled")[0][0]["id"]
        version = store.get_image("team-1", iid, with_boxes=False)["version"]
        store.patch_image("team-1", iid, "r1", version, review="done")

        def used() -> set[int]:
            train, val = project_sets(store, "team-1", SIDE)
            return set(train.meta["image_ids"]) | set(val.meta["image_ids"])

        assert iid in used()  # reviewed, nothing on it: a photo of background
        (made,) = store.propose_boxes("team-1", iid, "run-1", [
            {"label": 0, "x1": 5.0, "y1": 5.0, "x2": 40.0, "y2": 40.0, "score": 0.9}])
        assert iid not in used()  # an unreviewed proposal: neither object nor background
        store.delete_box("team-1", iid, made["id"], "d1", made["version"])
        assert iid in used()


def test_the_val_split_is_fixed_by_each_photos_hash(camp, tmp_path):
    data, _ = camp
    with CampStore(data) as store:
        train, val = project_sets(store, "team-1", SIDE)
        again = project_sets(store, "team-1", SIDE)
    assert val.meta["image_ids"] == again[1].meta["image_ids"] and len(val) >= 1
    assert [len(train), len(val)] == [len(again[0]), len(again[1])]
    # the same photos in another camp, in another order, with more photos: same splits
    shutil.copytree(data, tmp_path / "copy", ignore=shutil.ignore_patterns("runs"))
    with CampStore(tmp_path / "copy") as store:
        data_bytes, boxes, labels = photo(6)
        iid = store.list_images("team-1", "unlabelled")[0][0]["id"]
        for k, box in enumerate(boxes.tolist()):
            store.put_box("team-1", iid, f"n{k}", f"n{k}", 0, 0, *box)
        train2, val2 = project_sets(store, "team-1", SIDE)
    assert len(train2) + len(val2) == len(train) + len(val) + 1
    assert set(val.meta["sha256"]) <= set(val2.meta["sha256"])  # nobody changed sides
    assert set(train.meta["sha256"]) <= set(train2.meta["sha256"])
    shas = [f"{k:02x}" + "0" * 62 for k in (200, 210, 220)]
    assert val_split(shas) == [True, False, False]  # none below 0.2: the lowest goes to val
    assert val_split([f"{k:02x}" + "0" * 62 for k in (1, 2)], 0.99) == [True, False]


def test_too_few_images_or_no_boxes_is_refused(tmp_path, capsys):
    make_camp(tmp_path, n=MIN_IMAGES, labelled=MIN_IMAGES - 1)
    with CampStore(tmp_path) as store, pytest.raises(BadArgument, match="at least 4 images"):
        project_sets(store, "team-1", SIDE)
    code = main(["camp", "train", "team-1", "--data", str(tmp_path), *SMALL_ARGS])
    assert code == 2 and "at least 4 images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


@pytest.fixture(scope="module")
def trained(camp):
    """A run of ~3 s of training, interrupted (Ctrl-C) at its second epoch, then resumed."""
    data, _ = camp
    calls = []

    def stop_at_second_epoch(self, trainer, epoch, n_batches):
        calls.append(epoch)
        if epoch == 1:
            raise KeyboardInterrupt
        self.epoch_start = self.last = trainer.clock()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.CampProgress, "on_epoch_start", stop_at_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            training.train_project(data, "team-1", minutes=0.05, log=lambda _: None, **SMALL)
    out = next((data / "runs" / "team-1").iterdir())
    before = json.loads((out / "camp.json").read_text())
    lines_before = len(training.read_progress(out))
    state = training.train_project(data, "team-1", resume=out.name, log=lambda _: None)
    return out, before, lines_before, state


def test_a_budgeted_run_is_interrupted_resumed_and_ends_with_its_budget(trained):
    out, before, lines_before, state = trained
    assert before["state"] == "interrupted" and before["images"]["val"] >= 1
    assert state["state"] == "done" and state["epochs"] >= 2 and state["run"] == out.name
    budget = 0.05 * 60
    assert budget <= state["seconds"] < budget + 2  # the budget ends it, counted over both
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "config.json", "metrics.csv",
                                               "curves.png", "camp.json", "progress.jsonl",
                                               "data"}
    lines = training.read_progress(out)
    assert len(lines) > lines_before and lines[-1]["state"] == "done"
    epochs = [r for r in lines if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, state["epochs"] + 1))
    for r in epochs:
        assert {"t", "step", "seconds", "budget_seconds", "loss", "val_map",
                "val_map_50"} <= set(r) and 0 <= r["val_map"] <= r["val_map_50"] <= 1
    assert state["val_map"] == pytest.approx(epochs[-1]["val_map"])
    assert len((out / "metrics.csv").read_text().splitlines()) == state["epochs"] + 1
    assert state["proposals"]["state"] == "done"
    assert state["proposals"]["images"] == len(SIZES) - LABELLED


def test_the_run_proposes_boxes_that_do_not_count_as_labels(trained):
    out, _, _, _ = trained
    data = out.parents[2]
    state = training.propose_project(data, "team-1", out.name, score_threshold=0.0,
                                     log=lambda _: None)
    assert state["proposals"]["state"] == "done" and state["proposals"]["boxes"] > 0
    with CampStore(data) as store:
        waiting = training.unlabelled_images(store, "team-1")
        assert len(waiting) == len(SIZES) - LABELLED  # proposals do not label an image
        for iid in waiting:
            image = store.get_image("team-1", iid)
            for b in image["boxes"]:
                assert b["proposed"] and 0 <= b["score"] <= 1
                assert 0 <= b["x1"] < b["x2"] <= image["width"]
                assert 0 <= b["y1"] < b["y2"] <= image["height"]
        train, val = project_sets(store, "team-1", SIDE)
        assert len(train) + len(val) == LABELLED
        assert sum(len(store.get_image("team-1", i)["boxes"]) for i in waiting) == \
            state["proposals"]["boxes"]


def test_the_run_evaluates_detects_and_moves(trained, tmp_path):
    out, _, _, state = trained
    result = evaluate_checkpoint(out, device="cpu")
    assert set(result["splits"]) == {"val"} and result["classes"] == ["fruit", "mug"]
    assert result["splits"]["val"]["images"] == state["images"]["val"]
    assert result["splits"]["val"]["map"] == pytest.approx(state["val_map"], abs=1e-6)
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    ckpt = torch.load(moved / "checkpoint.pt", weights_only=True)
    assert ckpt["data"]["dataset"] == str((out / "data").resolve())
    data_file = out / "data" / "val.safetensors"
    hidden = data_file.with_suffix(".hidden")
    data_file.rename(hidden)  # the recorded folder is gone: <run>/data is read instead
    try:
        again = evaluate_checkpoint(moved, device="cpu")
    finally:
        hidden.rename(data_file)
    assert again["splits"]["val"]["map"] == pytest.approx(result["splits"]["val"]["map"])
    image = tmp_path / "photo.png"
    image.write_bytes(photo(0)[0])
    results, _ = detect_files(moved, [str(image)], score=0.0)
    assert results[0]["width"] == SIZES[0][0] and results[0]["boxes"]


# -- the HTTP side -----------------------------------------------------------------------------
def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", **CSRF}


def wait_for(predicate, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_the_api_queues_streams_cancels_and_keeps_teams_apart(tmp_path):
    data = tmp_path / "camp"
    make_camp(data, extra=["team-2"])
    lan = "http://10.0.0.5:8080"
    app = create_app(data, lan=True, public_url=f"{lan}/")
    app.state.jobs.extra_args = [*SMALL_ARGS, "--quick", "--no-propose"]
    book = TokenBook(data)
    me, them = bearer(book.team_token("team-1")), bearer(book.team_token("team-2"))
    base = "/api/projects/team-1"
    with TestClient(app, base_url=lan) as c:
        r = c.post(f"{base}/train", headers=me, json={"edit_id": "t1", "minutes": 1})
        assert r.status_code == 202, r.text
        run = r.json()["run"]
        assert r.json()["state"] in ("queued", "running")
        replay = c.post(f"{base}/train", headers=me, json={"edit_id": "t1", "minutes": 1})
        assert replay.status_code == 202 and replay.json()["run"] == run
        hog = c.post(f"{base}/train", headers=me, json={"edit_id": "t2", "minutes": 1})
        assert hog.status_code == 409 and run in hog.json()["detail"]  # one job per team
        other = "/api/projects/team-2"
        second = c.post(f"{other}/train", headers=them, json={"edit_id": "t2", "minutes": 1})
        queued = second.json()["run"]
        assert second.status_code == 202 and second.json()["position"] == 1
        r = c.post(f"{other}/runs/{queued}/cancel", headers=them, json={"edit_id": "c1"})
        assert r.status_code == 200 and r.json()["state"] == "cancelled"

        for method, path, body in (("get", f"{base}/runs", None),
                                   ("get", f"{base}/runs/{run}", None),
                                   ("get", f"{base}/runs/{run}/events", None),
                                   ("post", f"{base}/train", {"edit_id": "x", "minutes": 1}),
                                   ("post", f"{base}/runs/{run}/cancel", {"edit_id": "x"})):
            assert c.request(method, path, headers=them, json=body).status_code == 403
        for bad in ("%2e%2e", "%2e%2e%2fteam-2", "20261206", "20261206-093015-x"):
            assert c.get(f"{base}/runs/{bad}", headers=me).status_code in (404, 422)
        assert c.post(f"{base}/train", headers=me,
                      json={"edit_id": "t9", "minutes": 61}).status_code == 422

        events, end = [], None
        with c.stream("GET", f"{base}/runs/{run}/events", headers=me) as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    if kind == "end":
                        end = json.loads(line[6:])
                        break
                    events.append(json.loads(line[6:]))
        log = (data / "runs" / "team-1" / run / "train.log").read_text()
        assert end == {"state": "done"}, log
        assert events and events[-1]["state"] == "done"
        assert any(e["event"] == "epoch" and e["val_map"] is not None for e in events)

        listed = {r["run"]: r for r in c.get(f"{base}/runs", headers=me).json()}
        assert listed[run]["state"] == "done" and list(listed) == [run]  # not team-2's
        assert c.get(f"{other}/runs/{queued}", headers=them).json()["state"] == "cancelled"
        assert listed[run]["val_map"] is not None and listed[run]["curves"]
        detail = c.get(f"{base}/runs/{run}", headers=me).json()
        assert detail["history"] and detail["last"]["state"] == "done"
        png = c.get(f"{base}/runs/{run}/curves.png", headers=me)
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"

        wait_for(lambda: app.state.jobs.busy() is None)  # the job ends just after its run
        r = c.post(f"{base}/propose", headers=me, json={"edit_id": "p1", "run": run})
        assert r.status_code == 202 and r.json()["proposals"]["state"] in ("queued", "running")
        assert c.post(f"{base}/propose", headers=them,
                      json={"edit_id": "p2", "run": run}).status_code == 403
        wait_for(lambda: c.get(f"{base}/runs/{run}", headers=me).json()["proposals"]["state"]
                 not in ("queued", "running"))
        proposals = c.get(f"{base}/runs/{run}", headers=me).json()["proposals"]
        assert proposals["state"] == "done" and proposals["images"] == len(SIZES) - LABELLED
        wait_for(lambda: app.state.jobs.busy() is None)
        third = c.post(f"{base}/train", headers=me,
                       json={"edit_id": "t3", "minutes": 1}).json()["run"]
        wait_for(lambda: c.get(f"{base}/runs/{third}", headers=me).json()["state"] == "running")
        r = c.post(f"{base}/runs/{third}/cancel", headers=me, json={"edit_id": "c3"})
        assert r.json()["state"] == "cancelled" and app.state.jobs.busy() is None
        again = c.post(f"{base}/train", headers=me,
                       json={"edit_id": "t4", "minutes": 1, "resume": run})
        assert again.status_code == 409  # done: nothing left to resume


def test_a_restarted_server_marks_runs_it_lost_interrupted(tmp_path):
    root = tmp_path / "runs" / "team-1"
    states = {"20260101-000001": {"state": "running"},
              "20260101-000002": {"state": "queued"},
              "20260101-000003": {"state": "done", "proposals": {"state": "running"}},
              "20260101-000004": {"state": "done", "proposals": {"state": "done"}}}
    for run, state in states.items():
        (root / run).mkdir(parents=True)
        training.write_state(root / run, run=run, **state)
    assert JobQueue(tmp_path).recover() == 0  # the constructor already did it
    after = {run: training.read_state(root / run) for run in states}
    assert [after[r]["state"] for r in states] == ["interrupted", "interrupted", "done", "done"]
    assert after["20260101-000003"]["proposals"]["state"] == "interrupted"
    assert after["20260101-000004"] == {"run": "20260101-000004", **states["20260101-000004"]}
    with pytest.raises(BadArgument, match="not a run id"):
        training.run_path(tmp_path, "team-1", "../team-2/20260101-000001")


def test_a_job_that_cannot_start_fails_and_the_queue_goes_on(tmp_path):
    jobs = JobQueue(tmp_path, python=str(tmp_path / "no-such-python"))
    try:
        first = jobs.train("team-1", 1)["run"]
        wait_for(lambda: training.read_state(training.run_path(tmp_path, "team-1", first))
                 .get("state") == "failed")
        state = training.read_state(training.run_path(tmp_path, "team-1", first))
        assert "could not run" in state["error"]
        wait_for(lambda: jobs.busy() is None)
        second = jobs.train("team-1", 1)["run"]  # the worker thread is still there
        wait_for(lambda: training.read_state(training.run_path(tmp_path, "team-1", second))
                 .get("state") == "failed")
    finally:
        jobs.close()
