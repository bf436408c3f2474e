"""Turn an uploaded photo into what the camp stores: original, working copy and thumbnail.

    bytes -> size cap (413) -> kind sniffed from MAGIC BYTES, never the name or the client's
    content type (415 for SVG, HTML, PDF, HEIC without a decoder, ...) -> pixel count from
    the header, before any pixel is decoded (413) -> decode (JPEG: DCT-domain downscaling
    with `draft` when the photo is at least twice the working size; 422 if truncated or
    damaged) -> 8-bit RGB/RGBA -> downscaled once, long side <= WORK_LONG_SIDE (Lanczos)
    -> EXIF orientation applied -> working copy (JPEG q=90, or PNG for PNG sources and
    images with transparency) and thumbnail (long side THUMB_LONG_SIDE, JPEG, alpha on
    white).

The working copy and the thumbnail are written from pixels only: no EXIF (GPS!), XMP,
comments or text chunks survive; an RGB colour profile is kept so colours look the same.
The working copy's `width` x `height` are the pixels boxes are drawn in.
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import unicodedata
import zlib
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from dlcamp.core.errors import DlcampError

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # per file
MAX_PIXELS = 50_000_000  # width x height in the header: larger is refused as a bomb
WORK_LONG_SIDE = 2048  # px, the working copy's longer side at most
THUMB_LONG_SIDE = 256  # px
WORK_JPEG_QUALITY = 90
THUMB_JPEG_QUALITY = 85

# sniffed name -> (Pillow's format id, media type, the name people know)
FORMATS = {"jpeg": ("JPEG", "image/jpeg", "JPEG"), "png": ("PNG", "image/png", "PNG"),
           "webp": ("WEBP", "image/webp", "WebP"), "bmp": ("BMP", "image/bmp", "BMP"),
           "gif": ("GIF", "image/gif", "GIF"), "tiff": ("TIFF", "image/tiff", "TIFF"),
           "heic": ("HEIF", "image/heic", "HEIC/HEIF")}
ACCEPTED = "JPEG, PNG, WebP, BMP, GIF or TIFF"
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1", b"mif2"}
_HEVC_BRANDS = _HEIF_BRANDS - {b"mif1", b"msf1", b"mif2"}  # brands AVIF files never carry
_BMP_HEADERS = {12, 16, 40, 52, 56, 64, 108, 124}  # the sizes of BMP's DIB headers
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the fix (as ImageOps)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                  IndexError, KeyError, TypeError, ZeroDivisionError, RuntimeError)


class PhotoRejected(DlcampError):
    """An upload that cannot become a photo: `status` is the HTTP status (413 too big,
    415 not an accepted image, 422 corrupt or truncated); the message names the file."""

    def __init__(self, file_name: str, reason: str, status: int) -> None:
        self.file_name, self.reason, self.status = file_name, reason, status
        super().__init__(f"{_printable(file_name)}: {reason}")


@dataclass(frozen=True)
class Photo:
    """One ingested photo. `width` x `height` (px) are the working copy's, the coordinate
    system of boxes; `orig_width` x `orig_height` the original's after EXIF orientation,
    before downscaling. `media_type` is the ORIGINAL's (e.g. "image/heic")."""

    original: bytes  # the bytes as uploaded
    sha256: str  # hex digest of `original`: the image's identity in a project
    work: bytes  # the working copy, upright, long side <= WORK_LONG_SIDE
    work_format: str  # "jpeg" | "png"
    thumb: bytes  # JPEG, long side <= THUMB_LONG_SIDE
    width: int
    height: int
    orig_width: int
    orig_height: int
    media_type: str

    @property
    def work_media_type(self) -> str:
        return f"image/{self.work_format}"


def sniff(data: bytes) -> str | None:
    """The image format from the first bytes: "jpeg", "png", "webp", "bmp", "gif", "tiff",
    "heic" (decodable only with pillow_heif), or None for anything else (AVIF included)."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26 and \
            int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "bmp"
    brands = _ftyp_brands(data)
    if brands & _HEVC_BRANDS or (brands & _HEIF_BRANDS and not brands & {b"avif", b"avis"}):
        return "heic"
    return None


def media_type(head: bytes) -> str:
    """The media type of an image from its first bytes (64 are enough), e.g. "image/jpeg";
    "application/octet-stream" when sniff() does not know it."""
    fmt = sniff(head)
    return FORMATS[fmt][1] if fmt else "application/octet-stream"


def ingest_photo(data: bytes, file_name: str) -> Photo:
    """Uploaded bytes -> `Photo` (original kept, working copy, thumbnail).

    Raises PhotoRejected: 413 over MAX_UPLOAD_BYTES or MAX_PIXELS (read from the header,
    before decoding); 415 not one of the accepted formats by its magic bytes (the message
    says what it looks like; an empty file too), or HEIC/HEIF when pillow_heif is not
    installed, or a variant of a format Pillow cannot decode; 422 zero pixels, truncated or
    damaged.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise PhotoRejected(file_name, f"the file is {len(data) / 2**20:.1f} MB; the limit is "
                            f"{MAX_UPLOAD_BYTES // 2**20} MB per photo", 413)
    fmt = sniff(data)
    if fmt is None:
        raise PhotoRejected(file_name, f"this looks like {_describe(data)}, not a photo; "
                            f"accepted: {ACCEPTED}", 415)
    if fmt == "heic" and not _heif_decoder():
        raise PhotoRejected(file_name, "HEIC/HEIF photos cannot be read here (no HEIC "
                            "decoder installed): set the phone's camera to 'Most Compatible' "
                            "or export the photo as JPEG", 415)
    pil_id, media_type, known = FORMATS[fmt]
    try:  # (Pillow's own bomb check warns or raises in open(); MAX_PIXELS is lower)
        img = Image.open(io.BytesIO(data), formats=[pil_id])
        w, h = img.size  # from the header: nothing decoded yet
        if w * h > MAX_PIXELS:
            raise PhotoRejected(file_name, f"the image is {w} x {h} pixels; the limit is "
                                f"{MAX_PIXELS // 1_000_000} megapixels", 413)
        if w * h == 0:
            raise PhotoRejected(file_name, f"the image is {w} x {h} pixels: it has none",
                                422)
        size = _fit((w, h), WORK_LONG_SIDE)
        if fmt == "jpeg" and max(w, h) >= 2 * WORK_LONG_SIDE:
            img.draft(None, size)  # libjpeg decodes at 1/2, 1/4 or 1/8, still >= size
        img.load()  # decodes now: truncated or damaged files fail here
        orientation = img.getexif().get(0x0112, 1)  # 1..8; anything else: upright
        orientation = orientation if isinstance(orientation, int) else 1
        work = _resize(_normalise(img), size)
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PhotoRejected(file_name, f"the image is too large to decode safely (more than "
                            f"{MAX_PIXELS:,} pixels)", 413) from e
    except UnidentifiedImageError as e:
        raise PhotoRejected(file_name, f"it starts like a {known} file but cannot be read "
                            "(damaged?)", 422) from e
    except _DECODE_ERRORS as e:
        text = str(e) or type(e).__name__
        if any(w in text.lower() for w in ("not available", "unsupported", "not supported")):
            raise PhotoRejected(file_name, f"this kind of {known} file cannot be decoded "
                                f"here ({text}); send a JPEG or PNG", 415) from e
        raise PhotoRejected(file_name, f"the {known} file is truncated or damaged: {text}",
                            422) from e
    icc = img.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) and icc[16:20] == b"RGB " and len(icc) <= 2**16 and \
        img.mode in ("RGB", "RGBA", "P", "PA") else None  # an RGB profile for RGB pixels
    if orientation in _TRANSPOSE:
        work = work.transpose(_TRANSPOSE[orientation])
    png = fmt == "png" or work.mode == "RGBA"
    work_bytes = _encode(work, "png" if png else "jpeg", icc, WORK_JPEG_QUALITY)
    thumb = _encode(_resize(work, _fit(work.size, THUMB_LONG_SIDE)), "jpeg", icc,
                    THUMB_JPEG_QUALITY)
    orig_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return Photo(original=data, sha256=hashlib.sha256(data).hexdigest(), work=work_bytes,
                 work_format="png" if png else "jpeg", thumb=thumb,
                 width=work.width, height=work.height, orig_width=orig_size[0],
                 orig_height=orig_size[1], media_type=media_type)


@functools.cache
def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def _heif_decoder() -> bool:
    """True when pillow_heif is importable (it is then registered with Pillow, once)."""
    try:
        import pillow_heif  # noqa: F401  (checked on every call: it may be uninstalled)
    except ImportError:
        return False
    _register_heif()
    return True


def _ftyp_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF file (HEIC, AVIF, MP4, MOV), or {}."""
    if data[4:8] != b"ftyp" or len(data) < 12:
        return set()
    end = min(max(int.from_bytes(data[:4], "big"), 16), 96)
    return {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}


def _describe(data: bytes) -> str:
    """What a non-image upload looks like, for the 415 message."""
    if not data:
        return "an empty file (0 bytes)"
    brands = _ftyp_brands(data)
    if brands & {b"avif", b"avis"}:
        return "an AVIF image (not accepted: export it as JPEG)"
    if brands:
        return "a video (MP4/MOV)"
    if b"%PDF-" in data[:1024]:
        return "a PDF document"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "a ZIP archive (or an Office document)"
    if data[:2] == b"\x1f\x8b" or data[:6] == b"7z\xbc\xaf\x27\x1c" or data[:4] == b"Rar!":
        return "a compressed archive"
    head = data[:4096]
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                       (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            head = head[len(bom):].decode(codec, "ignore").encode()
            break
    if b"\0" in head:
        return "a binary file of an unknown kind"
    text = head.decode("utf-8", "replace").lstrip().lower()
    if "<svg" in text[:2048] and text.startswith(("<svg", "<?xml", "<!--", "<!doctype svg")):
        return "an SVG drawing (SVG is refused: it can carry scripts)"
    if text.startswith(("<!doctype html", "<html", "<head", "<body", "<script", "<meta")):
        return "an HTML page"
    if text.startswith("<"):
        return "an XML or HTML document"
    return "a text file"


def _fit(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(w, h) shrunk so the longer side is at most `long_side`; shorter side >= 1 px."""
    w, h = size
    if max(w, h) <= long_side:
        return w, h
    scale = long_side / max(w, h)
    return max(1, min(long_side, round(w * scale))), max(1, min(long_side, round(h * scale)))


def _normalise(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, or RGBA when the image has transparency. 16/32-bit
    and float pixels are scaled (65535 -> 255), CMYK/YCbCr/LAB/P converted, 1-bit expanded."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = img if mode in ("I", "F") else img.convert("I")
        low, high = img.getextrema()
        if img.mode == "I" and 0 <= low and high <= 65535:
            low, high = 0, 65535  # 16-bit pixels: full scale, as they were stored
        elif img.mode == "F" and 0 <= low and high <= 1:
            low, high = 0.0, 1.0
        scale = 255.0 / max(float(high) - float(low), 1e-12)
        return img.point(lambda v: v * scale + (0.5 - low * scale)).convert("L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        return img.convert("RGBA")
    return img if mode == "RGB" else img.convert("RGB")


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Lanczos downscale to `size` (alpha premultiplied by Pillow); no copy when equal."""
    if img.size == size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(img: Image.Image, fmt: str, icc: bytes | None, quality: int = 0) -> bytes:
    """Pixels only (plus an RGB colour profile): no EXIF, XMP, comment or text survives."""
    if fmt == "jpeg" and img.mode == "RGBA":  # transparent areas on white paper
        paper = Image.new("RGB", img.size, (255, 255, 255))
        paper.paste(img, mask=img.getchannel("A"))
        img = paper
    img.info = {}  # Pillow copies some of it (comment, colour profile) into what it saves
    out = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "jpeg":
        img.save(out, "JPEG", quality=quality, **extra)
    else:
        img.save(out, "PNG", compress_level=6, **extra)
    return out.getvalue()


def safe_file_name(name: str, ext: str | None = None, longest: int = 60) -> str:
    """A photo's name as stored and exported: the last path part of `name`, without control,
    bidirectional or other invisible format characters (U+202E would show 'gpj.exe' as
    'exe.jpg'), without leading dots, the stem at most `longest` characters (zip tools fail on
    names over 255 bytes; a CJK character is 3), never empty, '.' or '..' ("photo").
    `ext` (".jpg"): replaces the extension, e.g. with the working copy's real one."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and unicodedata.category(c) != "Cf")
    base = base.strip().lstrip(".").strip()
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        stem, suffix = base, ""
    stem = stem[:longest].rstrip() or "photo"
    suffix = ext.lstrip(".") if ext else suffix[:10]
    return f"{stem}.{suffix}" if suffix else stem


def _printable(name: str) -> str:
    """A file name fit for a one-line message: no control characters, at most 120 chars."""
    name = "".join(c if c.isprintable() else "?" for c in str(name)) or "(unnamed)"
    return name if len(name) <= 120 else name[:117] + "..."
