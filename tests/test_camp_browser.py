"""The camp page in a real browser: Debian's chromium, headless, driven by Selenium.

A person's session, end to end against the real app (uvicorn in a subprocess): upload a phone
photo through the file input, draw two boxes with the mouse, change a box's class with a key,
undo and redo, reload the page and find the same boxes the API holds, export a COCO zip. Also a
duplicate and a file that is not an image, each answered in the upload queue with the server's
reason; and the other ways in: a folder (non-images skipped), a drop, the webcam (chromium's
fake camera). A model's proposed boxes, accepted by key A and Shift+A and rejected by Del; the
Train and Leaderboard tabs render. `bash scripts/install-browser.sh` installs chromium and
chromedriver.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import urllib.request
import zipfile

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from browserkit import headless_chromium
from campkit import CLASSES, CSRF, free_port, phone_photo, wait_until_up
from dlcamp.camp.storage import CampStore

PID = "team-7"
SERVER = ("import sys, uvicorn; from dlcamp.camp.api import create_app; "
          "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), "
          "log_level='warning')")


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("1366,800", "--force-device-scale-factor=1",
                               "--use-fake-device-for-media-stream",
                               "--use-fake-ui-for-media-stream")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def camp_dir(tmp_path_factory):
    """The camp's data directory (the tests may open its store beside the server)."""
    return tmp_path_factory.mktemp("camp")


@pytest.fixture(scope="module")
def camp(camp_dir):
    """The camp app in a uvicorn subprocess on 127.0.0.1 (local mode); yields its base URL."""
    data, port = camp_dir, free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        yield base
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def call(base: str, method: str, path: str, body: object = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={**CSRF, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        raw = r.read()
        return raw if r.headers.get_content_type() == "application/zip" else json.loads(raw)


def until(driver, script: str, seconds: float = 20):
    """Wait until the JavaScript expression is truthy; returns its value."""
    return WebDriverWait(driver, seconds).until(lambda d: d.execute_script("return " + script))


def drag(driver, canvas, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Press the mouse at `start`, move in two steps, release at `end` (px from the canvas's
    top-left corner)."""
    w, h = canvas.size["width"], canvas.size["height"]
    (x0, y0), (x1, y1) = start, end
    (ActionChains(driver).move_to_element_with_offset(canvas, x0 - w // 2, y0 - h // 2)
     .click_and_hold().move_by_offset((x1 - x0) // 2, (y1 - y0) // 2)
     .move_by_offset(x1 - x0 - (x1 - x0) // 2, y1 - y0 - (y1 - y0) // 2).release().perform())


def to_image(canvas, point: tuple[int, int]) -> tuple[float, float]:
    """A canvas point (CSS px) in working-copy pixels, from the view the page reports."""
    scale, tx, ty = (float(v) for v in canvas.get_attribute("data-view").split(","))
    return (point[0] - tx) / scale, (point[1] - ty) / scale


def saved(driver) -> None:
    until(driver, "document.getElementById('canvas').dataset.saved === 'true'")


def api_boxes(base: str, iid: int) -> dict[str, dict]:
    return {b["id"]: b for b in call(base, "GET", f"/api/projects/{PID}/images/{iid}")["boxes"]}


def test_upload_draw_relabel_undo_reload_export(browser, camp, tmp_path):
    call(camp, "POST", "/api/projects", {"id": PID, "name": "第七队 Team 7", "classes": CLASSES})
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(phone_photo(0))  # 720x960 sensor pixels, EXIF: show turned -> 960x720
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")

    # Capture: the file input, a per-file result in the upload queue.
    browser.get(f"{camp}/#/p/{PID}/photos")
    upload = browser.find_element(By.ID, "upload-input")
    upload.send_keys(str(photo))
    thumb = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#thumbs .thumb[data-id]"))
    iid = int(thumb.get_attribute("data-id"))
    image = call(camp, "GET", f"/api/projects/{PID}/images/{iid}")
    assert (image["width"], image["height"]) == (960, 720)  # EXIF orientation applied
    upload.send_keys(str(photo))   # the same bytes again: a duplicate, not a second image
    upload.send_keys(str(notes))   # not an image: the server's reason is shown
    until(browser, "document.querySelectorAll('#queue li[data-state=duplicate]').length === 1 &&"
                   " document.querySelectorAll('#queue li[data-state=error]').length === 1")
    reason = browser.find_element(By.CSS_SELECTOR, "#queue li[data-state=error] .msg").text
    assert "notes.txt" in reason or "image" in reason.lower()
    assert call(camp, "GET", f"/api/projects/{PID}/images")["total"] == 1

    # Annotate: two boxes drawn with the mouse (class 1, the first in the list).
    thumb.click()
    until(browser, "document.getElementById('canvas').dataset.loaded === 'true'")
    canvas = browser.find_element(By.ID, "canvas")
    assert canvas.get_attribute("data-box-count") == "0"
    w, h = canvas.size["width"], canvas.size["height"]
    strokes = [((w // 2 - 220, h // 2 - 160), (w // 2 - 60, h // 2 + 20)),
               ((w // 2 + 20, h // 2 - 120), (w // 2 + 200, h // 2 + 140))]
    for start, end in strokes:
        drag(browser, canvas, start, end)
    until(browser, "document.getElementById('canvas').dataset.boxCount === '2'")
    saved(browser)
    boxes = api_boxes(camp, iid)
    assert sorted(b["label"] for b in boxes.values()) == [0, 0]
    for start, end in strokes:  # the API holds the boxes where the mouse drew them
        (x1, y1), (x2, y2) = to_image(canvas, start), to_image(canvas, end)
        assert any(abs(b["x1"] - x1) < 2 and abs(b["y1"] - y1) < 2 and abs(b["x2"] - x2) < 2
                   and abs(b["y2"] - y2) < 2 for b in boxes.values()), (x1, y1, x2, y2, boxes)

    # The second box is still selected: key 2 makes it class 2, undo takes that back.
    ActionChains(browser).send_keys("2").perform()  # the canvas has the focus
    saved(browser)
    assert sorted(b["label"] for b in api_boxes(camp, iid).values()) == [0, 1]
    assert browser.find_element(
        By.CSS_SELECTOR, "#class-list .class[data-label='1']").get_attribute("aria-pressed") \
        == "true"
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    saved(browser)
    assert sorted(b["label"] for b in api_boxes(camp, iid).values()) == [0, 0]
    browser.find_element(By.ID, "redo").click()
    saved(browser)
    final = api_boxes(camp, iid)
    assert sorted(b["label"] for b in final.values()) == [0, 1]
    until(browser, "document.querySelector(\"#counts .count[data-label='1']\").dataset.n === '1'")

    # Reload: the page shows what the API holds.
    browser.refresh()
    until(browser, "document.getElementById('canvas').dataset.loaded === 'true'")
    until(browser, "document.getElementById('canvas').dataset.boxCount === '2'")
    shown = sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#box-list li"))
    names = [f"{c['name_zh']} {c['name']}" for c in CLASSES]
    def js_round(v: float) -> int:  # Math.round: halves go up
        return math.floor(v + 0.5)

    expected = sorted(f"{names[b['label']]} {js_round(b['x2'] - b['x1'])}×"
                      f"{js_round(b['y2'] - b['y1'])}" for b in final.values())
    assert [s.replace("\n", " ") for s in shown] == expected

    # Export: the button downloads; the zip at its URL holds the image and both boxes.
    browser.get(f"{camp}/#/p/{PID}/data")
    browser.find_element(By.ID, "export-coco").click()
    until(browser, "document.getElementById('export-result').textContent.includes('.zip')")
    exported = call(camp, "GET", f"/api/projects/{PID}/export?format=coco")
    with zipfile.ZipFile(io.BytesIO(exported)) as z:
        coco = json.loads(z.read("annotations.json"))
        assert f"images/{coco['images'][0]['file_name']}" in z.namelist()
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(960, 720)]
    got = sorted((a["category_id"] - 1, *a["bbox"]) for a in coco["annotations"])
    want = sorted((b["label"], b["x1"], b["y1"], b["x2"] - b["x1"], b["y2"] - b["y1"])
                  for b in final.values())
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1:] for g in got] == [pytest.approx(w[1:]) for w in want]
    assert not [e for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "status of 4" not in e["message"]]


def test_folder_drop_and_webcam_capture(browser, camp, tmp_path):
    pid = "team-8"
    call(camp, "POST", "/api/projects", {"id": pid, "name": "Team 8", "classes": CLASSES})
    folder = tmp_path / "trip"
    (folder / "day2").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(phone_photo(10))
    (folder / "day2" / "b.jpg").write_bytes(phone_photo(11))
    (folder / "labels.txt").write_text("0 0.5 0.5 0.2 0.2")
    browser.get(f"{camp}/#/p/{pid}/photos")
    until(browser, "document.getElementById('project-select').value === 'team-8'")

    def shown() -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, "#thumbs .thumb[data-id]"))

    browser.find_element(By.ID, "folder-input").send_keys(str(folder))  # webkitdirectory
    WebDriverWait(browser, 20).until(lambda d: shown() == 2)
    assert "1" in browser.find_element(By.ID, "status").get_attribute("textContent")  # skipped

    # A drop of a file (a JPEG the page makes itself) uploads it like the file input does.
    browser.execute_script("""
        const c = document.createElement('canvas'); c.width = 320; c.height = 240;
        const g = c.getContext('2d'); g.fillStyle = '#c33'; g.fillRect(40, 40, 120, 90);
        c.toBlob((blob) => {
          const dt = new DataTransfer();
          dt.items.add(new File([blob], 'dropped.jpg', {type: 'image/jpeg'}));
          document.getElementById('dropzone').dispatchEvent(
            new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }, 'image/jpeg', 0.9);""")
    WebDriverWait(browser, 20).until(lambda d: shown() == 3)

    # The webcam: a frame of the fake camera becomes a JPEG upload.
    browser.find_element(By.ID, "webcam-btn").click()
    until(browser, "document.getElementById('webcam-video').videoWidth > 0")
    browser.find_element(By.ID, "webcam-snap").click()
    WebDriverWait(browser, 20).until(lambda d: shown() == 4)
    browser.find_element(By.ID, "webcam-close").click()
    until(browser, "document.getElementById('webcam-video').srcObject === null")
    names = sorted(i["file_name"] for i in
                   call(camp, "GET", f"/api/projects/{pid}/images?limit=10")["images"])
    assert names[:3] == ["a.jpg", "b.jpg", "dropped.jpg"] and names[3].startswith("webcam-")


def test_proposals_accepted_by_keys_and_rejected_by_del(browser, camp, camp_dir):
    pid = "team-9"
    call(camp, "POST", "/api/projects", {"id": pid, "name": "Team 9", "classes": CLASSES})
    import httpx  # multipart upload through the API, not the page (tested above)

    answer = httpx.post(f"{camp}/api/projects/{pid}/images", headers=CSRF,
                        files=[("files", ("IMG_9.jpg", phone_photo(20), "image/jpeg"))])
    iid = answer.json()["images"][0]["image"]["id"]
    proposed = [{"label": 0, "x1": 40.0, "y1": 50.0, "x2": 300.0, "y2": 280.0, "score": 0.91},
                {"label": 1, "x1": 400.0, "y1": 100.0, "x2": 600.0, "y2": 400.0, "score": 0.55},
                {"label": 2, "x1": 650.0, "y1": 420.0, "x2": 900.0, "y2": 700.0, "score": 0.42}]
    with CampStore(camp_dir) as store:  # what a trained model leaves (the server's own store)
        made = store.propose_boxes(pid, iid, "20261206-093015", proposed)
    assert len(made) == 3 and all(b["proposed"] for b in made)

    browser.get(f"{camp}/#/p/{pid}/label/{iid}")
    until(browser, "document.getElementById('canvas').dataset.loaded === 'true'")
    until(browser, "document.getElementById('canvas').dataset.proposals === '3'")
    assert browser.find_element(By.ID, "proposal-bar").is_displayed()
    badge = browser.find_element(By.CSS_SELECTOR, f"#strip .thumb[data-id='{iid}'] .pbadge")
    assert "3" in badge.get_attribute("textContent")
    assert "proposed" in browser.find_element(By.ID, "box-list").text

    def selected() -> str:
        return browser.find_element(By.ID, "canvas").get_attribute("data-selected")

    # A selects the first proposal, A again accepts it and selects the next one.
    ActionChains(browser).send_keys("a").perform()
    first = selected()
    assert first in {b["id"] for b in made}
    ActionChains(browser).send_keys("a").perform()
    saved(browser)
    second = selected()
    assert second and second != first
    boxes = api_boxes_of(camp, pid, iid)
    assert boxes[first]["proposed"] is False and boxes[second]["proposed"] is True
    # Del rejects the selected proposal; Shift+A accepts the rest (one left).
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    saved(browser)
    assert second not in api_boxes_of(camp, pid, iid)
    ActionChains(browser).key_down(Keys.SHIFT).send_keys("A").key_up(Keys.SHIFT).perform()
    saved(browser)
    until(browser, "document.getElementById('canvas').dataset.proposals === '0'")
    boxes = api_boxes_of(camp, pid, iid)
    assert len(boxes) == 2 and not any(b["proposed"] for b in boxes.values())
    assert not browser.find_element(By.ID, "proposal-bar").is_displayed()
    assert call(camp, "GET", f"/api/projects/{pid}")["counts"]["labelled"] == 1

    # The Train and Leaderboard tabs render (without a trained model: no runs, no scores).
    browser.get(f"{camp}/#/p/{pid}/train")
    until(browser, "document.querySelector('#runs caption') !== null || "
                   "document.getElementById('runs-result').textContent.length > 0")
    assert browser.find_element(By.ID, "train-minutes").get_attribute("value") == "10"
    browser.get(f"{camp}/#/p/{pid}/board")
    until(browser, "document.getElementById('ranking').textContent.length > 0")
    assert not [e for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "status of 4" not in e["message"]]


def api_boxes_of(base: str, pid: str, iid: int) -> dict[str, dict]:
    return {b["id"]: b for b in call(base, "GET", f"/api/projects/{pid}/images/{iid}")["boxes"]}
