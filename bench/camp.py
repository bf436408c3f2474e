"""Load test of the camp's annotation API: box edits from 16 concurrent clients on loopback.

    python bench/camp.py                 # ~3 min with the waits; writes docs/benchmarks.md
    python bench/camp.py --quick         # 3 s per run; docs/ and bench/results/ untouched

The bar (issue 15): >= 500 box edits/s sustained with 16 concurrent clients on 2 cores, p99
latency reported, zero lost or duplicated edits, zero 5xx. `dlcamp camp serve` runs as a
real process; the clients run in this process, an asyncio event loop with one keep-alive
HTTP/1.1 connection per client, and SHARE THE 2 CORES with the server (their CPU time is
reported). Client i edits the boxes of image i: 30% creates, 55% moves, 15% deletes, each a
PUT or DELETE with a fresh edit_id and the box's current version, so every edit must answer
200. Afterwards every box is read back and compared with what the clients were told, the
project's change counter must have moved by exactly the number of acknowledged edits, and a
sample of edits is replayed (same edit_id: same answer, nothing applied twice).

Before each measurement the script waits for the 1-minute load average to drop below 1.5
(the machine is shared) and records it. Also measured: the client's own CPU cost (raw asyncio
streams vs httpx.AsyncClient), uvicorn with httptools (what `dlcamp camp serve` picks when it
is installed) vs h11, and the bad-input sweep (dlcamp.camp.badinput) against the live server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from common import markdown_table, parser, replace_section, report
from machine import describe, describe_markdown
from procs import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [{"name": "apple", "name_zh": "苹果"}, {"name": "mug", "name_zh": "杯子"},
           {"name": "pen", "name_zh": "笔"}]
H11_SERVER = ("import sys, uvicorn; from dlcamp.camp.api import create_app; "
              "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), "
              "http='h11', log_level='warning', access_log=False)")


def wait_idle(limit: float = 1.5, most: float = 900) -> float:
    """Wait (at most `most` s) until the 1-minute load average is below `limit` and the
    machine was nearly idle (< 0.25 cores busy) for the last 2 s; return the load average."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        busy = busy_seconds()
        time.sleep(2)
        if os.getloadavg()[0] < limit and busy_seconds() - busy < 0.5:
            break
        time.sleep(3)
    return os.getloadavg()[0]


def busy_seconds() -> float:
    """CPU seconds spent by everything on the machine so far, all cores (Linux /proc/stat)."""
    user, nice, system, _, _, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def camp_server(data: Path, http: str = "cli", host: str = "127.0.0.1"):
    """A camp server process -> (base URL, pid). http: "cli" runs `dlcamp camp serve` (it
    picks httptools when installed), "h11" the same app under uvicorn's h11 parser."""
    port = free_port()
    command = [sys.executable, "-m", "dlcamp", "camp", "serve", "--data", str(data), "--host",
               host, "--port", str(port), "--no-qr"] if http == "cli" else \
        [sys.executable, "-c", H11_SERVER, str(data), str(port)]
    base = f"http://127.0.0.1:{port}"
    with running_server(command, f"{base}/healthz", {"DLCAMP_QUIET": "1"}) as proc:
        yield base, proc.pid


def parser_loaded(pid: int) -> str:
    """Which HTTP parser the server process has loaded: httptools' C module or h11."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "httptools" if "httptools" in maps else "h11"


def api(base: str, method: str, path: str, body: object = None, token: str = "",
        files: list[bytes] | None = None) -> object:
    """One request with urllib (set-up and checks, not the load) -> the JSON answer."""
    from dlcamp.camp.badinput import MULTIPART, multipart

    headers = {"X-Camp": "1", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None
    if files is not None:
        data = multipart("files", [(f"IMG_{k:04d}.jpg", f, "image/jpeg")
                                   for k, f in enumerate(files)])
        headers["Content-Type"] = MULTIPART
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(base + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def photos(n: int) -> list[bytes]:
    """n distinct 1024 x 768 JPEGs (noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(
            buffer, "JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


def set_up(base: str, n_images: int, token: str = "", pid: str = "bench") -> tuple[list, str]:
    made = api(base, "POST", "/api/projects", {"id": pid, "name": pid, "classes": CLASSES},
               token)
    got = api(base, "POST", f"/api/projects/{pid}/images", token=token,
              files=photos(n_images))
    return [f["image"] for f in got["images"]], made["token"]


# ---------------------------------------------------------------- the clients
class RawConnection:
    """HTTP/1.1 keep-alive over asyncio streams: the cheapest client Python has."""

    def __init__(self, base: str):
        self.host, self.port = urlsplit(base).hostname, urlsplit(base).port
        self.reader = self.writer = None

    async def call(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-Camp: 1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n")
        self.writer.write(head.encode() + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        at = header.lower().index(b"content-length:") + 15
        size = int(header[at:header.index(b"\r\n", at)])
        return int(header[9:12]), await self.reader.readexactly(size)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxConnection:
    """The same calls through one shared httpx.AsyncClient."""

    def __init__(self, client):
        self.client = client

    async def call(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        r = await self.client.request(method, path, content=body, headers={
            "X-Camp": "1", "Content-Type": "application/json"})
        return r.status_code, r.content

    async def close(self) -> None:
        pass


class Editor:
    """One annotator: creates, moves and deletes its own boxes on one image."""

    def __init__(self, k: int, image: dict, pid: str, tag: str):
        self.k, self.image, self.pid, self.prefix = k, image, pid, f"{tag}{k}-"
        self.rng = random.Random(k)
        self.live: dict[str, dict] = {}
        self.made = 0
        self.acked: list[tuple[str, str, bytes | None, bytes]] = []

    def next_edit(self) -> tuple[str, str, bytes | None, dict | None]:
        """(method, path, body, the box expected back or None for a delete)."""
        rng, w, h = self.rng, self.image["width"], self.image["height"]
        r = rng.random()
        path = f"/api/projects/{self.pid}/images/{self.image['id']}/boxes/"
        eid = uuid.uuid4().hex
        if len(self.live) > 3 and (r > 0.85 or len(self.live) > 40):
            bid = rng.choice(list(self.live))
            return ("DELETE", f"{path}{bid}?edit_id={eid}&base_version="
                    f"{self.live[bid]['version']}", None, None)
        if self.live and r > 0.30:
            bid = rng.choice(list(self.live))
            base, version = self.live[bid]["version"], self.live[bid]["version"] + 1
        else:
            bid, base, version = f"{self.prefix}{self.made}", 0, 1
            self.made += 1
        x1, y1 = rng.uniform(0, w - 40), rng.uniform(0, h - 40)
        box = {"id": bid, "label": rng.randrange(3), "x1": x1, "y1": y1,
               "x2": rng.uniform(x1 + 1, w), "y2": rng.uniform(y1 + 1, h), "version": version}
        body = {"edit_id": eid, "base_version": base,
                **{k: box[k] for k in ("label", "x1", "y1", "x2", "y2")}}
        return "PUT", path + bid, json.dumps(body).encode(), box

    def settle(self, method: str, path: str, body: bytes | None, expected: dict | None,
               answer: bytes) -> bool:
        """Apply an acknowledged edit to the model; False if the answer is not the expected."""
        bid = path.rsplit("/", 1)[1].split("?")[0]
        if expected is None:
            ok = json.loads(answer) == {"deleted": bid}
            self.live.pop(bid, None)
        else:
            ok = json.loads(answer) == expected
            self.live[bid] = expected
        self.acked.append((method, path, body, answer))
        return ok


async def load(base: str, images: list[dict], seconds: float, clients: int = 16,
               kind: str = "raw", tag: str = "e", pid: str = "bench") -> dict:
    """Run `clients` editors for `seconds` -> throughput, latencies, statuses, the editors.
    `tag` starts every box id the run makes (runs on one server need different tags)."""
    import httpx

    shared = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=clients),
                               timeout=60) if kind == "httpx" else None
    editors = [Editor(k, images[k % len(images)], pid, tag) for k in range(clients)]
    latencies, ends, statuses, wrong = [], [], Counter(), []
    stop = time.perf_counter() + seconds

    async def run(editor: Editor) -> None:
        conn = HttpxConnection(shared) if shared else RawConnection(base)
        while time.perf_counter() < stop:
            method, path, body, expected = editor.next_edit()
            start = time.perf_counter()
            try:
                status, answer = await conn.call(method, path, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                statuses["transport error"] += 1
                wrong.append(f"{method} {path}: {e!r}")
                return
            end = time.perf_counter()
            latencies.append(end - start)
            ends.append(end)
            statuses[status] += 1
            if status != 200:
                wrong.append(f"{method} {path} -> {status} {answer[:200]!r}")
            elif not editor.settle(method, path, body, expected, answer):
                wrong.append(f"{method} {path}: answered {answer[:200]!r}, not {expected}")
        await conn.close()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(run(e) for e in editors))
    wall, client_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if shared:
        await shared.aclose()
    latencies.sort()
    per_second = Counter(int(e - t0) for e in ends if e - t0 < int(wall))
    windows = [per_second[s] for s in range(int(wall))] or [len(ends)]
    return {"client": kind, "clients": clients, "seconds": wall, "edits": len(latencies),
            "edits_per_s": len(latencies) / wall, "min_1s_window": min(windows),
            "median_1s_window": statistics.median(windows), "windows": windows,
            "p50_ms": 1e3 * latencies[len(latencies) // 2],
            "p99_ms": 1e3 * latencies[int(len(latencies) * 0.99)],
            "max_ms": 1e3 * latencies[-1], "5xx": sum(n for s, n in statuses.items()
                                                      if isinstance(s, int) and s >= 500),
            "statuses": {str(s): n for s, n in statuses.items()}, "wrong": wrong[:10],
            "client_cpu_s": client_cpu, "client_cpu_ms_per_edit":
                1e3 * client_cpu / max(1, len(latencies)), "editors": editors}


def verify(base: str, result: dict, seq_before: int, pid: str = "bench") -> dict:
    """Read every box back; replay a sample of edits. -> counts of lost/extra/wrong boxes."""
    editors = result.pop("editors")
    acked = sum(len(e.acked) for e in editors)
    seq = api(base, "GET", f"/api/projects/{pid}")["seq"]
    mismatched = 0
    for e in editors:
        got = {b["id"]: b for b in api(base, "GET", f"/api/projects/{pid}/images/"
                                       f"{e.image['id']}")["boxes"] if b["id"].startswith(e.prefix)}
        mismatched += sum(got.get(b) != box for b, box in e.live.items()) + \
            len(set(got) - set(e.live))
    rng = random.Random(0)
    sample = rng.sample([a for e in editors for a in e.acked], min(200, acked))
    replay_wrong = 0
    conn = RawConnection(base)

    async def replay() -> int:
        bad = 0
        for method, path, body, answer in sample:
            status, again = await conn.call(method, path, body)
            bad += (status, json.loads(again)) != (200, json.loads(answer))
        await conn.close()
        return bad

    replay_wrong = asyncio.run(replay())
    seq_after = api(base, "GET", f"/api/projects/{pid}")["seq"]
    return {"acknowledged": acked, "applied_by_server": seq - seq_before,
            "boxes_wrong_or_extra": mismatched, "replays": len(sample),
            "replays_wrong": replay_wrong, "applied_by_replays": seq_after - seq}


# where the server's GIL time goes: (category, path fragments); the deepest frame matching
# any fragment decides a sample's category
PROFILE_CATEGORIES = [
    ("writer: the edit's SQL", ("camp/boxes.py", "camp/edits.py", "camp/reads.py")),
    ("writer: batching, COMMIT, futures", ("camp/writer.py",)),
    ("thread-pool hops (sync dependencies)", ("to_thread.py", "anyio/_backends")),
    ("pydantic validation", ("pydantic/",)),
    ("FastAPI: dependencies, parameters, body", ("fastapi/dependencies/",
                                                 "get_request_handler", "Request.body")),
    ("response serialisation", ("serialize_response", "jsonable_encoder", "JSONResponse")),
    ("camp endpoints, guard, store.submit", ("camp/api.py", "camp/storage.py",
                                             "camp/guard.py")),
    ("Starlette/FastAPI middleware, routing", ("starlette/", "fastapi/", "uvicorn/middleware")),
    ("uvicorn protocol, httptools/h11", ("uvicorn/protocols", "httptools", "h11/")),
    ("asyncio loop, sockets, wake-ups", ("asyncio/", "selectors.py")),
    ("threading, queues", ("threading.py", "queue.py")),
]


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """py-spy sampling the GIL holder of `pid` for `seconds` (None if py-spy is missing)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("--profile: py-spy is not installed (pip install py-spy)")
        return None
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "200", "--gil", "--threads", "--nonblocking", "--format",
                             "raw", "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def profile_shares(raw: Path) -> dict[str, float]:
    """py-spy's raw stacks -> {category: share of the samples that held the GIL}."""
    counts, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        name = "other"
        for frame in reversed(stack.split(";")):
            hit = [c for c, keys in PROFILE_CATEGORIES if any(k in frame for k in keys)]
            if hit:
                name = hit[0]
                break
        counts[name] += int(n)
        total += int(n)
    return {name: n / total for name, n in counts.most_common()}


def sweep(base: str, lan: str, lan_data: Path, image: dict) -> dict:
    """Every request of dlcamp.camp.badinput against the live servers (loopback and LAN)."""
    from dlcamp.camp.auth import TokenBook
    from dlcamp.camp.badinput import Target, malformed_requests, send

    box = api(base, "PUT", f"/api/projects/bench/images/{image['id']}/boxes/sweep-box",
              {"edit_id": uuid.uuid4().hex, "base_version": 0, "label": 1, "x1": 5.0,
               "y1": 5.0, "x2": 40.0, "y2": 40.0})
    boss = TokenBook(lan_data).instructor
    _, red = set_up(lan, 1, boss, "red")
    set_up(lan, 1, boss, "blue")
    cases = malformed_requests(Target("bench", image["id"], image["width"], image["height"],
                                      "sweep-box", box["version"], "red", "blue", red))
    statuses = []
    for case in cases:
        url = urlsplit(lan if case.lan else base)
        statuses.append((case.name, case.status, *send(url.hostname, url.port, case)))
    alive = all(api(u, "GET", "/healthz")["status"] == "ok" for u in (base, lan))
    return {"requests": len(cases), "as_expected": sum(e == s for _, e, s, _ in statuses),
            "with_reason": sum(bool(r) for *_, r in statuses),
            "4xx": sum(400 <= s < 500 for _, _, s, _ in statuses),
            "5xx": sum(s >= 500 for _, _, s, _ in statuses),
            "no_answer": sum(s == 0 for _, _, s, _ in statuses), "alive_after": alive,
            "statuses": [{"name": n, "expected": e, "got": s, "detail": r}
                         for n, e, s, r in statuses]}


def measure(base: str, pid: int, images: list, seconds: float, kind: str, tag: str,
            quick: bool) -> dict:
    """One timed load after the machine is idle, with the server's CPU time."""
    load_avg = os.getloadavg()[0] if quick else wait_idle()
    cpu, busy = cpu_seconds(pid), busy_seconds()
    row = asyncio.run(load(base, images, seconds, kind=kind, tag=tag))
    row["server_cpu_s"] = cpu_seconds(pid) - cpu
    row["others_cpu_s"] = busy_seconds() - busy - row["server_cpu_s"] - row["client_cpu_s"]
    row["load_avg_before"] = load_avg
    row["server_cpu_ms_per_edit"] = 1e3 * row["server_cpu_s"] / max(1, row["edits"])
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, help="the main run (default 25 s, --quick 3 s)")
    p.add_argument("--compare-seconds", type=float,
                   help="each client/parser comparison run (default 8 s, --quick 2 s)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--profile", action="store_true", help="sample the server with py-spy "
                   "during the main run: where its GIL time goes (the run is slower then)")
    args = p.parse_args()
    if args.out is None and not args.quick:  # a smoke run leaves the measured results alone
        args.out = ROOT / "bench" / "results" / "camp.json"
    seconds = args.seconds or (3 if args.quick else 25)
    short = args.compare_seconds or (2 if args.quick else 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with camp_server(tmp / "main") as (base, pid):
            parser_name = parser_loaded(pid)
            images, _ = set_up(base, args.clients)
            asyncio.run(load(base, images, 1.0, tag="w"))  # warm-up
            for kind in ("raw", "httpx"):
                row = measure(base, pid, images, short, kind, kind[0], args.quick)
                row.pop("editors")
                rows.append({"run": f"{kind} client, {parser_name}", **row})
                print(json.dumps(rows[-1]), flush=True)
            best = min(rows, key=lambda r: r["client_cpu_ms_per_edit"])["client"]
            seq = api(base, "GET", "/api/projects/bench")["seq"]
            spy = start_profile(pid, seconds - 2, tmp / "spy.txt") if args.profile else None
            main_row = measure(base, pid, images, seconds, best, "m", args.quick)
            profile = profile_shares(tmp / "spy.txt") if spy and spy.wait() == 0 else None
            checks = verify(base, main_row, seq)
            main_row = {"run": f"MAIN: {best} client, {parser_name}", **main_row, **checks}
            rows.append(main_row)
            print(json.dumps(main_row), flush=True)
            with camp_server(tmp / "lan", host="0.0.0.0") as (lan, _):
                swept = sweep(base, lan, tmp / "lan", images[0])
        with camp_server(tmp / "h11", http="h11") as (base, pid):
            images, _ = set_up(base, args.clients)
            asyncio.run(load(base, images, 1.0, tag="w"))
            row = measure(base, pid, images, short, "raw", "h", args.quick)
            row.pop("editors")
            rows.append({"run": f"raw client, {parser_loaded(pid)}", **row})
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["server_cpu_share"] = row["server_cpu_s"] / row["seconds"] / 2
        row["client_cpu_share"] = row["client_cpu_s"] / row["seconds"] / 2
        row["others_cpu_share"] = max(0.0, row["others_cpu_s"]) / row["seconds"] / 2
    md = markdown_table(rows, [
        ("run", "run", ""), ("s", "seconds", ".1f"), ("load before", "load_avg_before", ".2f"),
        ("edits/s", "edits_per_s", ",.0f"), ("slowest 1 s", "min_1s_window", ","),
        ("p50 ms", "p50_ms", ".1f"), ("p99 ms", "p99_ms", ".1f"), ("max ms", "max_ms", ".0f"),
        ("edits", "edits", ","), ("5xx", "5xx", "d"),
        ("server CPU ms/edit", "server_cpu_ms_per_edit", ".2f"),
        ("client CPU ms/edit", "client_cpu_ms_per_edit", ".2f"),
        ("CPU: server", "server_cpu_share", ".0%"), ("client", "client_cpu_share", ".0%"),
        ("rest of machine", "others_cpu_share", ".0%")])
    m = main_row
    bar = m["min_1s_window"] >= 500 and m["5xx"] == 0 and not m["wrong"]
    lost = m["acknowledged"] - m["applied_by_server"]
    checks_md = (
        f"Main run read back: {m['acknowledged']:,} edits acknowledged, "
        f"{m['applied_by_server']:,} applied by the server (change counter), "
        f"{m['boxes_wrong_or_extra']} boxes lost, wrong or extra; {m['replays']} edits replayed "
        f"with their edit_id: {m['replays_wrong']} answered differently, "
        f"{m['applied_by_replays']} applied twice. Non-200 answers: "
        f"{sum(n for s, n in m['statuses'].items() if s != '200')}. "
        f"Bar (>= 500 edits/s in every 1-s window, 0 5xx, 0 lost or duplicated): "
        f"{'met' if bar and lost == 0 and m['boxes_wrong_or_extra'] == 0 else 'MISSED'}.")
    sweep_md = (f"Bad-input sweep against the live servers (dlcamp.camp.badinput, loopback and "
                f"LAN mode): {swept['requests']} malformed requests and imports, "
                f"{swept['as_expected']} answered with the expected status, "
                f"{swept['with_reason']} with a reason, {swept['4xx']} 4xx, {swept['5xx']} 5xx, "
                f"{swept['no_answer']} cut without an answer; servers alive after: "
                f"{swept['alive_after']}.")
    md = f"{md}\n\n{checks_md}\n\n{sweep_md}"
    if profile:
        md += ("\n\nServer profile of the main run (py-spy --gil, share of the samples in which "
               "a server thread held the GIL): " + ", ".join(
                   f"{name} {share:.0%}" for name, share in profile.items()) + ".")
    report(args, "camp", rows, md, {"sweep": swept, "bar_met": bar, "profile": profile})
    if not args.quick:
        body = (f"Command: `python bench/camp.py --seconds {seconds:g}`. {args.clients} "
                f"clients (asyncio, one keep-alive connection each) against `dlcamp camp serve` "
                f"on 127.0.0.1; clients and server share the 2 cores. Main run {seconds:g} s, "
                f"comparisons {short:g} s each, after a 1 s warm-up; each run started once the "
                f"1-minute load average was below 1.5 (column `load before`) and the last 2 s "
                f"had been nearly idle. CPU columns: shares of the 2 cores during the run; "
                f"`rest of machine` is everything else (other processes, and the kernel's "
                f"own work for this load: loopback, fsync).\n\n{md}\n\n"
                f"{describe_markdown(describe())}")
        replace_section(ROOT / "docs" / "benchmarks.md", "camp-load", body)


if __name__ == "__main__":
    main()
