"""Headless chromium for the browser tests (tests/test_browser.py, tests/test_camp_browser.py):
Debian's chromium and chromedriver, which `make test` installs (scripts/install-browser.sh)."""

from __future__ import annotations

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def headless_chromium(window: str = "1000,900", *extra: str) -> webdriver.Chrome:
    """A headless chromium of `window` ("width,height") CSS pixels, with `extra` flags; fails
    the test with the fix when chromium or chromedriver is missing."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium/chromedriver missing: run `bash scripts/install-browser.sh` "
                    "(make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={window}", *extra):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver_path))
