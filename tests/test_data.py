"""Datasets: shapes, labels, checksums, clear errors, the loader, augmentation, fetch."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FASHION_SYSTEM, corrupt_gz
from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound, DlcampError, UnknownName
from dlcamp.core.io import atomic_write_bytes
from dlcamp.data import ImageSet, TensorLoader, fetch_fashion_mnist, load_dataset, make_loaders
from dlcamp.data.datasets import FASHION_CLASSES_ZH, FASHION_FILES
from dlcamp.data.files import parse_idx, read_bytes, sha256
from dlcamp.data.loader import flip_and_shift


def test_fashion_mnist_shapes_labels_and_names():
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == torch.int64
    assert train.labels.bincount().tolist() == [6000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert train.classes[9] == "Ankle boot" and train.classes_zh == FASHION_CLASSES_ZH
    assert train.label_names([0, 8], lang="zh") == ["T恤", "包"]
    assert 0.28 < train.mean < 0.29 and 0.35 < train.std < 0.36
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_fashion_checksums_match_system_files():
    for stem, digest in FASHION_FILES.items():
        assert sha256(read_bytes(FASHION_SYSTEM / f"{stem}.gz")) == digest


def test_uncompressed_copy_is_accepted(fashion_copy):
    for gz in fashion_copy.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert len(load_dataset("fashion-mnist", "test")) == 10000


def test_corrupt_file_gives_one_clear_error(fashion_copy):
    corrupt_gz(fashion_copy / "t10k-labels-idx1-ubyte.gz", offset=100)
    with pytest.raises(DatasetCorrupt) as err:
        load_dataset("fashion-mnist", "test")
    message = str(err.value)
    assert "t10k-labels" in message and "corrupt" in message and "apt-get" in message


def test_truncated_gzip_is_reported_as_corrupt(fashion_copy):
    path = fashion_copy / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetCorrupt, match="train-labels"):
        load_dataset("fashion-mnist")


def test_missing_dataset_names_every_fix(isolated_data):
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("fashion-mnist")
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dlcamp data fetch" in message and "DLCAMP_DATA" in message


def test_unknown_dataset_and_split():
    with pytest.raises(UnknownName, match="fashion-mnist"):
        load_dataset("imagenet")
    with pytest.raises(UnknownName, match="split"):
        load_dataset("digits", "validation")


@pytest.mark.parametrize("name,total,shape", [("mnist", 5000, (1, 28, 28)),
                                              ("digits", 1797, (1, 8, 8))])
def test_digits_shipped_in_packages(name, total, shape):
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert len(train) + len(test) == total
    assert train.shape == shape and train.images.dtype == torch.uint8
    assert set(train.labels.unique().tolist()) == set(range(10))
    assert test.classes_zh[3] == "三"
    # the split is disjoint: no test image is also a train image
    train_rows = {bytes(r) for r in train.images.flatten(1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in test.images.flatten(1).numpy())
    assert overlap < 0.01 * len(test)  # (digits has a few exact duplicates in the source)


# --- IDX parsing -------------------------------------------------------------------------

def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_idx_round_trip(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    assert np.array_equal(parse_idx(_idx_bytes(array)), array)


def test_idx_rejects_bad_magic_and_wrong_length():
    good = _idx_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(DatasetCorrupt, match="magic"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(DatasetCorrupt, match="truncated"):
        parse_idx(good[:-1])


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(*_):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


# --- loader ------------------------------------------------------------------------------

def test_loader_covers_each_example_once_and_reshuffles():
    data = load_dataset("digits", "train")
    loader = TensorLoader(data, batch_size=100, shuffle=True, seed=3)
    assert len(loader) == 15
    first = torch.cat([y for _, y in loader])
    assert torch.equal(first.sort().values, data.labels.sort().values)
    assert not torch.equal(first, data.labels)
    again = torch.cat([y for _, y in loader])
    assert torch.equal(first, again)  # same epoch -> same order (resume depends on it)
    loader.set_epoch(1)
    assert not torch.equal(first, torch.cat([y for _, y in loader]))


def test_loader_normalises_fashion_mnist():
    loader = TensorLoader(load_dataset("fashion-mnist", "test"), batch_size=2500, shuffle=True)
    x = torch.cat([xb for xb, _ in loader])
    assert x.dtype == torch.float32 and x.shape == (10000, 1, 28, 28)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_loader_keeps_each_image_with_its_label():
    n = 250  # image i is filled with the value i, and its label is i
    values = torch.arange(n, dtype=torch.uint8)
    data = ImageSet("toy", "train", values[:, None, None, None].expand(n, 1, 4, 4).clone(),
                    values.long(), ["c"] * n, ["c"] * n, mean=0.5, std=0.25)
    for xb, yb in TensorLoader(data, batch_size=32, shuffle=True, seed=7):
        pixel = (xb[:, 0, 0, 0] * 0.25 + 0.5) * 255  # undo the normalisation
        assert torch.allclose(pixel, yb.float(), atol=1e-3)
        assert (xb == xb[:, :1, :1, :1]).all()


def test_drop_last_and_bad_batch_size():
    data = load_dataset("digits", "test")  # 360 examples
    assert len(TensorLoader(data, 100, drop_last=True)) == 3
    assert sum(len(y) for _, y in TensorLoader(data, 100, drop_last=True)) == 300
    with pytest.raises(ValueError):
        TensorLoader(data, 0)


def test_flip_and_shift_moves_a_pixel_within_pad():
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 3] = 1.0
    out = flip_and_shift(pad=2)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.allclose(out.sum((1, 2, 3)), torch.ones(64))
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = where // 9, where % 9
    assert rows.sub(4).abs().max() <= 2
    # a flipped image has its pixel at column 8-3=5, then shifted by up to 2
    assert set(cols.tolist()) <= set(range(1, 8))
    assert len(set(rows.tolist())) > 1 and len(set(cols.tolist())) > 2  # it really varies


def test_flip_only_gives_image_or_mirror():
    x = torch.randn(32, 1, 6, 6)
    out = flip_and_shift(pad=0, flip=True)(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()


def test_make_loaders_quick_mode_is_small():
    loaders = make_loaders("fashion-mnist", 500, quick=True)
    assert len(loaders.train_set) == 6000 and len(loaders.test_set) == 2000


# --- fetch (against a local HTTP server on loopback) ---------------------------------------

@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    shutil.copytree(FASHION_SYSTEM, root, ignore=shutil.ignore_patterns("*.md*"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_fetch_downloads_and_verifies(mirror, isolated_data):
    root, url = mirror
    dest = fetch_fashion_mnist(base_url=url, log=lambda s: None)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in FASHION_FILES)
    assert len(load_dataset("fashion-mnist", "test")) == 10000  # found in the cache


def test_fetch_rejects_corrupt_download_and_saves_nothing(mirror, isolated_data):
    root, url = mirror
    corrupt_gz(root / "t10k-images-idx3-ubyte.gz")
    dest = isolated_data / "fetched"
    with pytest.raises(DatasetCorrupt, match="nothing was saved"):
        fetch_fashion_mnist(dest, base_url=url, log=lambda s: None)
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.glob(".*"))  # no temporary files left


def test_fetch_offline_gives_offline_alternatives(isolated_data):
    with pytest.raises(DlcampError, match="apt-get install dataset-fashion-mnist"):
        fetch_fashion_mnist(base_url="http://127.0.0.1:9/", timeout=2, log=lambda s: None)


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "page.html"
        atomic_write_bytes(target, b"<p>hi</p>")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0600
    secret = tmp_path / "tokens.json"
    atomic_write_bytes(secret, b"{}", mode=0o600)
    assert secret.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".tokens.json.*"))  # no temporary file left behind
