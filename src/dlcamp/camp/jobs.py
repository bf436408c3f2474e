"""The camp server's job queue: trainings (and proposal passes) run ONE at a time.

Each job is a `python -m dlcamp camp train|propose ...` subprocess (sys.executable): on a
2-core laptop two trainings at once would each take twice as long, and a process keeps the
server responsive and can be stopped for sure. Its stdout and stderr go to the run's
`train.log`. A job's state is in the run's camp.json (training: "state"; proposals:
"proposals"."state"), which the subprocess updates as it goes and the queue sets when the
subprocess cannot: queued, cancelled, interrupted, and failed when the process died without
saying so. Cancel = SIGTERM, then SIGKILL after CANCEL_GRACE seconds.

When a server starts, runs its predecessor left queued or running are marked "interrupted"
(`recover`): resumable from their last checkpoint. Closing the queue stops the running job
the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from dlcamp.camp.reads import Conflict, NotFound
from dlcamp.camp.training import (
    new_run_id,
    read_state,
    run_path,
    runs_root,
    write_state,
)

CANCEL_GRACE = 5.0  # s between SIGTERM and SIGKILL
POLL = 0.2  # s between looks at a running job
LOG_TAIL = 4000  # bytes of train.log searched for the error of a crashed job


@dataclass
class Job:
    """One queued or running subprocess: `kind` "train" or "propose", of run `out`."""

    kind: str
    pid: str
    out: Path
    args: list[str]
    cancel: bool = False
    proc: subprocess.Popen | None = field(default=None, repr=False)


class JobQueue:
    """The queue of one camp data directory. `extra_args` are added to every `camp train`
    command (tests: a small model); `python` runs the jobs (default: this interpreter)."""

    def __init__(self, data_dir: Path | str, extra_args: list[str] | None = None,
                 python: str = sys.executable) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args, self.python = list(extra_args or []), python
        self._pending: deque[Job] = deque()
        self._current: Job | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.recover()

    # -- what the routes call ----------------------------------------------------------------
    def train(self, pid: str, minutes: float, resume: str | None = None,
              edit_id: str | None = None) -> dict:
        """Queue a new run (or the resumption of run `resume`) of project `pid`; returns its
        camp.json. Conflict when `resume` is queued, running or done; NotFound when it does
        not exist. A replayed `edit_id` returns the run it made, queuing nothing."""
        with self._wake:
            replay = self._replay(pid, edit_id)
            if replay is not None:
                return replay
            self._one_per_team(pid)
            if resume is None:
                run = new_run_id(self.data_dir, pid)
                out = run_path(self.data_dir, pid, run)
                out.mkdir(parents=True)
                state = write_state(out, project=pid, run=run, minutes=minutes,
                                    created=time.time(), state="queued", error=None,
                                    edit_ids=[edit_id] if edit_id else [])
                args = ["--minutes", f"{minutes:g}", "--out", str(out), *self.extra_args]
            else:
                out = run_path(self.data_dir, pid, resume)
                state = read_state(out)
                if not state:
                    raise NotFound(f"no run {resume!r} in project {pid!r}")
                if state.get("state") not in ("interrupted", "cancelled", "failed"):
                    raise Conflict(f"run {resume} is {state.get('state')}: only an "
                                   "interrupted, cancelled or failed run can be resumed",
                                   current=state)
                state = write_state(out, state="queued", error=None,
                                    edit_ids=_with(state, edit_id))
                args = ["--resume", resume, *self.extra_args]  # camp.json's settings win
            self._enqueue(Job("train", pid, out, ["train", pid, *args, "--data",
                                                  str(self.data_dir)]))
            return state

    def propose(self, pid: str, run: str, score_threshold: float,
                edit_id: str | None = None) -> dict:
        """Queue a proposal pass of run `run` (a trained one) over the unlabelled images."""
        with self._wake:
            replay = self._replay(pid, edit_id)
            if replay is not None:
                return replay
            self._one_per_team(pid)
            out = run_path(self.data_dir, pid, run)
            state = read_state(out)
            if not (out / "checkpoint.pt").is_file():
                raise NotFound(f"run {run!r} of project {pid!r} has no trained model yet")
            busy = state.get("state") in ("queued", "running") or any(
                j.kind == "propose" and j.out == out for j in self._pending)
            if busy:
                raise Conflict(f"run {run} is {state.get('state')} or already proposing; "
                               "wait until it has finished", current=state)
            state = write_state(out, proposals={"state": "queued",
                                                "score_threshold": score_threshold},
                                edit_ids=_with(state, edit_id))
            self._enqueue(Job("propose", pid, out, [
                "propose", pid, run, "--score", f"{score_threshold:g}", "--data",
                str(self.data_dir)]))
            return state

    def cancel(self, pid: str, run: str) -> dict:
        """Cancel run `run`'s queued or running job; returns camp.json. A run that has ended
        is answered as it is (nothing to cancel)."""
        out = run_path(self.data_dir, pid, run)
        if not read_state(out):
            raise NotFound(f"no run {run!r} in project {pid!r}")
        with self._wake:
            for job in list(self._pending):
                if job.out == out:
                    self._pending.remove(job)
                    self._finish(job, cancelled=True)
            job = self._current
            if job is not None and job.out == out:
                job.cancel = True
                self._wake.notify_all()
        if job is not None and job.out == out:
            self._wait_ended(job)
        return read_state(out)

    def busy(self) -> dict | None:
        """{"kind", "project", "run", "queued": n} of the running job, or None."""
        with self._wake:
            job = self._current
            if job is None:
                return None
            return {"kind": job.kind, "project": job.pid, "run": job.out.name,
                    "queued": len(self._pending)}

    def position(self, out: Path) -> int | None:
        """How many jobs are ahead of run `out`'s queued job (the running one included);
        None when it has none queued."""
        with self._wake:
            for k, job in enumerate(self._pending):
                if job.out == out:
                    return k + (self._current is not None)
        return None

    def close(self) -> None:
        """Stop: the running job is terminated, it and the queued ones marked interrupted."""
        with self._wake:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            job = self._current
            if job is not None:
                job.cancel = True
            self._wake.notify_all()
        for queued in pending:
            self._finish(queued, interrupted=True)
        if job is not None:
            self._wait_ended(job)
        if self._thread is not None:
            self._thread.join(timeout=CANCEL_GRACE + 5)

    def recover(self) -> int:
        """Mark runs left queued or running by an earlier server "interrupted" (and their
        proposal passes); returns how many."""
        n = 0
        for path in sorted((self.data_dir / "runs").glob("*/*/camp.json")):
            state = read_state(path.parent)
            changes = {}
            if state.get("state") in ("queued", "running"):
                changes.update(state="interrupted", error="the server stopped during the run")
            if (state.get("proposals") or {}).get("state") in ("queued", "running"):
                changes["proposals"] = {**state["proposals"], "state": "interrupted"}
            if changes:
                write_state(path.parent, **changes)
                n += 1
        return n

    # -- the worker ----------------------------------------------------------------------------
    def _replay(self, pid: str, edit_id: str | None) -> dict | None:
        if not edit_id:
            return None
        for path in runs_root(self.data_dir, pid).glob("*/camp.json"):
            state = read_state(path.parent)
            if edit_id in state.get("edit_ids", []):
                return state
        return None

    def _one_per_team(self, pid: str) -> None:  # under self._wake
        """Conflict when project `pid` already has a job queued or running: one team must not
        fill the one-at-a-time queue with its runs while the others wait."""
        mine = [j for j in (self._current, *self._pending) if j is not None and j.pid == pid]
        if mine:
            job = mine[0]
            raise Conflict(f"this team already has a {job.kind} job "
                           f"{'running' if job is self._current else 'queued'} (run "
                           f"{job.out.name}); wait for it to end or cancel it first",
                           current=read_state(job.out))

    def _enqueue(self, job: Job) -> None:  # under self._wake
        if self._closed:
            raise Conflict("the camp server is stopping")
        self._pending.append(job)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="camp-jobs", daemon=True)
            self._thread.start()
        self._wake.notify_all()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._current = self._pending.popleft()
            try:
                self._run(job)
            except Exception as e:  # the worker must outlive any one job
                (job.out / "train.log").parent.mkdir(parents=True, exist_ok=True)
                self._finish(job, rc=-1, error=f"the job could not run: {e}")
            finally:
                with self._wake:
                    self._current = None
                    self._wake.notify_all()

    def _run(self, job: Job) -> None:
        with (job.out / "train.log").open("ab") as log:
            job.proc = subprocess.Popen(
                [self.python, "-m", "dlcamp", "camp", *job.args], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=_child_env())
            while job.proc.poll() is None:
                with self._wake:
                    if not job.cancel:
                        self._wake.wait(POLL)
                if job.cancel:
                    _stop(job.proc)
        self._finish(job, rc=job.proc.returncode, cancelled=job.cancel and not self._closed,
                     interrupted=job.cancel and self._closed)

    def _finish(self, job: Job, rc: int | None = None, cancelled: bool = False,
                interrupted: bool = False, error: str | None = None) -> None:
        """Set the states the subprocess could not set itself: a training that has not
        ended (a finished one stays done), proposals still queued or running."""
        ended = ("cancelled" if cancelled else "interrupted" if interrupted
                 else None if rc == 0 else "failed")
        if ended is None:
            return
        state, changes = read_state(job.out), {}
        error = error or {"cancelled": "cancelled", "interrupted": "the server stopped"}.get(
            ended) or _last_error(job.out)
        if job.kind == "train" and state.get("state") not in ("done", "failed"):
            changes.update(state=ended, error=error)
        proposals = state.get("proposals") or {}
        if proposals.get("state") in ("queued", "running"):
            changes["proposals"] = {**proposals, "state": ended, "error": error}
        if changes:
            write_state(job.out, **changes)

    def _wait_ended(self, job: Job, timeout: float = 2 * CANCEL_GRACE + 5) -> None:
        """Block until the worker has finished `job` (its state written)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._current is job and time.monotonic() < deadline:
                self._wake.wait(POLL)


def _with(state: dict, edit_id: str | None) -> list[str]:
    """The run's edit ids, plus `edit_id`."""
    return [*state.get("edit_ids", []), *([edit_id] if edit_id else [])]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within CANCEL_GRACE seconds."""
    proc.terminate()
    try:
        proc.wait(CANCEL_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(CANCEL_GRACE)


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", DLCAMP_QUIET="1")


def _last_error(out: Path) -> str:
    """The last `error:` line of train.log (the CLI's one-line errors), else its last line."""
    try:
        with (out / "train.log").open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - LOG_TAIL))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "the job failed (no log)"
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["the job failed"])[-1][:300]
