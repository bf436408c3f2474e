"""The submissions and the leaderboard, stored in the camp's SQLite file.

- The test set and the event's settings are camp/testset.py's.
- A submission (table submissions) is a team's run, uploaded checkpoint or predictions file,
  scored on the test set: status queued -> scoring -> done | failed. A team may make
  max_submissions of them that did not fail; none once the event is frozen (Conflict 409).
- The leaderboard: while open, each team's best public mAP; once frozen, the private mAP of
  each team's selected submission (by default its best public one). Limits, counts, ranking
  and selection take only submissions on the event's current test set (`test_id`).
- Files: a submission is scored from its own file, submissions/<team>/submission-<id>.pt or
  .json (`stage_bytes` / `stage_run`, then `keep_file` once the row exists); a failed
  submission's file is deleted.

Every write is a transaction on the store's writer thread (`store._write`), so it can be
awaited with `await store.submit(fn, ...)` like the store's own methods.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

from dlcamp.camp.reads import Conflict, Invalid, NotFound
from dlcamp.camp.storage import CampStore
from dlcamp.camp.testset import DEFAULT_EVENT, EVENT_KEY, kind_in, load_test
from dlcamp.core.io import atomic_write_bytes

_SUB_COLS = ("id, project_id, test_id, kind, source, status, error, public_map, private_map, "
             "val_map, selected, created, scored, result")


# ------------------------------------------------------------------ submissions
def _sub_json(row: tuple, full: bool = True) -> dict:
    keys = [k.strip() for k in _SUB_COLS.split(",")]
    sub = dict(zip(keys, row, strict=True))
    sub["project"] = sub.pop("project_id")
    sub["selected"] = bool(sub["selected"])
    result = sub.pop("result")
    if full:
        sub["report"] = json.loads(result) if result else None
    return sub


def _get(conn: sqlite3.Connection, sid: int, pid: str | None = None) -> dict:
    row = conn.execute(f"SELECT {_SUB_COLS} FROM submissions WHERE id = ?", (sid,)).fetchone()
    if row is None or (pid is not None and row[1] != pid):
        raise NotFound(f"no submission {sid} of project {pid!r}")
    return _sub_json(row)


def _event(conn: sqlite3.Connection) -> dict:
    raw = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    return {**DEFAULT_EVENT, **(json.loads(raw[0]) if raw else {})}


def _replay(conn: sqlite3.Connection, pid: str, edit_id: str) -> dict | None:
    row = conn.execute(f"SELECT {_SUB_COLS} FROM submissions WHERE project_id = ? AND "
                       "edit_id = ?", (pid, edit_id)).fetchone()
    return None if row is None else _sub_json(row)


def _open_for(conn: sqlite3.Connection, pid: str) -> dict:
    """The event, if team `pid` may submit now; else Invalid / Conflict saying why."""
    if kind_in(conn, pid) != "team":
        raise Invalid(f"{pid!r} is a test project: only teams submit")
    ev = _event(conn)
    if ev["test"] is None:
        raise Conflict("there is no test set yet: the instructor uploads it first")
    if ev["state"] == "frozen":
        raise Conflict("the leaderboard is frozen: no more submissions")
    used = conn.execute("SELECT COUNT(*) FROM submissions WHERE project_id = ? AND "
                        "test_id = ? AND status != 'failed'", (pid, ev["test"])).fetchone()[0]
    if used >= ev["max_submissions"]:
        raise Conflict(f"this team has used all {ev['max_submissions']} submissions")
    return ev


def _add(conn: sqlite3.Connection, pid: str, kind: str, source: str, edit_id: str) -> dict:
    old = _replay(conn, pid, edit_id)
    if old is not None:  # a retry of the same request: answered, not added again
        return {**old, "replayed": True}
    ev = _open_for(conn, pid)
    cur = conn.execute("INSERT INTO submissions (project_id, test_id, kind, source, created, "
                       "edit_id) VALUES (?, ?, ?, ?, ?, ?)",
                       (pid, ev["test"], kind, source, time.time(), edit_id))
    return _get(conn, cur.lastrowid)


def find_submission(store: CampStore, pid: str, edit_id: str) -> dict | None:
    """The submission team `pid` made with `edit_id` (a replayed request), or None."""
    with store._read() as conn:
        return _replay(conn, pid, edit_id)


def check_open(store: CampStore, pid: str) -> dict:
    """The event's settings if team `pid` may submit now (checked again on insert). Raises
    NotFound, Invalid (a test project), Conflict (no test set, frozen, no submissions left:
    only those on the current test set that did not fail count)."""
    with store._read() as conn:
        return _open_for(conn, pid)


def add_submission(store: CampStore, pid: str, kind: str, source: str, edit_id: str) -> dict:
    """Queue a submission of team `pid` (kind 'run' | 'checkpoint' | 'predictions'; source:
    the run id or the uploaded file's label) -> its JSON. The same edit_id again returns the
    first answer (with "replayed": True). Raises NotFound, Invalid (a test project), Conflict
    (no test set, frozen, no submissions left on the current test set)."""
    return store._write(_add, pid, kind, source, edit_id)


def _status(conn: sqlite3.Connection, sid: int, status: str, result: dict | None,
            error: str | None) -> dict:
    maps = [None, None, None]
    if result is not None:
        maps = [result["public"]["map"], result["private"]["map"],
                (result.get("val") or {}).get("map")]
    conn.execute("UPDATE submissions SET status = ?, error = ?, result = ?, public_map = ?, "
                 "private_map = ?, val_map = ?, scored = ? WHERE id = ?",
                 (status, error, json.dumps(result) if result is not None else None, *maps,
                  time.time() if status in ("done", "failed") else None, sid))
    return _get(conn, sid)


STOPPED = ("the server stopped before this submission was scored; submit it again (it does "
           "not count)")


def _fail_unfinished(conn: sqlite3.Connection) -> list[tuple]:
    rows = conn.execute("SELECT id, project_id, kind FROM submissions WHERE status IN "
                        "('queued', 'scoring')").fetchall()
    conn.execute("UPDATE submissions SET status = 'failed', error = ?, scored = ? "
                 "WHERE status IN ('queued', 'scoring')", (STOPPED, time.time()))
    return rows


def fail_unfinished(store: CampStore, data_dir: Path | None = None) -> int:
    """At server start: submissions left queued or scoring by a stopped server become failed
    (failed ones do not count against the limit). With `data_dir`, their files and any staged
    upload are deleted too. Returns how many failed."""
    rows = store._write(_fail_unfinished)
    if data_dir is not None:
        for sid, pid, kind in rows:
            submission_file(data_dir, pid, sid, kind).unlink(missing_ok=True)
        clean_staged(data_dir)
    return len(rows)


def set_status(store: CampStore, sid: int, status: str, result: dict | None = None,
               error: str | None = None) -> dict:
    """Record scoring's progress: 'scoring', then 'done' with the report or 'failed' with a
    one-line error."""
    return store._write(_status, sid, status, result, error)


def get_submission(store: CampStore, pid: str, sid: int) -> dict:
    with store._read() as conn:
        return _get(conn, sid, pid)


def list_submissions(store: CampStore, pid: str | None = None) -> list[dict]:
    """Submissions newest first (one project's, or all), without their reports."""
    where, args = ("WHERE project_id = ?", (pid,)) if pid else ("", ())
    with store._read() as conn:
        rows = conn.execute(f"SELECT {_SUB_COLS} FROM submissions {where} ORDER BY id DESC",
                            args).fetchall()
    return [_sub_json(r, full=False) for r in rows]


def _select(conn: sqlite3.Connection, pid: str, sid: int) -> dict:
    sub = _get(conn, sid, pid)
    ev = _event(conn)
    if ev["state"] == "frozen":
        raise Conflict("the leaderboard is frozen: the selection is final")
    if sub["test_id"] != ev["test"]:
        raise Conflict(f"submission {sid} was scored on another test set than the current "
                       "one: submit again")
    if sub["status"] != "done":
        raise Conflict(f"submission {sid} is {sub['status']}, not scored: only a scored "
                       "submission can be selected")
    conn.execute("UPDATE submissions SET selected = (id = ?) WHERE project_id = ?", (sid, pid))
    return _get(conn, sid)


def select_submission(store: CampStore, pid: str, sid: int) -> dict:
    """Make submission `sid` the team's choice for the final ranking. Raises NotFound,
    Conflict (frozen, not scored, scored on another test set than the event's)."""
    return store._write(_select, pid, sid)


# ------------------------------------------------------------------ the leaderboard
def leaderboard(store: CampStore, final: bool) -> list[dict]:
    """Ranked rows {"rank", "project", "name", "submission", "public_map", "private_map",
    "val_map", "submissions"}. final=False: each team's best public mAP; final=True: the
    private mAP of its selected submission (else its best public one). Ties: earlier first.
    Only submissions on the event's current test set count."""
    with store._read() as conn:
        names = dict(conn.execute("SELECT id, name FROM projects WHERE kind = 'team'"))
        rows = conn.execute(
            "SELECT id, project_id, public_map, private_map, val_map, selected, created, status "
            "FROM submissions WHERE test_id = ? ORDER BY id", (_event(conn)["test"],)).fetchall()
    counts: dict[str, int] = {}
    best: dict[str, tuple] = {}
    for sid, pid, pub, priv, val, selected, created, status in rows:
        counts[pid] = counts.get(pid, 0) + (status != "failed")
        if status != "done" or pid not in names:
            continue
        key = (1 if final and selected else 0, pub if pub is not None else -1.0, -created)
        if pid not in best or key > best[pid][0]:
            best[pid] = (key, sid, pub, priv, val)
    table = [{"project": pid, "name": names[pid], "submission": sid, "public_map": pub,
              "private_map": priv, "val_map": val, "submissions": counts[pid]}
             for pid, (_, sid, pub, priv, val) in best.items()]
    score = "private_map" if final else "public_map"
    table.sort(key=lambda r: (-(r[score] if r[score] is not None else -1.0), r["submission"]))
    return [{"rank": k + 1, **r} for k, r in enumerate(table)]


def counts(store: CampStore) -> dict[str, int]:
    """{team project: its submissions on the current test set that did not fail}, every team
    included."""
    with store._read() as conn:
        return dict(conn.execute(
            "SELECT p.id, COUNT(s.id) FROM projects p LEFT JOIN submissions s ON "
            "s.project_id = p.id AND s.status != 'failed' AND s.test_id = ? "
            "WHERE p.kind = 'team' GROUP BY p.id", (_event(conn)["test"],)))


def leaderboard_csv(store: CampStore) -> str:
    """Both rankings as CSV text: one row per team, public and final rank and scores."""
    public = {r["project"]: r for r in leaderboard(store, final=False)}
    final = leaderboard(store, final=True)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["final_rank", "project", "name", "submission", "private_map",
                     "public_rank", "best_public_map", "val_map", "submissions"])
    for r in final:
        p = public[r["project"]]
        writer.writerow([r["rank"], r["project"], r["name"], r["submission"],
                         _cell(r["private_map"]), p["rank"], _cell(p["public_map"]),
                         _cell(r["val_map"]), r["submissions"]])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


# ------------------------------------------------------------------ the submitted files
STAGED = ".staged-"


def submission_file(data_dir: Path, pid: str, sid: int, kind: str) -> Path:
    """Where submission `sid`'s file is kept: <data_dir>/submissions/<pid>/submission-<sid>.pt
    (a run's checkpoint copied at submit, or the uploaded checkpoint) or .json (predictions)."""
    ext = "json" if kind == "predictions" else "pt"
    return Path(data_dir) / "submissions" / pid / f"submission-{int(sid)}.{ext}"


def _staged(data_dir: Path, pid: str) -> Path:
    folder = Path(data_dir) / "submissions" / pid
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{STAGED}{uuid.uuid4().hex}.part"


def stage_bytes(data_dir: Path, pid: str, data: bytes) -> Path:
    """Write an upload under a temporary name (atomically) -> its path; `keep_file` gives it
    its submission's name once the submission exists. The caller deletes it on error."""
    path = _staged(data_dir, pid)
    atomic_write_bytes(path, data)
    return path


def stage_run(data_dir: Path, pid: str, run: str) -> Path:
    """Copy run `run`'s checkpoint.pt (as it is now: a later resume rewrites it) to a temporary
    name -> its path (see stage_bytes). Raises NotFound, Conflict (run_dir)."""
    source = run_dir(data_dir, pid, run) / "checkpoint.pt"
    path = _staged(data_dir, pid)
    tmp = path.with_suffix(".tmp")
    try:
        shutil.copyfile(source, tmp)  # checkpoints are replaced atomically: a whole copy
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def keep_file(data_dir: Path, sub: dict, staged: Path) -> Path:
    """Rename the staged file to submission `sub`'s own name -> that path."""
    path = submission_file(data_dir, sub["project"], sub["id"], sub["kind"])
    os.replace(staged, path)
    return path


def clean_staged(data_dir: Path) -> int:
    """Delete staged files a stopped server left behind -> how many."""
    gone = 0
    for path in (Path(data_dir) / "submissions").glob(f"*/{STAGED}*"):
        path.unlink(missing_ok=True)
        gone += 1
    return gone


def submission_source(data_dir: Path, sub: dict) -> Path:
    """The file a submission is scored from (submission_file)."""
    return submission_file(data_dir, sub["project"], sub["id"], sub["kind"])


def run_dir(data_dir: Path, pid: str, run: str) -> Path:
    """<data_dir>/runs/<pid>/<run>; NotFound unless it holds a finished run's checkpoint."""
    path = Path(data_dir) / "runs" / pid / run
    if not (path / "checkpoint.pt").is_file():
        raise NotFound(f"project {pid!r} has no run {run[:40]!r} with a checkpoint")
    try:
        state = json.loads((path / "camp.json").read_text("utf-8")).get("state")
    except (OSError, ValueError):
        state = None
    if state in ("queued", "running"):
        raise Conflict(f"run {run} is still {state}: submit it once it has finished")
    return path


def score_submission(store: CampStore, data_dir: Path, sid: int) -> dict:
    """Score submission `sid` (blocking: call it off the event loop, one at a time) and
    record the result -> its JSON, status 'done' or 'failed' (error: one line; any exception
    fails it, and failed ones do not count; their file is deleted). A run submission added
    without its copy (`dlcamp camp score`, which scores at once) is copied first."""
    from dlcamp.camp.scoring import Unscorable, score_detector, score_predictions

    with store._read() as conn:
        sub = _get(conn, sid)
    set_status(store, sid, "scoring")
    picture = Path(data_dir) / "reports" / f"submission-{sid}.png"
    path = submission_source(data_dir, sub)
    try:
        if sub["kind"] == "run" and not path.is_file():
            keep_file(data_dir, sub, stage_run(data_dir, sub["project"], sub["source"]))
        test = load_test(store, sub["test_id"])
        if sub["kind"] == "predictions":
            try:
                results = json.loads(path.read_bytes())
            except ValueError as e:
                raise Unscorable(f"the predictions file is not JSON ({e})") from None
            report = score_predictions(results, test, picture)
        else:
            report = score_detector(path, test, picture)
    except Exception as e:  # noqa: BLE001 - whatever went wrong, the submission must not hang
        text = (str(e).strip().splitlines() or [""])[0][:300]
        known = isinstance(e, Unscorable | NotFound | Conflict | Invalid | OSError)
        error = text if known and text else f"scoring failed: {type(e).__name__}: {text}"
        path.unlink(missing_ok=True)
        return set_status(store, sid, "failed", error=error[:300])
    return set_status(store, sid, "done", result=report)
