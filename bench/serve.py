"""Load test of `dlcamp serve` against the obvious baseline, with wrk on loopback.

    python bench/serve.py                    # ~3 min; writes docs/benchmarks.md
    python bench/serve.py --quick            # 3 s per run; docs/ untouched
    python bench/serve.py --run runs/demo    # serve this run (default: train the default CNN
                                             # for 1 quick epoch: same network, speed is what
                                             # is measured here)

Every configuration runs as a real server process on 127.0.0.1 and gets the same load: wrk
with 2 threads and 16 connections posting a small PNG (a 28x28 Fashion-MNIST test image) as
multipart/form-data to /predict, after a 2 s warm-up. wrk runs on the same 2 cores as the
server. Reported: requests/s, latency p50/p99, and responses that were not 2xx (5xx counted
apart). The baseline (bench/serve_baseline.py) is one synchronous FastAPI endpoint with PIL
decode and eager PyTorch in one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import markdown_table, parser, replace_section, report
from machine import describe, describe_markdown
from procs import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "dlcampbenchboundary"
LUA_TAIL = r'''
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors5xx = 0 end
function response(status, headers, body)
  if status >= 500 then errors5xx = errors5xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("errors5xx") end
  io.write(string.format("RESULT %d %d %d %f %f %f\n", summary.requests,
    summary.errors.status, n, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3))
end
'''


def lua_script(image: bytes) -> str:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + image + \
        f"\r\n--{BOUNDARY}--\r\n".encode()
    escaped = "".join(f"\\{b}" for b in body)  # Lua decimal escapes: binary-safe
    return (f'wrk.method = "POST"\nwrk.body = "{escaped}"\n'
            f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
            + LUA_TAIL)


@contextlib.contextmanager
def server(command: list[str], port: int, env: dict[str, str]):
    with running_server(command, f"http://127.0.0.1:{port}/docs", env, cwd=ROOT / "bench"):
        yield f"http://127.0.0.1:{port}"


def wrk(url: str, script: Path, seconds: float, connections: int = 16) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s",
                          str(script), url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, non2xx, errors5xx = int(m[1]), int(m[2]), int(m[3])
    seconds_run = float(m[4])
    return {"requests": requests, "rps": requests / seconds_run, "non_2xx": non2xx,
            "errors_5xx": errors5xx, "p50_ms": float(m[5]), "p99_ms": float(m[6])}


def bad_input_sweep(base: str, image: bytes) -> dict[str, Any]:
    """Every hard request of dlcamp.serve.badinput against the real server: malformed ones
    (a 4xx expected) and unusual but valid images (200 expected)."""
    import http.client

    from dlcamp.serve.badinput import malformed_requests, unusual_images

    host, port = base.removeprefix("http://").split(":")
    cases = malformed_requests(image) + unusual_images(image)
    statuses = []
    for case in cases:
        # http.client, not urllib: a server may answer 413 before the whole body is sent,
        # and the answer must still be read.
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/predict")
        if case.content_type:
            conn.putheader("Content-Type", case.content_type)
        conn.putheader("Content-Length", str(len(case.body)))
        conn.endheaders()
        try:
            conn.send(case.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is waiting
        try:
            statuses.append((case.name, conn.getresponse().status))
        except (ConnectionResetError, http.client.RemoteDisconnected):
            statuses.append((case.name, 0))  # 0: the connection was cut without an answer
        conn.close()
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
        alive = r.status == 200
    expected = sum(case.status == c for case, (_, c) in zip(cases, statuses, strict=True))
    return {"requests": len(statuses), "as_expected": expected,
            "2xx": sum(200 <= c < 300 for _, c in statuses),
            "4xx": sum(400 <= c < 500 for _, c in statuses),
            "5xx": sum(c >= 500 for _, c in statuses),
            "no_answer": sum(c == 0 for _, c in statuses), "alive_after": alive,
            "statuses": statuses}


def configurations(run: Path, onnx: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    py = sys.executable
    ours = [py, "-m", "dlcamp", "serve"]
    return [
        ("baseline: sync endpoint, PIL, eager PyTorch, 1 process",
         [py, "-m", "uvicorn", "serve_baseline:app", "--log-level", "warning",
          "--no-access-log"], {"DLCAMP_BASELINE_RUN": str(run)}),
        ("dlcamp, PyTorch eager, 1 worker, no batching", ours + [str(run), "--no-batching"], {}),
        ("dlcamp, PyTorch eager, 1 worker, micro-batching", ours + [str(run)], {}),
        ("dlcamp, onnxruntime, 1 worker, no batching", ours + [str(onnx), "--no-batching"], {}),
        ("dlcamp, onnxruntime, 1 worker, micro-batching", ours + [str(onnx)], {}),
        ("dlcamp, onnxruntime, 2 workers, no batching",
         ours + [str(onnx), "--workers", "2", "--no-batching"], {}),
        ("dlcamp, onnxruntime, 2 workers, micro-batching", ours + [str(onnx), "--workers", "2"],
         {}),
        ("dlcamp, PyTorch eager, 2 workers, micro-batching", ours + [str(run), "--workers", "2"],
         {}),
    ]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--run", type=Path, help="run directory to serve (default: train one)")
    p.add_argument("--seconds", type=float, default=10.0, help="wrk duration per configuration")
    args = p.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            subprocess.run([sys.executable, "-m", "dlcamp", "train", "--model", "cnn", "--quick",
                            "--epochs", "1", "--out", str(run)], check=True,
                           capture_output=True, env={**os.environ, "DLCAMP_QUIET": "1"})
        onnx = Path(tmp) / "model.onnx"
        subprocess.run([sys.executable, "-m", "dlcamp", "export", str(run), "--out", str(onnx)],
                       check=True, capture_output=True)
        import io

        from PIL import Image

        from dlcamp.data import load_dataset

        buffer = io.BytesIO()
        Image.fromarray(load_dataset("fashion-mnist", "test").images[0, 0].numpy()).save(
            buffer, "PNG")
        image = buffer.getvalue()
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(image))
        rows = []
        for name, command, env in configurations(run, onnx):
            port = free_port()
            command = command + ["--port", str(port)]
            with server(command, port, env) as base:
                wrk(f"{base}/predict", script, 2.0)  # warm-up
                row = {"config": name, **wrk(f"{base}/predict", script, seconds)}
                with urllib.request.urlopen(f"{base}/docs", timeout=5) as r:
                    row["alive_after"] = r.status == 200
                if not rows[1:] and name.startswith("dlcamp"):  # once, on our first server
                    sweep = bad_input_sweep(base, image)
            print(json.dumps(row), flush=True)
            rows.append(row)
    baseline = rows[0]["rps"]
    for row in rows:
        row["vs_baseline"] = row["rps"] / baseline
    md = markdown_table(rows, [
        ("configuration", "config", ""), ("requests/s", "rps", ",.0f"),
        ("x baseline", "vs_baseline", ".2f"), ("p50 ms", "p50_ms", ".1f"),
        ("p99 ms", "p99_ms", ".1f"), ("requests", "requests", ","),
        ("non-2xx", "non_2xx", "d"), ("5xx", "errors_5xx", "d")])
    sweep_md = (f"Bad-input sweep against `dlcamp serve` (the real process): "
                f"{sweep['requests']} hard requests (dlcamp.serve.badinput: malformed ones "
                f"and unusual but valid images), {sweep['as_expected']} answered as expected, "
                f"{sweep['2xx']} answered 2xx, {sweep['4xx']} 4xx, {sweep['5xx']} 5xx, "
                f"{sweep['no_answer']} cut without an answer, server alive "
                f"after: {sweep['alive_after']}. Statuses: "
                + ", ".join(f"{n} {c}" for n, c in sweep["statuses"]) + ".")
    md = f"{md}\n\n{sweep_md}"
    report(args, "serve", rows, md, {"png_bytes": len(image), "sweep": sweep})
    if not args.quick:
        body = (f"Command: `python bench/serve.py --seconds {seconds:g}`. wrk -t2 -c16, "
                f"{seconds:g} s per configuration after a 2 s warm-up, multipart POST of a "
                f"{len(image)}-byte PNG; server and wrk share the 2 cores.\n\n{md}\n\n"
                f"{describe_markdown(describe())}")
        replace_section(ROOT / "docs" / "benchmarks.md", "serve-load", body)


if __name__ == "__main__":
    main()
