"""Screenshots of every camp screen at phone and laptop widths, for the docs.

Usage:
    .venv/bin/python scripts/camp_screenshots.py [--out docs/img]

Starts a camp (the FastAPI app under uvicorn, LAN mode, so join tokens and QR codes show) on a
temporary data directory and fills it through the API: three team projects of photos drawn by
the scene synthesiser (`dlcamp.vision.scenes`, scene set objects-8) with their true boxes, a few
reviewed, one "needs fix", one empty table marked "no objects". Then it opens the page in
headless chromium (Selenium) at 390x844 (a phone: touch, mobile user agent) and 1366x800 (a
laptop), uploads a few photos through the file input (new ones, a duplicate, a fake HEIC the
server refuses), and writes docs/img/camp-<screen>-<phone|laptop>.png for the screens projects,
photos, label, proposals (a model's proposed boxes on an unlabelled photo), train (a finished
run's directory written beside the server), board (the leaderboard and the instructor's test
set and event settings, after a real 15-second run was submitted, scored on a hidden test
set of objects-8's shift split, and the event frozen), report (that submission's shift
report) and teams, each under 300 KB
(palette-quantised when needed). It fails if the browser console logs an error other than the
4xx answers the page expects (the refused HEIC).

Needs the `camp` and `test` extras, `bash scripts/install-browser.sh` (chromium, chromedriver)
and `bash scripts/install-data.sh` (the synthesiser's stamps and backgrounds).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import httpx
from PIL import Image, ImageDraw
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dlcamp.camp import training
from dlcamp.camp.auth import TokenBook
from dlcamp.camp.storage import CampStore
from dlcamp.camp.transfer import scene_zip
from dlcamp.data import scene_sources
from dlcamp.vision import scene_sets
from dlcamp.vision.scenes import SceneObject, synthesise

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"laptop": (1366, 800, False), "phone": (390, 844, True)}   # CSS px, touch
MAX_BYTES = 290_000
PUBLIC_URL = "http://192.168.1.20:8000/"   # what the join links and QR codes point at
SERVER = ("import sys, uvicorn; from dlcamp.camp.api import create_app; "
          "uvicorn.run(create_app(sys.argv[1], lan=True, public_url=sys.argv[3]), "
          "host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')")
PHONE_UA = ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120 Mobile Safari/537.36")


# --- photos ----------------------------------------------------------------------------------

class Photos:
    """14 synthetic 720x720 scenes (objects-8, train split, seed 7) and an empty table, as
    phone-like JPEGs with their true boxes in the JPEG's pixels."""

    def __init__(self) -> None:
        spec = scene_sets.get_scene_set("objects-8")
        objects = [SceneObject(k, c, scene_sources.load_rgba(scene_sources.resolve(k)))
                   for k, c in spec.instances("train")]
        self.backgrounds = [(k, scene_sources.load_rgb(scene_sources.resolve(k)))
                            for k in spec.background_keys("train")]
        config = dataclasses.replace(spec.config, image_size=720, blur=(0.0, 0.2),
                                     noise=(0.0, 0.005))
        self.scenes = synthesise(config, objects, 14, 7, backgrounds=self.backgrounds,
                                 class_names=spec.class_names,
                                 class_names_zh=spec.class_names_zh)
        self.classes = [{"name": n, "name_zh": z}
                        for n, z in zip(spec.class_names, spec.class_names_zh, strict=True)]

    def jpeg(self, i: int | None, width: int = 960) -> bytes:
        """Scene i (None: the empty table) as a JPEG `width` px wide; 4:3 unless i % 3 == 0."""
        if i is None:
            a = self.backgrounds[2][1]
            side = min(a.shape[:2])
            a, i = a[:side, :side], 1
        else:
            a = self.scenes.images[i].permute(1, 2, 0).numpy()
        im = Image.fromarray(a).resize((width, width * 3 // 4 if i % 3 else width))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=88)
        return out.getvalue()

    def boxes(self, i: int, width: int, height: int) -> list[tuple[int, list[float]]]:
        """Scene i's (label, [x1, y1, x2, y2]) in the pixels of a width x height copy."""
        sx, sy = width / 720, height / 720
        return [(lab, [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
                for b, lab in zip(self.scenes.boxes[i].tolist(), self.scenes.labels[i].tolist(),
                                  strict=True)
                if lab >= 0]


# --- the camp ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def camp(data: Path):
    """The camp app in a uvicorn subprocess; yields its base URL. Killed at the end."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port), PUBLIC_URL],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"camp server exited: {proc.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"camp server at {base} did not answer in 60 s") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def fill(api: httpx.Client, photos: Photos) -> int:
    """Three teams' projects with photos and boxes; returns the image id the label screen shows
    (team-1's busiest labelled photo that is not reviewed yet)."""
    def edit(method: str, path: str, **body) -> dict:
        r = api.request(method, path, json={"edit_id": uuid.uuid4().hex, **body})
        r.raise_for_status()
        return r.json()

    shown = 0
    for k, name, n in [(1, "第一队 Team 1", 12), (2, "第二队 Team 2", 5), (3, "第三队 Team 3", 3)]:
        pid = f"team-{k}"
        api.post("/api/projects", json={"id": pid, "name": name, "classes": photos.classes}
                 ).raise_for_status()
        scenes = [i if k == 1 else (i + k * 3) % 14 for i in range(n)]
        if k == 1:
            scenes[11] = None   # the empty table
        files = [("files", (f"IMG_{20250700 + k * 100 + j}.jpg", photos.jpeg(s), "image/jpeg"))
                 for j, s in enumerate(scenes)]
        r = api.post(f"/api/projects/{pid}/images", files=files)
        r.raise_for_status()
        images = [x["image"] for x in r.json()["images"]]
        for j, (s, im) in enumerate(zip(scenes, images, strict=True)):
            if j >= (8 if k == 1 else 3):
                continue   # left for the team to label
            boxes = photos.boxes(s, im["width"], im["height"])
            for b, (label, (x1, y1, x2, y2)) in enumerate(boxes):   # ids fix the list's order
                edit("PUT", f"/api/projects/{pid}/images/{im['id']}/boxes/box-{k}-{j:02d}-{b}",
                     base_version=0, label=label, x1=x1, y1=y1, x2=x2, y2=y2)
            review = {0: "done", 1: "done", 2: "done", 5: "needs_fix"}.get(j) if k == 1 else None
            if review:
                edit("PATCH", f"/api/projects/{pid}/images/{im['id']}",
                     base_version=im["version"], review=review)
        if k == 1:
            edit("PATCH", f"/api/projects/{pid}/images/{images[11]['id']}", base_version=1,
                 no_objects=True)
            busiest = max((3, 4, 6, 7), key=lambda j: len(photos.boxes(j, 720, 720)))
            shown = images[busiest]["id"]
    return shown


RUN = "20250706-193015"


def model_results(data: Path, photos: Photos, api: httpx.Client) -> int:
    """What a trained model leaves, without training one: proposals (the true boxes, nudged,
    with scores) on team-1's first unlabelled photo, and a finished run's directory (camp.json,
    progress.jsonl, curves.png). Returns the proposed photo's id."""
    images = api.get("/api/projects/team-1/images", params={"status": "unlabelled"}).json()
    target = next(im for im in images["images"] if im["file_name"].endswith("08.jpg"))
    boxes = [{"label": label, "x1": x1 + 6, "y1": y1 - 4, "x2": x2 + 3, "y2": y2 + 5,
              "score": round(0.93 - 0.17 * k, 2)} for k, (label, (x1, y1, x2, y2)) in
             enumerate(photos.boxes(8, target["width"], target["height"]))]
    with CampStore(data) as store:
        store.propose_boxes("team-1", target["id"], RUN, boxes)
    out = data / "runs" / "team-1" / RUN
    out.mkdir(parents=True, exist_ok=True)
    lines, loss = [], 6.0
    for epoch in range(1, 13):
        loss *= 0.86
        val = round(0.42 * (1 - 0.8 ** epoch), 4)
        lines.append({"t": 1751830000 + 50 * epoch, "event": "epoch", "epoch": epoch,
                      "step": 24 * epoch, "seconds": 50.0 * epoch, "budget_seconds": 600.0,
                      "loss": round(loss, 4), "val_map": val, "val_map_50": round(1.7 * val, 4),
                      "state": "running"})
    lines.append({**lines[-1], "event": "state", "state": "done"})
    (out / "progress.jsonl").write_text("".join(f"{json.dumps(x)}\n" for x in lines))
    (out / "camp.json").write_text(json.dumps({
        "project": "team-1", "run": RUN, "classes": [c["name"] for c in photos.classes],
        "images": {"train": 7, "val": 2}, "minutes": 10, "image_size": 256,
        "model": "yolo-lite0", "created": 1751830000, "state": "done", "error": None,
        "val_map": lines[-1]["val_map"], "val_map_50": lines[-1]["val_map_50"]}))
    picture = Image.new("RGB", (640, 300), "white")   # loss and val mAP per epoch
    pen = ImageDraw.Draw(picture)
    for key, top, colour in (("loss", 6.0, "#1971c2"), ("val_map", 0.5, "#e03131")):
        pen.line([(40 + 48 * i, 270 - 240 * x[key] / top) for i, x in enumerate(lines[:-1])],
                 fill=colour, width=3)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    (out / "curves.png").write_bytes(buffer.getvalue())
    return target["id"]


def scored_submission(data: Path, api: httpx.Client) -> None:
    """A real run and a real score for the board's screen: objects-8's shift split (40 scenes
    with condition tags) becomes the hidden test set, team-1 trains for 15 s as `dlcamp camp
    train` does (camp.training, in this process), its run is submitted and scored by the
    server, and the event is frozen so that the report shows whole."""
    hidden = scene_sets.load_scene_set("objects-8", "shift", n=40)
    zipped = scene_zip(hidden, tags=("background_source", "scale_bucket"), prefix="hidden")
    api.post("/api/testset", params={"format": "coco"},
             files={"file": ("hidden.zip", zipped, "application/zip")}).raise_for_status()
    run = training.train_project(data, "team-1", minutes=0.25, propose=False,
                                 log=lambda _: None)["run"]
    r = api.post("/api/projects/team-1/submissions", json={"edit_id": uuid.uuid4().hex,
                                                           "run": run})
    r.raise_for_status()
    sid, deadline = r.json()["id"], time.monotonic() + 120
    while api.get(f"/api/projects/team-1/submissions/{sid}").json()["status"] not in (
            "done", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError("the submission was not scored within 2 minutes")
        time.sleep(0.5)
    api.put("/api/event", json={"edit_id": uuid.uuid4().hex, "state": "frozen"}
            ).raise_for_status()


# --- the browser ------------------------------------------------------------------------------

def browser(width: int, height: int, mobile: bool) -> webdriver.Chrome:
    """Headless chromium whose page is width x height CSS px (1 device px each)."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    if mobile:
        options.add_experimental_option("mobileEmulation", {"userAgent": PHONE_UA,
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0,
                              "touch": True}})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=Service(shutil.which("chromedriver") or "chromedriver"))
    if not mobile:   # the window's frame takes some of --window-size: grow it by that much
        driver.set_window_size(width, height)
        inner_w, inner_h = driver.execute_script("return [innerWidth, innerHeight]")
        driver.set_window_size(2 * width - inner_w, 2 * height - inner_h)
    return driver


def until(driver: webdriver.Chrome, script: str, seconds: float = 20) -> None:
    """Wait until the JavaScript expression is truthy."""
    WebDriverWait(driver, seconds).until(lambda d: d.execute_script("return " + script))


def pictures_loaded(container: str) -> str:
    """A JavaScript test: every visible thumbnail in `container` has its picture."""
    return (f"[...document.querySelectorAll('{container} img.pic')].filter(i => i.offsetParent"
            " && i.getBoundingClientRect().top < innerHeight)"
            ".every(i => i.complete && i.naturalWidth > 0)")


def shoot(driver: webdriver.Chrome, path: Path) -> None:
    """Save the viewport as a PNG under MAX_BYTES (quantised to 256 colours if needed)."""
    driver.execute_script("document.getElementById('status').classList.add('faded')")
    time.sleep(0.4)   # the status line's fade
    im = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    for version in (lambda: im,
                    lambda: im.quantize(256, method=Image.Quantize.FASTOCTREE,
                                        dither=Image.Dither.FLOYDSTEINBERG),
                    lambda: im.quantize(256, method=Image.Quantize.MEDIANCUT,
                                        dither=Image.Dither.NONE)):
        version().save(path, optimize=True)
        if path.stat().st_size < MAX_BYTES:
            break
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {im.size[0]}x"
          f"{im.size[1]}  {path.stat().st_size // 1024} KB")


def screens(driver: webdriver.Chrome, base: str, token: str, uploads: list[Path], image: int,
            proposed: int, out: Path, kind: str) -> None:
    """The screens, as an instructor: projects, photos (after `uploads`), label, proposals,
    train, board, teams."""
    driver.get(f"{base}/?token={token}#/")
    until(driver, "document.querySelectorAll('.card').length === 4")  # three teams and the test set
    shoot(driver, out / f"camp-projects-{kind}.png")

    driver.get(f"{base}/#/p/team-1/photos")
    until(driver, "document.getElementById('project-select').value === 'team-1'")
    driver.find_element(By.ID, "upload-input").send_keys("\n".join(map(str, uploads)))
    until(driver, "document.querySelectorAll('#queue li[data-state=done], #queue li[data-state="
                  f"duplicate], #queue li[data-state=error]').length >= {len(uploads)}", 30)
    until(driver, pictures_loaded("#thumbs"))
    time.sleep(0.5)
    shoot(driver, out / f"camp-photos-{kind}.png")

    driver.get(f"{base}/#/p/team-1/label/{image}")
    until(driver, "document.getElementById('canvas').dataset.loaded === 'true'")
    until(driver, pictures_loaded("#strip"))
    first_box = driver.find_elements(By.CSS_SELECTOR, "#box-list li button")[0]
    driver.execute_script("arguments[0].click(); document.activeElement.blur()", first_box)
    time.sleep(0.5)
    shoot(driver, out / f"camp-label-{kind}.png")

    driver.get(f"{base}/#/p/team-1/label/{proposed}")
    until(driver, "document.getElementById('canvas').dataset.loaded === 'true' && "
                  "document.getElementById('canvas').dataset.proposals !== '0'")
    driver.execute_script("document.getElementById('canvas').dispatchEvent(new KeyboardEvent("
                          "'keydown', {key: 'a', bubbles: true}))")   # selects the first one
    time.sleep(0.5)
    shoot(driver, out / f"camp-proposals-{kind}.png")

    driver.get(f"{base}/#/p/team-1/train")
    until(driver, "document.querySelector('#runs tbody tr, #runs caption') || "
                  "document.getElementById('runs-result').textContent")
    until(driver, "[...document.querySelectorAll('img.curves')].every(i => i.complete)")
    time.sleep(0.5)
    shoot(driver, out / f"camp-train-{kind}.png")

    driver.get(f"{base}/#/p/team-1/board")
    until(driver, "document.getElementById('ranking').textContent.length > 0")
    time.sleep(0.5)
    shoot(driver, out / f"camp-board-{kind}.png")
    button = driver.find_elements(By.XPATH, "//button[contains(., 'Report')]")[0]
    driver.execute_script("arguments[0].click()", button)   # the scored run's shift report
    until(driver, "!document.getElementById('report').hidden && [...document.querySelectorAll("
                  "'#report img')].every(i => i.complete && i.naturalWidth)")
    driver.execute_script("document.getElementById('report').scrollIntoView()")
    time.sleep(0.5)
    shoot(driver, out / f"camp-report-{kind}.png")

    driver.get(f"{base}/#/teams")
    until(driver, "document.querySelectorAll('.token-card img').length === 3 && [...document."
                  "querySelectorAll('.token-card img')].every(i => i.complete && i.naturalWidth)")
    time.sleep(0.5)
    shoot(driver, out / f"camp-teams-{kind}.png")


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The console's errors, less the 4xx answers the page shows (the refused upload)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "status of 4" not in e["message"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img",
                        help="folder for the PNGs (default: docs/img)")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    photos = Photos()
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="camp-shots-") as tmp, camp(Path(tmp) / "data") as base:
        token = TokenBook(Path(tmp) / "data").instructor
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "X-Camp": "1"}) as api:
            image = fill(api, photos)
            proposed = model_results(Path(tmp) / "data", photos, api)
            scored_submission(Path(tmp) / "data", api)
        new = [Path(tmp, f"IMG_2025080{i}.jpg") for i in (12, 13)]
        for path, i in zip(new, (12, 13), strict=True):
            path.write_bytes(photos.jpeg(i))
        duplicate = Path(tmp, "IMG_20250701.jpg")   # the same bytes as team-1's second photo
        duplicate.write_bytes(photos.jpeg(1))
        heic = Path(tmp, "photo.heic")   # an HEIC header and nothing else: refused
        heic.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
        for kind, (width, height, mobile) in SIZES.items():
            uploads = [*new, duplicate, heic] if kind == "laptop" else [duplicate, heic]
            driver = browser(width, height, mobile)
            try:
                screens(driver, base, token, uploads, image, proposed, out, kind)
                errors += [f"{kind}: {m}" for m in console_errors(driver)]
            finally:
                driver.quit()
    for e in errors:
        print("console error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
