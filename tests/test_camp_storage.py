"""The camp's storage (dlcamp.camp.storage): schema, group commit, idempotent and versioned
edits, durability across SIGKILL, content-addressed blobs, counts and changes."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from dlcamp.camp import boxes, schema
from dlcamp.camp.blobs import BadBlobId, BlobCorrupt, BlobStore
from dlcamp.camp.storage import CampStore, Conflict, Invalid, NotFound

P = "team-1"
CLASSES = [{"name": "cup", "name_zh": "杯子"}, {"name": "pen", "name_zh": "笔"}, "key"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def add(store: CampStore, tag: str, width: int = 640, height: int = 480) -> int:
    """Add a fake image (the store does not decode pixels) and return its id."""
    image, duplicate = store.add_image(P, b"orig-" + tag.encode(), f"{tag}.jpg",
                                       b"\xff\xd8\xff work " + tag.encode(), PNG + tag.encode(),
                                       width, height, width * 2, height * 2)
    assert not duplicate
    return image["id"]


@pytest.fixture
def store(tmp_path):
    with CampStore(tmp_path / "data") as s:
        s.create_project(P, "Team One", CLASSES)
        yield s


def seq(store: CampStore) -> int:
    return store.get_project(P)["seq"]


# ---------------------------------------------------------------- schema
def test_connections_use_wal_foreign_keys_and_full_sync(store):
    def pragmas(conn):
        return tuple(conn.execute(f"PRAGMA {p}").fetchone()[0]
                     for p in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"))

    expected = ("wal", 1, 2, schema.BUSY_TIMEOUT_MS)  # synchronous 2 = FULL
    assert store._writer.submit(pragmas).result() == expected  # the writer's own connection
    reader = schema.connect(store.db_path, readonly=True)
    assert pragmas(reader) == expected
    with pytest.raises(sqlite3.OperationalError):  # read connections cannot write
        reader.execute("DELETE FROM projects")
    reader.close()


def test_an_older_database_is_upgraded_and_keeps_its_data(tmp_path):
    conn = schema.connect(tmp_path / schema.DB_NAME)
    assert schema.migrate(conn, target=1) == 1
    conn.execute("INSERT INTO projects (id, name, created) VALUES ('old', 'Old', 0)")
    conn.close()
    with CampStore(tmp_path) as s:
        assert [p["id"] for p in s.list_projects()] == ["old"]
        s.set_meta("secret", "x")  # the table migration 2 adds
        assert s.get_meta("secret") == "x"
    conn = sqlite3.connect(tmp_path / schema.DB_NAME)
    assert schema.version(conn) == schema.SCHEMA_VERSION == 4
    conn.close()


def test_edits_stored_before_fingerprints_still_replay(tmp_path):
    conn = schema.connect(tmp_path / schema.DB_NAME)
    assert schema.migrate(conn, target=2) == 2
    conn.execute("INSERT INTO projects (id, name, created) VALUES ('old', 'Old', 0)")
    conn.execute("INSERT INTO edits (edit_id, project_id, kind, response, created) VALUES "
                 """('e-old', 'old', 'classes', '{"classes": []}', 0)""")
    conn.close()
    with CampStore(tmp_path) as s:  # migration 3 adds edits.request, NULL for old rows
        assert s.set_classes("old", ["cup"], "e-old") == {"classes": []}  # the stored answer
        assert s.get_project("old")["classes"] == []
        with pytest.raises(Invalid, match="different request"):  # kind still checked
            s.patch_image("old", 1, "e-old", 1, review="done")
        s.set_classes("old", ["cup"], "e-new")
        with pytest.raises(Invalid, match="different request"):  # new rows: fingerprinted
            s.set_classes("old", ["cup", "pen"], "e-new")


def test_a_database_from_a_newer_dlcamp_is_refused(tmp_path):
    CampStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / schema.DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(schema.SchemaError, match="version 99.*newer dlcamp"):
        CampStore(tmp_path)


def test_a_file_that_is_not_sqlite_is_a_readable_error(tmp_path):
    (tmp_path / schema.DB_NAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(schema.SchemaError, match="camp.sqlite3"):
        CampStore(tmp_path)


# ---------------------------------------------------------------- group commit
def test_a_failing_edit_is_undone_alone_and_the_batch_commits_once(store):
    iid = add(store, "a")
    release = threading.Event()
    blocker = store._writer.submit(lambda conn: release.wait(5))  # holds the writer
    time.sleep(0.05)
    commits = store.commits
    box = (0, 1.0, 1.0, 9.0, 9.0)
    futures = [store._writer.submit(_put, P, iid, "b1", "e1", box),
               store._writer.submit(_put, P, iid, "b2", "e2", (7, *box[1:])),  # bad label
               store._writer.submit(_put, P, iid, "b3", "e3", box)]
    time.sleep(0.05)
    assert not any(f.done() for f in futures)  # nobody is answered before the COMMIT
    release.set()
    blocker.result()
    assert futures[0].result()["id"] == "b1" and futures[2].result()["id"] == "b3"
    with pytest.raises(Invalid, match="label"):
        futures[1].result()
    assert store.commits == commits + 2  # the blocker's batch, then one for all three
    assert [b["id"] for b in store.get_image(P, iid)["boxes"]] == ["b1", "b3"]


def _put(conn, pid, iid, box_id, edit_id, box):
    return boxes.put_box(conn, pid, iid, box_id, edit_id, 0, box[0], box[1:])


def test_ten_threads_of_edits_every_one_accounted_for(store):
    iid = add(store, "shared", 1000, 1000)
    store.put_box(P, iid, "shared", "s0", 0, 0, 0, 0, 10, 10)
    commits, jobs = store.commits, store.edits_applied
    outcomes: dict[int, list] = {}

    def worker(t: int) -> None:
        log, own = [], {}
        for k in range(100):
            v = (t * 100 + k) / 2  # unique per edit, inside the 1000 px image
            if k % 2 == 0:  # this thread's own five boxes: never contested
                bid = f"t{t}b{k % 10 // 2}"
                out = store.put_box(P, iid, bid, f"t{t}-{k}", own.get(bid, 0), t % 3,
                                    v, v, v + 5, v + 5)
                own[bid] = out["version"]
                log.append(("own", bid, v, out))
                continue
            base = store.get_image(P, iid)["boxes"][0]["version"]  # all race for this box
            if k % 10 == 1:
                base = 1  # deliberately stale after the first update
            try:
                out = store.put_box(P, iid, "shared", f"t{t}-{k}", base, 1, v, v, v + 5, v + 5)
                log.append(("shared", "shared", v, out))
            except Conflict as e:
                assert e.current is not None and e.current["version"] != base
                log.append(("conflict", "shared", v, None))
        outcomes[t] = log

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log = [entry for t in range(10) for entry in outcomes[t]]
    assert len(log) == 1000 and store.edits_applied - jobs == 1000
    final = {b["id"]: b for b in store.get_image(P, iid)["boxes"]}
    assert len(final) == 51
    last_own = {bid: out for kind, bid, _, out in log if kind == "own"}  # in thread order
    for bid, out in last_own.items():
        assert final[bid] == out and out["version"] == 10  # created once, updated 9 times
    applied = [(out["version"], v) for kind, _, v, out in log if kind == "shared"]
    conflicts = sum(kind == "conflict" for kind, *_ in log)
    assert conflicts >= 10 and len(applied) + conflicts == 500
    versions = sorted(ver for ver, _ in applied)
    assert versions == list(range(2, final["shared"]["version"] + 1))  # no update lost
    assert final["shared"]["x1"] == max(applied)[1]  # the last applied wins, nothing else
    with sqlite3.connect(store.db_path) as conn:
        n_edits = conn.execute("SELECT COUNT(*) FROM edits").fetchone()[0]
    assert n_edits == 1 + 500 + len(applied)  # s0, the own edits, the applied shared ones
    assert store.commits - commits < 1000 / 4, store.commits - commits  # ~10 edits a COMMIT


# ---------------------------------------------------------------- idempotency, versions
def test_replaying_an_edit_id_returns_the_same_response_and_changes_nothing(store):
    iid, other = add(store, "a"), add(store, "b")
    first = store.put_box(P, iid, "b1", "e1", 0, 0, 10, 10, 50, 50)
    store.put_box(P, iid, "b1", "e2", 1, 1, 10, 10, 60, 60)  # a later change
    s = seq(store)
    assert store.put_box(P, iid, "b1", "e1", 0, 0, 10, 10, 50, 50) == first  # replay
    assert store.get_image(P, iid)["boxes"][0]["version"] == 2 and seq(store) == s
    assert store.delete_box(P, iid, "b1", "e3", 2) == {"deleted": "b1"}
    assert store.delete_box(P, iid, "b1", "e3", 2) == {"deleted": "b1"}  # not a Conflict
    copied = store.copy_boxes(P, other, iid, "e4")
    store.put_box(P, iid, "b2", "e5", 0, 2, 1, 1, 5, 5)
    copied = store.copy_boxes(P, iid, other, "e6")
    assert store.copy_boxes(P, iid, other, "e6") == copied  # no second copy
    patched = store.patch_image(P, iid, "e7", 1, review="needs_fix")
    assert store.patch_image(P, iid, "e7", 1, review="needs_fix") == patched
    s = seq(store)
    image = store.get_image(P, iid)
    assert len(image["boxes"]) == 1 and image["version"] == 2 and seq(store) == s
    with pytest.raises(Invalid, match="edit_id.*different request"):
        store.patch_image(P, iid, "e1", 2, review="done")
    with pytest.raises(Invalid, match="edit_id"):
        store.put_box(P, iid, "b9", "bad id with spaces", 0, 0, 1, 1, 5, 5)


def test_an_edit_id_replayed_with_another_request_is_refused(store):
    iid, other = add(store, "a"), add(store, "b")
    first = store.put_box(P, iid, "b1", "e1", 0, 0, 10, 10, 50, 50)
    s = seq(store)
    refused = [lambda: store.put_box(P, iid, "b9", "e1", 0, 0, 10, 10, 50, 50),  # other box
               lambda: store.put_box(P, other, "b1", "e1", 0, 0, 10, 10, 50, 50),  # image
               lambda: store.put_box(P, iid, "b1", "e1", 0, 1, 10, 10, 50, 50),  # label
               lambda: store.put_box(P, iid, "b1", "e1", 0, 0, 10, 10, 50, 51),  # a corner
               lambda: store.put_box(P, iid, "b1", "e1", 1, 0, 10, 10, 50, 50)]  # version
    for edit in refused:
        with pytest.raises(Invalid, match="'e1' was already used for a different request; "
                                          "send a new edit_id"):
            edit()
    assert store.put_box(P, iid, "b1", "e1", 0, 0, 10.0, 10, 50.0, 50) == first  # same values
    assert seq(store) == s and [b["id"] for b in store.get_image(P, iid)["boxes"]] == ["b1"]
    assert store.get_image(P, other)["boxes"] == []
    store.delete_box(P, iid, "b1", "d1", 1)
    with pytest.raises(Invalid, match="different request"):
        store.delete_box(P, iid, "b2", "d1", 1)
    store.put_box(P, other, "o1", "e2", 0, 0, 1, 1, 5, 5)
    third = add(store, "c")
    assert len(store.copy_boxes(P, iid, other, "c1")["boxes"]) == 1
    with pytest.raises(Invalid, match="different request"):
        store.copy_boxes(P, third, other, "c1")  # would have copied onto another image
    assert store.get_image(P, third)["boxes"] == []
    store.patch_image(P, iid, "p1", 1, review="done")
    with pytest.raises(Invalid, match="different request"):
        store.patch_image(P, iid, "p1", 1, review="needs_fix")
    store.set_classes(P, CLASSES + ["phone"], "k1")
    with pytest.raises(Invalid, match="different request"):
        store.set_classes(P, CLASSES + ["ball"], "k1")
    assert store.get_image(P, iid, with_boxes=False)["review"] == "done"
    assert store.get_project(P)["classes"][-1]["name"] == "phone"


def test_creating_a_box_again_with_the_same_content_is_idempotent(store):
    iid = add(store, "a")
    box = store.put_box(P, iid, "b1", "e1", 0, 1, 10.5, 20, 30, 40)
    s = seq(store)
    assert store.put_box(P, iid, "b1", "e2", 0, 1, 10.5, 20, 30, 40) == box
    assert seq(store) == s
    with pytest.raises(Conflict) as e:
        store.put_box(P, iid, "b1", "e3", 0, 2, 10.5, 20, 30, 40)
    assert e.value.current == box


def test_stale_versions_conflict_and_deletes_leave_tombstones(store):
    iid = add(store, "a")
    store.put_box(P, iid, "b1", "e1", 0, 0, 10, 10, 50, 50)
    now = store.put_box(P, iid, "b1", "e2", 1, 0, 12, 10, 50, 50)  # teammate A
    assert now["version"] == 2
    with pytest.raises(Conflict, match="version 2") as e:  # teammate B edited version 1
        store.put_box(P, iid, "b1", "e3", 1, 1, 10, 10, 40, 40)
    assert e.value.current == now
    with pytest.raises(Conflict):
        store.delete_box(P, iid, "b1", "e4", 1)
    store.delete_box(P, iid, "b1", "e5", 2)
    assert store.get_image(P, iid)["boxes"] == []
    with sqlite3.connect(store.db_path) as conn:  # a tombstone, not a deleted row
        assert conn.execute("SELECT deleted, version FROM boxes").fetchall() == [(1, 3)]
    for edit in (lambda: store.put_box(P, iid, "b1", "e6", 2, 0, 1, 1, 5, 5),
                 lambda: store.put_box(P, iid, "b1", "e7", 0, 0, 1, 1, 5, 5),
                 lambda: store.delete_box(P, iid, "b1", "e8", 3)):
        with pytest.raises(Conflict) as e:
            edit()
        assert e.value.current is None
    with pytest.raises(NotFound):
        store.put_box(P, iid, "never", "e9", 4, 0, 1, 1, 5, 5)
    with pytest.raises(Conflict) as e:
        store.patch_image(P, iid, "e10", 7, no_objects=True)
    assert e.value.current == store.get_image(P, iid, with_boxes=False)


def test_bad_values_name_the_field(store):
    iid = add(store, "a", 640, 480)
    cases = [((0, 10, 10, 641, 50), "x2.*outside"), ((0, 50, 10, 40, 50), "x2.*greater than x1"),
             ((0, 10, 10, 20, float("nan")), "y2.*finite"), ((3, 1, 1, 5, 5), "label.*0 to 2"),
             ((True, 1, 1, 5, 5), "label"), ((0, -1, 1, 5, 5), "x1.*outside"),
             ((0, 1, "1", 5, 5), "y1.*number")]
    for (label, *xy), message in cases:
        with pytest.raises(Invalid, match=message):
            store.put_box(P, iid, "b", "e", 0, label, *xy)
    edge = store.put_box(P, iid, "b", "e", 0, 0, -1e-4, 0, 640.0004, 480)  # clamped onto it
    assert (edge["x1"], edge["x2"]) == (0.0, 640.0)
    with pytest.raises(Invalid, match="box_id"):
        store.put_box(P, iid, "../x", "e2", 0, 0, 1, 1, 5, 5)
    with pytest.raises(Invalid, match="review"):
        store.patch_image(P, iid, "e3", 1, review="great")
    with pytest.raises(Invalid, match="id"):
        store.create_project("Bad Id!", "x", [])
    with pytest.raises(Invalid, match=r"classes\[1\].name.*twice"):
        store.create_project("t2", "x", ["cup", "CUP"])
    with pytest.raises(Invalid, match="status"):
        store.list_images(P, status="done")
    with pytest.raises(NotFound):
        store.get_image("nobody", iid)
    store.create_project("t2", "Two", ["cup"])
    with pytest.raises(NotFound):  # an image id of another project is not found
        store.get_image("t2", iid)
    with pytest.raises(Conflict) as e:
        store.create_project("t2", "again", [])
    assert e.value.current["name"] == "Two"


def test_classes_append_and_rename_but_never_drop_one_in_use(store):
    iid = add(store, "a")
    store.put_box(P, iid, "b1", "e1", 0, 1, 1, 1, 5, 5)
    renamed = [{"name": "mug", "name_zh": "杯"}, {"name": "pen", "name_zh": "笔"}]
    assert store.set_classes(P, renamed + ["key", "phone"], "c1")["classes"][3]["name"] == "phone"
    assert store.set_classes(P, renamed, "c2")["classes"] == renamed  # 2, 3 unused: dropped
    with pytest.raises(Conflict, match="pen") as e:
        store.set_classes(P, renamed[:1], "c3")
    assert e.value.current == {"classes": renamed}


# ---------------------------------------------------------------- durability
CHILD = r"""
import sys, threading
from dlcamp.camp.storage import CampStore
store, iid, lock = CampStore(sys.argv[1]), int(sys.argv[2]), threading.Lock()
def run(t):
    for k in range(10**6):
        store.put_box("team-1", iid, f"t{t}k{k}", f"e{t}-{k}", 0, 0, 1, 1, 9, 9)
        with lock:
            print(f"t{t}k{k}", flush=True)
for t in range(4):
    threading.Thread(target=run, args=(t,)).start()
"""


def test_every_acknowledged_edit_survives_sigkill(tmp_path):
    with CampStore(tmp_path) as s:
        s.create_project(P, "Team One", CLASSES)
        iid = add(s, "a")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(iid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 4
    while len(lines) < 50 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # kill it in full flight
    child.kill()  # SIGKILL: no clean-up of any kind
    child.wait()
    reader.join(5)
    acked = [line.strip() for line in lines if line.endswith("\n")]
    assert len(acked) >= 50, child.stderr.read()
    with CampStore(tmp_path) as s:
        stored = {b["id"] for b in s.get_image(P, iid)["boxes"]}
        with sqlite3.connect(s.db_path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(acked) <= stored


# ---------------------------------------------------------------- blobs
def test_blobs_are_content_addressed_verified_and_safe(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    data = b"\xff\xd8\xff" + bytes(range(256)) * 10
    sha = blobs.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert blobs.path(sha) == tmp_path / "blobs" / sha[:2] / sha[2:]
    assert blobs.put(data) == sha and blobs.read(sha) == data and list(blobs) == [sha]
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "blobs").rglob("*"))
    assert blobs.verify(sha)
    for bad in ("../../etc/passwd", sha.upper(), sha[:-1], sha + "0", "", "/" + sha[1:],
                sha[:10] + "/" + sha[11:], None):
        with pytest.raises(BadBlobId):
            blobs.path(bad)
    blobs.path(sha).write_bytes(data[:-1] + b"!")  # damage it
    assert not blobs.verify(sha)
    with pytest.raises(BlobCorrupt, match=sha):
        blobs.read(sha)


def test_add_image_stores_blobs_and_detects_duplicates(store):
    image, duplicate = store.add_image(P, b"original", "C:\\phone\\DCIM\\IMG_1.HEIC", b"work",
                                       b"thumb", 640, 480, 4032, 3024)
    assert not duplicate and image["file_name"] == "IMG_1.HEIC"  # a name, never a path
    again, duplicate = store.add_image(P, b"original", "copy.jpg", b"w2", b"t2", 1, 1, 1, 1)
    assert duplicate and again == image
    path = store.image_blob(P, image["id"], "original")
    assert path.read_bytes() == b"original" and path.name == hashlib.sha256(
        b"original").hexdigest()[2:]
    assert store.image_blob(P, image["id"], "thumb").read_bytes() == b"thumb"


# ---------------------------------------------------------------- counts, status, changes
def test_counts_statuses_next_and_changes(store):
    a, b, c, d = (add(store, t) for t in "abcd")
    store.put_box(P, a, "a1", "e1", 0, 0, 1, 1, 5, 5)
    store.put_box(P, a, "a2", "e2", 0, 2, 1, 1, 5, 5)
    store.put_box(P, d, "d1", "e3", 0, 2, 1, 1, 5, 5)
    store.patch_image(P, b, "e4", 1, no_objects=True)
    store.patch_image(P, d, "e5", 1, review="needs_fix")
    project = store.get_project(P)
    assert project["counts"] == {"per_class": [1, 0, 2], "images": 4, "unlabelled": 1,
                                 "labelled": 2, "no_objects": 1, "needs_fix": 1, "reviewed": 0,
                                 "proposed": 0}
    assert (project["images"], project["labelled"], project["boxes"]) == (4, 2, 3)
    ids = {s: [i["id"] for i in store.list_images(P, s)[0]] for s in
           ("all", "unlabelled", "labelled", "no_objects", "needs_fix")}
    assert ids == {"all": [a, b, c, d], "unlabelled": [c], "labelled": [a, d],
                   "no_objects": [b], "needs_fix": [d]}
    page, total = store.list_images(P, "all", offset=1, limit=2)
    assert [i["id"] for i in page] == [b, c] and total == 4 and page[0]["boxes"] == 0
    assert store.next_image(P, after=None)["id"] == c
    assert store.next_image(P, after=a, status="labelled")["id"] == d
    assert store.next_image(P, after=d, status="labelled")["id"] == a  # wraps round
    with pytest.raises(NotFound, match="none left"):
        store.next_image(P, after=c)  # c itself is not "next"
    since = seq(store)
    assert store.changes(P, since) == {"seq": since, "classes": store.get_project(P)["classes"],
                                       "images": []}
    store.delete_box(P, a, "a1", "e6", 1)
    store.put_box(P, c, "c1", "e7", 0, 1, 2, 2, 6, 6)
    changed = store.changes(P, since)
    assert changed["seq"] == since + 2
    assert [(i["id"], [x["id"] for x in i["boxes"]]) for i in changed["images"]] == [
        (a, ["a2"]), (c, ["c1"])]
    assert store.list_projects()[0]["boxes"] == 3


def test_import_is_all_or_nothing_and_maps_classes(store):
    existing = add(store, "a")

    def item(tag, boxes, **kw):
        return {"original": tag.encode(), "work": b"w" + tag.encode(), "thumb": b"t",
                "file_name": f"{tag}.jpg", "width": 100, "height": 80, "orig_width": 100,
                "orig_height": 80, "boxes": boxes, **kw}

    bad = [item("x", [(0, 1, 1, 9, 9)]), item("y", [(1, 1, 1, 200, 9)])]
    s = seq(store)
    with pytest.raises(Invalid, match=r"images\[1\] \(y.jpg\): boxes\[0\].x2"):
        store.import_annotations(P, bad, classes=[{"name": "pen"}, {"name": "phone"}])
    assert seq(store) == s and store.get_project(P)["images"] == 1
    assert len(store.get_project(P)["classes"]) == 3  # "phone" not appended either
    good = [item("x", [(0, 1, 1, 9, 9), (1, 2, 2, 8, 8)]), item("z", [], no_objects=True),
            item("x", []), {**item("dup", []), "original": b"orig-a"}]
    result = store.import_annotations(P, good, classes=[{"name": "pen"}, {"name": "phone"}])
    assert result == {"images_added": 2, "boxes_added": 2, "duplicates": 2}
    project = store.get_project(P)
    assert [c["name"] for c in project["classes"]] == ["cup", "pen", "key", "phone"]
    assert project["counts"]["per_class"] == [0, 1, 0, 1]  # pen -> 1, phone -> 3
    assert project["counts"]["no_objects"] == 1 and project["images"] == 3
    assert store.get_image(P, existing)["boxes"] == []


def _item(tag, boxes, width=100, height=80, **kw):
    return {"original": tag.encode() if isinstance(tag, str) else tag, "work": b"w",
            "thumb": b"t", "file_name": "f.jpg", "width": width, "height": height,
            "orig_width": width, "orig_height": height, "boxes": boxes, **kw}


def test_import_merges_boxes_into_images_already_there(store):
    a, b = add(store, "a", 640, 480), add(store, "b", 640, 480)
    store.put_box(P, a, "a1", "e1", 0, 0, 10, 10, 50, 50)
    version_b = store.get_image(P, b, with_boxes=False)["version"]
    imported = [(0, 10.4, 9.6, 50.5, 49.5),  # within 0.5 px of a1: the same box
                (1, 10, 10, 50, 50),  # same place, another label: a new box
                (0, 10, 10, 50.6, 50)]  # 0.6 px off: a new box
    items = [_item(b"orig-a", imported, 640, 480, no_objects=True),  # has boxes: not marked
             _item(b"orig-b", [], 640, 480, no_objects=True),
             _item("new", [(2, 1, 1, 9, 9)])]
    result = store.import_annotations(P, items)
    assert result == {"images_added": 1, "boxes_added": 3, "duplicates": 2}
    boxes_a = {(x["label"], x["x2"]) for x in store.get_image(P, a)["boxes"]}
    assert boxes_a == {(0, 50.0), (1, 50.0), (0, 50.6)}
    image_a, image_b = (store.get_image(P, i, with_boxes=False) for i in (a, b))
    assert not image_a["no_objects"]
    assert image_b["no_objects"] and image_b["version"] == version_b + 1
    assert store.get_project(P)["images"] == 3
    s = seq(store)
    again = store.import_annotations(P, items)  # the same import again adds nothing
    assert again == {"images_added": 0, "boxes_added": 0, "duplicates": 3}
    assert store.get_project(P)["boxes"] == 4
    assert store.changes(P, s)["images"] == []  # and changes no image
    # boxes in another size of the same photo are scaled onto the stored working copy
    doubled = store.import_annotations(P, [_item(b"orig-a", [(2, 100, 100, 200, 160)],
                                                 1280, 960)])
    assert doubled["boxes_added"] == 1
    assert {(x["label"], x["x1"], x["y2"]) for x in store.get_image(P, a)["boxes"]} >= {
        (2, 50.0, 80.0)}


def test_import_merge_is_all_or_nothing(store):
    a = add(store, "a", 640, 480)
    s, boxes_before = seq(store), store.get_project(P)["boxes"]
    items = [_item(b"orig-a", [(0, 1, 1, 9, 9)], 640, 480), _item("bad", [(0, 1, 1, 200, 9)])]
    with pytest.raises(Invalid, match=r"images\[1\].*boxes\[0\].x2"):
        store.import_annotations(P, items)
    assert seq(store) == s and store.get_project(P)["boxes"] == boxes_before
    assert store.get_image(P, a)["boxes"] == []


def test_import_of_an_export_into_its_own_project_adds_nothing(store):
    from io import BytesIO

    from PIL import Image

    from dlcamp.camp import transfer
    from dlcamp.camp.ingest import ingest_photo

    jpeg = BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(jpeg, "JPEG")
    photo = ingest_photo(jpeg.getvalue(), "red.jpg")
    image, _ = store.add_image(P, photo.original, "red.jpg", photo.work, photo.thumb,
                               photo.width, photo.height, photo.orig_width, photo.orig_height)
    store.put_box(P, image["id"], "r1", "e1", 0, 1, 3.3, 4.7, 40.1, 30.9)
    for fmt in transfer.EXPORT_FORMATS:
        data = transfer.export_project(store, P, fmt)
        result = transfer.import_project(store, P, fmt, data)
        assert result == {"images_added": 0, "boxes_added": 0, "duplicates": 1}, fmt
    assert [b["id"] for b in store.get_image(P, image["id"])["boxes"]] == ["r1"]


def test_huge_after_and_since_are_invalid_not_overflow(store):
    a = add(store, "a")
    for bad in (99999999999999999999999, 2**62 + 1, -1, 10**5000, True, "5"):
        with pytest.raises(Invalid, match="after: must be an integer from 0 to"):
            store.next_image(P, after=bad)
        with pytest.raises(Invalid, match="since: must be an integer from 0 to"):
            store.changes(P, bad)
    assert store.next_image(P, after=2**62)["id"] == a  # wraps round
    assert store.changes(P, 2**62)["images"] == []


def test_class_list_limits_are_the_same_everywhere(store):
    from dlcamp.camp.reads import MAX_CLASS_NAME, MAX_CLASSES

    assert (MAX_CLASSES, MAX_CLASS_NAME) == (100, 60)
    many = [f"c{k}" for k in range(101)]
    with pytest.raises(Invalid, match="classes: 101 classes; a project has at most 100"):
        store.create_project("big", "Big", many)
    assert len(store.create_project("big", "Big", many[:100])["classes"]) == 100
    with pytest.raises(Invalid, match="101 classes"):
        store.set_classes(P, many, "k1")
    with pytest.raises(Invalid, match=r"classes \(the project's.*: 101 classes"):
        store.import_annotations(P, [_item("x", [(0, 1, 1, 9, 9)])], classes=many[:98])
    assert store.get_project(P)["images"] == 0 and len(store.get_project(P)["classes"]) == 3
    store.import_annotations(P, [_item("x", [(96, 1, 1, 9, 9)])], classes=many[:97])
    assert len(store.get_project(P)["classes"]) == 100  # 3 + 97 appended: just fits
    for bad, message in (("x" * 61, r"name: at most 60"), ("  \t ", "name: must not be empty"),
                         ("", "name: must not be empty")):
        with pytest.raises(Invalid, match=r"classes\[1\]\." + message):
            store.create_project("t3", "x", ["ok", bad])
    with pytest.raises(Invalid, match=r"classes\[1\].name.*twice"):
        store.set_classes(P, ["Cup", " cup "], "k2")
    assert store.create_project("t3", "x", [" " + "y" * 60 + " "])["classes"][0]["name"] == (
        "y" * 60)


def test_an_image_holds_at_most_500_live_boxes(store):
    from dlcamp.camp.reads import MAX_BOXES_PER_IMAGE

    assert MAX_BOXES_PER_IMAGE == 500
    grid = [(0, x, y, x + 1, y + 1) for x in range(25) for y in range(20)]  # 500 boxes
    with pytest.raises(Invalid, match=r"images\[0\].*501 boxes; an image holds at most 500"):
        store.import_annotations(P, [_item("full", [*grid, (1, 1, 1, 9, 9)])])
    assert store.import_annotations(P, [_item("full", grid)])["boxes_added"] == 500
    full = store.list_images(P)[0][0]["id"]
    with pytest.raises(Invalid, match="500 boxes, adding 1 would pass the limit of 500"):
        store.put_box(P, full, "one-more", "e1", 0, 0, 30, 30, 40, 40)
    with pytest.raises(Invalid, match=r"images\[0\].*adding 1 would pass"):  # import merge
        store.import_annotations(P, [_item("full", [(2, 30, 30, 40, 40)])])
    assert store.import_annotations(P, [_item("full", grid)])["boxes_added"] == 0  # all known
    other = add(store, "other", 100, 80)
    store.put_box(P, other, "o1", "e2", 0, 0, 50, 50, 60, 60)
    with pytest.raises(Invalid, match="limit of 500"):
        store.copy_boxes(P, full, other, "e3")
    assert store.get_project(P)["counts"]["per_class"] == [501, 0, 0]
    box = store.get_image(P, full)["boxes"][0]
    store.put_box(P, full, box["id"], "e4", 1, 1, 2, 2, 3, 3)  # updating is not adding
    store.delete_box(P, full, box["id"], "e5", 2)
    assert len(store.copy_boxes(P, full, other, "e6")["boxes"]) == 1  # room again


# ---------------------------------------------------------------- async, backup
def test_submit_awaits_the_writer_without_blocking_the_loop(store):
    iid = add(store, "a")

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        boxes = await asyncio.gather(*(store.submit(store.put_box, P, iid, f"b{k}", f"e{k}",
                                                    0, 0, 1, 1, 5 + k, 5)
                                       for k in range(20)))
        with pytest.raises(Conflict):
            await store.submit(store.put_box, P, iid, "b0", "e99", 0, 1, 1, 1, 5, 5)
        image, dup = await store.submit(store.add_image, P, b"o2", "n.jpg", b"w", b"t",
                                        2, 2, 2, 2)
        task.cancel()
        return boxes, ticks, dup

    boxes, ticks, dup = asyncio.run(main())
    assert [b["id"] for b in boxes] == [f"b{k}" for k in range(20)] and ticks > 0 and not dup


def test_backup_is_a_complete_camp(store, tmp_path):
    iid = add(store, "a")
    store.put_box(P, iid, "b1", "e1", 0, 0, 1, 1, 5, 5)
    dest = store.backup(tmp_path / "backup")
    store.put_box(P, iid, "b2", "e2", 0, 0, 1, 1, 5, 5)  # after the backup: not in it
    with CampStore(tmp_path / "backup") as copy:
        assert [b["id"] for b in copy.get_image(P, iid)["boxes"]] == ["b1"]
        for which in ("original", "work", "thumb"):
            path = copy.image_blob(P, iid, which)
            assert path.read_bytes() == store.image_blob(P, iid, which).read_bytes()
    assert dest == tmp_path / "backup" / "camp.sqlite3"
    store.backup(tmp_path / "backup")  # again, over the old one
    with CampStore(tmp_path / "backup") as copy:
        assert len(copy.get_image(P, iid)["boxes"]) == 2
    with pytest.raises(Invalid, match="own data directory"):
        store.backup(store.data_dir)
