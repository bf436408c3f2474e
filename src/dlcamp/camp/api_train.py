"""Training, runs and proposals over HTTP; `install(app, data_dir)` adds the routes.

    POST /api/projects/{p}/train              {edit_id, minutes: 0.25..60, resume: run|null}
                                              -> 202 the run's camp.json (queued)
    GET  /api/projects/{p}/runs               [{run, state, created, minutes, val_map,
                                                val_map_50, ...}] newest first
    GET  /api/projects/{p}/runs/{r}           camp.json + "last" (progress line) + "history"
                                              (the per-epoch lines)
    GET  /api/projects/{p}/runs/{r}/events    text/event-stream: each progress line as an
                                              event, then `event: end` when the run ends
    POST /api/projects/{p}/runs/{r}/cancel    {edit_id} -> camp.json
    GET  /api/projects/{p}/runs/{r}/curves.png
    POST /api/projects/{p}/propose            {edit_id, run, score_threshold=0.3} -> 202

(Accepting proposals, POST /api/projects/{p}/images/{i}/accept, is an edit: camp/api.py.)

Jobs run one at a time in subprocesses (camp.jobs); run directories and their files are
described in camp.training. A team reaches only its own project's runs (`Pid`), and a run id
must look like one (20261206-093015), so no path leaves `<data>/runs/<project>/`.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from dlcamp.camp.deps import EDIT, Pid
from dlcamp.camp.jobs import JobQueue
from dlcamp.camp.reads import Invalid, NotFound
from dlcamp.camp.training import ENDED, RUN_ID, read_progress, read_state, run_path, runs_root

router = APIRouter()
RUN = RUN_ID.pattern
RunId = Annotated[str, PathParam(pattern=RUN)]
POLL_SECONDS = 0.5  # how often an event stream looks at progress.jsonl
KEEPALIVE_SECONDS = 15.0  # a comment line so proxies and browsers keep the stream open
STREAM_SECONDS = 30 * 60  # an event stream ends after this; EventSource reconnects by itself


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    minutes: float = Field(default=10, ge=0.25, le=60, allow_inf_nan=False)
    resume: str | None = Field(default=None, pattern=RUN)


class ProposeIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    run: str = Field(pattern=RUN)
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0, allow_inf_nan=False)


class EditIn(_Body):
    edit_id: str = Field(pattern=EDIT)


def _run_dir(request: Request, pid: str, run: str) -> Path:
    out = run_path(request.app.state.jobs.data_dir, pid, run)
    if not (out / "camp.json").is_file():
        raise NotFound(f"no run {run!r} in project {pid!r}")
    return out


def _trainable(request: Request, pid: str) -> None:
    """NotFound for no project; Invalid for the hidden test set (never trained on)."""
    store = request.app.state.store
    store.get_project(pid)
    with store._read() as conn:
        kind = conn.execute("SELECT kind FROM projects WHERE id = ?", (pid,)).fetchone()
    if kind and kind[0] == "test":
        raise Invalid(f"{pid} is the hidden test set: models are scored on it, never trained")


def _summary(request: Request, out: Path) -> dict:
    """A run's camp.json plus "last" (its latest progress line), "curves" (has a plot),
    "position" (of a queued run: jobs ahead of it), val_map(_50) so far while it runs."""
    state = read_state(out)
    progress = read_progress(out)
    last = progress[-1] if progress else None
    summary = {**state, "run": out.name, "last": last, "curves": (out / "curves.png").is_file(),
               "position": request.app.state.jobs.position(out)}
    for key in ("val_map", "val_map_50"):
        if summary.get(key) is None and last is not None:
            summary[key] = last.get(key)
    summary.pop("edit_ids", None)
    return summary


@router.post("/api/projects/{pid}/train", status_code=202)
async def train(pid: Pid, body: TrainIn, request: Request) -> dict:
    _trainable(request, pid)
    state = await asyncio.to_thread(request.app.state.jobs.train, pid, body.minutes,
                                    body.resume, body.edit_id)
    return _summary(request, _run_dir(request, pid, state["run"]))


@router.get("/api/projects/{pid}/runs")
def runs(pid: Pid, request: Request) -> list[dict]:
    request.app.state.store.get_project(pid)
    root = runs_root(request.app.state.jobs.data_dir, pid)
    found = sorted((p.parent for p in root.glob("*/camp.json") if RUN_ID.match(p.parent.name)),
                   key=lambda p: p.name, reverse=True)
    return [_summary(request, out) for out in found]


@router.get("/api/projects/{pid}/runs/{run}")
def get_run(pid: Pid, run: RunId, request: Request) -> dict:
    out = _run_dir(request, pid, run)
    history = [r for r in read_progress(out) if r.get("event") == "epoch"]
    return {**_summary(request, out), "history": history}


@router.get("/api/projects/{pid}/runs/{run}/events")
async def events(pid: Pid, run: RunId, request: Request,
                 since: Annotated[int, Query(ge=0, le=10**7)] = 0,
                 last_event_id: Annotated[str | None, Header(max_length=20)] = None
                 ) -> StreamingResponse:
    """Server-sent events: `id: n` + `data: <progress line>` for each line from `since`
    (or after Last-Event-ID on a reconnect), then `event: end` + `data: {"state"}` once
    the run has ended (or after STREAM_SECONDS)."""
    out = _run_dir(request, pid, run)
    if last_event_id and last_event_id.isdigit():
        since = max(since, int(last_event_id))
    return StreamingResponse(_stream(out, since, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(out: Path, sent: int, request: Request):
    yield "retry: 2000\n\n"
    start = quiet = time.monotonic()
    seen = -1  # progress.jsonl's size when last read: unchanged, nothing to read
    while True:
        state = read_state(out).get("state")  # before the lines: none written before is missed
        size = _size(out / "progress.jsonl")
        records = read_progress(out, sent) if size != seen else []
        seen = size
        for record in records:
            sent += 1
            quiet = time.monotonic()
            yield f"id: {sent}\ndata: {json.dumps(record)}\n\n"
        if state in ENDED or time.monotonic() - start > STREAM_SECONDS:
            yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - quiet > KEEPALIVE_SECONDS:
            quiet = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@router.post("/api/projects/{pid}/runs/{run}/cancel")
async def cancel(pid: Pid, run: RunId, body: EditIn, request: Request) -> dict:
    out = _run_dir(request, pid, run)
    await asyncio.to_thread(request.app.state.jobs.cancel, pid, run)
    return _summary(request, out)


@router.get("/api/projects/{pid}/runs/{run}/curves.png")
def curves(pid: Pid, run: RunId, request: Request) -> FileResponse:
    path = _run_dir(request, pid, run) / "curves.png"
    if not path.is_file():
        raise NotFound(f"run {run} has no curves yet (they are drawn after the first epoch)")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/api/projects/{pid}/propose", status_code=202)
async def propose(pid: Pid, body: ProposeIn, request: Request) -> dict:
    _trainable(request, pid)
    out = _run_dir(request, pid, body.run)
    await asyncio.to_thread(request.app.state.jobs.propose, pid, body.run,
                            body.score_threshold, body.edit_id)
    return _summary(request, out)


def install(app: FastAPI, data_dir: Path) -> None:
    """Add the routes and `app.state.jobs` (the JobQueue; closed when the app stops, which
    stops a running job and marks it interrupted)."""
    app.state.jobs = JobQueue(data_dir)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):
        try:
            async with inner(a) as state:
                yield state
        finally:
            await asyncio.to_thread(app.state.jobs.close)

    app.router.lifespan_context = lifespan
    app.include_router(router)
