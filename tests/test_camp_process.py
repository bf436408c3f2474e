"""`dlcamp camp serve` as a real process on loopback: no acknowledged edit is lost to SIGKILL,
ten clients editing one project concurrently are each accounted for exactly, and every
malformed request of dlcamp.camp.badinput gets its 4xx with a reason."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from campkit import CLASSES, CSRF, camp_process, phone_photo
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.badinput import BOUNDARY, MULTIPART, Target, malformed_requests, send

TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class Api:
    """One keep-alive HTTP/1.1 connection to the camp, JSON in and out."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 30):
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.headers = dict(CSRF, **({"Authorization": f"Bearer {token}"} if token else {}))

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        answer = self.conn.getresponse()
        raw = answer.read()
        return answer.status, json.loads(raw) if raw else None

    def upload(self, pid: str, photos: list[bytes]) -> list[dict]:
        body = b"".join(
            (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
             f"filename=\"IMG_{k:04d}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
            + photo + b"\r\n" for k, photo in enumerate(photos)) + f"--{BOUNDARY}--\r\n".encode()
        self.conn.request("POST", f"/api/projects/{pid}/images", body=body,
                          headers=dict(self.headers, **{"Content-Type": MULTIPART}))
        answer = self.conn.getresponse()
        got = json.loads(answer.read())
        assert answer.status == 200, got
        return [f["image"] for f in got["images"]]

    def close(self) -> None:
        self.conn.close()


def new_project(api: Api, pid: str, photos: int) -> tuple[list[dict], str]:
    """Create project `pid` with the 3 test classes and `photos` phone photos
    -> (image JSONs, the team's join token)."""
    status, made = api.call("POST", "/api/projects", {"id": pid, "name": pid,
                                                      "classes": CLASSES})
    assert status == 201, made
    return api.upload(pid, [phone_photo(k) for k in range(photos)]), made["token"]


def live_boxes(api: Api, pid: str, images: list[dict]) -> dict[str, dict]:
    """Every live box of the images: box id -> box JSON plus "image"."""
    out = {}
    for image in images:
        status, got = api.call("GET", f"/api/projects/{pid}/images/{image['id']}")
        assert status == 200, got
        for b in got["boxes"]:
            assert b["id"] not in out
            out[b["id"]] = dict(b, image=image["id"])
    return out


def random_coords(rng: random.Random, image: dict) -> tuple[float, float, float, float]:
    """Four unrounded floats: no two edits ever send the same box."""
    w, h = image["width"], image["height"]
    x1, y1 = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
    return x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)


def box_of(body: dict, box_id: str, version: int) -> dict:
    return {"id": box_id, "label": body["label"], "x1": body["x1"], "y1": body["y1"],
            "x2": body["x2"], "y2": body["y2"], "version": version, "proposed": False,
            "score": None}  # a person's box: not a model's proposal


# ---------------------------------------------------------------- SIGKILL
@dataclass
class Writer:
    """A client that edits only its own boxes on one image, so every edit must succeed."""

    k: int
    image: dict
    acked: list = field(default_factory=list)  # (method, path, body, response)
    in_flight: tuple | None = None  # (box id, state before, state after, method, path, body)
    busy: bool = False
    error: str = ""

    def run(self, base: str, pid: str, stop: threading.Event) -> None:
        rng = random.Random(self.k)
        api = Api(base, timeout=10)
        live: dict[str, dict] = {}
        n = 0
        while not stop.is_set():
            if not live or rng.random() < 0.4:
                bid, n = f"w{self.k}-{n}", n + 1
                before, version = None, 1
                body = {"edit_id": uuid.uuid4().hex, "base_version": 0,
                        "label": rng.randrange(3)}
            else:
                bid = rng.choice(sorted(live))
                before, version = live[bid], live[bid]["version"] + 1
                body = {"edit_id": uuid.uuid4().hex, "base_version": before["version"],
                        "label": before["label"]}
            path = f"/api/projects/{pid}/images/{self.image['id']}/boxes/{bid}"
            if before is not None and rng.random() < 0.25:
                method, after = "DELETE", None
                path += f"?edit_id={body['edit_id']}&base_version={body['base_version']}"
                body = None
            else:
                method = "PUT"
                coords = random_coords(rng, self.image)
                body.update(zip(("x1", "y1", "x2", "y2"), coords, strict=True))
                after = box_of(body, bid, version)
            self.in_flight, self.busy = (bid, before, after, method, path, body), True
            try:
                status, got = api.call(method, path, body)
            except TRANSPORT_ERRORS:
                return  # killed: this edit's fate is unknown (in_flight says which it was)
            self.busy = False
            if status != 200 or (after is not None and got != after):
                self.error = f"{method} {path} -> {status} {got}, expected {after}"
                return
            self.in_flight = None
            self.acked.append((method, path, body, got))
            if after is None:
                del live[bid]
            else:
                live[bid] = after


def test_sigkill_mid_stream_loses_no_acknowledged_edit(tmp_path):
    data = tmp_path / "camp"
    with camp_process(data) as (base, proc):
        api = Api(base)
        images, _ = new_project(api, "kill", 3)
        writers = [Writer(k, images[k % 3]) for k in range(4)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(base, "kill", stop)) for w in writers]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while sum(len(w.acked) for w in writers) < 300 and time.monotonic() < deadline \
                and not any(w.error for w in writers):
            time.sleep(0.01)
        busy_at_kill = [w.busy for w in writers]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
        api.close()
    assert not [w.error for w in writers if w.error]
    assert sum(len(w.acked) for w in writers) >= 100
    assert any(busy_at_kill), "no request was in flight when the server was killed"

    # the expected state: the last acknowledged state of each box
    expected: dict[str, dict] = {}
    for w in writers:
        for method, path, _, got in w.acked:
            bid = path.split("/boxes/")[1].split("?")[0]
            if method == "DELETE":
                expected.pop(bid)
            else:
                expected[bid] = dict(got, image=w.image["id"])
    in_flight = [w for w in writers if w.in_flight is not None]
    with camp_process(data) as (base, proc):
        api = Api(base)
        found = live_boxes(api, "kill", images)
        # an in-flight edit was either committed (then acknowledged had the server lived)
        # or not applied at all: its box is in one of the two states, nothing in between
        unsure = {}
        for w in in_flight:
            bid, before, after = w.in_flight[:3]
            states = [None if s is None else dict(s, image=w.image["id"])
                      for s in (before, after)]
            assert found.get(bid) in states, (bid, found.get(bid), states)
            unsure[bid] = found.get(bid) == states[1]
        assert {b: v for b, v in found.items() if b not in unsure} == \
            {b: v for b, v in expected.items() if b not in unsure}
        # replays after the restart: acknowledged edits answer as before and change nothing;
        # the in-flight ones now finish exactly once
        rng = random.Random(0)
        sample = rng.sample([a for w in writers for a in w.acked], 40)
        for method, path, body, got in sample:
            assert api.call(method, path, body) == (200, got)
        for w in in_flight:
            bid, _, after, method, path, body = w.in_flight
            assert api.call(method, path, body) == (200, after or {"deleted": bid})
            if after is None:
                expected.pop(bid, None)
            else:
                expected[bid] = dict(after, image=w.image["id"])
        assert live_boxes(api, "kill", images) == expected
        api.close()
    print(f"SIGKILL: {sum(len(w.acked) for w in writers)} acknowledged edits kept, "
          f"{len(in_flight)} in flight ({sum(unsure.values())} of them had committed)")


# ---------------------------------------------------------------- concurrency
@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    """A loopback camp with project `team` (3 photos) and a LAN camp with projects `red` and
    `blue`: (loopback base URL, its images, LAN base URL, red's team token)."""
    data = tmp_path_factory.mktemp("camp")
    lan_data = tmp_path_factory.mktemp("lan")
    with camp_process(data) as (base, _), camp_process(lan_data, host="0.0.0.0") as (lan, _):
        api = Api(base)
        images, _ = new_project(api, "team", 3)
        api.close()
        boss = Api(lan, token=TokenBook(lan_data).instructor)
        _, red = new_project(boss, "red", 1)
        new_project(boss, "blue", 1)
        boss.close()
        yield base, images, lan, red


@dataclass
class Edit:
    box: str
    kind: str  # create | update | delete
    method: str
    path: str
    body: dict | None
    base_version: int
    status: int = 0
    answer: object = None


def test_ten_clients_hundred_edits_each_are_all_accounted_for(camp):
    base, images, _, _ = camp
    images = images[:2]
    lock = threading.Lock()
    known: dict[str, tuple[dict, int]] = {}  # box id -> (image, last version seen); -1 deleted
    edits: list[Edit] = []
    replays: list[tuple[Edit, int, object]] = []
    failures: list[str] = []

    def learn(bid: str, image: dict, version: int) -> None:
        """Remember the newest version seen of a box (-1: deleted, for good)."""
        old = known.get(bid)
        if old is None or (old[1] != -1 and (version == -1 or version > old[1])):
            known[bid] = (image, version)

    def client(k: int) -> None:
        rng = random.Random(100 + k)
        api = Api(base)
        for n in range(100):
            with lock:
                pool = sorted(known)
                hot = pool[:12]  # a few boxes everyone edits: conflicts happen
            r = rng.random()
            if not pool or r < 0.3:
                if pool and rng.random() < 0.15:  # an id that exists, other content: 409
                    bid = rng.choice(hot)
                    image = known[bid][0]
                else:
                    bid, image = f"c{k}-{n}", rng.choice(images)
                kind, base_version = "create", 0
            else:
                bid = rng.choice(hot if rng.random() < 0.6 else pool)
                image, base_version = known[bid]
                if base_version < 0:
                    base_version = rng.randrange(1, 4)  # deleted: any version conflicts
                elif rng.random() < 0.15:
                    base_version = max(1, base_version - 1)  # deliberately stale
                kind = "delete" if r > 0.85 else "update"
            path = f"/api/projects/team/images/{image['id']}/boxes/{bid}"
            eid = uuid.uuid4().hex
            if kind == "delete":
                edit = Edit(bid, kind, "DELETE",
                            f"{path}?edit_id={eid}&base_version={base_version}", None,
                            base_version)
            else:
                x1, y1, x2, y2 = random_coords(rng, image)
                edit = Edit(bid, kind, "PUT", path, {
                    "edit_id": eid, "base_version": base_version, "label": rng.randrange(3),
                    "x1": x1, "y1": y1, "x2": x2, "y2": y2}, base_version)
            try:
                edit.status, edit.answer = api.call(edit.method, edit.path, edit.body)
                if edit.status == 200 and rng.random() < 0.1:  # a retry, as after a timeout
                    replays.append((edit, *api.call(edit.method, edit.path, edit.body)))
            except TRANSPORT_ERRORS as e:
                failures.append(f"{edit.method} {edit.path}: {e!r}")
                return
            with lock:
                edits.append(edit)
                if edit.status == 200:
                    learn(bid, image, -1 if kind == "delete" else edit.answer["version"])
                elif edit.status == 409:
                    current = edit.answer.get("current")
                    learn(bid, image, -1 if current is None else current["version"])
        api.close()

    start = time.monotonic()
    api = Api(base)
    seq_before = api.call("GET", "/api/projects/team")[1]["seq"]
    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    # a late replay from another connection, of edits made by other clients (a new one: the
    # server closes keep-alive connections idle for 5 s)
    api.close()
    api = Api(base)
    for edit in random.Random(1).sample([e for e in edits if e.status == 200], 30):
        replays.append((edit, *api.call(edit.method, edit.path, edit.body)))

    assert not failures, failures[:5]
    assert len(edits) == 1000
    statuses = {s: sum(e.status == s for e in edits) for s in {e.status for e in edits}}
    assert set(statuses) <= {200, 409}, statuses
    assert statuses.get(409, 0) >= 20, statuses  # the hot boxes did conflict
    for edit, status, answer in replays:  # a replay returns the first answer, unchanged
        assert (status, answer) == (200, edit.answer), (edit, status, answer)

    # per box, the applied edits are a chain of versions 1, 2, ..., n: none lost, none twice
    applied: dict[str, list[tuple[int, Edit]]] = {}
    for e in edits:
        if e.status == 200:
            version = e.base_version + 1 if e.kind == "delete" else e.answer["version"]
            applied.setdefault(e.box, []).append((version, e))
    expected = {}
    for bid, chain in applied.items():
        chain.sort(key=lambda ve: ve[0])
        assert [v for v, _ in chain] == list(range(1, len(chain) + 1)), (bid, chain)
        assert chain[0][1].kind == "create"
        version, last = chain[-1]
        if last.kind != "delete":
            expected[bid] = dict(box_of(last.body, bid, version),
                                 image=int(last.path.split("/images/")[1].split("/")[0]))
    assert live_boxes(api, "team", images) == expected
    seq_after = api.call("GET", "/api/projects/team")[1]["seq"]
    assert seq_after - seq_before == sum(len(c) for c in applied.values())
    api.close()
    print(f"concurrency: 1000 edits in {elapsed:.1f} s, statuses {statuses}, "
          f"{len(replays)} replays, {len(expected)} live boxes")


# ---------------------------------------------------------------- bad input
def test_bad_input_sweep(camp):
    base, images, lan, red_token = camp
    api = Api(base)
    image = images[0]
    status, box = api.call("PUT", f"/api/projects/team/images/{image['id']}/boxes/sweep-box",
                           {"edit_id": uuid.uuid4().hex, "base_version": 0, "label": 1,
                            "x1": 5.0, "y1": 5.0, "x2": 40.0, "y2": 40.0})
    assert status == 200, box
    target = Target("team", image["id"], image["width"], image["height"], "sweep-box",
                    box["version"], own_project="red", other_project="blue",
                    team_token=red_token)
    cases = malformed_requests(target)
    assert len(cases) >= 30 and any(c.lan for c in cases)
    wrong = []
    for case in cases:
        url = urlsplit(lan if case.lan else base)
        status, reason = send(url.hostname, url.port, case)
        if status != case.status or not reason:
            wrong.append(f"{case.name}: expected {case.status}, got {status} {reason!r}")
    for url in (base, lan):
        assert Api(url).call("GET", "/healthz")[0] == 200
    # nothing the sweep sent changed the box it aimed at
    after = api.call("GET", f"/api/projects/team/images/{image['id']}")[1]["boxes"]
    assert [b for b in after if b["id"] == "sweep-box"] == [box]
    api.close()
    assert not wrong, "\n".join(wrong)
