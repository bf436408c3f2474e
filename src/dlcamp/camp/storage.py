"""The camp's storage: `CampStore`, one SQLite file plus content-addressed image files.

    <data>/camp.sqlite3      projects, classes, images, boxes, edits (schema.py); tokens: auth.py
    <data>/blobs/ab/cdef...  originals, working copies, thumbnails by SHA-256 (blobs.py)

Reads run on any thread, each thread with its own read-only connection, each read one
consistent snapshot. Writes run on any thread too, but are applied by ONE writer thread
(writer.py) that commits them in groups: a write returns only after the COMMIT that holds it,
so an acknowledged edit survives SIGKILL and power loss. The queries and the errors
(NotFound -> 404, Conflict -> 409, Invalid -> 422) are in reads.py, the write transactions in
edits.py, boxes.py and proposals.py (a model's proposed boxes: only accepted ones count).

JSON shapes (what the HTTP API returns):
    box    {"id", "label", "x1", "y1", "x2", "y2", "version", "proposed": bool,
            "score": float | None}                           pixels of the WORKING copy
    image  {"id", "file_name", "width", "height", "orig_width", "orig_height", "no_objects",
            "review", "version", "boxes": <accepted box count>, "seq",
            "proposals": <open proposal count>}
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlcamp.camp import boxes, edits, proposals, reads
from dlcamp.camp.blobs import BlobStore
from dlcamp.camp.reads import Conflict, Invalid, NotFound
from dlcamp.camp.schema import DB_NAME, connect, migrate
from dlcamp.camp.writer import GroupCommitWriter

__all__ = ["CampStore", "Conflict", "Invalid", "NotFound", "STATUSES"]

STATUSES = reads.STATUSES  # the `status` filter of list_images / next_image
_DEFER: contextvars.ContextVar[bool] = contextvars.ContextVar("camp_defer", default=False)
_OFF_LOOP = {"add_image", "import_annotations", "backup"}  # write files: run in a thread


class CampStore:
    """A camp's data directory. Opens (creating if needed) `<data_dir>/camp.sqlite3`, upgrades
    its schema, starts the writer thread. Use as a context manager or call close().

    Raises schema.SchemaError (a DlcampError) for a database written by a newer dlcamp."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / DB_NAME
        self.blobs = BlobStore(self.data_dir / "blobs")
        conn = connect(self.db_path)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._writer = GroupCommitWriter(conn)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- life cycle
    def close(self) -> None:
        """Finish queued writes, stop the writer, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> CampStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def commits(self) -> int:
        """How many COMMITs the writer has made (group commit: far fewer than edits)."""
        return self._writer.commits

    @property
    def edits_applied(self) -> int:
        """How many write jobs the writer has run (succeeded or answered an error)."""
        return self._writer.jobs

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """This thread's read-only connection inside one read transaction (a snapshot)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the CampStore is closed")
            conn = connect(self.db_path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` on the writer; block until committed (or return the Future
        when called through `submit`)."""
        future = self._writer.submit(fn, *args)
        return future if _DEFER.get() else future.result()

    async def submit(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await a write method without blocking the event loop:
        `box = await store.submit(store.put_box, pid, iid, ...)`. Same result and errors as
        calling the method directly."""
        if method.__name__ in _OFF_LOOP:
            return await asyncio.to_thread(method, *args, **kwargs)
        token = _DEFER.set(True)
        try:
            out = method(*args, **kwargs)
        finally:
            _DEFER.reset(token)
        return await asyncio.wrap_future(out) if isinstance(out, Future) else out

    # ---------------------------------------------------------------- reads
    def list_projects(self) -> list[dict]:
        """[{"id", "name", "kind": "team" | "test", "classes": [{"name", "name_zh"}], "images",
        "labelled", "boxes"}] sorted by id (boxes, labelled: accepted boxes only)."""
        with self._read() as conn:
            return reads.list_projects(conn)

    def get_project(self, pid: str) -> dict:
        """A project: {"id", "name", "kind", "created", "classes", "images", "labelled", "boxes",
        "seq", "counts": {"per_class": [n0, n1, ...], "images", "unlabelled", "no_objects",
        "labelled", "reviewed", "needs_fix", "proposed"}} (accepted boxes only; "proposed":
        images with open proposals). Raises NotFound."""
        with self._read() as conn:
            return reads.get_project(conn, pid)

    def list_images(self, pid: str, status: str = "all", offset: int = 0,
                    limit: int = 100) -> tuple[list[dict], int]:
        """(images in id order from `offset`, at most `limit`, and the total matching `status`).
        status: all | unlabelled (no accepted box, not no_objects) | labelled (>= 1 accepted
        box) | no_objects (marked, no accepted box) | needs_fix | reviewed (review == "done") |
        proposed (>= 1 open proposal).
        Raises NotFound (project), Invalid (status, offset, limit)."""
        with self._read() as conn:
            return reads.list_images(conn, pid, status, offset, limit)

    def get_image(self, pid: str, iid: int, with_boxes: bool = True) -> dict:
        """An image's JSON; with_boxes: "boxes" is the list of live box JSONs (by id, open
        proposals included, flagged) instead of the accepted count. Raises NotFound (also for
        an image of another project)."""
        with self._read() as conn:
            return reads.get_image(conn, pid, iid, with_boxes)

    def image_blob(self, pid: str, iid: int, which: str) -> Path:
        """The file of an image: which = "original" | "work" | "thumb". Raises NotFound,
        Invalid (which). Its media type: ingest.media_type(first bytes)."""
        with self._read() as conn:
            sha = reads.image_sha(conn, pid, iid, which)
        return self.blobs.path(sha)

    def next_image(self, pid: str, after: int | None = None,
                   status: str = "unlabelled") -> dict:
        """The first image with id > `after` matching `status`, wrapping round to the start
        (never `after` itself). Raises NotFound("none left") when there is none, Invalid
        (status; `after` not an integer from 0 to reads.MAX_SEQ)."""
        with self._read() as conn:
            return reads.next_image(conn, pid, after, status)

    def changes(self, pid: str, since: int) -> dict:
        """{"seq": now, "classes": [...], "images": [image JSON + "boxes": [box JSON]]} for every
        image whose fields or boxes changed after project seq `since` (a deleted box shows as
        its absence from "boxes"). Raises NotFound, Invalid (since not an integer from 0 to
        reads.MAX_SEQ)."""
        with self._read() as conn:
            return reads.changes(conn, pid, since)

    def snapshot(self, pid: str) -> dict:
        """Everything an export needs, in one consistent read: get_project's JSON, but with
        "images" the list (in id order) of image JSON + "boxes": [ACCEPTED box JSON] + "sha256",
        "work_sha256", "thumb_sha256" (blob paths: blob_path(sha)). Raises NotFound."""
        with self._read() as conn:
            return reads.snapshot(conn, pid)

    def blob_path(self, sha: str) -> Path:
        """The path of a blob (64 lowercase hex). Raises blobs.BadBlobId for anything else."""
        return self.blobs.path(sha)

    def get_meta(self, key: str) -> str | None:
        """A value of the small key-value table `meta` (server settings), or None."""
        with self._read() as conn:
            return reads.get_meta(conn, key)

    # ---------------------------------------------------------------- writes
    def create_project(self, pid: str, name: str, classes: list[dict]) -> dict:
        """A new project (get_project's JSON). pid matches ^[a-z0-9][a-z0-9-]{0,39}$; classes
        [{"name", "name_zh"?}]: at most reads.MAX_CLASSES, names non-empty, at most
        reads.MAX_CLASS_NAME characters, unique ignoring case. Raises Invalid, Conflict (id
        taken; .current is the existing project)."""
        return self._write(edits.create_project, pid, name, classes)

    def set_classes(self, pid: str, classes: list[dict], edit_id: str) -> dict:
        """Replace the class list -> {"classes": [...]}: rename or append; trailing classes may
        be dropped only if no live box uses them. Same checks as create_project. Raises
        NotFound, Invalid (also: edit_id already used for a different request), Conflict (an
        index in use would vanish; .current = {"classes": current list})."""
        return self._write(edits.set_classes, pid, classes, edit_id)

    def add_image(self, pid: str, original: bytes, file_name: str, work: bytes, thumb: bytes,
                  width: int, height: int, orig_width: int, orig_height: int
                  ) -> tuple[dict, bool]:
        """Store an ingested photo: blobs first (fsynced), then the row. width/height are the
        WORKING copy's pixels. Returns (image JSON, duplicate): a photo whose original bytes
        the project already has is not added again (duplicate=True, the existing image).
        Raises NotFound, Invalid."""
        shas = (self.blobs.put(original), self.blobs.put(work), self.blobs.put(thumb))
        return self._write(edits.add_image, pid, shas, file_name, width, height,
                           orig_width, orig_height)

    def put_box(self, pid: str, iid: int, box_id: str, edit_id: str, base_version: int,
                label: int, x1: float, y1: float, x2: float, y2: float) -> dict:
        """Create (base_version 0) or update (base_version = the stored version) a box ->
        box JSON. Coordinates in working-copy pixels, 0 <= x1 < x2 <= width (1e-3 px of slack
        is clamped). Every write with an edit_id is applied once: the same edit_id with the
        same arguments returns the first answer; with other arguments it is Invalid. Raises
        NotFound, Invalid (names the field; creating a box on an image that already holds
        reads.MAX_BOXES_PER_IMAGE), Conflict (.current = the box JSON now, or None if
        deleted)."""
        return self._write(boxes.put_box, pid, iid, box_id, edit_id, base_version,
                           label, (x1, y1, x2, y2))

    def delete_box(self, pid: str, iid: int, box_id: str, edit_id: str,
                   base_version: int) -> dict:
        """Delete (tombstone) a box -> {"deleted": box_id}. Raises NotFound, Conflict."""
        return self._write(boxes.delete_box, pid, iid, box_id, edit_id, base_version)

    def patch_image(self, pid: str, iid: int, edit_id: str, base_version: int,
                    no_objects: bool | None = None, review: str | None = None) -> dict:
        """Set an image's no_objects and/or review ("todo" | "done" | "needs_fix") -> image JSON.
        Raises NotFound, Invalid, Conflict (.current = the image JSON now)."""
        return self._write(edits.patch_image, pid, iid, edit_id, base_version,
                           no_objects, review)

    def copy_boxes(self, pid: str, iid: int, src_iid: int, edit_id: str) -> dict:
        """Copy the live boxes of image `src_iid` onto `iid` as new boxes (clipped to iid's
        size) -> {"boxes": [box JSON of the new boxes]}. Raises NotFound, Invalid (also when
        iid would hold more than reads.MAX_BOXES_PER_IMAGE live boxes)."""
        return self._write(boxes.copy_boxes, pid, iid, src_iid, edit_id)

    def propose_boxes(self, pid: str, iid: int, run: str, boxes: list[dict]) -> list[dict]:
        """Store a model's boxes for an image as proposals -> their box JSON: boxes [{"label",
        "x1", "y1", "x2", "y2" (working-copy px), "score" (0..1)}], checked like put_box; the
        image's open proposals are replaced (tombstoned). `run`: the run id that made them. An
        image with an accepted box or marked no_objects is left alone (-> []). Raises
        NotFound, Invalid (naming boxes[j].field)."""
        return self._write(proposals.propose_boxes, pid, iid, run, boxes)

    def propose_many(self, pid: str, run: str, items: list[dict]) -> dict:
        """propose_boxes for many images in ONE transaction (all or nothing): items [{"image":
        id, "boxes": [...]}] -> {"images": proposed on, "boxes": stored, "skipped": [ids of
        labelled images left alone]}. Raises NotFound, Invalid (naming items[k])."""
        return self._write(proposals.propose_many, pid, run, items)

    def accept_boxes(self, pid: str, iid: int, edit_id: str,
                     box_ids: list[str] | None = None) -> dict:
        """Accept the listed proposals of an image (None: all of them) -> {"boxes": [their box
        JSON, now accepted]}; a listed box already accepted is returned unchanged. Replays
        like put_box. Raises NotFound (image; a box not on it), Invalid, Conflict (a listed
        box was deleted)."""
        return self._write(proposals.accept_boxes, pid, iid, edit_id, box_ids)

    def import_annotations(self, pid: str, items: list[dict],
                           classes: list[dict] | None = None) -> dict:
        """Add many images with their boxes in ONE transaction: all or nothing.

        items: [{"original", "work", "thumb": bytes, "file_name", "width", "height",
        "orig_width", "orig_height", "no_objects": bool, "boxes": [(label, x1, y1, x2, y2)]}].
        classes: the import's class list; a name the project lacks is appended, and labels
        (indices into `classes`) are mapped to the project's indices. None: labels are the
        project's indices; the list may grow to reads.MAX_CLASSES at most. An image already in
        the project (same original bytes, or original = the working copy of one of its
        images, as in an export) is a duplicate: its boxes are merged in, each unless the
        image has a live box of the same label within 0.5 px on every coordinate (importing
        the same export twice adds nothing), and no_objects is applied only if the image has
        no live box. -> {"images_added", "boxes_added" (merged ones included), "duplicates"}.
        Raises NotFound, Invalid (naming the item and field; a class list or an image's boxes
        over the limits); nothing is stored then."""
        prepared = []
        for k, item in enumerate(items):
            for key in ("original", "work", "thumb"):
                if not isinstance(item.get(key), bytes):
                    raise Invalid(f"images[{k}].{key}: must be the file's bytes")
            prepared.append(dict(item, original=self.blobs.put(item["original"]),
                                 work=self.blobs.put(item["work"]),
                                 thumb=self.blobs.put(item["thumb"])))
        return self._write(boxes.import_annotations, pid, prepared, classes)

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the key-value table `meta`."""
        return self._write(edits.set_meta, key, value)

    def backup(self, dest_dir: Path | str) -> Path:
        """A consistent copy of the camp in `dest_dir`: camp.sqlite3 through SQLite's online
        backup API, then every blob it may reference (blobs already there are kept: repeated
        backups are incremental). Safe while the server runs. Returns dest_dir/camp.sqlite3.
        Raises Invalid when dest_dir is the data directory itself."""
        dest_dir = Path(dest_dir)
        if dest_dir.resolve() == self.data_dir.resolve():
            raise Invalid("backup: the destination is the camp's own data directory")
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, tmp = dest_dir / DB_NAME, dest_dir / f".{DB_NAME}.tmp"
        tmp.unlink(missing_ok=True)
        src = connect(self.db_path, readonly=True)
        try:
            out = sqlite3.connect(tmp)
            try:
                src.backup(out)  # one step: a consistent snapshot
            finally:
                out.close()
        finally:
            src.close()
        for stale in (dest.with_name(DB_NAME + "-wal"), dest.with_name(DB_NAME + "-shm")):
            stale.unlink(missing_ok=True)
        os.replace(tmp, dest)
        self.blobs.copy_to(BlobStore(dest_dir / "blobs"))  # after the snapshot: none missing
        return dest
