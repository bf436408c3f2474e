"""The request dependencies every camp route uses, shared by api.py and the routers beside it
(training.py's and board.py's routes): who is calling (`Who`) and which project they may open
(`Pid`). They read the app's state (`app.state.store`, `.tokens`, `.lan`) set by
`dlcamp.camp.api.create_app`, so a router module needs no closure over the app.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam

from dlcamp.camp.auth import INSTRUCTOR, Caller, Denied, bearer

PID = r"^[a-z0-9][a-z0-9-]{0,39}$"  # a project id
EDIT = r"^[A-Za-z0-9_-]{1,64}$"    # an edit id, a box id, a run id
COOKIE = "camp_token"
Project = Annotated[str, PathParam(pattern=PID)]
ImageId = Annotated[int, PathParam(ge=1, le=2**62)]
BoxId = Annotated[str, PathParam(pattern=EDIT)]


# `async def`: FastAPI runs a plain `def` dependency in its thread pool, two thread hops per
# request that cost ~30% of the edit throughput (bench/camp.py); these never block.
async def caller(request: Request) -> Caller:
    """The caller: the instructor on a loopback-only server, else whoever the bearer token or
    the join cookie names. Denied (401) without a valid token."""
    state = request.app.state
    if not state.lan:
        return Caller(INSTRUCTOR)
    token = bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
    who = state.tokens.caller(token)
    if who is None:
        raise Denied("a join token is needed: scan the team's QR code or open the join "
                     "link the instructor gave you" if not token else
                     "this token is not (or no longer) valid: ask the instructor for the "
                     "team's current join link", status=401)
    return who


Who = Annotated[Caller, Depends(caller)]


async def project(pid: Project, who: Who) -> str:
    """The path's project id, once the caller may open it (Denied 403 otherwise)."""
    who.may_open(pid)
    return pid


Pid = Annotated[str, Depends(project)]
