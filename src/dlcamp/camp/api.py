"""The camp's HTTP API and page: `create_app(data_dir, lan=False)`.

Routes (JSON unless said; every error is a 4xx {"detail": "<reason>"}, see guard.py):

    GET  /                                   the page; /static/* its files
    GET  /api/join?token=T                   check a join token, set it as a cookie
    GET  /api/me                             {"role", "project", "lan"}
    GET  /api/projects  POST /api/projects   list / create (instructor)
    GET  /api/projects/{p}                   project, classes, live counts per class
    PUT  /api/projects/{p}/classes           rename / append classes
    POST /api/projects/{p}/images            multipart `files` (1-200 photos)
    GET  /api/projects/{p}/images            ?status=&offset=&limit= (status=proposed too)
    GET  /api/projects/{p}/images/{i}        the image and its boxes
    GET  /api/projects/{p}/images/{i}/work|thumb|original    the files
    PUT|DELETE /api/projects/{p}/images/{i}/boxes/{b}         create/update, delete a box
    PATCH /api/projects/{p}/images/{i}       no_objects, review
    POST /api/projects/{p}/images/{i}/copy_from/{src}
    POST /api/projects/{p}/images/{i}/accept  {edit_id, box_ids?}: accept a model's proposals
    GET  /api/projects/{p}/next              ?after=&status=
    GET  /api/projects/{p}/changes           ?since=
    GET  /api/projects/{p}/export            ?format=coco|yolo|voc   (a zip, images included)
    POST /api/projects/{p}/import            ?format=...  multipart `file`, all or nothing
    GET  /api/tokens  GET /api/qr?url=       join links and their QR codes (instructor)

Every write carries a client `edit_id` (a retry with the same id is answered, not re-applied)
and, for an existing box or image, the `base_version` it was read at (a stale one gets 409 with
the current object). Box coordinates are pixels of the image's working copy.
"""


import asyncio
import io
import mimetypes
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from dlcamp.camp import api_board, api_train
from dlcamp.camp.auth import INSTRUCTOR, Denied, TokenBook
from dlcamp.camp.deps import COOKIE, EDIT, PID, BoxId, ImageId, Pid, Who
from dlcamp.camp.guard import Guard, error_handlers
from dlcamp.camp.ingest import (
    MAX_UPLOAD_BYTES,
    PhotoRejected,
    ingest_photo,
    media_type,
    safe_file_name,
)
from dlcamp.camp.reads import MAX_BOXES_PER_IMAGE, MAX_CLASS_NAME, MAX_CLASSES, MAX_SEQ
from dlcamp.camp.storage import CampStore, Invalid
from dlcamp.camp.transfer import EXPORT_FORMATS, IMPORT_FORMATS, export_project, import_project

MAX_FILES = 200
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False, strict=True)]
Version = Annotated[int, Field(ge=0, le=2**62, strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassIn(_Body):
    name: str = Field(min_length=1, max_length=MAX_CLASS_NAME)
    name_zh: str = Field(default="", max_length=MAX_CLASS_NAME)


class ProjectIn(_Body):
    id: str = Field(pattern=PID)
    name: str = Field(min_length=1, max_length=100)
    classes: list[ClassIn] = Field(min_length=1, max_length=MAX_CLASSES)


class ClassesIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    classes: list[ClassIn] = Field(min_length=1, max_length=MAX_CLASSES)


class BoxIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    base_version: Version
    label: int = Field(ge=0, le=1000, strict=True)
    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate


class ImagePatch(_Body):
    edit_id: str = Field(pattern=EDIT)
    base_version: Version
    no_objects: bool | None = Field(default=None, strict=True)
    review: Literal["todo", "done", "needs_fix"] | None = None


class EditIn(_Body):
    edit_id: str = Field(pattern=EDIT)


class AcceptIn(_Body):
    edit_id: str = Field(pattern=EDIT)
    box_ids: list[Annotated[str, Field(pattern=EDIT)]] | None = Field(
        default=None, max_length=MAX_BOXES_PER_IMAGE)


async def _files(request: Request, field: str, most: int) -> list[UploadFile]:
    """The uploaded files of a multipart form field (1..most), or a 4xx."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise PhotoRejected("request", f"send multipart/form-data with the files in the field "
                            f"{field!r} (got Content-Type {ctype or 'none'!r})", status=415)
    try:
        form = await request.form(max_files=most, max_fields=20)
    except MultiPartException as e:
        raise Invalid(f"the multipart body could not be read: {e.message}") from e
    files = [f for f in form.getlist(field) if isinstance(f, UploadFile)]
    if not files:
        raise Invalid(f"no file in the form field {field!r} (fields sent: "
                      f"{', '.join(sorted(form.keys())) or 'none'})")
    return files


def create_app(data_dir: Path | str, lan: bool = False, public_url: str | None = None
               ) -> FastAPI:
    """The camp app over `data_dir` (created if missing). `lan`: the server is reachable from
    other machines, so every API request needs a join or instructor token (auth.py);
    `public_url` (e.g. http://192.168.1.20:8000/) is what join links and QR codes point at."""
    data_dir = Path(data_dir)
    store = CampStore(data_dir)
    book = TokenBook(data_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        store.close()

    app = FastAPI(title="dlcamp camp", lifespan=lifespan, exception_handlers=error_handlers(),
                  description="Capture photos and label boxes for the hackathon.")
    app.state.store, app.state.tokens, app.state.lan = store, book, lan
    static = resources.files("dlcamp.camp").joinpath("static")
    # Some systems map .js to text/plain, which nosniff would then refuse to run as a module.
    mimetypes.add_type("text/javascript", ".js")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")


    def base_url(request: Request) -> str:
        return public_url or str(request.base_url)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return static.joinpath("camp.html").read_text("utf-8")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "lan": lan}

    @app.get("/api/join")
    def join(token: Annotated[str, Query(max_length=100)]) -> JSONResponse:
        who = book.caller(token)
        if who is None:
            raise Denied("this join link's token is not valid (it may have been replaced): "
                         "ask the instructor for the current one", status=401)
        answer = JSONResponse({"role": who.role, "project": who.project})
        answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                          max_age=14 * 24 * 3600)
        return answer

    @app.get("/api/me")
    def me(who: Who) -> dict:
        return {"role": who.role, "project": who.project, "lan": lan}

    @app.get("/api/projects")
    def projects(who: Who) -> list[dict]:
        return [p for p in store.list_projects() if who.role == INSTRUCTOR
                or p["id"] == who.project]

    @app.post("/api/projects", status_code=201)
    async def create_project(body: ProjectIn, who: Who) -> dict:
        who.must_instruct("create projects")
        made = await store.submit(store.create_project, body.id, body.name,
                                  [c.model_dump() for c in body.classes])
        return {**made, "token": book.team_token(body.id)}

    @app.get("/api/projects/{pid}")
    def get_project(pid: Pid) -> dict:
        return store.get_project(pid)

    @app.put("/api/projects/{pid}/classes")
    async def set_classes(pid: Pid, body: ClassesIn) -> dict:
        return await store.submit(store.set_classes, pid,
                                  [c.model_dump() for c in body.classes], body.edit_id)

    @app.post("/api/projects/{pid}/images")
    async def upload(pid: Pid, request: Request) -> JSONResponse:
        store.get_project(pid)  # 404 before reading megabytes
        results, statuses = [], []
        for f in await _files(request, "files", MAX_FILES):
            name = safe_file_name(f.filename or "photo")
            try:
                data = await f.read(MAX_UPLOAD_BYTES + 1)
                if len(data) > MAX_UPLOAD_BYTES:
                    raise PhotoRejected(name, f"{len(data):,}+ bytes is over the limit of "
                                        f"{MAX_UPLOAD_BYTES:,} bytes per photo", status=413)
                photo = await asyncio.to_thread(ingest_photo, data, name)
                image, duplicate = await store.submit(
                    store.add_image, pid, photo.original, name, photo.work, photo.thumb,
                    photo.width, photo.height, photo.orig_width, photo.orig_height)
                results.append({"file_name": name, "image": image, "duplicate": duplicate,
                                "error": None})
                statuses.append(200)
            except PhotoRejected as e:
                results.append({"file_name": name, "image": None, "duplicate": False,
                                "error": str(e)})
                statuses.append(e.status)
        if 200 in statuses:
            return JSONResponse({"images": results})
        return JSONResponse({"detail": f"no photo was added: {results[0]['error']}",
                             "images": results}, status_code=statuses[0])

    @app.get("/api/projects/{pid}/images")
    def list_images(pid: Pid, status: str = "all",
                    offset: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        images, total = store.list_images(pid, status, offset, limit)
        return {"images": images, "total": total}

    @app.get("/api/projects/{pid}/images/{iid}")
    def get_image(pid: Pid, iid: ImageId) -> dict:
        return store.get_image(pid, iid)

    @app.get("/api/projects/{pid}/images/{iid}/{which}")
    def image_file(pid: Pid, iid: ImageId, which: Literal["work", "thumb", "original"]
                   ) -> FileResponse:
        path = store.image_blob(pid, iid, which)
        with path.open("rb") as f:
            kind = media_type(f.read(64))
        headers = {"Cache-Control": "private, max-age=31536000, immutable",
                   "ETag": f'"{path.name}"'}
        if which == "original":
            name = store.get_image(pid, iid, with_boxes=False)["file_name"]
            return FileResponse(path, media_type=kind, headers=headers,
                                filename=name)
        return FileResponse(path, media_type=kind, headers=headers)

    @app.put("/api/projects/{pid}/images/{iid}/boxes/{bid}")
    async def put_box(pid: Pid, iid: ImageId, bid: BoxId, body: BoxIn) -> dict:
        return await store.submit(store.put_box, pid, iid, bid, body.edit_id,
                                  body.base_version, body.label, body.x1, body.y1, body.x2,
                                  body.y2)

    @app.delete("/api/projects/{pid}/images/{iid}/boxes/{bid}")
    async def delete_box(pid: Pid, iid: ImageId, bid: BoxId,
                         edit_id: Annotated[str, Query(pattern=EDIT)],
                         base_version: Annotated[int, Query(ge=1, le=2**62)]) -> dict:
        return await store.submit(store.delete_box, pid, iid, bid, edit_id, base_version)

    @app.patch("/api/projects/{pid}/images/{iid}")
    async def patch_image(pid: Pid, iid: ImageId, body: ImagePatch) -> dict:
        return await store.submit(store.patch_image, pid, iid, body.edit_id,
                                  body.base_version, body.no_objects, body.review)

    @app.post("/api/projects/{pid}/images/{iid}/copy_from/{src}")
    async def copy_boxes(pid: Pid, iid: ImageId, src: ImageId, body: EditIn) -> dict:
        return await store.submit(store.copy_boxes, pid, iid, src, body.edit_id)

    @app.post("/api/projects/{pid}/images/{iid}/accept")
    async def accept_boxes(pid: Pid, iid: ImageId, body: AcceptIn) -> dict:
        """Accept the image's proposals (box_ids absent: all) -> {"boxes": [box JSON]}."""
        return await store.submit(store.accept_boxes, pid, iid, body.edit_id, body.box_ids)

    @app.get("/api/projects/{pid}/next")
    def next_image(pid: Pid, after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
                   status: str = "unlabelled") -> dict:
        return store.next_image(pid, after, status)

    @app.get("/api/projects/{pid}/changes")
    def changes(pid: Pid, since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0) -> dict:
        return store.changes(pid, since)

    @app.get("/api/projects/{pid}/export")
    async def export(pid: Pid, format: Literal[EXPORT_FORMATS]) -> Response:  # type: ignore
        data = await asyncio.to_thread(export_project, store, pid, format)
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{pid}-{format}.zip"'})

    @app.post("/api/projects/{pid}/import")
    async def import_(pid: Pid, request: Request,
                      format: Literal[IMPORT_FORMATS]) -> dict:  # type: ignore
        store.get_project(pid)
        upload = (await _files(request, "file", 1))[0]
        data = await upload.read()
        return await asyncio.to_thread(import_project, store, pid, format, data,
                                       upload.filename or "upload")

    @app.get("/api/tokens")
    def tokens(who: Who, request: Request) -> list[dict]:
        who.must_instruct("see the join tokens")
        url = base_url(request)
        rows = [{"project": p["id"], "name": p["name"], "token": book.team_token(p["id"])}
                for p in store.list_projects() if p["kind"] == "team"]  # never the test set
        return [dict(r, join_url=f"{url}?token={r['token']}") for r in rows]

    @app.get("/api/qr")
    def qr(url: Annotated[str, Query(max_length=500)], who: Who, request: Request
           ) -> Response:
        import segno

        if not url.startswith(base_url(request)):
            raise Invalid(f"QR codes are made only for this camp's own links "
                          f"({base_url(request)}...)")
        buffer = io.BytesIO()
        segno.make(url, error="m").save(buffer, kind="svg", scale=6, border=2)
        return Response(buffer.getvalue(), media_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})

    api_train.install(app, data_dir)  # training, runs, proposals (issue 16)
    api_board.install(app, data_dir)  # the hidden test set, submissions, leaderboard
    app.add_middleware(Guard, loopback=not lan)
    return app
