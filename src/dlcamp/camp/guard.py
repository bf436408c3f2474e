"""What every camp request passes before a route sees it, and how errors become answers.

`Guard` is plain ASGI middleware (cheap: no per-request objects on the fast path). In order:

1. Loopback mode only: the Host header must be localhost / 127.0.0.1 / [::1], else 421 — a web
   page cannot then reach the tokenless camp through DNS rebinding.
2. A state-changing request (not GET/HEAD/OPTIONS) to /api/ must carry `X-Camp: 1`, else 403:
   a cross-site form, image or plain fetch cannot send that header.
3. The body is capped by route (`body_limit`): a declared Content-Length over the cap is refused
   at once (413), and a body that streams past it is cut off (413) — chunked bodies included.
4. Every response gets `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (join
   links carry tokens) and `X-Frame-Options: DENY`; the page gets a same-origin-only CSP.

`error_handlers()` maps dlcamp's errors to 4xx JSON {"detail": "<one readable line>"}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dlcamp.camp.auth import Denied, host_allowed
from dlcamp.camp.blobs import BadBlobId
from dlcamp.camp.ingest import PhotoRejected
from dlcamp.camp.interchange import ImportFailed
from dlcamp.camp.storage import Conflict, Invalid, NotFound
from dlcamp.core.errors import DlcampError

MB = 1024 * 1024
JSON_LIMIT = 1 * MB  # any request not listed below
UPLOAD_LIMIT = 200 * MB  # POST .../images: many phone photos at once
IMPORT_LIMIT = 500 * MB  # POST .../import and /api/testset: a zip of a data set
SUBMIT_LIMIT = 120 * MB  # POST .../submissions: a checkpoint (or predictions) and the form
_UPLOAD = re.compile(r"^/api/projects/[^/]+/images$")
_IMPORT = re.compile(r"^(/api/projects/[^/]+/import|/api/testset)$")
_SUBMIT = re.compile(r"^/api/projects/[^/]+/submissions$")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'")
_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY")]

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


def body_limit(method: str, path: str) -> int:
    """The largest body (bytes) a request may send to this route."""
    if method == "POST" and _UPLOAD.match(path):
        return UPLOAD_LIMIT
    if method == "POST" and _IMPORT.match(path):
        return IMPORT_LIMIT
    if method == "POST" and _SUBMIT.match(path):
        return SUBMIT_LIMIT
    return JSON_LIMIT


class _TooLarge(Exception):
    pass


async def _answer(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: host check (when `loopback`), CSRF header, body caps, safety headers."""

    def __init__(self, app: ASGIApp, loopback: bool):
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        if self.loopback:
            host = headers.get(b"host", b"").decode("latin-1")
            if not host_allowed(host, LOOPBACK_NAMES):
                return await _answer(send, 421, f"this camp serves localhost only, not host "
                                     f"{host!r}; start it with --host to serve a network")
        if method not in ("GET", "HEAD", "OPTIONS") and path.startswith("/api/") \
                and headers.get(b"x-camp") != b"1":
            return await _answer(send, 403, "missing the header X-Camp: 1 (the camp's page "
                                 "sends it; scripts must too)")
        limit = body_limit(method, path)
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await _answer(send, 400, "the Content-Length header is not a number")
        if declared is not None and int(declared) > limit:
            return await _answer(send, 413, f"the request body ({declared.decode('latin-1')} "
                                 f"bytes) is over this route's limit of {limit:,} bytes")
        received, started, too_large = 0, False, False

        async def capped_receive() -> dict:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if too_large:  # the app turned _TooLarge into an answer of its own (FastAPI: 400)
                if not started:
                    started = True
                    await _answer(send, 413, f"the request body is over this route's limit "
                                  f"of {limit:,} bytes")
                return
            if message["type"] == "http.response.start":
                started = True
                extra = list(_HEADERS)
                if path == "/" or path.endswith(".html"):
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _answer(send, 413, f"the request body is over this route's limit of "
                              f"{limit:,} bytes")


def _json(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _validation_detail(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line: `body.x1: Input should be ...; ...`."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def error_handlers() -> dict[Any, Callable[[Request, Exception], Any]]:
    """Exception class -> handler, for FastAPI(exception_handlers=...)."""

    async def conflict(_: Request, e: Exception) -> JSONResponse:
        return _json(409, str(e), current=getattr(e, "current", None))

    def status(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, e: Exception) -> JSONResponse:
            return _json(getattr(e, "status", code), str(e))
        return handler

    async def validation(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        return _json(422, _validation_detail(e))

    return {Conflict: conflict, NotFound: status(404), BadBlobId: status(404),
            Invalid: status(422), ImportFailed: status(422), Denied: status(403),
            PhotoRejected: status(415), RequestValidationError: validation,
            DlcampError: status(422)}  # any other error of ours: bad input, with its reason
