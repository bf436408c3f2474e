"""Raw material for synthetic detection scenes: object cut-outs and backgrounds, found offline.

| source    | what                                          | where (Debian package / pip)        |
|-----------|-----------------------------------------------|-------------------------------------|
| tuxpaint  | ~800 PNG stamps with alpha, folder = category | `tuxpaint-stamps-default`           |
| mate      | 12 nature photos, 1280-2560 px                | `mate-backgrounds`                  |
| budgie    | ~18 CC0 photos (Debian trixie only; optional) | `budgie-backgrounds`                |
| gimp      | 58 tileable textures in GIMP's `.pat` format  | `gimp-data`                         |
| skimage   | brick, grass, gravel textures; a few photos   | `scikit-image` (pip)                |
| sklearn   | china.jpg, flower.jpg                         | `scikit-learn` (pip)                |

A file is named by a *key* `"<source>/<path inside the source folder>"`, e.g.
`"tuxpaint/food/fruit/banana.png"` or `"gimp/Stone/granite1.pat"`. A Debian source folder is
searched, in order, in `$DLCAMP_DATA/<source>`, dlcamp's cache `<cache>/<source>`, the cache's
extracted packages `<cache>/debian/usr/share/...` (where `scripts/install-data.sh` runs
`dpkg -x` when it cannot use apt) and the system `/usr/share/...` (`$DLCAMP_SYSTEM_ROOT`
replaces `/`, for tests). A named scene set pins a *manifest* (key -> SHA-256); `check_manifest`
reports a missing source with the package to install, and a changed file as corrupt.

Photo or clip-art: Tux Paint keeps most drawings in `.../cartoon/` folders; `stamp_style` calls
a stamp clip-art when it lies in such a folder *or* when its 8 most frequent colours (RGB at 5
bits per channel, opaque pixels only) cover more than 60% of its opaque pixels -- flat fills do,
photographs (smooth shading, sensor noise) stay far below (median ~0.2). The rule is a heuristic
(it calls the grey fly photo and the rendered Mercury clip-art); the named scene sets therefore
list their stamps by file name, checked by eye.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound
from dlcamp.data.files import cache_dir

# source -> (path under /usr/share or inside the pip package, Debian or pip package, kind)
SOURCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "tuxpaint": (("tuxpaint/stamps",), "tuxpaint-stamps-default", "debian"),
    "mate": (("backgrounds/mate",), "mate-backgrounds", "debian"),
    "budgie": (("backgrounds/budgie",), "budgie-backgrounds", "debian"),
    "gimp": (("gimp/2.0/patterns", "gimp/3.0/patterns"), "gimp-data", "debian"),
    "skimage": (("data",), "scikit-image", "pip:skimage"),
    "sklearn": (("datasets/images",), "scikit-learn", "pip:sklearn"),
}


def install_hint(source: str) -> str:
    """The command that installs `source`, for error messages."""
    _, package, kind = SOURCES[source]
    if kind.startswith("pip"):
        return f"`pip install 'dlcamp[data]'` (or `pip install {package}`)"
    return (f"`sudo apt-get install {package}` (Debian/Ubuntu), or run scripts/install-data.sh "
            f"(without root it extracts the package into {cache_dir() / 'debian'}), or set "
            f"DLCAMP_DATA to a folder holding {source}/")


def system_root() -> Path:
    """`/`, or `$DLCAMP_SYSTEM_ROOT` (tests point it at an empty folder)."""
    return Path(os.environ.get("DLCAMP_SYSTEM_ROOT") or "/")


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def candidate_dirs(source: str) -> list[Path]:
    """Folders that may hold `source`, most specific first."""
    rels, _, kind = SOURCES[source]
    if kind.startswith("pip:"):
        base = _package_dir(kind[4:])
        return [base / rel for rel in rels] if base else []
    dirs = []
    if os.environ.get("DLCAMP_DATA"):
        dirs.append(Path(os.environ["DLCAMP_DATA"]) / source)
    dirs.append(cache_dir() / source)
    for root in (cache_dir() / "debian", system_root()):
        dirs += [root / "usr/share" / rel for rel in rels]
    return dirs


def source_dir(source: str) -> Path:
    """The first existing folder of `source`; DatasetNotFound naming the fix otherwise."""
    for d in candidate_dirs(source):
        if d.is_dir():
            return d
    searched = ", ".join(str(d) for d in candidate_dirs(source)) or "(package not importable)"
    raise DatasetNotFound(f"scene source {source!r} ({SOURCES[source][1]}) not found "
                          f"(searched {searched}). Fix: {install_hint(source)}.")


def resolve(key: str) -> Path:
    """The file a key names, e.g. 'tuxpaint/food/fruit/banana.png'."""
    source, _, rel = key.partition("/")
    if source not in SOURCES:
        raise DatasetNotFound(f"unknown scene source in key {key!r}; sources: {sorted(SOURCES)}")
    path = source_dir(source) / rel
    if not path.is_file():
        raise DatasetNotFound(f"{key}: {path} is missing. Fix: {install_hint(source)}.")
    return path


@functools.lru_cache(maxsize=2048)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and modification time)."""
    st = path.stat()
    return _file_sha256(str(path), st.st_mtime_ns, st.st_size)


def make_manifest(keys: list[str]) -> dict[str, str]:
    """key -> SHA-256 of the installed file, for pinning a new set version."""
    return {key: file_sha256(resolve(key)) for key in sorted(keys)}


def check_manifest(manifest: dict[str, str], what: str = "scene set") -> None:
    """Every file of `manifest` is installed and has its pinned SHA-256.

    Raises DatasetNotFound (names the package to install) or DatasetCorrupt (names the
    files that differ: another package version, or damaged files).
    """
    changed = []
    for key, digest in manifest.items():
        path = resolve(key)
        if file_sha256(path) != digest:
            changed.append(str(path))
    if changed:
        sources = sorted({k.split("/")[0] for k in manifest})
        packages = " ".join(SOURCES[s][1] for s in sources)
        raise DatasetCorrupt(
            f"{what}: {len(changed)} source file(s) differ from the pinned version "
            f"(e.g. {', '.join(changed[:3])}). A different package version or damaged files; "
            f"reinstall with `sudo apt-get install --reinstall {packages}`, or use a set "
            "version built for your files.")


# --- reading the files ----------------------------------------------------------------------

def read_pat(data: bytes | Path, source: str = "<bytes>") -> np.ndarray:
    """Decode a GIMP pattern (.pat) to an (H, W, 3) uint8 RGB array (grey is repeated, the
    alpha of a 2- or 4-channel pattern is dropped).

    Format (GIMP's devel-docs/pat.txt): a big-endian header of five uint32 -- header size,
    version (1), width, height, bytes per pixel (1-4) -- then the magic b"GPAT" and a
    NUL-terminated UTF-8 name filling the header, then width*height*bpp raw bytes, row-major.
    Raises DatasetCorrupt on a bad magic, a bad depth or a short file.
    """
    if isinstance(data, Path):
        source, data = str(data), data.read_bytes()
    if len(data) < 24:
        raise DatasetCorrupt(f"{source} is not a GIMP pattern (file too short).")
    header_size, version, width, height, bpp = struct.unpack(">5I", data[:20])
    if data[20:24] != b"GPAT" or not 1 <= bpp <= 4 or header_size < 24:
        raise DatasetCorrupt(f"{source} is not a GIMP pattern (bad magic or depth).")
    need = header_size + width * height * bpp
    if len(data) < need:
        raise DatasetCorrupt(f"{source} is truncated: {len(data)} bytes, header says {need}.")
    pixels = np.frombuffer(data, np.uint8, width * height * bpp, header_size)
    pixels = pixels.reshape(height, width, bpp)  # (H, W, bpp)
    rgb = pixels[..., :1].repeat(3, -1) if bpp <= 2 else pixels[..., :3]
    return np.ascontiguousarray(rgb)


def load_rgb(path: Path) -> np.ndarray:
    """Any background file as (H, W, 3) uint8: .pat via `read_pat`, the rest via Pillow."""
    if path.suffix == ".pat":
        return read_pat(path)
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        return np.asarray(im.convert("RGB"))


def load_rgba(path: Path) -> np.ndarray:
    """A stamp as (h, w, 4) uint8 RGBA, cropped to the box of its non-transparent pixels."""
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        rgba = np.asarray(im.convert("RGBA"))
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise DatasetCorrupt(f"{path} has no visible pixels.")
    return np.ascontiguousarray(rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1])


def stamp_style(rgba: np.ndarray, key: str = "") -> str:
    """'clipart' or 'photo' for an (h, w, 4) stamp (the rule is in the module docstring)."""
    if "/cartoon/" in key:
        return "clipart"
    opaque = rgba[..., 3] > 250
    if opaque.sum() < 50:
        return "clipart"
    q = rgba[..., :3][opaque].astype(np.int32) >> 3  # (P, 3) at 5 bits per channel
    counts = np.bincount(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2])
    top8 = np.sort(counts)[-8:].sum() / opaque.sum()
    return "clipart" if top8 > 0.6 else "photo"


def list_stamps(category: str = "") -> list[str]:
    """Keys of the Tux Paint stamps under `category` (e.g. 'food/fruit'), sorted, recursive."""
    root = source_dir("tuxpaint")
    base = root / category if category else root
    return sorted("tuxpaint/" + p.relative_to(root).as_posix() for p in base.rglob("*.png"))


def list_backgrounds(source: str) -> list[str]:
    """Keys of the background images of one source, sorted (.jpg, .png, .pat)."""
    root = source_dir(source)
    exts = {".jpg", ".jpeg", ".png", ".pat"}
    return sorted(f"{source}/" + p.relative_to(root).as_posix()
                  for p in root.rglob("*") if p.suffix.lower() in exts)
