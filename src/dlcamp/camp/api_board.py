"""The hidden test set, submissions and the leaderboard over HTTP; `install(app, data_dir)`.

    POST /api/projects/{p}/submissions       {edit_id, run} JSON, or multipart `file`
                                             (checkpoint.pt | predictions.json) + `edit_id`
                                             -> 202, scored in the background
    GET  /api/projects/{p}/submissions       the team's submissions, left, limit, state
    GET  /api/projects/{p}/submissions/{s}   one, with its shift report
    GET  /api/projects/{p}/submissions/{s}/worst.png   the worst errors (team: once frozen)
    POST /api/projects/{p}/submissions/{s}/select      {edit_id}: for the final ranking
    GET  /api/leaderboard                    public while open, final once frozen
    GET  /api/leaderboard.csv                both rankings (instructor)
    GET  /api/event   PUT /api/event         settings (testset.DEFAULT_EVENT; instructor writes)
    POST /api/testset?format=F[&id=&name=]   multipart `file` (instructor)
    GET  /api/testset                        instructor: a summary; team: counts only
    GET  /api/testset/images[/{i}/work]      only once the instructor released the images

A team sees the test project nowhere and never its boxes. While the event is open a team's
report holds its public half only (the private half decides the final ranking); once frozen,
everything, the worst-errors picture included. Scoring runs one at a time, off the event loop.
A submission's file (the upload, or a copy of the run's checkpoint taken at submit: a resume
may rewrite the run's) is written only after the event's state and the team's limit are
checked, under a temporary name, renamed to submissions/<team>/submission-<id>.* once the
submission exists, and deleted on any error; a replayed edit_id touches no file.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from dlcamp.camp import board, scoring, submitted, testset
from dlcamp.camp.auth import INSTRUCTOR, Caller, Denied
from dlcamp.camp.deps import EDIT, PID, ImageId, Pid, Who
from dlcamp.camp.ingest import media_type
from dlcamp.camp.reads import Invalid, NotFound
from dlcamp.camp.storage import CampStore
from dlcamp.camp.transfer import IMPORT_FORMATS

router = APIRouter()
SubId = ImageId  # a path integer 1..2**62
MAX_PREDICTIONS_BYTES = 32 * 1024**2


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    run: str = Field(pattern=EDIT)


class EditIn(_Body):
    edit_id: str = Field(pattern=EDIT)


class EventIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    test: str | None = Field(default=None, pattern=PID)
    max_submissions: int | None = Field(default=None, ge=1, le=1000, strict=True)
    state: Literal["open", "frozen"] | None = None
    release_images: bool | None = Field(default=None, strict=True)


def install(app: FastAPI, data_dir: Path) -> None:
    """Add this module's routes (and their state: the data folder, the scoring lock)."""
    app.state.board_dir = Path(data_dir)
    app.state.scoring_lock = asyncio.Lock()
    # a stopped server's queue: failed (resubmit, not counted), its files and staged uploads gone
    board.fail_unfinished(app.state.store, app.state.board_dir)
    app.include_router(router)


def _store(request: Request) -> CampStore:
    return request.app.state.store


async def _score(app: FastAPI, sid: int) -> None:
    async with app.state.scoring_lock:  # one at a time: scoring takes the CPU
        await asyncio.to_thread(board.score_submission, app.state.store,
                                app.state.board_dir, sid)


def _view(sub: dict, who: Caller, ev: dict) -> dict:
    """What the caller may see of a submission (every route answers through here): "current"
    says whether it is on the event's test set (only those count); a team never sees the
    test project's id, and while the event is open neither the private half nor the whole
    set's scores."""
    out = {**sub, "current": sub["test_id"] == ev["test"]}
    if who.role == INSTRUCTOR:
        return out
    out["test_id"] = None
    if ev["state"] == "frozen":
        return out
    out["private_map"] = None
    report = sub.get("report")
    if report is None:
        return out
    public, val = report["public"], report.get("val")
    gap = None if not val or public["map"] is None else round(val["map"] - public["map"], 6)
    out["report"] = {
        "public": public, "classes": report.get("classes"), "val": val, "gap": gap,
        "hidden": "the whole test set's scores, the private half and the worst-errors "
                  "picture are shown once the leaderboard is frozen"}
    return out


def _test_pid(store: CampStore) -> str:
    pid = testset.event(store)["test"]
    if pid is None:
        raise NotFound("there is no test set yet: the instructor uploads it first")
    return pid


# ------------------------------------------------------------------ submissions
@router.post("/api/projects/{pid}/submissions", status_code=202)
async def submit(pid: Pid, who: Who, request: Request, tasks: BackgroundTasks) -> dict:
    store = _store(request)
    if testset.project_kind(store, pid) != "team":
        raise Invalid(f"{pid!r} is a test project: only teams submit")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        edit_id, kind, source, data = await _upload(request)
    else:
        try:
            body = RunIn.model_validate_json(await request.body())
        except ValueError as e:
            raise Invalid(f"send {{edit_id, run}} as JSON, or a multipart file: "
                          f"{str(e).splitlines()[0]}") from None
        edit_id, kind, source, data = body.edit_id, "run", body.run, None
    old = board.find_submission(store, pid, edit_id)
    if old is not None:  # a retry: answered again, its stored file untouched
        return _view(old, who, testset.event(store))
    ev = board.check_open(store, pid)  # before anything is written
    if kind == "predictions":
        if not ev["release_images"]:
            raise Denied("predictions files are taken only once the instructor has released "
                         "the test images; submit a run or a checkpoint")
        test = await asyncio.to_thread(testset.load_test, store, ev["test"])
        await asyncio.to_thread(scoring.parse_predictions, _json_list(data), test)
    sub = await _store_submission(request, pid, kind, source, edit_id, data)
    if not sub.pop("replayed", False):
        tasks.add_task(_score, request.app, sub["id"])
    return _view(sub, who, testset.event(store))


async def _store_submission(request: Request, pid: str, kind: str, source: str, edit_id: str,
                            data: bytes | None) -> dict:
    """Stage the file (the upload, or a copy of the run's checkpoint), check a checkpoint,
    add the submission, then give the file the submission's name; nothing is left on error."""
    store, data_dir = _store(request), request.app.state.board_dir
    if data is None:
        staged = await asyncio.to_thread(board.stage_run, data_dir, pid, source)
    else:
        staged = await asyncio.to_thread(board.stage_bytes, data_dir, pid, data)
    try:
        if kind != "predictions":
            await asyncio.to_thread(submitted.load_detector, staged)
        sub = await store.submit(board.add_submission, store, pid, kind, source, edit_id)
        if sub.get("replayed"):
            staged.unlink(missing_ok=True)
            return sub
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    try:
        await asyncio.to_thread(board.keep_file, data_dir, sub, staged)
    except OSError as e:
        staged.unlink(missing_ok=True)
        await asyncio.to_thread(board.set_status, store, sub["id"], "failed", None,
                                f"the file could not be stored: {e}"[:300])
        raise
    return sub


async def _upload(request: Request) -> tuple[str, str, str, bytes]:
    """(edit_id, 'checkpoint' | 'predictions', source label, bytes) of a multipart upload,
    held in memory (at most MAX_CHECKPOINT_BYTES) until it is checked."""
    try:
        form = await request.form(max_files=1, max_fields=5)
    except MultiPartException as e:
        raise Invalid(f"the multipart body could not be read: {e.message}") from e
    upload, edit_id = form.get("file"), form.get("edit_id")
    if not isinstance(edit_id, str) or not re.match(EDIT, edit_id):
        raise Invalid("edit_id: send a form field edit_id (1-64 letters, digits, _ or -)")
    if not isinstance(upload, UploadFile):
        raise Invalid("file: send the checkpoint.pt or predictions.json in the field 'file'")
    data = await upload.read(submitted.MAX_CHECKPOINT_BYTES + 1)
    if len(data) > submitted.MAX_CHECKPOINT_BYTES:
        raise Invalid(f"file: over the limit of {submitted.MAX_CHECKPOINT_BYTES:,} bytes")
    if data[:4] == b"PK\x03\x04":  # torch.save writes a zip
        return edit_id, "checkpoint", f"{edit_id}.pt", data
    if len(data) > MAX_PREDICTIONS_BYTES:
        raise Invalid(f"file: a predictions file is at most {MAX_PREDICTIONS_BYTES:,} bytes")
    return edit_id, "predictions", f"{edit_id}.json", data


def _json_list(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise Invalid(f"file: neither a checkpoint (a torch.save zip) nor JSON predictions "
                      f"({str(e)[:80]})") from None


@router.get("/api/projects/{pid}/submissions")
def submissions(pid: Pid, who: Who, request: Request) -> dict:
    store = _store(request)
    ev = testset.event(store)
    subs = [_view(s, who, ev) for s in board.list_submissions(store, pid)]
    used = sum(s["status"] != "failed" and s["current"] for s in subs)
    return {"submissions": subs, "max_submissions": ev["max_submissions"],
            "left": max(ev["max_submissions"] - used, 0), "state": ev["state"]}


@router.get("/api/projects/{pid}/submissions/{sid}")
def submission(pid: Pid, sid: SubId, who: Who, request: Request) -> dict:
    store = _store(request)
    return _view(board.get_submission(store, pid, sid), who, testset.event(store))


@router.get("/api/projects/{pid}/submissions/{sid}/worst.png")
def worst_png(pid: Pid, sid: SubId, who: Who, request: Request) -> FileResponse:
    store = _store(request)
    sub = board.get_submission(store, pid, sid)
    if who.role != INSTRUCTOR and testset.event(store)["state"] != "frozen":
        raise Denied("the worst-errors picture is shown once the leaderboard is frozen")
    picture = (sub.get("report") or {}).get("picture")
    if not picture:
        raise NotFound(f"submission {sid} has no picture (status {sub['status']})")
    path = request.app.state.board_dir / "reports" / Path(picture).name
    if not path.is_file():
        raise NotFound(f"the picture of submission {sid} is gone")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/api/projects/{pid}/submissions/{sid}/select")
async def select(pid: Pid, sid: SubId, body: EditIn, who: Who, request: Request) -> dict:
    store = _store(request)
    sub = await store.submit(board.select_submission, store, pid, sid)
    return _view(sub, who, testset.event(store))


# ------------------------------------------------------------------ leaderboard, event
@router.get("/api/leaderboard")
def leaderboard(who: Who, request: Request) -> dict:
    store = _store(request)
    state = testset.event(store)["state"]
    out: dict[str, Any] = {"state": state, "public": board.leaderboard(store, final=False)}
    if state == "frozen" or who.role == INSTRUCTOR:
        out["final"] = board.leaderboard(store, final=True)
    else:
        for row in out["public"]:
            row["private_map"] = None
    if who.role == INSTRUCTOR:
        out["counts"] = board.counts(store)
    return out


@router.get("/api/leaderboard.csv")
def leaderboard_csv(who: Who, request: Request) -> Response:
    who.must_instruct("export the leaderboard")
    return Response(board.leaderboard_csv(_store(request)), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="leaderboard.csv"'})


@router.get("/api/event")
def get_event(who: Who, request: Request) -> dict:
    ev = testset.event(_store(request))
    return ev if who.role == INSTRUCTOR else {**ev, "test": None}


@router.put("/api/event")
async def put_event(body: EventIn, who: Who, request: Request) -> dict:
    who.must_instruct("change the event's settings")
    store = _store(request)
    changes = body.model_dump(exclude_none=True, exclude={"edit_id"})
    return await store.submit(testset.set_event, store, **changes)


# ------------------------------------------------------------------ the test set
@router.post("/api/testset", status_code=201)
async def post_testset(who: Who, request: Request, format: Literal[IMPORT_FORMATS],  # type: ignore
                       id: Annotated[str, Query(pattern=PID)] = "test",
                       name: Annotated[str, Query(min_length=1, max_length=100)] = "Test set"
                       ) -> dict:
    who.must_instruct("upload the test set")
    try:
        form = await request.form(max_files=1, max_fields=5)
    except MultiPartException as e:
        raise Invalid(f"the multipart body could not be read: {e.message}") from e
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("file: send the test set (a zip or JSON export) in the field 'file'")
    data = await upload.read()
    return await asyncio.to_thread(testset.import_testset, _store(request), data, format, id,
                                   name)


@router.get("/api/testset")
def get_testset(who: Who, request: Request) -> dict:
    store = _store(request)
    ev = testset.event(store)
    if ev["test"] is None:
        return {"test": None}
    summary = testset.test_summary(store, ev["test"])
    if who.role == INSTRUCTOR:
        return summary
    out = {"images": summary["images"], "classes": len(summary["classes"]),
           "release_images": ev["release_images"]}
    if ev["release_images"]:
        out["class_names"] = summary["classes"]
    return out


def _released(store: CampStore) -> str:
    ev = testset.event(store)
    if not ev["release_images"]:
        raise Denied("the test images are not released: the instructor may release them "
                     "(without boxes) for predictions files")
    return _test_pid(store)


@router.get("/api/testset/images")
def testset_images(who: Who, request: Request) -> dict:
    store = _store(request)
    test = testset.load_test(store, _released(store))
    return {"images": [{"id": t.id, "file_name": t.file_name, "width": t.width,
                        "height": t.height} for t in test.images]}


@router.get("/api/testset/images/{iid}/work")
def testset_image(iid: ImageId, who: Who, request: Request) -> FileResponse:
    store = _store(request)
    path = store.image_blob(_released(store), iid, "work")
    with path.open("rb") as f:
        kind = media_type(f.read(64))
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "private"})
