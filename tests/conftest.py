"""Shared fixtures: quiet, headless, and isolated dataset folders."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("DLCAMP_QUIET", "1")  # no progress bars in test logs
os.environ.setdefault("MPLBACKEND", "Agg")

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def fresh_dataset_cache():
    """Each test sees the environment it sets up, not arrays cached by an earlier test."""
    from dlcamp.data.datasets import _load_cached

    _load_cached.cache_clear()
    yield
    _load_cached.cache_clear()


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """Empty DLCAMP_DATA, cache and system folders: nothing is found unless a test puts it there."""
    for var, sub in (("DLCAMP_DATA", "data"), ("DLCAMP_CACHE", "cache"),
                     ("DLCAMP_SYSTEM_DATA", "system")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


@pytest.fixture
def fashion_copy(isolated_data):
    """A private copy of the Fashion-MNIST files (gz) under $DLCAMP_DATA/fashion-mnist."""
    if not FASHION_SYSTEM.is_dir():
        pytest.fail("Fashion-MNIST is not installed: run `make setup` (apt dataset-fashion-mnist)")
    dest = isolated_data / "data" / "fashion-mnist"
    shutil.copytree(FASHION_SYSTEM, dest)
    return dest


def corrupt_gz(path: Path, offset: int = 5000) -> None:
    """Flip one byte of the decompressed content and re-compress: a valid gz, wrong content."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[offset] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(data)))


SERVE_IMAGES = 64  # test images the serving tests use


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A quickly trained default CNN run (1 epoch on the small subset) for the serving tests."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("serve") / "run"
    subprocess.run([sys.executable, "-m", "dlcamp", "train", "--model", "cnn", "--quick",
                    "--epochs", "1", "--out", str(out)], check=True, capture_output=True,
                   env={**os.environ, "DLCAMP_QUIET": "1"}, timeout=300)
    return out


@pytest.fixture(scope="session")
def test_images():
    """The first Fashion-MNIST test images (N, 28, 28) uint8 and their labels."""
    from dlcamp.data import load_dataset

    ds = load_dataset("fashion-mnist", "test")
    return ds.images[:SERVE_IMAGES, 0].numpy(), ds.labels[:SERVE_IMAGES].numpy()
