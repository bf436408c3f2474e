"""`make lab` end to end: JupyterLab serves the exported lessons and lesson 1 runs cell by cell.

This drives the server the way the browser does: the /lab page, the contents API, a session
with a kernel, and execute requests over the kernel's websocket, one per code cell.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from dlcamp.course.lessons import export_lesson, find_lesson

pytest.importorskip("jupyterlab")
websocket = pytest.importorskip("websocket")
TOKEN = uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None) -> dict | str:
    request = urllib.request.Request(f"{base}{path}", method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"token {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if "json" in response.headers.get("Content-Type", "") else text


def execute(ws, code: str, session: str) -> tuple[str, list[dict]]:
    """Send one execute_request; return the reply status and the iopub errors it caused."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                   "username": "learner", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    errors = []
    while True:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            errors.append(msg["content"])
        if msg["msg_type"] == "execute_reply":
            return msg["content"]["status"], errors


@pytest.fixture
def lab_server(tmp_path):
    root = tmp_path / "notebooks"
    notebook = export_lesson(find_lesson("1.01"), root)
    port = free_port()
    env = {**os.environ, "DLCAMP_QUICK": "1", "DLCAMP_QUIET": "1",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    env.pop("MPLBACKEND", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--ip", "127.0.0.1", "--port", str(port),
         "--no-browser", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                api(base, "/api/status")
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(server.stderr.read().decode()[-2000:])
                time.sleep(0.5)
        yield base, notebook.relative_to(root).as_posix()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_lab_serves_lesson_one_and_runs_every_cell(lab_server):
    base, name = lab_server
    assert "JupyterLab" in api(base, "/lab")
    content = api(base, f"/api/contents/{name}")["content"]
    cells = [c for c in content["cells"] if c["cell_type"] == "code"]
    assert len(cells) > 5
    session = api(base, "/api/sessions", {"path": name, "type": "notebook", "name": name,
                                          "kernel": {"name": "python3"}})
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws')}/api/kernels/{session['kernel']['id']}/channels"
        f"?token={TOKEN}", timeout=300)
    try:
        for cell in cells:
            status, errors = execute(ws, "".join(cell["source"]), session["id"])
            assert status == "ok" and not errors, (cell["source"], errors)
        status, _ = execute(ws, "import os; assert os.getcwd().endswith('part1')", session["id"])
        assert status == "ok"
    finally:
        ws.close()
