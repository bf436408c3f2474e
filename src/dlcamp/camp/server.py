"""Run a camp: `serve_camp(data_dir, host, port)` — uvicorn, one process, tokens printed.

One process on purpose: SQLite has one writer, and the group-commit writer thread
(writer.py) is the fastest way to give it edits; a second process would only queue behind it.
Bound to a loopback address the camp needs no tokens; bound to anything else (a classroom
LAN) it prints the instructor's link and each team's join link, with QR codes in the
terminal for phones, and refuses every API request without a token.

One server per data folder: it holds an exclusive flock on `<data>/serve.lock` while it runs
(a second one is refused with CampBusy; the CLI's other commands need no lock but tokens.lock,
see auth.py), and records its public URL in `<data>/server.json` so that `dlcamp camp tokens`
prints links with the port and address it really uses.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from dlcamp.camp.auth import TokenBook, exclusive_lock, is_loopback
from dlcamp.camp.schema import DB_NAME
from dlcamp.camp.storage import CampStore
from dlcamp.core.errors import BadArgument, DlcampError
from dlcamp.core.io import atomic_write_bytes

SERVER_FILE = "server.json"  # the running (or last) server's public URL, for `camp tokens`
SERVE_LOCK = "serve.lock"  # held by the one server of a camp for its lifetime


class CampBusy(DlcampError):
    """Another server already serves this camp's data folder."""


def lan_address() -> str:
    """This machine's address on its local network (no packet is sent), or 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))  # any non-local address picks the LAN interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def public_url(host: str, port: int) -> str:
    """The base URL other machines use: the LAN address when bound to all interfaces."""
    name = lan_address() if host in ("0.0.0.0", "::", "[::]", "") else host.strip("[]")
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/"


def join_links(data_dir: Path, base: str) -> list[tuple[str, str]]:
    """[(who, link)]: the instructor's link first, then each project's join link."""
    book = TokenBook(data_dir)
    with CampStore(data_dir) as store:
        projects = [p["id"] for p in store.list_projects() if p["kind"] == "team"]
    return [("instructor", f"{base}?token={book.instructor}"),
            *[(p, f"{base}?token={book.team_token(p)}") for p in projects]]


def print_links(data_dir: Path, host: str, port: int, qr: bool = True) -> None:
    """Print how to reach the camp: the local URL, or (LAN) every join link with a QR code."""
    if is_loopback(host):
        print(f"camp: http://{host}:{port}/  (this machine only; no tokens needed)")
        return
    base = public_url(host, port)
    print(f"camp on the network: {base}  -- every request needs a token; keep the "
          "instructor link to yourself")
    for who, link in join_links(data_dir, base):
        print(f"  {who:12s} {link}")
        if qr and who != "instructor":
            import segno

            segno.make(link, error="m").terminal(compact=True)


def recorded(data_dir: Path | str) -> dict | None:
    """What the last `serve_camp` on `data_dir` recorded in server.json: {"url", "host",
    "port", "lan", "pid", "started"}; None when no server has (or the file is unreadable)."""
    try:
        info = json.loads((Path(data_dir) / SERVER_FILE).read_text("utf-8"))
        return info if isinstance(info, dict) and isinstance(info.get("url"), str) else None
    except (OSError, ValueError):
        return None


@contextmanager
def sole_server(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/serve.lock` for the block, or raise CampBusy at once: two servers on
    one camp would each believe they own its writer. (The CLI's other commands do not take it.)
    """
    with ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(data_dir / SERVE_LOCK, wait=False))
        except BlockingIOError:
            other = recorded(data_dir)
            who = f" (pid {other.get('pid')}, {other['url']})" if other else ""
            raise CampBusy(f"another `dlcamp camp serve`{who} is already serving "
                           f"{data_dir.resolve()}: stop it first, or serve another "
                           "--data") from None
        yield


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), or BadArgument naming the fix (port taken, ...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, small answers on a keep-alive connection
    # wait for the client's delayed ACK (40 ms each on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        hint = f"; try --port {port + 10}" if e.errno == errno.EADDRINUSE else ""
        raise BadArgument(f"cannot listen on {host} port {port}: {e.strerror}{hint}") from None
    return sock


def serve_camp(data_dir: Path | str, host: str = "127.0.0.1", port: int = 8080,
               qr: bool = True) -> None:
    """Serve the camp in `data_dir` (created, and said so, if missing) until Ctrl-C. Records
    its public base URL in `<data_dir>/server.json` (for `dlcamp camp tokens`). Raises CampBusy
    when another server holds the camp, BadArgument when the port cannot be had."""
    import uvicorn

    from dlcamp.camp.api import create_app

    data_dir = Path(data_dir)
    fresh = not (data_dir / DB_NAME).exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    with sole_server(data_dir), listen(host, port) as sock:
        port = sock.getsockname()[1]  # the real one, had port been 0
        lan = not is_loopback(host)
        url = public_url(host, port)
        app = create_app(data_dir, lan=lan, public_url=url if lan else None)
        info = {"url": url, "host": host, "port": port, "lan": lan, "pid": os.getpid(),
                "started": datetime.now(UTC).isoformat(timespec="seconds")}
        atomic_write_bytes(data_dir / SERVER_FILE, json.dumps(info, indent=1).encode())
        if fresh:
            print(f"new camp created in {data_dir.resolve()} (there was none): add the teams' "
                  "projects with `dlcamp camp new` or on the page")
        print(f"camp data: {data_dir.resolve()} (back it up with `dlcamp camp backup`)")
        print_links(data_dir, host, port, qr)
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                http="httptools" if _has("httptools") else "h11")
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly; so do we
            pass


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
