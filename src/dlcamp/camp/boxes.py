"""Box edits (put, delete, copy from another image) and the all-or-nothing bulk import.

Like edits.py, each function runs on the writer thread inside a SAVEPOINT. A box is versioned:
1 when created, +1 on each change; deleting leaves a tombstone (deleted = 1, version + 1) so a
late edit of a deleted box is a Conflict with current None, never a silent resurrection.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

from dlcamp.camp import reads
from dlcamp.camp.edits import (
    BOX_ID,
    EPS,
    Conflict,
    Invalid,
    NotFound,
    bump,
    check_box,
    check_int,
    check_pattern,
    clean_classes,
    image_of,
    insert_box,
    insert_image,
    n_classes,
    record,
    replay,
    stamp_image,
    stored_box,
    write_classes,
)


def put_box(conn: sqlite3.Connection, pid: str, iid: int, box_id: str, edit_id: str,
            base_version: int, label: int, coords: tuple) -> dict:
    check_pattern(BOX_ID, box_id, "box_id")
    if (done := replay(conn, edit_id, pid, "box")) is not None:
        return done
    image = image_of(conn, pid, iid)
    check_int(base_version, "base_version", 0, 2**62)
    box = check_box(label, coords, image["width"], image["height"], n_classes(conn, pid))
    old = stored_box(conn, box_id)
    if old is not None and old[0] != iid:
        raise Invalid(f"box_id: {box_id!r} belongs to another image")
    if old is None:
        if base_version != 0:
            raise NotFound(f"no box {box_id!r} on image {iid} (create it with base_version 0)")
        seq = bump(conn, pid)
        stamp_image(conn, iid, seq)
        return record(conn, edit_id, pid, "box", insert_box(conn, box_id, iid, box, seq))
    _, deleted, current = old
    if deleted:
        raise Conflict(f"box {box_id!r} was deleted", None)
    same = tuple(current[k] for k in ("label", "x1", "y1", "x2", "y2")) == box
    if base_version == 0 and not same:
        raise Conflict(f"box {box_id!r} exists already with other content", current)
    if base_version not in (0, current["version"]):
        raise Conflict(f"box {box_id!r} changed (version {current['version']}, you edited "
                       f"version {base_version})", current)
    if not same:  # an update; a create or update with the stored content changes nothing
        seq = bump(conn, pid)
        conn.execute("UPDATE boxes SET label = ?, x1 = ?, y1 = ?, x2 = ?, y2 = ?, "
                     "version = version + 1, seq = ?, updated = ? WHERE id = ?",
                     (*box, seq, time.time(), box_id))
        stamp_image(conn, iid, seq)
        current = reads.box_json((box_id, *box, current["version"] + 1))
    return record(conn, edit_id, pid, "box", current)


def delete_box(conn: sqlite3.Connection, pid: str, iid: int, box_id: str, edit_id: str,
               base_version: int) -> dict:
    check_pattern(BOX_ID, box_id, "box_id")
    if (done := replay(conn, edit_id, pid, "delete")) is not None:
        return done
    image_of(conn, pid, iid)
    check_int(base_version, "base_version", 1, 2**62)
    old = stored_box(conn, box_id)
    if old is None or old[0] != iid:
        raise NotFound(f"no box {box_id!r} on image {iid}")
    _, deleted, current = old
    if deleted:
        raise Conflict(f"box {box_id!r} was deleted already", None)
    if base_version != current["version"]:
        raise Conflict(f"box {box_id!r} changed (version {current['version']}, you edited "
                       f"version {base_version})", current)
    seq = bump(conn, pid)
    conn.execute("UPDATE boxes SET deleted = 1, version = version + 1, seq = ?, updated = ? "
                 "WHERE id = ?", (seq, time.time(), box_id))
    stamp_image(conn, iid, seq)
    return record(conn, edit_id, pid, "delete", {"deleted": box_id})


def copy_boxes(conn: sqlite3.Connection, pid: str, iid: int, src_iid: int,
               edit_id: str) -> dict:
    if (done := replay(conn, edit_id, pid, "copy")) is not None:
        return done
    image = image_of(conn, pid, iid)
    image_of(conn, pid, src_iid)
    if iid == src_iid:
        raise Invalid("src: copying an image's boxes onto itself")
    w, h = image["width"], image["height"]
    new = []
    for b in reads.live_boxes(conn, src_iid):
        x1, y1, x2, y2 = min(b["x1"], w), min(b["y1"], h), min(b["x2"], w), min(b["y2"], h)
        if x2 - x1 > EPS and y2 - y1 > EPS:  # a box wholly outside the smaller image is dropped
            new.append((b["label"], x1, y1, x2, y2))
    out = []
    if new:
        seq = bump(conn, pid)
        stamp_image(conn, iid, seq)
        out = [insert_box(conn, uuid.uuid4().hex, iid, box, seq) for box in new]
    return record(conn, edit_id, pid, "copy", {"boxes": out})


def _label_map(conn: sqlite3.Connection, pid: str, classes: list | None) -> list[int] | None:
    """Import label -> project label, appending the import's classes the project lacks;
    None when labels are the project's own indices."""
    if classes is None:
        return None
    incoming = clean_classes(classes)
    current = reads.classes(conn, pid)
    index = {c["name"].casefold(): i for i, c in enumerate(current)}
    mapping = []
    for c in incoming:
        if c["name"].casefold() not in index:
            index[c["name"].casefold()] = len(current)
            current.append(c)
        mapping.append(index[c["name"].casefold()])
    write_classes(conn, pid, current)
    return mapping


def import_annotations(conn: sqlite3.Connection, pid: str, items: list[dict],
                       classes: list | None) -> dict:
    reads.project_row(conn, pid)
    mapping = _label_map(conn, pid, classes)
    n = n_classes(conn, pid) if mapping is None else len(mapping)
    seq = bump(conn, pid)
    known = {r[0] for r in conn.execute("SELECT sha256 FROM images WHERE project_id = ?",
                                        (pid,))}
    added = boxes_added = duplicates = 0
    for k, item in enumerate(items):
        where = f"images[{k}] ({str(item.get('file_name'))[:80]}): "
        if item["original"] in known:
            duplicates += 1
            continue
        known.add(item["original"])
        sizes = tuple(item.get(f) for f in ("width", "height", "orig_width", "orig_height"))
        no_objects = item.get("no_objects", False)
        if not isinstance(no_objects, bool):
            raise Invalid(f"{where}no_objects: must be true or false")
        try:
            iid = insert_image(conn, pid, (item["original"], item["work"], item["thumb"]),
                               item.get("file_name"), sizes, no_objects, seq)
        except Invalid as e:
            raise Invalid(f"{where}{e}") from None
        for j, b in enumerate(item.get("boxes") or ()):
            if len(b) != 5:
                raise Invalid(f"{where}boxes[{j}]: expected (label, x1, y1, x2, y2)")
            label, x1, y1, x2, y2 = check_box(b[0], b[1:], sizes[0], sizes[1], n,
                                              f"{where}boxes[{j}].")
            label = label if mapping is None else mapping[label]
            insert_box(conn, uuid.uuid4().hex, iid, (label, x1, y1, x2, y2), seq)
            boxes_added += 1
        added += 1
    return {"images_added": added, "boxes_added": boxes_added, "duplicates": duplicates}
