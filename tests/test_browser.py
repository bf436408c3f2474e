"""The web page in a real browser: Debian's chromium, headless, driven by Selenium.

It draws on the canvas and uploads a photo, as a person would, and checks that the page shows
the same answer the API gives for the same image. `make test` installs chromium and
chromedriver (scripts/install-browser.sh).
"""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browserkit import headless_chromium
from test_serve import _phone_photo, running_server


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("1000,900")
    yield driver
    driver.quit()


def api_top1(base: str, image: bytes) -> str:
    body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
    request = urllib.request.Request(f"{base}/predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)["predictions"][0]["label"]


def shown_labels(driver) -> list[str]:
    WebDriverWait(driver, 20).until(
        EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#result li.prediction")))
    return [li.get_attribute("data-label")
            for li in driver.find_elements(By.CSS_SELECTOR, "#result li.prediction")]


def test_draw_on_the_canvas_and_upload_a_photo(browser, run_dir, test_images, tmp_path):
    pixels, _ = test_images
    with running_server(run_dir) as base:
        browser.get(base + "/")
        WebDriverWait(browser, 20).until(
            EC.text_to_be_present_in_element((By.ID, "model"), "cnn"))
        # Draw a pair of trousers: a waistband and two legs.
        canvas = browser.find_element(By.ID, "canvas")
        strokes = [((-60, -100), (60, -100)), ((-55, -100), (-45, 110)),
                   ((55, -100), (45, 110)), ((0, -100), (-5, 20))]
        for (x0, y0), (x1, y1) in strokes:
            (ActionChains(browser).move_to_element_with_offset(canvas, x0, y0).click_and_hold()
             .move_by_offset((x1 - x0) // 2, (y1 - y0) // 2)
             .move_by_offset(x1 - x0 - (x1 - x0) // 2, y1 - y0 - (y1 - y0) // 2)
             .release().perform())
        browser.find_element(By.ID, "predict").click()
        labels = shown_labels(browser)
        assert len(labels) == 3
        drawn = browser.execute_script(
            "return document.getElementById('canvas').toDataURL('image/png')")
        drawing = base64.b64decode(drawn.split(",", 1)[1])
        assert labels[0] == api_top1(base, drawing)
        assert browser.find_element(By.ID, "error").text == ""

        # Upload a phone photo (JPEG, rotated by EXIF, dark on light) through the file input.
        photo = tmp_path / "IMG_0001.jpg"
        photo.write_bytes(_phone_photo(pixels[0]))
        browser.find_element(By.ID, "clear").click()
        upload = browser.find_element(By.ID, "file")
        browser.execute_script("arguments[0].hidden = false", upload)
        upload.send_keys(str(photo))
        labels = shown_labels(browser)
        assert labels[0] == api_top1(base, photo.read_bytes())

        # A file that is not an image: the page shows the server's reason.
        bad = tmp_path / "notes.txt"
        bad.write_text("not a picture")
        browser.find_element(By.ID, "clear").click()
        upload.send_keys(str(bad))
        WebDriverWait(browser, 20).until(
            EC.text_to_be_present_in_element((By.ID, "error"), "415"))
