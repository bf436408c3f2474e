"""The camp's write transactions for projects, classes, images (boxes: boxes.py).

Each runs on the writer thread as `fn(conn, ...)` inside a SAVEPOINT (writer.py): raising
undoes it alone.

An edit that carries an `edit_id` is applied once: its response is stored in `edits` in the
same transaction with a fingerprint of the request (kind, project and every argument), and a
replay of the id with the same request returns that response and changes nothing; the same id
with any other request is refused (Invalid), never answered with another edit's response. Every
change bumps the project's `seq` and stamps it on the rows changed (and on their image).
Boxes and image fields are versioned: the client sends the version it edited (`base_version`,
0 to create a box), and a stale one is a Conflict carrying the object as it is now.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import time

from dlcamp.camp import reads
from dlcamp.camp.reads import (  # noqa: F401 - boxes.py uses some
    MAX_BOXES_PER_IMAGE,
    MAX_CLASS_NAME,
    MAX_CLASSES,
    Conflict,
    Invalid,
    NotFound,
    shown,
)

PROJECT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
BOX_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
EDIT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
REVIEWS = ("todo", "done", "needs_fix")
MAX_SIDE = 100_000  # px: the largest image side stored
EPS = 1e-3  # px: coordinates this far outside the image are clamped onto its edge
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------- checks
def check_pattern(pattern: re.Pattern, value: object, field: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Invalid(f"{field}: {str(value)[:80]!r} must match {pattern.pattern}")
    return value


def check_int(value: object, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Invalid(f"{field}: must be an integer from {low} to {high}, got {shown(value)}")
    return value


def clean_text(value: object, field: str, required: bool = True,
               limit: int = MAX_CLASS_NAME) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field}: must be text, got {type(value).__name__}")
    value = _CONTROL.sub("", value).strip()
    if required and not value:
        raise Invalid(f"{field}: must not be empty")
    if len(value) > limit:
        raise Invalid(f"{field}: at most {limit} characters, got {len(value)}")
    return value


def clean_classes(classes: object, field: str = "classes") -> list[dict]:
    """[{"name", "name_zh"}] checked: 0..MAX_CLASSES entries (a plain string is a name), names
    non-empty after stripping, <= MAX_CLASS_NAME characters (name_zh too, may be empty),
    unique ignoring case. Raises Invalid naming the entry (or the count)."""
    if not isinstance(classes, list):
        raise Invalid(f"{field}: must be a list of at most {MAX_CLASSES} classes")
    check_class_count(len(classes), field)
    out, seen = [], set()
    for i, c in enumerate(classes):
        c = {"name": c} if isinstance(c, str) else c
        if not isinstance(c, dict):
            raise Invalid(f"{field}[{i}]: must be {{\"name\", \"name_zh\"}}")
        name = clean_text(c.get("name"), f"{field}[{i}].name")
        if name.casefold() in seen:
            raise Invalid(f"{field}[{i}].name: {name!r} appears twice")
        seen.add(name.casefold())
        out.append({"name": name,
                    "name_zh": clean_text(c.get("name_zh") or "", f"{field}[{i}].name_zh", False)})
    return out


def check_class_count(n: int, field: str = "classes") -> None:
    """Raises Invalid when a class list of `n` entries is longer than MAX_CLASSES."""
    if n > MAX_CLASSES:
        raise Invalid(f"{field}: {n} classes; a project has at most {MAX_CLASSES}")


def check_room(conn: sqlite3.Connection, iid: int, adding: int) -> None:
    """Raises Invalid when image `iid` would hold more than MAX_BOXES_PER_IMAGE live boxes
    (accepted and proposed) after `adding` more."""
    live = conn.execute("SELECT COUNT(*) FROM boxes WHERE image_id = ? AND deleted = 0",
                        (iid,)).fetchone()[0]
    if live + adding > MAX_BOXES_PER_IMAGE:
        raise Invalid(f"boxes: image {iid} has {live} boxes, adding {adding} would pass "
                      f"the limit of {MAX_BOXES_PER_IMAGE} boxes per image")


def check_box(label: object, coords: tuple, width: int, height: int, n_classes: int,
              where: str = "") -> tuple[int, float, float, float, float]:
    """(label, x1, y1, x2, y2) checked against the class count and the image size; values
    within EPS outside the image are clamped onto its edge. Raises Invalid naming the field."""
    if n_classes == 0:
        raise Invalid(f"{where}label: the project has no classes yet")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        raise Invalid(f"{where}label: {label!r} is not a class index (0 to {n_classes - 1})")
    values = []
    for field, v, side in zip(("x1", "y1", "x2", "y2"), coords, (width, height) * 2,
                              strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Invalid(f"{where}{field}: must be a finite number, got {v!r}")
        v = float(min(max(v, 0.0), side) if -EPS <= v <= side + EPS else v)
        if not 0 <= v <= side:
            raise Invalid(f"{where}{field}: {v} is outside the image (0 to {side} px)")
        values.append(v)
    x1, y1, x2, y2 = values
    if x1 >= x2 or y1 >= y2:
        axis = "x2" if x1 >= x2 else "y2"
        raise Invalid(f"{where}{axis}: must be greater than {axis[0]}1 (the box has no area)")
    return (label, x1, y1, x2, y2)


# ---------------------------------------------------------------- shared steps
def fingerprint(pid: object, kind: str, request: object) -> str:
    """SHA-256 (hex) of the canonical JSON of [kind, pid, request]: `request` is the edit's
    arguments (ids, versions, values), numbers of the same value giving the same text only if
    the caller passes them with one type (coordinates as floats). Raises Invalid for an
    argument JSON cannot hold (an int of thousands of digits)."""
    try:
        text = json.dumps([kind, pid, request], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, default=repr)
    except ValueError as e:
        raise Invalid(f"{kind}: the request holds a value that cannot be stored ({e})") from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def replay(conn: sqlite3.Connection, edit_id: object, pid: str, kind: str,
           request: object) -> object | None:
    """The stored response of an already-applied edit, or None for a new edit_id. Raises
    Invalid when the id was used for another request (other kind, project or arguments; a
    row stored before fingerprints existed only needs the same kind and project)."""
    check_pattern(EDIT_ID, edit_id, "edit_id")
    row = conn.execute("SELECT project_id, kind, response, request FROM edits "
                       "WHERE edit_id = ?", (edit_id,)).fetchone()
    if row is None:
        return None
    if (row[0], row[1]) != (pid, kind) or (
            row[3] is not None and row[3] != fingerprint(pid, kind, request)):
        raise Invalid(f"edit_id: {edit_id!r} was already used for a different request; "
                      "send a new edit_id")
    return json.loads(row[2])


def record(conn: sqlite3.Connection, edit_id: str, pid: str, kind: str, request: object,
           response: object):
    """Store an applied edit's response with its request's fingerprint; returns response."""
    conn.execute("INSERT INTO edits (edit_id, project_id, kind, response, created, request) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (edit_id, pid, kind, json.dumps(response),
                                               time.time(), fingerprint(pid, kind, request)))
    return response


def bump(conn: sqlite3.Connection, pid: str) -> int:
    """The project's next seq (stored)."""
    return conn.execute("UPDATE projects SET seq = seq + 1 WHERE id = ? RETURNING seq",
                        (pid,)).fetchone()[0]


def image_of(conn: sqlite3.Connection, pid: str, iid: object) -> dict:
    """The image's JSON (box count) after checking the project and that it holds the image."""
    return reads.get_image(conn, pid, iid, with_boxes=False)  # raises NotFound


def n_classes(conn: sqlite3.Connection, pid: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM classes WHERE project_id = ?", (pid,)).fetchone()[0]


def stored_box(conn: sqlite3.Connection, box_id: str) -> tuple | None:
    """(image_id, deleted, box JSON) of a stored box, or None."""
    row = conn.execute("SELECT image_id, deleted, id, label, x1, y1, x2, y2, version, proposed, "
                       "score FROM boxes WHERE id = ?", (box_id,)).fetchone()
    return None if row is None else (row[0], bool(row[1]), reads.box_json(row[2:]))


def stamp_image(conn: sqlite3.Connection, iid: int, seq: int) -> None:
    conn.execute("UPDATE images SET seq = ? WHERE id = ?", (seq, iid))


def insert_box(conn: sqlite3.Connection, box_id: str, iid: int, box: tuple, seq: int,
               score: float | None = None, run: str | None = None) -> dict:
    """Insert box (label, x1, y1, x2, y2) at version 1 -> its JSON. With a `score`, it is a
    proposal (proposed = 1) made by `run`."""
    proposed = int(score is not None)
    conn.execute("INSERT INTO boxes (id, image_id, label, x1, y1, x2, y2, version, seq, updated,"
                 " proposed, score, run) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                 (box_id, iid, *box, seq, time.time(), proposed, score, run))
    return reads.box_json((box_id, *box, 1, proposed, score))


# ---------------------------------------------------------------- projects
def create_project(conn: sqlite3.Connection, pid: str, name: str, classes: list) -> dict:
    check_pattern(PROJECT_ID, pid, "id")
    name = clean_text(name, "name", limit=100)
    classes = clean_classes(classes)
    if conn.execute("SELECT 1 FROM projects WHERE id = ?", (pid,)).fetchone():
        raise Conflict(f"project {pid!r} exists already", reads.get_project(conn, pid))
    conn.execute("INSERT INTO projects (id, name, created) VALUES (?, ?, ?)",
                 (pid, name, time.time()))
    write_classes(conn, pid, classes)
    return reads.get_project(conn, pid)


def write_classes(conn: sqlite3.Connection, pid: str, classes: list[dict]) -> None:
    conn.execute("DELETE FROM classes WHERE project_id = ?", (pid,))
    conn.executemany("INSERT INTO classes (project_id, idx, name, name_zh) VALUES (?, ?, ?, ?)",
                     [(pid, i, c["name"], c["name_zh"]) for i, c in enumerate(classes)])


def set_classes(conn: sqlite3.Connection, pid: str, classes: list, edit_id: str) -> dict:
    classes = clean_classes(classes)
    if (done := replay(conn, edit_id, pid, "classes", classes)) is not None:
        return done
    reads.project_row(conn, pid)
    old = reads.classes(conn, pid)
    if len(classes) < len(old):
        used = conn.execute(
            "SELECT MAX(b.label) FROM boxes b JOIN images i ON b.image_id = i.id "
            "WHERE i.project_id = ? AND b.deleted = 0", (pid,)).fetchone()[0]
        if used is not None and used >= len(classes):
            raise Conflict(f"classes: class {used} ({old[used]['name']!r}) is used by boxes; "
                           "a class in use cannot be removed", {"classes": old})
    if classes != old:
        write_classes(conn, pid, classes)
        bump(conn, pid)
    return record(conn, edit_id, pid, "classes", classes, {"classes": classes})


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                 (clean_text(key, "key", limit=100), str(value)))


# ---------------------------------------------------------------- images
def clean_file_name(value: object) -> str:
    name = clean_text(value if isinstance(value, str) else "", "file_name", False, limit=10_000)
    name = re.split(r"[\\/]", name)[-1].strip()[-200:]  # a name, never a path
    return name or "image"


def insert_image(conn: sqlite3.Connection, pid: str, shas: tuple, file_name: object,
                  sizes: tuple, no_objects: bool, seq: int) -> int:
    for field, v in zip(("width", "height", "orig_width", "orig_height"), sizes, strict=True):
        check_int(v, field, 1, MAX_SIDE)
    return conn.execute(
        "INSERT INTO images (project_id, sha256, work_sha256, thumb_sha256, file_name, width, "
        "height, orig_width, orig_height, no_objects, seq, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (pid, *shas, clean_file_name(file_name), *sizes, int(no_objects), seq, time.time()),
    ).lastrowid


def add_image(conn: sqlite3.Connection, pid: str, shas: tuple, file_name: str, width: int,
              height: int, orig_width: int, orig_height: int) -> tuple[dict, bool]:
    reads.project_row(conn, pid)
    old = conn.execute("SELECT id FROM images WHERE project_id = ? AND sha256 = ?",
                       (pid, shas[0])).fetchone()
    if old is not None:
        return image_of(conn, pid, old[0]), True
    iid = insert_image(conn, pid, shas, file_name, (width, height, orig_width, orig_height),
                        False, bump(conn, pid))
    return image_of(conn, pid, iid), False


def patch_image(conn: sqlite3.Connection, pid: str, iid: int, edit_id: str, base_version: int,
                no_objects: bool | None, review: str | None) -> dict:
    if no_objects is not None and not isinstance(no_objects, bool):
        raise Invalid(f"no_objects: must be true or false, got {no_objects!r}")
    if review is not None and review not in REVIEWS:
        raise Invalid(f"review: {str(review)[:40]!r} is not one of {', '.join(REVIEWS)}")
    if no_objects is None and review is None:
        raise Invalid("no_objects, review: give at least one")
    request = [iid, base_version, no_objects, review]
    if (done := replay(conn, edit_id, pid, "image", request)) is not None:
        return done
    image = image_of(conn, pid, iid)
    if check_int(base_version, "base_version", 0, 2**62) != image["version"]:
        raise Conflict(f"image {iid} changed (version {image['version']}, you edited "
                       f"version {base_version})", image)
    new_no = image["no_objects"] if no_objects is None else no_objects
    new_review = image["review"] if review is None else review
    if (new_no, new_review) != (image["no_objects"], image["review"]):
        conn.execute("UPDATE images SET no_objects = ?, review = ?, version = version + 1, "
                     "seq = ? WHERE id = ?", (int(new_no), new_review, bump(conn, pid), iid))
        image = image_of(conn, pid, iid)
    return record(conn, edit_id, pid, "image", request, image)
