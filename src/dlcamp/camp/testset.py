"""The event's settings and the hidden test set, stored in the camp's SQLite file.

- The test set is a project with kind='test' (`import_testset`, `create_test_project`); its
  images may carry condition tags (images.tags, a JSON object) from a `conditions.csv` in the
  import's zip: a `file_name` column and one column per tag (numbers stay numbers). Teams never
  open it (camp/api_board.py); `load_test` reads it for scoring (camp/scoring.py).
- The event's settings are the meta key "event", JSON (`event`, `set_event`):
  {"test": pid | None, "max_submissions": 10, "state": "open" | "frozen",
   "release_images": false}.

Writes are transactions on the store's writer thread (`store._write`), so they can be awaited
with `await store.submit(fn, ...)` like the store's own methods.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import torch

from dlcamp.camp import edits, reads
from dlcamp.camp.ingest import safe_file_name
from dlcamp.camp.interchange import Bundle, ImportFailed
from dlcamp.camp.reads import Invalid, NotFound
from dlcamp.camp.scoring import TestImage, TestSet, half, value_order
from dlcamp.camp.storage import CampStore
from dlcamp.camp.transfer import IMPORTERS, import_project

EVENT_KEY = "event"
DEFAULT_EVENT = {"test": None, "max_submissions": 10, "state": "open", "release_images": False}
CONDITIONS = "conditions.csv"
MAX_TAGS, MAX_TAG_TEXT = 20, 60
# ------------------------------------------------------------------ the event
def event(store: CampStore) -> dict:
    """The event's settings (DEFAULT_EVENT's keys)."""
    raw = store.get_meta(EVENT_KEY)
    return {**DEFAULT_EVENT, **(json.loads(raw) if raw else {})}


def _set_event(conn: sqlite3.Connection, changes: dict) -> dict:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    now = {**DEFAULT_EVENT, **(json.loads(row[0]) if row else {}), **changes}
    if now["test"] is not None and kind_in(conn, now["test"]) != "test":
        raise Invalid(f"test: {now['test']!r} is not a test project")
    if now["state"] not in ("open", "frozen"):
        raise Invalid("state: must be 'open' or 'frozen'")
    if not (isinstance(now["max_submissions"], int) and 1 <= now["max_submissions"] <= 1000):
        raise Invalid("max_submissions: must be an integer from 1 to 1000")
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                 "SET value = excluded.value", (EVENT_KEY, json.dumps(now)))
    return now


def set_event(store: CampStore, **changes: Any) -> dict:
    """Change some settings -> all of them. Raises Invalid (names the setting)."""
    unknown = set(changes) - set(DEFAULT_EVENT)
    if unknown:
        raise Invalid(f"unknown event setting(s): {', '.join(sorted(unknown))}")
    return store._write(_set_event, changes)


def kind_in(conn: sqlite3.Connection, pid: str) -> str:
    row = conn.execute("SELECT kind FROM projects WHERE id = ?", (pid,)).fetchone()
    if row is None:
        raise NotFound(f"no project {str(pid)[:80]!r}")
    return row[0]


def project_kind(store: CampStore, pid: str) -> str:
    """'team' or 'test'. Raises NotFound."""
    with store._read() as conn:
        return kind_in(conn, pid)


def test_projects(store: CampStore) -> set[str]:
    """The ids of every test project (kept out of the teams' sight)."""
    with store._read() as conn:
        return {r[0] for r in conn.execute("SELECT id FROM projects WHERE kind = 'test'")}


# ------------------------------------------------------------------ the test set
def _adopt(conn: sqlite3.Connection, pid: str) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    if row is None or json.loads(row[0]).get("test") is None:
        _set_event(conn, {"test": pid})  # the first test project is the event's


def _create_test(conn: sqlite3.Connection, pid: str, name: str, classes: list,
                 adopt: bool = True) -> dict:
    made = edits.create_project(conn, pid, name, classes)
    conn.execute("UPDATE projects SET kind = 'test' WHERE id = ?", (pid,))
    if adopt:
        _adopt(conn, pid)
    return made


def create_test_project(store: CampStore, pid: str, name: str, classes: list[dict]) -> dict:
    """A new, empty test project (becomes the event's test set if it has none). Raises
    Invalid, Conflict (id taken)."""
    return store._write(_create_test, pid, name, classes)


def _drop(conn: sqlite3.Connection, pid: str) -> None:
    conn.execute("DELETE FROM projects WHERE id = ? AND kind = 'test'", (pid,))
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    if row and json.loads(row[0]).get("test") == pid:
        _set_event(conn, {"test": None})


def read_conditions(data: bytes | Path) -> dict[str, dict[str, Any]]:
    """{file name (as stored: ingest.safe_file_name) -> {tag: value}} from the import's
    conditions.csv (anywhere in the zip or folder); {} without one. Numbers become int or
    float, empty cells are left out. Raises ImportFailed."""
    try:
        bundle = Bundle.open(data)
    except ImportFailed:
        return {}
    found = [n for n in bundle.names() if n.rsplit("/", 1)[-1].lower() == CONDITIONS]
    if not found:
        return {}
    rows = list(csv.DictReader(io.StringIO(bundle.text(found[0]))))
    if not rows or "file_name" not in rows[0]:
        raise ImportFailed(found[0], "line 1", "needs a header with a file_name column and "
                           "one column per condition tag")
    tags = [t for t in rows[0] if t != "file_name"]
    if len(tags) > MAX_TAGS or any(not t or len(t) > MAX_TAG_TEXT for t in tags):
        raise ImportFailed(found[0], "line 1", f"1 to {MAX_TAGS} tag columns, each named "
                           f"with at most {MAX_TAG_TEXT} characters")
    out: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows, start=2):
        name = (row.get("file_name") or "").strip()
        if not name or None in row:
            raise ImportFailed(found[0], f"line {n}", "a file_name and no extra cells needed")
        values = {t: _value(row[t] or "") for t in tags if (row[t] or "").strip()}
        if any(isinstance(v, str) and len(v) > MAX_TAG_TEXT for v in values.values()):
            raise ImportFailed(found[0], f"line {n}", f"a tag over {MAX_TAG_TEXT} characters")
        out[safe_file_name(name)] = values
    return out


def _value(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            value = kind(text)
            return value if value == value and abs(value) != float("inf") else text
        except ValueError:
            pass
    return text


def _finish(conn: sqlite3.Connection, pid: str, tags: dict[str, dict]) -> list[str]:
    """Tag the imported images, then make `pid` the event's test set if it has none."""
    unknown = []
    for name, values in tags.items():
        hit = conn.execute("UPDATE images SET tags = ? WHERE project_id = ? AND file_name = ?",
                           (json.dumps(values), pid, name))
        if hit.rowcount == 0:
            unknown.append(name)
    if unknown:
        raise ImportFailed(CONDITIONS, "file_name", f"{len(unknown)} name(s) match no image "
                           f"of the import, e.g. {unknown[0]!r}")
    _adopt(conn, pid)  # in the same transaction: nobody sees the set half imported
    return unknown


def import_testset(store: CampStore, data: bytes | Path, fmt: str, pid: str = "test",
                   name: str = "Hidden test set") -> dict:
    """Make test project `pid` from an export in any import format (transfer.IMPORT_FORMATS)
    with its conditions.csv tags -> {"project", "images_added", "boxes_added", "duplicates",
    "tagged"}. All or nothing: on any error the project is removed again; it becomes the
    event's test set (if the event has none) only once its images, boxes and tags are all in,
    so no submission is ever scored on half of it. Raises ImportFailed, Invalid, Conflict
    (pid taken), KeyError (format)."""
    if fmt not in IMPORTERS:
        raise Invalid(f"format: {str(fmt)[:40]!r} is not an import format")
    tags = read_conditions(data)
    ann = IMPORTERS[fmt](data)
    if not ann.classes:
        raise ImportFailed("test set", "classes", "the import names no classes")
    store._write(_create_test, pid, name, [{"name": c.name, "name_zh": c.name_zh}
                                           for c in ann.classes], False)
    try:
        added = import_project(store, pid, fmt, data, "test set")
        store._write(_finish, pid, tags)
    except BaseException:
        store._write(_drop, pid)
        raise
    return {"project": pid, **added, "tagged": len(tags)}


def load_test(store: CampStore, pid: str) -> TestSet:
    """The test project as a scoring.TestSet: accepted boxes only (not proposed, not
    deleted), working copies' paths, tags. Raises NotFound."""
    with store._read() as conn:
        classes = [c["name"] for c in reads.classes(conn, pid)]
        if kind_in(conn, pid) != "test":
            raise Invalid(f"{pid!r} is not a test project")
        rows = conn.execute("SELECT id, file_name, sha256, width, height, work_sha256, tags "
                            "FROM images WHERE project_id = ? ORDER BY id", (pid,)).fetchall()
        boxes: dict[int, list] = {}
        for iid, label, *xyxy in conn.execute(
                "SELECT b.image_id, b.label, b.x1, b.y1, b.x2, b.y2 FROM boxes b JOIN images i "
                "ON b.image_id = i.id WHERE i.project_id = ? AND b.deleted = 0 AND "
                "b.proposed = 0 ORDER BY b.image_id, b.id", (pid,)):
            boxes.setdefault(iid, []).append((label, *xyxy))
    images = []
    for iid, file_name, sha, w, h, work, tags in rows:
        b = torch.tensor([r[1:] for r in boxes.get(iid, [])], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([r[0] for r in boxes.get(iid, [])], dtype=torch.long)
        images.append(TestImage(iid, file_name, sha, w, h, b, labels, store.blob_path(work),
                                json.loads(tags or "{}")))
    return TestSet(classes, images)


def test_summary(store: CampStore, pid: str) -> dict:
    """{"project", "images", "classes" (names), "boxes", "public", "private" (image counts),
    "conditions": {tag: [values]}} of a test project. Raises NotFound, Invalid."""
    test = load_test(store, pid)
    conditions: dict[str, set] = {}
    for t in test.images:
        for k, v in t.tags.items():
            conditions.setdefault(k, set()).add(json.dumps(v))
    halves = [half(t.sha256) for t in test.images]
    return {"project": pid, "images": len(test.images), "classes": test.classes,
            "boxes": sum(len(t.labels) for t in test.images),
            "public": halves.count("public"), "private": halves.count("private"),
            "conditions": {k: sorted((json.loads(v) for v in vs), key=value_order)
                           for k, vs in sorted(conditions.items())}}
