"""Servers the benchmarks start as real processes: a free port, and a process that is ready
when a URL answers (bench/serve.py, bench/camp.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(command: list[str], ready_url: str, env: dict[str, str] | None = None,
                   cwd: Path | None = None, seconds: float = 120) -> Iterator[subprocess.Popen]:
    """Start `command`, wait until `ready_url` answers (RuntimeError with the server's stderr
    if it exits or `seconds` pass first), yield the process; terminate it afterwards."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[-1]!r} did not start: "
                                       f"{proc.stderr.read().decode()}") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
