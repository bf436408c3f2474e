"""Annotations in memory, and the safe reading of an import, shared by every format.

Every format converts to and from `Annotations`: a class list and images, each image with
its boxes as [x1, y1, x2, y2] floats in the image's own pixels (0 <= x1 < x2 <= width).
An image with no boxes is either *unlabelled* (`no_objects=False`) or explicitly *empty*
(`no_objects=True`); exports keep both, and each format records which is which:

    COCO   an extra image key  "no_objects": true | false
    YOLO   an empty label file for both, and the list `no_objects:` in data.yaml
    VOC    an XML with no <object> for both, and an extra element <no_objects>1|0</no_objects>

Where a file lacks our marker (a foreign tool wrote it) each format's own convention
decides; the format modules say which.

An import is a zip (bytes), a bare JSON file (bytes) or a folder, read through `Bundle`:
zip slip (`../`, absolute paths) is refused, and so are more than MAX_ENTRIES files, more
than MAX_TOTAL_BYTES uncompressed, a JSON file over MAX_JSON_BYTES, a label/XML/YAML file
over MAX_TEXT_BYTES and an image over ingest.py's MAX_UPLOAD_BYTES or MAX_PIXELS. Nothing
is extracted to disk. Every problem is one `ImportFailed(file, where, reason)`, raised
before anything is returned: an import gives a complete `Annotations` or nothing.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from dlcamp.camp.ingest import MAX_PIXELS
from dlcamp.camp.ingest import MAX_UPLOAD_BYTES as MAX_IMAGE_BYTES
from dlcamp.core.errors import BadArgument, DlcampError

MAX_ENTRIES = 50_000
MAX_TOTAL_BYTES = 500 * 1024**2
MAX_JSON_BYTES = 64 * 1024**2
MAX_TEXT_BYTES = 4 * 1024**2
BOX_TOLERANCE = 1.0  # px: a box edge up to this far outside the image is clipped, not refused
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PIL_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF"}
_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass
class ClassDef:
    """One class; its index is its position in `Annotations.classes`."""

    name: str
    name_zh: str = ""


@dataclass
class BoxAnn:
    """A box of class `label` (an index into the classes): corners in pixels, x1 < x2, y1 < y2."""

    label: int
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class ImageAnn:
    """One image: `width` x `height` pixels (as oriented for display), its boxes, and `data`,
    the image file's bytes (None for an annotations-only import)."""

    file_name: str
    width: int
    height: int
    boxes: list[BoxAnn] = field(default_factory=list)
    no_objects: bool = False
    data: bytes | None = None


@dataclass
class Annotations:
    """A whole dataset: the class list and the images, in order."""

    classes: list[ClassDef]
    images: list[ImageAnn]


class ImportFailed(DlcampError):
    """An import that cannot be used: `file` in the upload, `where` in it (a line, a JSON path
    such as `annotations[3].bbox[2]`, an XML element), and the `reason`, in one line."""

    def __init__(self, file: str, where: str, reason: str) -> None:
        self.file, self.where, self.reason = file, where, reason
        super().__init__(f"{file}: {where}: {reason}" if where else f"{file}: {reason}")


class Bundle:
    """The files of one import by relative POSIX path; each is read only when asked for.

    `Bundle.open(src, bare_name)`: `src` is zip bytes, other bytes (taken as one file named
    `bare_name`, e.g. a JSON export) or a folder. Raises ImportFailed for unsafe or oversized
    uploads.
    """

    def __init__(self, label: str, readers: dict[str, tuple[int, Callable[[], bytes]]]) -> None:
        self.label = label  # how the upload is named in messages
        self._readers = readers  # path -> (declared size, read function)

    @classmethod
    def open(cls, src: bytes | str | Path, bare_name: str = "upload.json") -> Bundle:
        if isinstance(src, str | Path):
            return cls._folder(Path(src))
        if src[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return cls._zip(bytes(src))
        if len(src) > MAX_JSON_BYTES:
            raise ImportFailed(bare_name, "", f"larger than {_size(MAX_JSON_BYTES)}")
        return cls(bare_name, {bare_name: (len(src), lambda: bytes(src))})

    @classmethod
    def _zip(cls, data: bytes) -> Bundle:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ImportFailed("upload.zip", "", f"not a readable zip archive ({exc})") from None
        if len(infos) > MAX_ENTRIES:
            raise ImportFailed("upload.zip", "", f"{len(infos)} entries; at most {MAX_ENTRIES}")
        readers, total = {}, 0
        for info in infos:
            name = safe_path(info.filename, "upload.zip")
            if info.is_dir() or name is None:
                continue
            if info.flag_bits & 0x1:
                raise ImportFailed(name, "", "encrypted zip entries are not supported")
            if name in readers:
                raise ImportFailed(name, "", "appears twice in the zip (duplicate file name)")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise ImportFailed("upload.zip", "", f"more than {_size(MAX_TOTAL_BYTES)} "
                                   "uncompressed")
            readers[name] = (info.file_size, lambda i=info: _read_zip(archive, i))
        return cls("upload.zip", readers)

    @classmethod
    def _folder(cls, root: Path) -> Bundle:
        if not root.is_dir():
            raise ImportFailed(str(root), "", "not a folder")
        readers, total, base = {}, 0, root.resolve()
        for path in sorted(root.rglob("*")):
            if path.is_dir():
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(base):
                raise ImportFailed(path.relative_to(root).as_posix(), "",
                                   "a link pointing outside the folder")
            name = safe_path(path.relative_to(root).as_posix(), str(root))
            if name is None:
                continue
            size = path.stat().st_size
            total += size
            if len(readers) >= MAX_ENTRIES or total > MAX_TOTAL_BYTES:
                raise ImportFailed(str(root), "", f"more than {MAX_ENTRIES} files or "
                                   f"{_size(MAX_TOTAL_BYTES)}")
            readers[name] = (size, path.read_bytes)
        return cls(str(root), readers)

    def names(self) -> list[str]:
        return sorted(self._readers)

    def __contains__(self, name: str) -> bool:
        return name in self._readers

    def rooted(self, *markers: str) -> Bundle:
        """This bundle, or its single top folder's content when that folder holds the files
        (a zip of a folder): unchanged if any of `markers` exists at the top."""
        names = list(self._readers)
        if not names or any(n == m or n.startswith(m + "/") for n in names for m in markers):
            return self
        top = names[0].split("/", 1)[0] + "/"
        if not all(n.startswith(top) for n in names):
            return self
        return Bundle(self.label, {n[len(top):]: r for n, r in self._readers.items()})

    def read(self, name: str, limit: int) -> bytes:
        size, reader = self._readers[name]
        if size > limit:
            raise ImportFailed(name, "", f"larger than {_size(limit)}")
        return reader()

    def text(self, name: str) -> str:
        try:
            return self.read(name, MAX_TEXT_BYTES).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportFailed(name, f"byte {exc.start}", "not UTF-8 text") from None

    def json(self, name: str) -> object:
        try:
            return json.loads(self.read(name, MAX_JSON_BYTES).decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ImportFailed(name, f"byte {exc.start}", "not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ImportFailed(name, f"line {exc.lineno} column {exc.colno}",
                               f"not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise ImportFailed(name, "", "JSON nested too deeply") from None

    def images(self) -> list[str]:
        """The paths of all image files (by extension), sorted."""
        return [n for n in self.names() if n.lower().endswith(IMAGE_SUFFIXES)]

    def image(self, name: str) -> bytes:
        return self.read(name, MAX_IMAGE_BYTES)


def _read_zip(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:  # zipfile stops at the declared size and checks the CRC
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ImportFailed(info.filename, "", f"cannot be read from the zip ({exc})") from None


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n} bytes"


def safe_path(name: str, container: str) -> str | None:
    """`name` as a clean relative POSIX path, None for OS clutter (__MACOSX, .DS_Store);
    ImportFailed for an absolute path or one that climbs out with `..` (zip slip)."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise ImportFailed(container, name, "absolute paths are not allowed")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImportFailed(container, name, "paths with '..' are not allowed (zip slip)")
    clean = "/".join(parts)
    if not clean or clean.startswith(_JUNK[0]) or parts[-1] in _JUNK[1:]:
        return None
    return clean


def image_size(file: str, data: bytes) -> tuple[int, int]:
    """(width, height) of an image file as displayed, i.e. after its EXIF orientation."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in _PIL_FORMATS:
                raise ImportFailed(file, "", f"{im.format} images are not accepted")
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)  # as ingest.py orients working copies
    except UnidentifiedImageError:
        raise ImportFailed(file, "", "not an image file (JPEG, PNG, WebP, BMP, GIF or "
                           "TIFF)") from None
    except (OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise ImportFailed(file, "", f"not a readable image ({exc})") from None
    if w * h > MAX_PIXELS:
        raise ImportFailed(file, "", f"{w}x{h} px is more than {MAX_PIXELS:,} pixels")
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def checked_image(file: str, data: bytes, width: int, height: int, declared_in: str,
                  where: str) -> None:
    """ImportFailed unless the image really is `width` x `height` as `declared_in` says."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImportFailed(file, "", f"larger than {_size(MAX_IMAGE_BYTES)}")
    real = image_size(file, data)
    if real != (width, height):
        turned = " (it is turned by its EXIF orientation tag)" if real == (height, width) else ""
        raise ImportFailed(declared_in, where, f"says {file} is {width}x{height} px but the "
                           f"image is {real[0]}x{real[1]} px{turned}")


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true/false"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "number")


def member(obj: object, key: str, file: str, where: str, kind: str, types: tuple) -> object:
    """`obj[key]` checked to be one of `types` (`kind` names them in the message)."""
    if not isinstance(obj, dict):
        raise ImportFailed(file, where, f"expected an object, got {json_type(obj)}")
    if key not in obj:
        raise ImportFailed(file, where, f"missing key {key!r}")
    value = obj[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ImportFailed(file, f"{where}.{key}" if where else key,
                           f"expected {kind}, got {json_type(value)}")
    return value


def number(value: object, file: str, where: str) -> float:
    """A finite JSON number as float, else ImportFailed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFailed(file, where, f"expected a number, got {json_type(value)}")
    if not math.isfinite(value):
        raise ImportFailed(file, where, "not a finite number")
    return float(value)


def size_value(value: object, file: str, where: str) -> int:
    """An image width or height: a positive whole number of pixels."""
    v = parse_float(value, file, where) if isinstance(value, str) else number(value, file, where)
    if v <= 0 or v != int(v) or v > 1_000_000:
        raise ImportFailed(file, where, f"image size must be a positive whole number, got {v:g}")
    return int(v)


def parse_float(text: str, file: str, where: str) -> float:
    """A finite number written as text (a label or XML file), else ImportFailed."""
    try:
        v = float(text)
    except ValueError:
        raise ImportFailed(file, where, f"expected a number, got {text.strip()[:40]!r}") from None
    if not math.isfinite(v):
        raise ImportFailed(file, where, "not a finite number")
    return v



def checked_box(file: str, where: str, label: int, x1: float, y1: float, x2: float, y2: float,
                width: int, height: int) -> BoxAnn:
    """A box inside a `width` x `height` image: edges up to BOX_TOLERANCE px outside are
    clipped; a box with no area or further outside raises ImportFailed."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ImportFailed(file, where, "box coordinates must be finite numbers")
    if x2 <= x1 or y2 <= y1:
        raise ImportFailed(file, where, f"box has no area (x {x1:g}..{x2:g}, y {y1:g}..{y2:g})")
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        raise ImportFailed(file, where, f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies outside "
                           f"the {width}x{height} image by more than {t:g} px")
    box = BoxAnn(label, max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        raise ImportFailed(file, where, "box has no area inside the image")
    return box


def checked_classes(names: list[str], file: str, where: str) -> None:
    """ImportFailed for an empty or repeated class name; `where` is a format string for the
    position, with `{i}` (0-based) or `{n}` (1-based), e.g. "categories[{i}]", "line {n}"."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ImportFailed(file, where.format(i=i, n=i + 1),
                               "class name must be a non-empty string")
        if name in seen:
            raise ImportFailed(file, where.format(i=i, n=i + 1), f"class {name!r} appears twice")
        seen.add(name)


def unique_file_names(images: list[ImageAnn], file: str) -> None:
    """ImportFailed when two images would get the same file name."""
    seen: set[str] = set()
    for img in images:
        if img.file_name.lower() in seen:
            raise ImportFailed(file, img.file_name, "two images have this file name")
        seen.add(img.file_name.lower())


def export_names(ann: Annotations) -> list[str]:
    """The file name each image gets in an export: its own basename, made unique.

    Names differing only in case or extension would share a label file (`a.jpg`, `A.png`
    -> `a.txt`), so later ones get `-2`, `-3`, ... before the extension. Raises BadArgument
    for an image without bytes or a box with an unknown class.
    """
    names, stems = [], set()
    for img in ann.images:
        if img.data is None:
            raise BadArgument(f"image {img.file_name!r} has no bytes; exports include images")
        for box in img.boxes:
            if not 0 <= box.label < len(ann.classes):
                raise BadArgument(f"image {img.file_name!r}: box class {box.label} is unknown")
        base = PurePosixPath(img.file_name.replace("\\", "/")).name.strip().lstrip(".")
        base = re.sub(r"[\x00-\x1f]", "_", base) or "image.jpg"
        stem, ext = os.path.splitext(base)
        candidate, n = base, 1
        while os.path.splitext(candidate)[0].lower() in stems:
            n += 1
            candidate = f"{stem}-{n}{ext}"
        stems.add(os.path.splitext(candidate)[0].lower())
        names.append(candidate)
    return names


def write_zip(files: list[tuple[str, bytes]]) -> bytes:
    """A zip of `files` (name, bytes), byte-for-byte the same for the same input."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            is_image = name.lower().endswith(IMAGE_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if is_image else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def fmt(value: float) -> str:
    """A coordinate as text that reads back to the same float ("12", "12.5")."""
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(float(value))
