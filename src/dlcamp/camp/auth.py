"""Who may do what in a camp: join tokens per team, one instructor token, the loopback rule.

Bound to a loopback address (the default, 127.0.0.1), the camp serves one person at their own
machine: no token is needed and every request acts as the instructor. Bound to anything else
(a classroom LAN), every API request needs a token:

- the **instructor token** reads and writes every project, creates projects, lists the tokens;
- a **team token** (one per project) reads and writes that project only: another team's
  project answers 403, as does any instructor-only route.

Tokens are 128-bit random strings (`secrets.token_urlsafe(16)`), kept in `<data>/tokens.json`
(mode 0600, written atomically) so that the links phones joined with keep working after a
restart, and compared in constant time. `dlcamp camp tokens --rotate` replaces them.

Two browser-borne attacks are closed in both modes: a request whose Host header is not this
server's (DNS rebinding) gets 421, and a state-changing request without the `X-Camp: 1` header
(which a cross-site form or image cannot send) gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from dlcamp.core.errors import DlcampError
from dlcamp.core.io import atomic_write_bytes

INSTRUCTOR, TEAM = "instructor", "team"
TOKEN_FILE = "tokens.json"


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


class TokenBook:
    """The camp's tokens, in `<data_dir>/tokens.json`: {"instructor": t, "teams": {project: t}}.

    Created with a fresh instructor token on first use. Raises DlcampError when the file exists
    but is not a token book (it is never overwritten then: it may be somebody's data)."""

    def __init__(self, data_dir: Path | str):
        self.path = Path(data_dir) / TOKEN_FILE
        if self.path.exists():
            try:
                book = json.loads(self.path.read_text("utf-8"))
                self.instructor = str(book["instructor"])
                self.teams = {str(k): str(v) for k, v in dict(book["teams"]).items()}
            except (ValueError, KeyError, TypeError) as e:
                raise DlcampError(f"{self.path} is not a dlcamp token file ({e}); move it "
                                  "away and start again to make new tokens") from e
        else:
            self.instructor, self.teams = new_token(), {}
            self._save()

    def _save(self) -> None:
        data = json.dumps({"instructor": self.instructor, "teams": self.teams}, indent=1)
        atomic_write_bytes(self.path, data.encode())
        self.path.chmod(0o600)

    def team_token(self, project: str) -> str:
        """The project's join token, made (and saved) the first time it is asked for."""
        if project not in self.teams:
            self.teams[project] = new_token()
            self._save()
        return self.teams[project]

    def rotate(self, project: str | None = None) -> None:
        """New token(s): one project's, or (None) the instructor's and every team's. Phones that
        joined with an old link must scan the new one."""
        if project is None:
            self.instructor = new_token()
            self.teams = {p: new_token() for p in self.teams}
        else:
            self.teams[project] = new_token()
        self._save()

    def caller(self, token: str | None) -> Caller | None:
        """The caller a token belongs to, or None for a missing or unknown token."""
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self.instructor.encode()):
            return Caller(INSTRUCTOR)
        for project, team in self.teams.items():
            if hmac.compare_digest(token.encode(), team.encode()):
                return Caller(TEAM, project)
        return None


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
