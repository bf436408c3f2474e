"""Who may do what in a camp: join tokens per team, one instructor token, the loopback rule.

Bound to a loopback address (the default, 127.0.0.1), the camp serves one person at their own
machine: no token is needed and every request acts as the instructor. Bound to anything else
(a classroom LAN), every API request needs a token:

- the **instructor token** reads and writes every project, creates projects, lists the tokens;
- a **team token** (one per project) reads and writes that project only: another team's
  project answers 403, as does any instructor-only route.

Tokens are 128-bit random strings (`secrets.token_urlsafe(16)`), kept in `<data>/tokens.json`
(mode 0600, written atomically) so that the links phones joined with keep working after a
restart, and compared in constant time. `dlcamp camp tokens --rotate` replaces them, and a
running server sees that at its next request: the file, not the server's memory, is the truth
(TokenBook).

Two browser-borne attacks are closed in both modes: a request whose Host header is not this
server's (DNS rebinding) gets 421, and a state-changing request without the `X-Camp: 1` header
(which a cross-site form or image cannot send) gets 403.
"""

from __future__ import annotations

import fcntl
import hmac
import ipaddress
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from dlcamp.core.errors import DlcampError
from dlcamp.core.io import atomic_write_bytes

INSTRUCTOR, TEAM = "instructor", "team"
TOKEN_FILE = "tokens.json"
LOCK_FILE = "tokens.lock"  # held by whoever writes tokens.json


class Denied(DlcampError):
    """A request without the right to do what it asked; `.status` is 401, 403 or 421."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `role` is INSTRUCTOR or TEAM; `project` is the team's project id."""

    role: str
    project: str | None = None

    def may_open(self, project: str) -> None:
        """Raise Denied (403) unless this caller may read and write `project`."""
        if self.role != INSTRUCTOR and self.project != project:
            raise Denied(f"this team's token is for project {self.project!r}, not {project!r}")

    def must_instruct(self, what: str) -> None:
        """Raise Denied (403) unless the caller is the instructor."""
        if self.role != INSTRUCTOR:
            raise Denied(f"only the instructor may {what}")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': the camp is then reachable from this machine
    only, and needs no tokens."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh 128-bit token, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


@contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created 0600) for the `with` block. The locks of
    other processes, and of other open files of this one, exclude it: `wait=False` raises
    BlockingIOError at once instead of waiting for them."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)  # which releases the lock


class _Seen(NamedTuple):
    stamp: tuple | None  # (inode, mtime ns, size) of the file these tokens were read from
    instructor: str
    teams: dict[str, str]


class TokenBook:
    """The camp's tokens, in `<data_dir>/tokens.json`: {"instructor": t, "teams": {project: t}}.

    The file is the truth, shared by the server and every `dlcamp camp` command. Each check
    stats it (a microsecond) and re-reads it once it was replaced, so a rotation by the CLI
    reaches a running server at its next request. Every change is a read-modify-write under an
    exclusive flock on `<data_dir>/tokens.lock`, written atomically, mode 0600: two writers
    never lose each other's tokens, and nothing writes old tokens back from memory.

    Created with a fresh instructor token on first use (and again if the file is deleted).
    Raises DlcampError when the file exists but is not a token book (it is never overwritten
    then: it may be somebody's data); a running server that finds it broken keeps the tokens it
    read last and says so on stderr."""

    def __init__(self, data_dir: Path | str):
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path, self._lock = data_dir / TOKEN_FILE, data_dir / LOCK_FILE
        self._mutex = threading.RLock()
        read = self._read()
        self._seen: _Seen = read or _Seen(None, "", {})  # replaced whole, never edited
        if read is None:
            self._update(lambda book: None)

    @property
    def instructor(self) -> str:
        """The instructor's token, as the file has it now."""
        return self._current().instructor

    @property
    def teams(self) -> dict[str, str]:
        """{project: join token}, as the file has it now (a copy)."""
        return dict(self._current().teams)

    def team_token(self, project: str) -> str:
        """The project's join token, made (and saved) the first time it is asked for."""
        token = self._current().teams.get(project)
        if token is not None:
            return token
        return self._update(lambda book: book["teams"].setdefault(project, new_token()))

    def rotate(self, project: str | None = None) -> None:
        """New token(s): one project's, or (None) the instructor's and every team's. Phones that
        joined with an old link must scan the new one; a running server refuses the old token
        from its next request on."""
        def change(book: dict) -> None:
            teams = book["teams"]
            if project is None:
                book["instructor"] = new_token()
                teams.update({p: new_token() for p in teams})
            else:
                teams[project] = new_token()

        self._update(change)

    def caller(self, token: str | None) -> Caller | None:
        """The caller a token belongs to, or None for a missing or unknown token."""
        if not token:
            return None
        seen = self._current()
        if hmac.compare_digest(token.encode(), seen.instructor.encode()):
            return Caller(INSTRUCTOR)
        for project, team in seen.teams.items():
            if hmac.compare_digest(token.encode(), team.encode()):
                return Caller(TEAM, project)
        return None

    def _current(self) -> _Seen:
        """The tokens, re-read first if the file changed (or went) since it was last read."""
        seen = self._seen
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == seen.stamp:
            return seen
        with self._mutex:
            try:
                read = self._read()
            except DlcampError as e:
                print(f"dlcamp camp: {e}; still using the tokens read before", file=sys.stderr)
                self._seen = seen._replace(stamp=stamp)  # not again until the file changes
                return self._seen
            if read is None:
                print(f"dlcamp camp: {self.path} was deleted; made new tokens (`dlcamp camp "
                      "tokens` shows them)", file=sys.stderr)
                self._update(lambda book: None)
            else:
                self._seen = read
            return self._seen

    def _read(self) -> _Seen | None:
        """The file's tokens and stamp; None when there is no file."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())  # the stamp of the very file read
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            book = json.loads(raw)
            instructor = str(book["instructor"])
            teams = {str(k): str(v) for k, v in dict(book["teams"]).items()}
            if not instructor or not all(teams.values()):
                raise ValueError("an empty token")
        except (ValueError, KeyError, TypeError) as e:
            raise DlcampError(f"{self.path} is not a dlcamp token file ({e}); move it "
                              "away and start again to make new tokens") from e
        return _Seen((st.st_ino, st.st_mtime_ns, st.st_size), instructor, teams)

    def _update(self, change: Callable[[dict], Any]) -> Any:
        """Under the lock file: read the file, let `change` edit {"instructor", "teams"} in
        place, write the file if anything changed (or there was none). Returns what `change`
        returned."""
        with self._mutex, exclusive_lock(self._lock):
            read = self._read()
            old = read or _Seen(None, new_token(), {})
            book = {"instructor": old.instructor, "teams": dict(old.teams)}
            result = change(book)
            stamp = old.stamp
            if read is None or book != {"instructor": old.instructor, "teams": old.teams}:
                atomic_write_bytes(self.path, json.dumps(book, indent=1).encode(), mode=0o600)
                st = os.stat(self.path)  # nobody else writes while we hold the lock
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            self._seen = _Seen(stamp, book["instructor"], book["teams"])
            return result


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None when absent)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied("the Authorization header must be 'Bearer <token>'", status=401)
    return token.strip()


def host_allowed(host_header: str | None, allowed: set[str]) -> bool:
    """Whether a request's Host header (port stripped) names this server."""
    if not host_header:
        return False
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host_header.startswith("["):  # [::1]:8000
        name = host_header.split("]", 1)[0] + "]"
    return name.lower() in allowed
