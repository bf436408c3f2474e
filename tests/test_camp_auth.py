"""The camp's token file as the one truth, shared by a running server and the CLI: a rotation
reaches a running app at once, nothing writes old tokens back, concurrent writers lose no team;
one server per data folder; `dlcamp camp tokens` prints the URL the server really serves."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from campkit import CLASSES, CSRF, camp_process
from dlcamp.camp.api import create_app
from dlcamp.camp.auth import TOKEN_FILE, TokenBook
from dlcamp.camp.server import SERVER_FILE, CampBusy, serve_camp, sole_server
from dlcamp.cli.main import main
from dlcamp.core.errors import DlcampError

LAN = "http://10.0.0.5:8080"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def camp_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`dlcamp camp ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["camp", *args])
    out, err = capsys.readouterr()
    return code, out, err


def on_disk(data) -> dict:
    return json.loads((data / TOKEN_FILE).read_text("utf-8"))


@pytest.fixture
def lan(tmp_path):
    """A LAN-mode app (holding its own TokenBook) with projects team-1 and team-2:
    (client, data folder)."""
    data = tmp_path / "camp"
    with TestClient(create_app(data, lan=True, public_url=f"{LAN}/"), base_url=LAN,
                    headers=CSRF) as c:
        boss = bearer(TokenBook(data).instructor)
        for pid in ("team-1", "team-2"):
            r = c.post("/api/projects", headers=boss,
                       json={"id": pid, "name": pid, "classes": CLASSES})
            assert r.status_code == 201, r.text
        yield c, data


def test_a_cli_rotation_reaches_the_running_app(lan, capsys):
    c, data = lan
    old = on_disk(data)
    assert c.get("/api/projects/team-1", headers=bearer(old["teams"]["team-1"])).status_code == 200
    code, out, _ = camp_cli(capsys, "tokens", "--rotate", "team-1", "--data", str(data))
    assert code == 0 and "in force at once" in out
    new = on_disk(data)
    assert new["teams"]["team-1"] != old["teams"]["team-1"]
    assert new["teams"]["team-2"] == old["teams"]["team-2"]  # only team-1's was replaced
    assert c.get("/api/projects/team-1", headers=bearer(old["teams"]["team-1"])).status_code == 401
    assert c.get("/api/projects/team-1", headers=bearer(new["teams"]["team-1"])).status_code == 200
    assert c.get("/api/join", params={"token": old["teams"]["team-1"]}).status_code == 401
    assert f"?token={new['teams']['team-1']}" in out  # the links printed are the new ones

    code, _, _ = camp_cli(capsys, "tokens", "--rotate", "--data", str(data))  # all of them
    assert code == 0
    newest = on_disk(data)
    assert c.get("/api/projects", headers=bearer(old["instructor"])).status_code == 401
    assert c.get("/api/projects", headers=bearer(newest["instructor"])).status_code == 200
    assert c.get("/api/projects/team-2", headers=bearer(old["teams"]["team-2"])).status_code == 401
    code, _, err = camp_cli(capsys, "tokens", "--rotate", "nope", "--data", str(data))
    assert code == 2 and "no such project" in err and on_disk(data) == newest


def test_the_app_never_writes_rotated_tokens_back(lan, capsys):
    c, data = lan
    old = on_disk(data)
    assert camp_cli(capsys, "tokens", "--rotate", "--data", str(data))[0] == 0
    rotated = on_disk(data)
    # the app writes tokens.json when a project is made, and when /api/tokens makes a token
    r = c.post("/api/projects", headers=bearer(rotated["instructor"]),
               json={"id": "team-3", "name": "Team 3", "classes": CLASSES})
    assert r.status_code == 201, r.text
    assert camp_cli(capsys, "new", "team-4", "--classes", "apple", "--data", str(data))[0] == 0
    links = c.get("/api/tokens", headers=bearer(rotated["instructor"])).json()
    after = on_disk(data)
    assert after["instructor"] == rotated["instructor"]
    assert {p: after["teams"][p] for p in ("team-1", "team-2")} == {
        p: rotated["teams"][p] for p in ("team-1", "team-2")}
    assert set(after["teams"]) == {"team-1", "team-2", "team-3", "team-4"}
    assert {row["project"]: row["token"] for row in links} == after["teams"]
    assert r.json()["token"] == after["teams"]["team-3"]
    stale = {old["instructor"], *old["teams"].values()}
    assert not stale & {after["instructor"], *after["teams"].values()}
    assert stat.S_IMODE(os.stat(data / TOKEN_FILE).st_mode) == 0o600


def test_concurrent_writers_lose_no_team(tmp_path):
    data = tmp_path / "camp"
    books = [TokenBook(data), TokenBook(data)]  # as a server and a CLI command would hold them
    given: dict[str, str] = {}
    start = threading.Barrier(2)

    def write(k: int) -> None:
        start.wait()
        for i in range(60):
            given[f"t{k}-{i}"] = books[k].team_token(f"t{k}-{i}")
            if i % 20 == 0:
                books[k].rotate(f"t{k}-0")
                given[f"t{k}-0"] = books[k].teams[f"t{k}-0"]

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert on_disk(data)["teams"] == given  # all 120 teams, each with the token handed out
    assert books[0].teams == books[1].teams == given


def test_a_broken_or_deleted_token_file(tmp_path, capsys):
    data = tmp_path / "camp"
    book = TokenBook(data)
    before = book.instructor
    (data / TOKEN_FILE).write_text("not json")
    with pytest.raises(DlcampError, match="not a dlcamp token file"):
        TokenBook(data)
    assert book.instructor == before  # a running server keeps the tokens it read last
    assert "still using the tokens read before" in capsys.readouterr().err
    with pytest.raises(DlcampError, match="not a dlcamp token file"):
        book.team_token("team-1")  # and never overwrites somebody's file
    assert (data / TOKEN_FILE).read_text() == "not json"
    (data / TOKEN_FILE).unlink()
    fresh = book.instructor  # deleted: new tokens, written to disk
    assert fresh != before and on_disk(data)["instructor"] == fresh


def test_a_second_server_on_the_same_data_is_refused(tmp_path, capsys):
    data = tmp_path / "camp"
    assert camp_cli(capsys, "new", "team-1", "--classes", "apple:苹果", "--data", str(data))[0] == 0
    with sole_server(data):  # a server is running
        with pytest.raises(CampBusy, match="already serving"):
            serve_camp(data, port=0)
        code, out, err = camp_cli(capsys, "serve", "--data", str(data), "--port", "8765")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert err.startswith("error: another `dlcamp camp serve` is already serving")
        # every other command works while it runs
        assert camp_cli(capsys, "new", "team-2", "--classes", "a,b", "--data", str(data))[0] == 0
        assert camp_cli(capsys, "tokens", "--rotate", "--data", str(data))[0] == 0
        assert camp_cli(capsys, "export", "team-1", "--format", "coco", "--data", str(data),
                        "--out", str(tmp_path / "t1.zip"))[0] == 0
        assert camp_cli(capsys, "backup", str(tmp_path / "bak"), "--data", str(data))[0] == 0
    with sole_server(data):  # the first one stopped: the next may start
        pass


def test_new_says_when_it_made_a_camp_and_counts_classes_in_english(tmp_path, capsys):
    data = tmp_path / "camp"
    code, out, _ = camp_cli(capsys, "new", "solo", "--classes", "apple:苹果", "--data", str(data))
    assert code == 0 and f"new camp created in {data.resolve()}" in out
    assert "solo: 1 class;" in out
    code, out, _ = camp_cli(capsys, "new", "duo", "--classes", "a,b", "--data", str(data))
    assert "new camp created" not in out and "duo: 2 classes;" in out
    code, _, err = camp_cli(capsys, "tokens", "--data", str(tmp_path / "typo"))
    assert code == 2 and "no camp in" in err and not (tmp_path / "typo").exists()


def test_tokens_prints_the_url_the_server_recorded(tmp_path, capsys):
    data = tmp_path / "camp"
    camp_cli(capsys, "new", "team-1", "--classes", "apple", "--data", str(data))
    code, out, _ = camp_cli(capsys, "tokens", "--data", str(data))
    assert code == 0 and out.startswith("links for http://")
    assert ":8080/ (port 8080: no server" in out
    (data / SERVER_FILE).write_text(json.dumps({"url": "http://10.1.2.3:8123/", "lan": True,
                                                "pid": 42, "started": "today"}))
    code, out, _ = camp_cli(capsys, "tokens", "--data", str(data))
    first, *links = out.splitlines()
    assert first.startswith("links for http://10.1.2.3:8123/ (recorded by `dlcamp camp serve`")
    team = TokenBook(data).team_token("team-1")
    assert links[1].split() == ["team-1", f"http://10.1.2.3:8123/?token={team}"]
    code, out, _ = camp_cli(capsys, "tokens", "--port", "9000", "--data", str(data))
    assert "(--port)" in out.splitlines()[0] and f":9000/?token={team}" in out


def test_a_real_server_records_its_url_holds_the_camp_and_obeys_rotations(tmp_path, capsys):
    """End to end, across processes: `dlcamp camp serve --host 0.0.0.0 --port P`."""
    data = tmp_path / "camp"
    camp_cli(capsys, "new", "team-1", "--classes", "apple", "--data", str(data))
    old = TokenBook(data).team_token("team-1")
    with camp_process(data, host="0.0.0.0") as (base, proc):
        port = base.rsplit(":", 1)[1]
        info = json.loads((data / SERVER_FILE).read_text())
        assert info["pid"] == proc.pid and info["url"].endswith(f":{port}/") and info["lan"]

        def status(token: str) -> int:
            request = urllib.request.Request(f"{base}/api/projects/team-1",
                                             headers=bearer(token))
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert status(old) == 200
        with pytest.raises(CampBusy, match=f"pid {proc.pid}"):
            serve_camp(data, port=0)
        code, out, _ = camp_cli(capsys, "tokens", "--rotate", "team-1", "--data", str(data))
        assert code == 0 and out.splitlines()[1].startswith(f"links for {info['url']} ")
        new = TokenBook(data).team_token("team-1")
        assert f"{info['url']}?token={new}" in out
        assert (status(old), status(new)) == (401, 200)


def test_the_listening_socket_answers_without_waiting_for_acks():
    """Connections accepted from it inherit TCP_NODELAY: without it every keep-alive answer
    waited ~40 ms for the client's delayed ACK (1,000 edits took 5.3 s instead of 1.3 s)."""
    import socket

    from dlcamp.camp.server import listen

    with listen("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
