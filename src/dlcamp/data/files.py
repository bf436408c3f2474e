"""Reading and checking dataset files: IDX parsing, SHA-256, search paths, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from dlcamp.core.errors import DatasetCorrupt


# Where dataset files are looked for, in order. `$DLCAMP_DATA/<name>` first so a user can
# point at their own copy; then dlcamp's cache (where `dlcamp data fetch` writes); then the
# system-wide location used by Debian's dataset-* packages ($DLCAMP_SYSTEM_DATA overrides it).
def system_dir() -> Path:
    return Path(os.environ.get("DLCAMP_SYSTEM_DATA") or "/usr/share/datasets")


def cache_dir() -> Path:
    """dlcamp's download cache: $DLCAMP_CACHE, else $XDG_CACHE_HOME/dlcamp, else ~/.cache/dlcamp."""
    if os.environ.get("DLCAMP_CACHE"):
        return Path(os.environ["DLCAMP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlcamp"


def search_dirs(name: str) -> list[Path]:
    """Directories that may hold dataset `name`, most specific first."""
    dirs = []
    if os.environ.get("DLCAMP_DATA"):
        root = Path(os.environ["DLCAMP_DATA"])
        dirs += [root / name, root]
    dirs += [cache_dir() / name, system_dir() / name]
    return dirs


def find_file(dirs: list[Path], stem: str) -> Path | None:
    """First `stem` or `stem.gz` found in `dirs`."""
    for d in dirs:
        for candidate in (d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """File content, transparently gunzipped; a broken gzip stream is reported as corruption."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetCorrupt(f"{path} cannot be read ({e}).") from e


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, source: Path | str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic 0x0000 + dtype code + ndim, big-endian sizes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetCorrupt(f"{source} is not an IDX file (bad magic number).")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes:
        raise DatasetCorrupt(f"{source}: unknown IDX element type 0x{code:02x}.")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetCorrupt(
            f"{source} is truncated or padded: {len(data)} bytes, header says {expected}."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
