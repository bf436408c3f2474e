"""Run a camp: `serve_camp(data_dir, host, port)` — uvicorn, one process, tokens printed.

One process on purpose: SQLite has one writer, and the group-commit writer thread
(writer.py) is the fastest way to give it edits; a second process would only queue behind it.
Bound to a loopback address the camp needs no tokens; bound to anything else (a classroom
LAN) it prints the instructor's link and each team's join link, with QR codes in the
terminal for phones, and refuses every API request without a token.
"""

from __future__ import annotations

import socket
from pathlib import Path

from dlcamp.camp.auth import TokenBook, is_loopback
from dlcamp.camp.storage import CampStore


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
    name = lan_address() if host in ("0.0.0.0", "::", "") else host
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/"


def join_links(data_dir: Path, base: str) -> list[tuple[str, str]]:
    """[(who, link)]: the instructor's link first, then each project's join link."""
    book = TokenBook(data_dir)
    with CampStore(data_dir) as store:
        projects = [p["id"] for p in store.list_projects()]
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


def serve_camp(data_dir: Path | str, host: str = "127.0.0.1", port: int = 8080,
               qr: bool = True) -> None:
    """Serve the camp in `data_dir` (created if missing) until Ctrl-C."""
    import uvicorn

    from dlcamp.camp.api import create_app

    data_dir = Path(data_dir)
    lan = not is_loopback(host)
    app = create_app(data_dir, lan=lan, public_url=public_url(host, port) if lan else None)
    print(f"camp data: {data_dir.resolve()} (back it up with `dlcamp camp backup`)")
    print_links(data_dir, host, port, qr)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                http="httptools" if _has("httptools") else "h11")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
