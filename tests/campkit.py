"""What the camp tests share: phone-like photos from the scene synthesiser, an in-process client,
and a real `dlcamp camp serve` process."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [{"name": "apple", "name_zh": "苹果"}, {"name": "mug", "name_zh": "杯子"},
           {"name": "pen", "name_zh": "笔"}]
CSRF = {"X-Camp": "1"}


@lru_cache(maxsize=1)
def _scenes() -> tuple[np.ndarray, np.ndarray]:
    from dlcamp.vision.scene_sets import load_scene_set

    scenes = load_scene_set("fruit-1", "test", n=8)
    return scenes.images.permute(0, 2, 3, 1).numpy(), scenes.boxes.numpy()


def phone_photo(i: int, side: int = 960, orientation: int = 6) -> bytes:
    """Scene i (of 8, then varied by i) as a phone stores it: `side` px JPEG, the sensor's
    pixels turned and an EXIF orientation tag saying how to show them upright (6: turn 90
    degrees clockwise). Distinct bytes for each i."""
    images, _ = _scenes()
    pixels = images[i % len(images)].copy()
    pixels[0, 0] = (i * 37 % 256, i // 7 % 256, 255 - i % 256)  # make every photo unique
    upright = Image.fromarray(pixels).resize((side, side * 3 // 4))
    stored = upright.rotate(90, expand=True) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def edit_id() -> str:
    return uuid.uuid4().hex


def box_body(label: int, x1: float, y1: float, x2: float, y2: float,
             base_version: int = 0, eid: str | None = None) -> dict:
    return {"edit_id": eid or edit_id(), "base_version": base_version, "label": label,
            "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def camp_process(data: Path, port: int | None = None, host: str = "127.0.0.1"):
    """`dlcamp camp serve` in a real process; yields (base URL, Popen). Killed at the end."""
    port = port or free_port()
    env = dict(os.environ, DLCAMP_QUIET="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "dlcamp", "camp", "serve", "--data",
                             str(data), "--host", host, "--port", str(port), "--no-qr"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stdout:
            proc.stdout.close()


def wait_until_up(base: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"camp server exited with {proc.returncode}: {out[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"camp server at {base} did not answer in {seconds} s")
