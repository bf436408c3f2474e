#!/usr/bin/env bash
# The browser test (tests/test_browser.py) drives Debian's chromium through chromedriver.
# Installs both with apt when missing; fails with a clear message when it cannot.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium + chromedriver: present"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "chromium/chromedriver missing and no root: sudo apt-get install chromium chromium-driver" >&2
  exit 1
fi
echo "chromium + chromedriver: installing the Debian packages chromium and chromium-driver"
$sudo apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null
} || { echo "could not install chromium chromium-driver with apt" >&2; exit 1; }
