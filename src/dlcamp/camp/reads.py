"""The camp's queries, the JSON shapes they return, and the errors storage raises.

Every function takes a connection already inside a transaction (CampStore gives each read one
snapshot) and returns plain dicts and lists, ready for JSON.

Proposals (boxes a trained model proposed, `proposed` = 1, not yet accepted) are shown on the
page (get_image, changes: flagged "proposed" with their "score") but count nowhere else: project
counts, "labelled", the status filters, copy_from, snapshot (what exports and training read)
see only accepted boxes. The per-image limit MAX_BOXES_PER_IMAGE counts both (all live rows:
what the page must draw and the database hold).
"""

from __future__ import annotations

import sqlite3

from dlcamp.core.errors import DlcampError

# status filter -> SQL condition on images `i`: _LIVE counts its accepted live boxes, _OPEN
# its open proposals
_LIVE = ("(SELECT COUNT(*) FROM boxes b WHERE b.image_id = i.id AND b.deleted = 0 "
         "AND b.proposed = 0)")
_OPEN = ("(SELECT COUNT(*) FROM boxes b WHERE b.image_id = i.id AND b.deleted = 0 "
         "AND b.proposed = 1)")
STATUS_SQL = {
    "all": "1",
    "unlabelled": f"{_LIVE} = 0 AND i.no_objects = 0",
    "labelled": f"{_LIVE} > 0",
    "no_objects": f"{_LIVE} = 0 AND i.no_objects = 1",
    "needs_fix": "i.review = 'needs_fix'",
    "reviewed": "i.review = 'done'",
    "proposed": f"{_OPEN} > 0",
}
STATUSES = tuple(STATUS_SQL)
# The limits every path into the store shares (the HTTP API imports these, never its own):
MAX_CLASSES = 100  # classes in a project's list
MAX_CLASS_NAME = 60  # characters of a class name (and of its name_zh)
MAX_BOXES_PER_IMAGE = 500  # live boxes on one image, open proposals included
MAX_SEQ = 2**62  # the largest project seq / image id a query accepts (next?after, changes?since)
BLOB_COLUMNS = {"original": "sha256", "work": "work_sha256", "thumb": "thumb_sha256"}
_IMAGE_COLS = ("i.id, i.file_name, i.width, i.height, i.orig_width, i.orig_height, "
               f"i.no_objects, i.review, i.version, {_LIVE}, i.seq, {_OPEN}")
_BOX_COLS = "id, label, x1, y1, x2, y2, version, proposed, score"
_PROJECT_COLS = "id, name, created, seq, kind"


class NotFound(DlcampError, LookupError):
    """No such project, image or box (HTTP 404)."""


class Conflict(DlcampError):
    """The object changed since the client read it (HTTP 409). `.current` is its JSON now, or
    None when it was deleted."""

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current


class Invalid(DlcampError, ValueError):
    """A value that cannot be stored (HTTP 422); the message names the field."""


def shown(value: object, limit: int = 40) -> str:
    """`value` for an error message: its repr cut to `limit` characters (safe for an int too
    big for repr)."""
    try:
        text = repr(value)
    except ValueError:  # int with more digits than sys.get_int_max_str_digits()
        text = "a number with too many digits"
    return text if len(text) <= limit else text[:limit] + "..."


def image_json(row: tuple) -> dict:
    """The image JSON from a row of _IMAGE_COLS: "boxes" counts its accepted boxes,
    "proposals" its open proposals."""
    keys = ("id", "file_name", "width", "height", "orig_width", "orig_height", "no_objects",
            "review", "version", "boxes", "seq", "proposals")
    image = dict(zip(keys, row, strict=True))
    image["no_objects"] = bool(image["no_objects"])
    return image


def box_json(row: tuple) -> dict:
    """The box JSON from a row of _BOX_COLS (id, label, x1, y1, x2, y2, version, proposed,
    score): "proposed" a bool, "score" the proposing model's confidence in [0, 1] (kept once
    accepted) or None for a box drawn by hand."""
    box = dict(zip(("id", "label", "x1", "y1", "x2", "y2", "version", "proposed", "score"),
                   row, strict=True))
    box["proposed"] = bool(box["proposed"])
    return box


def project_row(conn: sqlite3.Connection, pid: str) -> tuple:
    """(id, name, created, seq, kind) of a project. Raises NotFound."""
    row = conn.execute(f"SELECT {_PROJECT_COLS} FROM projects WHERE id = ?",
                       (pid,)).fetchone()
    if row is None:
        raise NotFound(f"no project {str(pid)[:80]!r}")
    return row


def classes(conn: sqlite3.Connection, pid: str) -> list[dict]:
    """[{"name", "name_zh"}] in index order."""
    rows = conn.execute("SELECT name, name_zh FROM classes WHERE project_id = ? ORDER BY idx",
                        (pid,))
    return [{"name": n, "name_zh": z} for n, z in rows]


def _totals(conn: sqlite3.Connection, pid: str) -> tuple[int, int, int]:
    """(images, labelled images, accepted live boxes) of a project."""
    images, labelled = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM({_LIVE} > 0), 0) FROM images i WHERE i.project_id = ?",
        (pid,)).fetchone()
    boxes = conn.execute("SELECT COUNT(*) FROM boxes b JOIN images i ON b.image_id = i.id "
                         "WHERE i.project_id = ? AND b.deleted = 0 AND b.proposed = 0",
                         (pid,)).fetchone()[0]
    return images, labelled, boxes


def _project_json(conn: sqlite3.Connection, row: tuple) -> dict:
    images, labelled, boxes = _totals(conn, row[0])
    return {"id": row[0], "name": row[1], "kind": row[4], "created": row[2],
            "classes": classes(conn, row[0]), "images": images, "labelled": labelled,
            "boxes": boxes}


def list_projects(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(f"SELECT {_PROJECT_COLS} FROM projects ORDER BY id").fetchall()
    return [_project_json(conn, row) for row in rows]


def get_project(conn: sqlite3.Connection, pid: str) -> dict:
    row = project_row(conn, pid)
    project = _project_json(conn, row)
    per_class = [0] * len(project["classes"])
    for label, n in conn.execute(
            "SELECT b.label, COUNT(*) FROM boxes b JOIN images i ON b.image_id = i.id "
            "WHERE i.project_id = ? AND b.deleted = 0 AND b.proposed = 0 GROUP BY b.label",
            (pid,)):
        if 0 <= label < len(per_class):
            per_class[label] = n
    counts = {"per_class": per_class}
    for status in ("unlabelled", "labelled", "no_objects", "needs_fix", "reviewed",
                   "proposed"):
        counts[status] = conn.execute(
            f"SELECT COUNT(*) FROM images i WHERE i.project_id = ? AND {STATUS_SQL[status]}",
            (pid,)).fetchone()[0]
    counts["images"] = project["images"]
    return dict(project, seq=row[3], counts=counts)


def _status_sql(status: str) -> str:
    if status not in STATUS_SQL:
        raise Invalid(f"status: {str(status)[:40]!r} is not one of {', '.join(STATUSES)}")
    return STATUS_SQL[status]


def list_images(conn: sqlite3.Connection, pid: str, status: str, offset: int,
                limit: int) -> tuple[list[dict], int]:
    project_row(conn, pid)
    where = f"i.project_id = ? AND {_status_sql(status)}"
    for name, value, top in (("offset", offset, 10**9), ("limit", limit, 10_000)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise Invalid(f"{name}: must be an integer from 0 to {top}, got {shown(value)}")
    total = conn.execute(f"SELECT COUNT(*) FROM images i WHERE {where}", (pid,)).fetchone()[0]
    rows = conn.execute(f"SELECT {_IMAGE_COLS} FROM images i WHERE {where} ORDER BY i.id "
                        "LIMIT ? OFFSET ?", (pid, limit, offset)).fetchall()
    return [image_json(r) for r in rows], total


def live_boxes(conn: sqlite3.Connection, iid: int, proposals: bool = True) -> list[dict]:
    """The live boxes of an image, by id; proposals: with its open proposals (flagged)."""
    only = "" if proposals else " AND proposed = 0"
    rows = conn.execute(f"SELECT {_BOX_COLS} FROM boxes WHERE image_id = ? AND deleted = 0"
                        f"{only} ORDER BY id", (iid,))
    return [box_json(r) for r in rows]


def get_image(conn: sqlite3.Connection, pid: str, iid: int, with_boxes: bool = True) -> dict:
    project_row(conn, pid)
    row = None
    if isinstance(iid, int) and not isinstance(iid, bool) and 0 < iid < 2**63:
        row = conn.execute(f"SELECT {_IMAGE_COLS} FROM images i WHERE i.id = ? AND "
                           "i.project_id = ?", (iid, pid)).fetchone()
    if row is None:
        raise NotFound(f"no image {str(iid)[:40]} in project {pid!r}")
    image = image_json(row)
    if with_boxes:
        image["boxes"] = live_boxes(conn, iid)
    return image


def image_sha(conn: sqlite3.Connection, pid: str, iid: int, which: str) -> str:
    if which not in BLOB_COLUMNS:
        raise Invalid(f"which: {str(which)[:40]!r} is not one of {', '.join(BLOB_COLUMNS)}")
    get_image(conn, pid, iid, with_boxes=False)
    return conn.execute(f"SELECT {BLOB_COLUMNS[which]} FROM images WHERE id = ?",
                        (iid,)).fetchone()[0]


def check_position(value: object, field: str) -> int:
    """An `after` / `since` query value: an integer from 0 to MAX_SEQ. Raises Invalid."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise Invalid(f"{field}: must be an integer from 0 to {MAX_SEQ}, got {shown(value)}")
    return value


def next_image(conn: sqlite3.Connection, pid: str, after: int | None, status: str) -> dict:
    project_row(conn, pid)
    if after is not None:
        check_position(after, "after")
    where = f"i.project_id = ? AND {_status_sql(status)}"
    start = after if after is not None else 0
    query = (f"SELECT {_IMAGE_COLS} FROM images i WHERE {where} AND i.id {{}} ? "
             "ORDER BY i.id LIMIT 1")
    row = conn.execute(query.format(">"), (pid, start)).fetchone()
    if row is None and after is not None:  # wrap round, never back to `after` itself
        row = conn.execute(query.format("<"), (pid, after)).fetchone()
    if row is None:
        raise NotFound(f"none left: no {status} image in project {pid!r}")
    return image_json(row)


def changes(conn: sqlite3.Connection, pid: str, since: int) -> dict:
    row = project_row(conn, pid)
    check_position(since, "since")
    rows = conn.execute(f"SELECT {_IMAGE_COLS} FROM images i WHERE i.project_id = ? AND "
                        "i.seq > ? ORDER BY i.id", (pid, since)).fetchall()
    images = [dict(image_json(r), boxes=live_boxes(conn, r[0])) for r in rows]
    return {"seq": row[3], "classes": classes(conn, pid), "images": images}


def snapshot(conn: sqlite3.Connection, pid: str) -> dict:
    project = get_project(conn, pid)
    shas = {r[0]: r[1:] for r in conn.execute(
        "SELECT id, sha256, work_sha256, thumb_sha256 FROM images WHERE project_id = ?", (pid,))}
    images = []
    for row in conn.execute(f"SELECT {_IMAGE_COLS} FROM images i WHERE i.project_id = ? "
                            "ORDER BY i.id", (pid,)).fetchall():
        image = dict(image_json(row), boxes=live_boxes(conn, row[0], proposals=False))
        image.update(zip(("sha256", "work_sha256", "thumb_sha256"), shas[row[0]], strict=True))
        images.append(image)
    return dict(project, images=images)  # the count stays in counts["images"]


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None
