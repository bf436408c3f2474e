"""Model-assisted labelling in the camp (dlcamp.camp.proposals): a model's proposed boxes are
shown but never count, export or train until accepted; accepting (all, some, or by editing)
and rejecting (deleting) go through the versioned, replay-safe write paths; teammates see it
all through changes?since=; the HTTP route refuses what it must."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient

from campkit import CLASSES, CSRF, phone_photo
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.reads import MAX_BOXES_PER_IMAGE
from dlcamp.camp.storage import CampStore, Conflict, Invalid, NotFound

P = "team-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def add(store: CampStore, tag: str, width: int = 640, height: int = 480) -> int:
    """A fake image (the store does not decode pixels) -> its id."""
    image, _ = store.add_image(P, b"orig-" + tag.encode(), f"{tag}.jpg", b"work-" + tag.encode(),
                               PNG + tag.encode(), width, height, width, height)
    return image["id"]


def prop(label: int, x1: float, y1: float, x2: float, y2: float, score: float = 0.8) -> dict:
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": score}


@pytest.fixture
def store(tmp_path):
    with CampStore(tmp_path / "data") as s:
        s.create_project(P, "Team One", CLASSES)
        yield s


def seq(store: CampStore) -> int:
    return store.get_project(P)["seq"]


# ---------------------------------------------------------------- storage
def test_proposals_are_shown_but_never_counted_copied_or_snapshotted(store):
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    store.put_box(P, a, "a1", "e1", 0, 2, 1, 1, 50, 50)
    before = store.get_project(P)
    new = store.propose_boxes(P, b, "20261206-093015", [prop(0, 10, 10, 90, 90, 0.9),
                                                      prop(1, 100, 100, 200, 150, 0.4)])
    assert [(x["label"], x["proposed"], x["score"], x["version"]) for x in new] == [
        (0, True, 0.9, 1), (1, True, 0.4, 1)]
    after = store.get_project(P)
    assert after["counts"]["per_class"] == before["counts"]["per_class"] == [0, 0, 1]
    assert (after["boxes"], after["labelled"], after["counts"]["unlabelled"]) == (1, 1, 2)
    assert after["counts"]["proposed"] == 1 and after["kind"] == "team"
    assert store.list_projects()[0]["boxes"] == 1
    ids = {s: [i["id"] for i in store.list_images(P, s)[0]]
           for s in ("unlabelled", "labelled", "proposed")}
    assert ids == {"unlabelled": [b, c], "labelled": [a], "proposed": [b]}
    assert store.next_image(P, after=a)["id"] == b  # still to be labelled
    image = store.get_image(P, b)
    assert sorted(x["id"] for x in image["boxes"]) == sorted(x["id"] for x in new)
    assert store.get_image(P, b, with_boxes=False)["boxes"] == 0
    assert store.get_image(P, b, with_boxes=False)["proposals"] == 2
    snap = {i["id"]: i["boxes"] for i in store.snapshot(P)["images"]}
    assert snap[b] == [] and [x["id"] for x in snap[a]] == ["a1"]
    assert snap[a][0]["proposed"] is False and snap[a][0]["score"] is None
    assert store.copy_boxes(P, c, b, "e2") == {"boxes": []}  # only accepted boxes are copied


def test_proposals_go_only_on_unlabelled_images_and_replace_older_ones(store):
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    store.put_box(P, a, "a1", "e1", 0, 0, 1, 1, 50, 50)
    store.patch_image(P, b, "e2", 1, no_objects=True)
    s0 = seq(store)
    assert store.propose_boxes(P, a, "r1", [prop(1, 5, 5, 20, 20)]) == []
    assert store.propose_boxes(P, b, "r1", [prop(1, 5, 5, 20, 20)]) == []
    assert seq(store) == s0 and [x["id"] for x in store.get_image(P, a)["boxes"]] == ["a1"]
    first = store.propose_boxes(P, c, "r1", [prop(0, 5, 5, 20, 20), prop(1, 30, 30, 60, 60)])
    since = seq(store)
    second = store.propose_boxes(P, c, "r2", [prop(2, 1, 2, 3, 4, 0.55)])
    assert seq(store) == since + 1  # one transaction, one seq
    live = store.get_image(P, c)["boxes"]
    assert live == second and {x["id"] for x in first}.isdisjoint(x["id"] for x in live)
    changed = store.changes(P, since)
    assert [(i["id"], i["boxes"]) for i in changed["images"]] == [(c, second)]
    for old in first:  # tombstoned: a stale edit of a replaced proposal is a 409, not a revival
        with pytest.raises(Conflict) as err:
            store.put_box(P, c, old["id"], "e-" + old["id"], 1, 0, 5, 5, 20, 20)
        assert err.value.current is None
    assert store.propose_boxes(P, c, "r3", []) == [] and store.get_image(P, c)["boxes"] == []
    assert store.list_images(P, "proposed")[1] == 0


def test_propose_many_is_one_transaction_and_all_or_nothing(store):
    ids = [add(store, f"m{k}") for k in range(100)]
    store.put_box(P, ids[0], "x1", "e1", 0, 0, 1, 1, 9, 9)
    commits = store.commits
    out = store.propose_many(P, "r1", [{"image": i, "boxes": [prop(i % 3, 1, 1, 40, 40, 0.5)]}
                                       for i in ids])
    assert store.commits == commits + 1
    assert out == {"images": 99, "boxes": 99, "skipped": [ids[0]]}
    assert store.list_images(P, "proposed")[1] == 99
    before = store.changes(P, 0)
    bad = [{"image": ids[1], "boxes": []}, {"image": ids[2], "boxes": [prop(7, 1, 1, 5, 5)]}]
    with pytest.raises(Invalid, match=r"items\[1\]\.boxes\[0\]\.label"):
        store.propose_many(P, "r2", bad)
    with pytest.raises(NotFound, match=r"items\[1\]\.image"):
        store.propose_many(P, "r2", [{"image": ids[1], "boxes": []}, {"image": 10**9,
                                                                    "boxes": []}])
    assert store.changes(P, 0) == before  # nothing of either batch was stored


@pytest.mark.parametrize("bad, field", [
    (prop(3, 1, 1, 5, 5), "label"), (prop(0, 1, 1, 700, 5), "x2"),
    (prop(0, float("nan"), 1, 5, 5), "x1"), (prop(0, 1, 1, 5, 5, 1.5), "score"),
    (prop(0, 1, 1, 5, 5, float("inf")), "score"), ({"label": 0, "x1": 1}, "y1"),
    (prop(0, 5, 5, 5, 9), "x2")])
def test_bad_proposals_name_the_field_and_store_nothing(store, bad, field):
    c = add(store, "c")
    with pytest.raises(Invalid, match=rf"boxes\[1\]\.{field}"):
        store.propose_boxes(P, c, "r1", [prop(0, 1, 1, 5, 5), bad])
    assert store.get_image(P, c)["boxes"] == []
    with pytest.raises(Invalid, match="run"):
        store.propose_boxes(P, c, "../evil", [])
    with pytest.raises(Invalid, match="at most 500"):
        store.propose_boxes(P, c, "r1", [prop(0, 1, 1, 5, 5)] * (MAX_BOXES_PER_IMAGE + 1))


def test_accept_some_then_all_with_replays(store):
    c = add(store, "c")
    p1, p2, p3 = store.propose_boxes(P, c, "r1", [prop(0, 1, 1, 9, 9, 0.9),
                                                  prop(1, 2, 2, 8, 8, 0.6),
                                                  prop(2, 3, 3, 7, 7, 0.3)])
    since = seq(store)
    one = store.accept_boxes(P, c, "acc-1", [p2["id"]])
    assert one == {"boxes": [dict(p2, proposed=False, version=2)]}  # score kept
    assert store.accept_boxes(P, c, "acc-1", [p2["id"]]) == one  # a replay changes nothing
    assert seq(store) == since + 1
    with pytest.raises(Invalid, match="edit_id"):
        store.accept_boxes(P, c, "acc-1", [p1["id"]])  # the id of another request
    project = store.get_project(P)
    assert project["counts"]["per_class"] == [0, 1, 0] and project["labelled"] == 1
    assert store.list_images(P, "proposed")[1] == 1  # p1, p3 still open
    changed = store.changes(P, since)["images"][0]["boxes"]
    assert {(x["id"], x["proposed"]) for x in changed} == {
        (p1["id"], True), (p2["id"], False), (p3["id"], True)}
    rest = store.accept_boxes(P, c, "acc-2")
    assert sorted((x["id"], x["version"], x["proposed"]) for x in rest["boxes"]) == sorted(
        [(p1["id"], 2, False), (p3["id"], 2, False)])
    assert store.accept_boxes(P, c, "acc-3") == {"boxes": []}  # none left
    assert store.accept_boxes(P, c, "acc-4", [p2["id"]]) == one  # accepted stays as it is
    assert store.get_project(P)["counts"]["per_class"] == [1, 1, 1]
    assert store.list_images(P, "proposed")[1] == 0
    assert [x["score"] for x in store.snapshot(P)["images"][0]["boxes"]] == [
        b["score"] for b in sorted((p1, p2, p3), key=lambda b: b["id"])]
    # labelled now: a new model's proposals leave it alone
    assert store.propose_boxes(P, c, "r2", [prop(0, 1, 1, 2, 2)]) == []


def test_editing_accepts_deleting_rejects(store):
    c, d = add(store, "c"), add(store, "d")
    p1, p2, p3 = store.propose_boxes(P, c, "r1", [prop(0, 1, 1, 9, 9, 0.9),
                                                  prop(1, 2, 2, 8, 8, 0.6),
                                                  prop(2, 3, 3, 7, 7, 0.3)])
    with pytest.raises(Conflict) as err:  # a stale version still conflicts
        store.put_box(P, c, p1["id"], "put-0", 5, 0, 1, 1, 20, 20)
    assert err.value.current == p1
    moved = store.put_box(P, c, p1["id"], "put-1", 1, 1, 1, 1, 20, 20)
    assert moved == dict(p1, label=1, x2=20.0, y2=20.0, version=2, proposed=False)
    assert store.put_box(P, c, p1["id"], "put-1", 1, 1, 1, 1, 20, 20) == moved  # replay
    same = store.put_box(P, c, p2["id"], "put-2", 1, 1, 2, 2, 8, 8)  # unchanged: accepted
    assert same == dict(p2, version=2, proposed=False)
    assert store.delete_box(P, c, p3["id"], "del-3", 1) == {"deleted": p3["id"]}
    assert store.get_project(P)["counts"]["per_class"] == [0, 2, 0]
    assert {x["id"] for x in store.get_image(P, c)["boxes"]} == {p1["id"], p2["id"]}
    with pytest.raises(Conflict, match="deleted"):
        store.accept_boxes(P, c, "acc-1", [p2["id"], p3["id"]])
    with pytest.raises(NotFound, match="no box"):
        store.accept_boxes(P, d, "acc-2", [p1["id"]])  # a box of another image
    with pytest.raises(NotFound):
        store.accept_boxes(P, 10**9, "acc-3")


def test_proposals_count_toward_the_per_image_limit(store):
    c = add(store, "c")
    store.propose_boxes(P, c, "r1", [prop(0, 1, 1, 5, 5)] * MAX_BOXES_PER_IMAGE)
    with pytest.raises(Invalid, match="limit"):
        store.put_box(P, c, "extra", "e1", 0, 0, 1, 1, 5, 5)


# ---------------------------------------------------------------- HTTP
@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "camp"), base_url="http://127.0.0.1",
                    headers=CSRF) as c:
        assert c.post("/api/projects", json={"id": P, "name": "T", "classes": CLASSES}
                      ).status_code == 201
        r = c.post(f"/api/projects/{P}/images",
                   files=[("files", (f"{k}.jpg", phone_photo(k, side=320), "image/jpeg"))
                          for k in range(2)])
        assert r.status_code == 200, r.text
        yield c


def test_accept_route_and_exports(client):
    store = client.app.state.store
    a, b = (i["id"] for i in client.get(f"/api/projects/{P}/images").json()["images"])
    p1, p2 = store.propose_boxes(P, a, "r1", [prop(0, 10, 10, 50, 50, 0.9),
                                              prop(2, 60, 60, 90, 90, 0.4)])
    assert [i["id"] for i in client.get(f"/api/projects/{P}/images",
                                        params={"status": "proposed"}).json()["images"]] == [a]
    assert client.get(f"/api/projects/{P}/next", params={"status": "unlabelled"}
                      ).json()["id"] == a
    page = client.get(f"/api/projects/{P}/images/{a}").json()["boxes"]
    assert {(x["id"], x["proposed"], x["score"]) for x in page} == {
        (p1["id"], True, 0.9), (p2["id"], True, 0.4)}
    coco = zipfile.ZipFile(io.BytesIO(client.get(f"/api/projects/{P}/export",
                                                 params={"format": "coco"}).content))
    doc = json.loads(coco.read(next(n for n in coco.namelist() if n.endswith(".json"))))
    assert doc["annotations"] == [] and len(doc["images"]) == 2

    url = f"/api/projects/{P}/images/{a}/accept"
    r = client.post(url, json={"edit_id": "acc-1", "box_ids": [p1["id"]]})
    assert r.status_code == 200 and r.json()["boxes"] == [dict(p1, version=2, proposed=False)]
    assert client.post(url, json={"edit_id": "acc-1", "box_ids": [p1["id"]]}).json() == r.json()
    for body, status in [
            ({"edit_id": "acc-1", "box_ids": [p2["id"]]}, 422),  # edit_id reused
            ({"edit_id": "acc-2", "box_ids": ["no-such-box"]}, 404),
            ({"edit_id": "acc-3", "box_ids": "all"}, 422),
            ({"edit_id": "acc-4", "box_ids": ["../x"]}, 422),
            ({"edit_id": "acc-5", "box_ids": ["b"] * (MAX_BOXES_PER_IMAGE + 1)}, 422),
            ({"edit_id": "acc-6", "all": True}, 422),
            ({"box_ids": [p2["id"]]}, 422)]:
        got = client.post(url, json=body)
        assert got.status_code == status and got.json()["detail"], (body, got.text)
    assert client.post(f"/api/projects/{P}/images/{10**9}/accept",
                       json={"edit_id": "acc-7"}).status_code == 404
    assert client.post(f"/api/projects/no-such/images/{a}/accept",
                       json={"edit_id": "acc-8"}).status_code == 404
    assert client.delete(f"/api/projects/{P}/images/{a}/boxes/{p2['id']}",
                         params={"edit_id": "del-1", "base_version": 1}).status_code == 200
    r = client.post(url, json={"edit_id": "acc-9", "box_ids": [p2["id"]]})
    assert r.status_code == 409 and "deleted" in r.json()["detail"]
    assert client.post(f"/api/projects/{P}/images/{b}/accept",
                       json={"edit_id": "acc-10"}).json() == {"boxes": []}
    coco = zipfile.ZipFile(io.BytesIO(client.get(f"/api/projects/{P}/export",
                                                 params={"format": "coco"}).content))
    doc = json.loads(coco.read(next(n for n in coco.namelist() if n.endswith(".json"))))
    assert [round(v) for v in doc["annotations"][0]["bbox"]] == [10, 10, 40, 40]
    assert len(doc["annotations"]) == 1


def test_a_team_cannot_accept_in_another_teams_project(tmp_path):
    data = tmp_path / "camp"
    with TestClient(create_app(data, lan=True, public_url="http://10.0.0.5:8080/"),
                    base_url="http://10.0.0.5:8080", headers=CSRF) as c:
        boss = {"Authorization": f"Bearer {TokenBook(data).instructor}"}
        for pid in ("team-1", "team-2"):
            assert c.post("/api/projects", headers=boss,
                          json={"id": pid, "name": pid, "classes": CLASSES}).status_code == 201
        t1 = {"Authorization": f"Bearer {TokenBook(data).team_token('team-1')}"}
        r = c.post("/api/projects/team-2/images/1/accept", headers=t1, json={"edit_id": "a1"})
        assert r.status_code == 403
        assert c.post("/api/projects/team-1/images/1/accept", headers=t1,
                      json={"edit_id": "a2"}).status_code == 404  # own project: no image 1
        assert c.post("/api/projects/team-1/images/1/accept",
                      json={"edit_id": "a3"}).status_code == 401
