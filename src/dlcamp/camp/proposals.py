"""Model-assisted labelling: a trained model's proposed boxes, and accepting them.

A proposal is a row of `boxes` with proposed = 1, the model's `score` and the `run` that made
it. The page shows proposals (flagged); nothing else counts them (reads.py). Like every write
here, these run on the writer thread inside a SAVEPOINT, bump the project's seq and stamp the
image, so teammates' GET changes?since= sees proposals come, go and turn into boxes.

- propose_boxes / propose_many: the model's boxes for an image REPLACE its open proposals (the
  old ones are tombstoned, version + 1), but only on an image nobody has labelled: one with an
  accepted box or marked no_objects is left alone.
- accept_boxes: proposals become ordinary boxes (proposed = 0, version + 1, score kept for the
  record). Editing a proposal (PUT) also accepts it and deleting it rejects it: boxes.py.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
import uuid

from dlcamp.camp import reads
from dlcamp.camp.edits import (
    BOX_ID,
    MAX_BOXES_PER_IMAGE,
    Conflict,
    Invalid,
    NotFound,
    bump,
    check_box,
    check_pattern,
    image_of,
    insert_box,
    n_classes,
    record,
    replay,
    stamp_image,
    stored_box,
)

RUN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # a training run's id, e.g. 20261206-093015
MAX_ITEMS = 10_000  # images in one propose_many


def _clean(boxes: object, width: int, height: int, n: int, where: str
           ) -> list[tuple[tuple, float]]:
    """[((label, x1, y1, x2, y2), score)] from [{"label", "x1", "y1", "x2", "y2", "score"}],
    checked like put_box (class index, finite, inside the image) and score in [0, 1]."""
    if not isinstance(boxes, list):
        raise Invalid(f"{where}boxes: must be a list of {{label, x1, y1, x2, y2, score}}")
    if len(boxes) > MAX_BOXES_PER_IMAGE:
        raise Invalid(f"{where}boxes: {len(boxes)} proposals; an image holds at most "
                      f"{MAX_BOXES_PER_IMAGE} boxes")
    out = []
    for j, b in enumerate(boxes):
        at = f"{where}boxes[{j}]."
        if not isinstance(b, dict):
            raise Invalid(f"{at[:-1]}: must be {{label, x1, y1, x2, y2, score}}")
        box = check_box(b.get("label"), tuple(b.get(k) for k in ("x1", "y1", "x2", "y2")),
                        width, height, n, at)
        score = b.get("score")
        if (isinstance(score, bool) or not isinstance(score, int | float)
                or not math.isfinite(score) or not 0 <= score <= 1):
            raise Invalid(f"{at}score: must be a number from 0 to 1, got {reads.shown(score)}")
        out.append((box, float(score)))
    return out


class _Seq:
    """The project's new seq, bumped once per transaction and only when something changes."""

    def __init__(self, conn: sqlite3.Connection, pid: str):
        self.conn, self.pid, self.value = conn, pid, None

    def __call__(self) -> int:
        if self.value is None:
            self.value = bump(self.conn, self.pid)
        return self.value


def _replace(conn: sqlite3.Connection, pid: str, iid: object, run: str, boxes: object,
             seq: _Seq, where: str = "") -> list[dict] | None:
    """Replace image iid's open proposals by `boxes` -> the new proposals' JSON, or None
    when the image is labelled (an accepted box, or no_objects) and was left alone."""
    image = image_of(conn, pid, iid)  # NotFound
    proposals = _clean(boxes, image["width"], image["height"], n_classes(conn, pid), where)
    if image["boxes"] or image["no_objects"]:
        return None
    old = [r[0] for r in conn.execute(
        "SELECT id FROM boxes WHERE image_id = ? AND deleted = 0 AND proposed = 1", (iid,))]
    if not old and not proposals:
        return []
    now = seq()
    conn.executemany("UPDATE boxes SET deleted = 1, version = version + 1, seq = ?, "
                     "updated = ? WHERE id = ?", [(now, time.time(), b) for b in old])
    stamp_image(conn, iid, now)
    return [insert_box(conn, uuid.uuid4().hex, iid, box, now, score, run)
            for box, score in proposals]


def propose_boxes(conn: sqlite3.Connection, pid: str, iid: int, run: str,
                  boxes: list[dict]) -> list[dict]:
    """storage.propose_boxes: [] also when the image is labelled."""
    check_pattern(RUN_ID, run, "run")
    return _replace(conn, pid, iid, run, boxes, _Seq(conn, pid)) or []


def propose_many(conn: sqlite3.Connection, pid: str, run: str, items: list[dict]) -> dict:
    """storage.propose_many, in the caller's (one) transaction."""
    check_pattern(RUN_ID, run, "run")
    reads.project_row(conn, pid)
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise Invalid(f"items: must be a list of at most {MAX_ITEMS} "
                      "{image, boxes} objects")
    seq, seen = _Seq(conn, pid), set()
    out = {"images": 0, "boxes": 0, "skipped": []}
    for k, item in enumerate(items):
        where = f"items[{k}]."
        if not isinstance(item, dict) or set(item) != {"image", "boxes"}:
            raise Invalid(f"{where[:-1]}: must be {{\"image\": id, \"boxes\": [...]}}")
        iid = item["image"]
        if isinstance(iid, bool) or not isinstance(iid, int):
            raise Invalid(f"{where}image: must be an image id, got {reads.shown(iid)}")
        if iid in seen:
            raise Invalid(f"{where}image: image {reads.shown(iid)} appears twice")
        seen.add(iid)
        try:
            new = _replace(conn, pid, iid, run, item["boxes"], seq, where)
        except NotFound as e:
            raise NotFound(f"{where}image: {e}") from None
        if new is None:
            out["skipped"].append(iid)
        else:
            out["images"] += 1
            out["boxes"] += len(new)
    return out


def accept_boxes(conn: sqlite3.Connection, pid: str, iid: int, edit_id: str,
                 box_ids: list[str] | None) -> dict:
    """storage.accept_boxes."""
    if box_ids is not None:
        if not isinstance(box_ids, list) or len(box_ids) > MAX_BOXES_PER_IMAGE:
            raise Invalid(f"box_ids: must be a list of at most {MAX_BOXES_PER_IMAGE} box ids")
        for k, bid in enumerate(box_ids):
            check_pattern(BOX_ID, bid, f"box_ids[{k}]")
        box_ids = list(dict.fromkeys(box_ids))  # each once, in the order given
    request = [iid, box_ids]
    if (done := replay(conn, edit_id, pid, "accept", request)) is not None:
        return done
    image_of(conn, pid, iid)
    if box_ids is None:
        chosen = [b for b in reads.live_boxes(conn, iid) if b["proposed"]]
    else:
        chosen = []
        for k, bid in enumerate(box_ids):
            old = stored_box(conn, bid)
            if old is None or old[0] != iid:
                raise NotFound(f"box_ids[{k}]: no box {bid!r} on image {iid}")
            if old[1]:
                raise Conflict(f"box_ids[{k}]: box {bid!r} was deleted (rejected)", None)
            chosen.append(old[2])
    todo = [b["id"] for b in chosen if b["proposed"]]  # an accepted box stays as it is
    if todo:
        seq = bump(conn, pid)
        conn.executemany("UPDATE boxes SET proposed = 0, version = version + 1, seq = ?, "
                         "updated = ? WHERE id = ?", [(seq, time.time(), b) for b in todo])
        stamp_image(conn, iid, seq)
    accepted = [dict(b, version=b["version"] + int(b["proposed"]), proposed=False)
                for b in chosen]
    return record(conn, edit_id, pid, "accept", request, {"boxes": accepted})
