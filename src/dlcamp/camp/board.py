"""The submissions and the leaderboard, stored in the camp's SQLite file.

- The test set and the event's settings are camp/testset.py's.
- A submission (table submissions) is a team's run, uploaded checkpoint or predictions file,
  scored on the test set: status queued -> scoring -> done | failed. A team may make
  max_submissions of them that did not fail; none once the event is frozen (Conflict 409).
- The leaderboard: while open, each team's best public mAP; once frozen, the private mAP of
  each team's selected submission (by default its best public one).

Every write is a transaction on the store's writer thread (`store._write`), so it can be
awaited with `await store.submit(fn, ...)` like the store's own methods.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path

from dlcamp.camp.reads import Conflict, Invalid, NotFound
from dlcamp.camp.storage import CampStore
from dlcamp.camp.testset import DEFAULT_EVENT, EVENT_KEY, kind_in, load_test

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


def _add(conn: sqlite3.Connection, pid: str, kind: str, source: str, edit_id: str) -> dict:
    row = conn.execute(f"SELECT {_SUB_COLS} FROM submissions WHERE project_id = ? AND "
                       "edit_id = ?", (pid, edit_id)).fetchone()
    if row is not None:  # a retry of the same request: answered, not added again
        return {**_sub_json(row), "replayed": True}
    if kind_in(conn, pid) != "team":
        raise Invalid(f"{pid!r} is a test project: only teams submit")
    raw = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    ev = {**DEFAULT_EVENT, **(json.loads(raw[0]) if raw else {})}
    if ev["test"] is None:
        raise Conflict("there is no test set yet: the instructor uploads it first")
    if ev["state"] == "frozen":
        raise Conflict("the leaderboard is frozen: no more submissions")
    used = conn.execute("SELECT COUNT(*) FROM submissions WHERE project_id = ? AND "
                        "status != 'failed'", (pid,)).fetchone()[0]
    if used >= ev["max_submissions"]:
        raise Conflict(f"this team has used all {ev['max_submissions']} submissions")
    cur = conn.execute("INSERT INTO submissions (project_id, test_id, kind, source, created, "
                       "edit_id) VALUES (?, ?, ?, ?, ?, ?)",
                       (pid, ev["test"], kind, source, time.time(), edit_id))
    return _get(conn, cur.lastrowid)


def add_submission(store: CampStore, pid: str, kind: str, source: str, edit_id: str) -> dict:
    """Queue a submission of team `pid` (kind 'run' | 'checkpoint' | 'predictions'; source:
    the run id or the stored file's name) -> its JSON. The same edit_id again returns the
    first answer. Raises NotFound, Invalid (a test project), Conflict (no test set, frozen,
    no submissions left)."""
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


def _fail_unfinished(conn: sqlite3.Connection) -> int:
    return conn.execute("UPDATE submissions SET status = 'failed', error = ?, scored = ? "
                        "WHERE status IN ('queued', 'scoring')", (STOPPED, time.time())).rowcount


def fail_unfinished(store: CampStore) -> int:
    """At server start: submissions left queued or scoring by a stopped server become failed
    (failed ones do not count against the limit). Returns how many."""
    return store._write(_fail_unfinished)


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
    raw = conn.execute("SELECT value FROM meta WHERE key = ?", (EVENT_KEY,)).fetchone()
    if raw and json.loads(raw[0]).get("state") == "frozen":
        raise Conflict("the leaderboard is frozen: the selection is final")
    if sub["status"] != "done":
        raise Conflict(f"submission {sid} is {sub['status']}, not scored: only a scored "
                       "submission can be selected")
    conn.execute("UPDATE submissions SET selected = (id = ?) WHERE project_id = ?", (sid, pid))
    return _get(conn, sid)


def select_submission(store: CampStore, pid: str, sid: int) -> dict:
    """Make submission `sid` the team's choice for the final ranking. Raises NotFound,
    Conflict (frozen, not scored)."""
    return store._write(_select, pid, sid)


# ------------------------------------------------------------------ the leaderboard
def leaderboard(store: CampStore, final: bool) -> list[dict]:
    """Ranked rows {"rank", "project", "name", "submission", "public_map", "private_map",
    "val_map", "submissions"}. final=False: each team's best public mAP; final=True: the
    private mAP of its selected submission (else its best public one). Ties: earlier first."""
    with store._read() as conn:
        names = dict(conn.execute("SELECT id, name FROM projects WHERE kind = 'team'"))
        rows = conn.execute(
            "SELECT id, project_id, public_map, private_map, val_map, selected, created, status "
            "FROM submissions ORDER BY id").fetchall()
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
    """{team project: submissions that did not fail}, every team included."""
    with store._read() as conn:
        return dict(conn.execute(
            "SELECT p.id, COUNT(s.id) FROM projects p LEFT JOIN submissions s ON "
            "s.project_id = p.id AND s.status != 'failed' WHERE p.kind = 'team' GROUP BY p.id"))


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


def stored_file(data_dir: Path, pid: str, name: str) -> Path:
    """Where an uploaded checkpoint or predictions file of a submission is kept."""
    return Path(data_dir) / "submissions" / pid / name


def submission_source(data_dir: Path, sub: dict) -> Path:
    """The file a submission is scored from: the run's checkpoint.pt, or the upload."""
    if sub["kind"] == "run":
        return run_dir(data_dir, sub["project"], sub["source"]) / "checkpoint.pt"
    return stored_file(data_dir, sub["project"], sub["source"])


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
    record the result -> its JSON, status 'done' or 'failed' (error: one line)."""
    from dlcamp.camp.scoring import Unscorable, score_detector, score_predictions

    with store._read() as conn:
        sub = _get(conn, sid)
    set_status(store, sid, "scoring")
    picture = Path(data_dir) / "reports" / f"submission-{sid}.png"
    try:
        test = load_test(store, sub["test_id"])
        path = submission_source(data_dir, sub)
        if sub["kind"] == "predictions":
            try:
                results = json.loads(path.read_bytes())
            except ValueError as e:
                raise Unscorable(f"the predictions file is not JSON ({e})") from None
            report = score_predictions(results, test, picture)
        else:
            report = score_detector(path, test, picture)
    except (Unscorable, NotFound, Conflict, Invalid, OSError) as e:
        return set_status(store, sid, "failed", error=str(e).splitlines()[0][:300])
    return set_status(store, sid, "done", result=report)
