"""Box edits (put, delete, copy from another image) and the all-or-nothing bulk import.

Like edits.py, each function runs on the writer thread inside a SAVEPOINT. A box is versioned:
1 when created, +1 on each change; deleting leaves a tombstone (deleted = 1, version + 1) so a
late edit of a deleted box is a Conflict with current None, never a silent resurrection.
A proposal (a box a model proposed: proposals.py) is an ordinary box here: a PUT of it (moved,
relabelled, or sent unchanged) accepts it, a DELETE rejects it. copy_boxes and the import merge
look at accepted boxes only.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

from dlcamp.camp import reads
from dlcamp.camp.edits import (
    BOX_ID,
    EPS,
    MAX_BOXES_PER_IMAGE,
    MAX_SIDE,
    Conflict,
    Invalid,
    NotFound,
    bump,
    check_box,
    check_class_count,
    check_int,
    check_pattern,
    check_room,
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

MERGE_TOLERANCE = 0.5  # px: an imported box this close to a live one of its label is the same


def _as_float(v: object) -> object:
    """A number as float (10 and 10.0 are the same coordinate), anything else unchanged."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def put_box(conn: sqlite3.Connection, pid: str, iid: int, box_id: str, edit_id: str,
            base_version: int, label: int, coords: tuple) -> dict:
    check_pattern(BOX_ID, box_id, "box_id")
    request = [iid, box_id, base_version, label, [_as_float(v) for v in coords]]
    if (done := replay(conn, edit_id, pid, "box", request)) is not None:
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
        check_room(conn, iid, 1)
        seq = bump(conn, pid)
        stamp_image(conn, iid, seq)
        return record(conn, edit_id, pid, "box", request,
                      insert_box(conn, box_id, iid, box, seq))
    _, deleted, current = old
    if deleted:
        raise Conflict(f"box {box_id!r} was deleted", None)
    same = tuple(current[k] for k in ("label", "x1", "y1", "x2", "y2")) == box
    if base_version == 0 and not same:
        raise Conflict(f"box {box_id!r} exists already with other content", current)
    if base_version not in (0, current["version"]):
        raise Conflict(f"box {box_id!r} changed (version {current['version']}, you edited "
                       f"version {base_version})", current)
    if not same or current["proposed"]:
        # an update, or a proposal accepted (its score kept for the record); a create or
        # update of an accepted box with its stored content changes nothing
        seq = bump(conn, pid)
        conn.execute("UPDATE boxes SET label = ?, x1 = ?, y1 = ?, x2 = ?, y2 = ?, "
                     "version = version + 1, seq = ?, updated = ?, proposed = 0 WHERE id = ?",
                     (*box, seq, time.time(), box_id))
        stamp_image(conn, iid, seq)
        current = reads.box_json((box_id, *box, current["version"] + 1, 0, current["score"]))
    return record(conn, edit_id, pid, "box", request, current)


def delete_box(conn: sqlite3.Connection, pid: str, iid: int, box_id: str, edit_id: str,
               base_version: int) -> dict:
    check_pattern(BOX_ID, box_id, "box_id")
    request = [iid, box_id, base_version]
    if (done := replay(conn, edit_id, pid, "delete", request)) is not None:
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
    return record(conn, edit_id, pid, "delete", request, {"deleted": box_id})


def copy_boxes(conn: sqlite3.Connection, pid: str, iid: int, src_iid: int,
               edit_id: str) -> dict:
    """Copy src_iid's ACCEPTED boxes onto iid (storage.copy_boxes)."""
    request = [iid, src_iid]
    if (done := replay(conn, edit_id, pid, "copy", request)) is not None:
        return done
    image = image_of(conn, pid, iid)
    image_of(conn, pid, src_iid)
    if iid == src_iid:
        raise Invalid("src: copying an image's boxes onto itself")
    w, h = image["width"], image["height"]
    new = []
    for b in reads.live_boxes(conn, src_iid, proposals=False):
        x1, y1, x2, y2 = min(b["x1"], w), min(b["y1"], h), min(b["x2"], w), min(b["y2"], h)
        if x2 - x1 > EPS and y2 - y1 > EPS:  # a box wholly outside the smaller image is dropped
            new.append((b["label"], x1, y1, x2, y2))
    out = []
    if new:
        check_room(conn, iid, len(new))
        seq = bump(conn, pid)
        stamp_image(conn, iid, seq)
        out = [insert_box(conn, uuid.uuid4().hex, iid, box, seq) for box in new]
    return record(conn, edit_id, pid, "copy", request, {"boxes": out})


def _label_map(conn: sqlite3.Connection, pid: str, classes: list | None) -> list[int] | None:
    """Import label -> project label, appending the import's classes the project lacks;
    None when labels are the project's own indices. Raises Invalid when the project would end
    up with more than MAX_CLASSES classes."""
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
    check_class_count(len(current), "classes (the project's with the import's appended)")
    write_classes(conn, pid, current)
    return mapping


def _is_known(box: tuple, live: list[tuple]) -> bool:
    """Whether a live box (label, x1, y1, x2, y2) has box's label and every coordinate
    within MERGE_TOLERANCE px of box's."""
    return any(old[0] == box[0] and all(abs(a - b) <= MERGE_TOLERANCE
                                        for a, b in zip(old[1:], box[1:], strict=True))
               for old in live)


def _item_boxes(item: dict, where: str, sizes: tuple, n: int,
                mapping: list[int] | None) -> list[tuple]:
    """An item's boxes checked against its own size and the import's classes, with labels
    mapped to the project's."""
    out = []
    for j, b in enumerate(item.get("boxes") or ()):
        if len(b) != 5:
            raise Invalid(f"{where}boxes[{j}]: expected (label, x1, y1, x2, y2)")
        label, *xy = check_box(b[0], b[1:], sizes[0], sizes[1], n, f"{where}boxes[{j}].")
        out.append((label if mapping is None else mapping[label], *xy))
    return out


def _merge(conn: sqlite3.Connection, old: tuple, boxes: list[tuple], sizes: tuple,
           seq: int, no_objects: bool) -> list[tuple]:
    """Add `boxes` (in the item's pixels `sizes`) to the stored image old = (id, width,
    height), scaled to its size, skipping those it already has; mark it no_objects if asked
    and it ends with no live box. Returns the boxes added."""
    iid, width, height = old
    sx, sy = width / sizes[0], height / sizes[1]
    live = [(b["label"], b["x1"], b["y1"], b["x2"], b["y2"])
            for b in reads.live_boxes(conn, iid, proposals=False)]
    new = []
    for label, x1, y1, x2, y2 in boxes:
        box = (label, min(x1 * sx, width), min(y1 * sy, height), min(x2 * sx, width),
               min(y2 * sy, height))
        if not _is_known(box, live) and box[3] - box[1] > EPS and box[4] - box[2] > EPS:
            new.append(box)
    check_room(conn, iid, len(new))
    for box in new:
        insert_box(conn, uuid.uuid4().hex, iid, box, seq)
    if no_objects and not live and not new:
        conn.execute("UPDATE images SET version = version + 1, no_objects = 1, seq = ? "
                     "WHERE id = ? AND no_objects = 0", (seq, iid))
    if new:
        stamp_image(conn, iid, seq)
    return new


def import_annotations(conn: sqlite3.Connection, pid: str, items: list[dict],
                       classes: list | None) -> dict:
    """Add items (storage.import_annotations says their shape) in the caller's transaction.
    An item whose original the project already has (or got earlier in `items`), or whose
    original is the working copy of one of its images (an export of the project), is a
    duplicate: its boxes are MERGED into that image, each unless the image already holds a
    live box of the same label within MERGE_TOLERANCE px on every coordinate (importing an
    export twice adds nothing), scaled if the stored working copy has another size. An
    item's no_objects is applied only when its image ends with no live box.
    -> {"images_added", "boxes_added" (merged ones too), "duplicates"}. Raises Invalid."""
    reads.project_row(conn, pid)
    mapping = _label_map(conn, pid, classes)
    n = n_classes(conn, pid) if mapping is None else len(mapping)
    seq = bump(conn, pid)
    known = {}  # an image's original or working copy (what exports hold) -> (id, w, h)
    for sha, work, *image in conn.execute(
            "SELECT sha256, work_sha256, id, width, height FROM images WHERE project_id = ?",
            (pid,)):
        known.setdefault(work, tuple(image))
        known[sha] = tuple(image)
    added = boxes_added = duplicates = 0
    for k, item in enumerate(items):
        where = f"images[{k}] ({str(item.get('file_name'))[:80]}): "
        sizes = tuple(item.get(f) for f in ("width", "height", "orig_width", "orig_height"))
        for field, v in zip(("width", "height", "orig_width", "orig_height"), sizes,
                            strict=True):
            check_int(v, f"{where}{field}", 1, MAX_SIDE)
        no_objects = item.get("no_objects", False)
        if not isinstance(no_objects, bool):
            raise Invalid(f"{where}no_objects: must be true or false")
        boxes = _item_boxes(item, where, sizes, n, mapping)
        try:
            if item["original"] in known:
                duplicates += 1
                new = _merge(conn, known[item["original"]], boxes, sizes, seq, no_objects)
            else:
                if len(boxes) > MAX_BOXES_PER_IMAGE:
                    raise Invalid(f"boxes: {len(boxes)} boxes; an image holds at most "
                                  f"{MAX_BOXES_PER_IMAGE}")
                iid = insert_image(conn, pid, (item["original"], item["work"], item["thumb"]),
                                   item.get("file_name"), sizes, no_objects and not boxes, seq)
                known[item["original"]] = (iid, sizes[0], sizes[1])
                new = boxes
                for box in new:
                    insert_box(conn, uuid.uuid4().hex, iid, box, seq)
                added += 1
        except Invalid as e:
            raise Invalid(f"{where}{e}") from None
        boxes_added += len(new)
    return {"images_added": added, "boxes_added": boxes_added, "duplicates": duplicates}
