"""Photo ingest: formats sniffed by magic bytes, bombs and junk refused with the right status,
EXIF orientation, one downscale, metadata (GPS) stripped, every pixel mode converted right."""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import time
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps, features

from dlcamp.camp.ingest import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    THUMB_LONG_SIDE,
    WORK_LONG_SIDE,
    Photo,
    PhotoRejected,
    ingest_photo,
    sniff,
)
from dlcamp.core.errors import DlcampError
from dlcamp.serve.badinput import png16

INVERSE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_270}  # stored = INVERSE(upright) shows upright when fixed


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def pixels(data: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode), dtype=np.int16)


def scene(w: int = 96, h: int = 64) -> Image.Image:
    """An asymmetric picture in flat 16-px blocks (JPEG keeps them nearly exact)."""
    img = Image.new("RGB", (w, h), (240, 240, 240))
    img.paste((200, 30, 30), (0, 0, w // 2, h // 2))  # red top-left
    img.paste((30, 160, 40), (w // 2, 0, w, h // 4))  # green strip top-right
    img.paste((20, 40, 190), (0, 3 * h // 4, w // 4, h))  # blue bottom-left corner
    return img


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h 8-bit grey pixels and holds no pixel data at all."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def rejected(data: bytes, name: str = "upload.jpg") -> PhotoRejected:
    with pytest.raises(PhotoRejected) as info:
        ingest_photo(data, name)
    err = info.value
    assert isinstance(err, DlcampError) and name in str(err) and "\n" not in str(err)
    return err


# -- accepted formats ------------------------------------------------------------------------

ACCEPTED = [("jpeg", "JPEG", {"quality": 95}, "jpeg"), ("png", "PNG", {}, "png"),
            ("webp", "WEBP", {"lossless": True}, "jpeg"), ("bmp", "BMP", {}, "jpeg"),
            ("gif", "GIF", {}, "jpeg"), ("tiff", "TIFF", {}, "jpeg"),
            ("tiff", "TIFF", {"compression": "tiff_lzw"}, "jpeg")]


@pytest.mark.parametrize(("name", "fmt", "kw", "work_format"), ACCEPTED)
def test_every_accepted_format_round_trips(name, fmt, kw, work_format):
    img = scene()
    data = encode(img, fmt, **kw)
    assert sniff(data) == name
    photo = ingest_photo(data, "photo.bin")  # the name says nothing; the bytes decide
    assert isinstance(photo, Photo)
    assert photo.original is data and photo.sha256 == hashlib.sha256(data).hexdigest()
    assert photo.media_type == f"image/{name}" and photo.work_format == work_format
    assert photo.work_media_type == f"image/{work_format}"
    assert (photo.width, photo.height) == (photo.orig_width, photo.orig_height) == img.size
    work = Image.open(io.BytesIO(photo.work))
    assert work.format == work_format.upper() and work.mode == "RGB" and work.size == img.size
    assert np.abs(pixels(photo.work) - np.asarray(img, dtype=np.int16)).mean() < 3
    thumb = Image.open(io.BytesIO(photo.thumb))
    assert thumb.format == "JPEG" and thumb.size == img.size  # small: never enlarged


def test_sha256_is_the_identity_of_the_bytes():
    a = encode(scene(), "PNG")
    b = encode(scene(), "PNG", compress_level=1)  # same pixels, other bytes
    pa, pb = ingest_photo(a, "a.png"), ingest_photo(b, "b.png")
    assert pa.sha256 == hashlib.sha256(a).hexdigest() != pb.sha256
    assert np.array_equal(pixels(pa.work), pixels(pb.work))
    assert ingest_photo(a, "again.png").sha256 == pa.sha256


# -- refused kinds ---------------------------------------------------------------------------

def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.txt", "hello")
    return out.getvalue()


REFUSED = [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "SVG"),
    (b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- x -->\n<svg width="10"/>', "SVG"),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
    (b"  <html><script>fetch('/api')</script></html>", "HTML"),
    (b'<?xml version="1.0"?><root/>', "XML"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
    (_zip(), "ZIP"),
    (b"just some words, no picture\n", "text"),
    (b"", "empty"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(32), "video"),
    (b"\x7fELF\x02\x01\x01" + bytes(64), "binary"),
    (b"BM" + bytes(40), "binary"),  # "BM" alone is not a bitmap header
]


@pytest.mark.parametrize(("data", "looks_like"), REFUSED)
def test_non_images_get_415_saying_what_they_look_like(data, looks_like):
    assert sniff(data) is None
    err = rejected(data, "holiday.jpg")  # a photo's name does not make it one
    assert err.status == 415
    assert looks_like in str(err) and "accepted: JPEG, PNG, WebP, BMP, GIF or TIFF" in str(err)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write AVIF")
def test_avif_is_named_and_refused():
    data = encode(scene(), "AVIF")
    assert sniff(data) is None
    err = rejected(data, "p.avif")
    assert err.status == 415 and "AVIF" in str(err)


def test_file_name_in_the_message_is_one_printable_line():
    with pytest.raises(PhotoRejected) as info:
        ingest_photo(b"%PDF-1.4", "bad\nname\x1b[31m.pdf")
    assert str(info.value).startswith("bad?name?[31m.pdf: ") and "\n" not in str(info.value)


# -- HEIC --------------------------------------------------------------------------------------

HEIC_START = b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf" + bytes(64)


def test_heic_without_a_decoder_is_a_clear_415(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # `import pillow_heif` fails
    for start in (HEIC_START, HEIC_START.replace(b"ftypheic", b"ftypmif1")):
        assert sniff(start) == "heic"
        err = rejected(start, "IMG_0001.HEIC")
        assert err.status == 415 and "HEIC" in str(err) and "'Most Compatible'" in str(err)
        assert "JPEG" in str(err)


def test_heic_is_decoded_when_pillow_heif_is_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("pillow_heif has no HEIC encoder to write a test photo")
    pillow_heif.register_heif_opener()
    img = scene(128, 96)
    data = encode(img, "HEIF", quality=95)
    assert sniff(data) == "heic"
    photo = ingest_photo(data, "IMG_0002.HEIC")
    assert photo.media_type == "image/heic" and photo.work_format == "jpeg"
    assert (photo.width, photo.height) == img.size
    assert np.abs(pixels(photo.work) - np.asarray(img, dtype=np.int16)).mean() < 4


def test_truncated_heic_is_422_when_decodable():
    pytest.importorskip("pillow_heif")
    err = rejected(HEIC_START, "cut.heic")
    assert err.status == 422


# -- sizes and bombs ---------------------------------------------------------------------------

def test_over_the_byte_cap_is_413_before_anything_else():
    err = rejected(b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES), "huge.jpg")
    assert err.status == 413 and "25 MB" in str(err)


def test_pixel_bomb_is_refused_from_the_header_before_decoding():
    w, h = 10_000, MAX_PIXELS // 10_000 + 1  # one row too many
    rows = zlib.compress((b"\x00" + bytes(w // 8)) * h, 9)  # 1-bit: a few kB, real pixels
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    assert len(bomb) < 20_000
    start = time.perf_counter()
    err = rejected(bomb, "bomb.png")
    assert err.status == 413 and "50 megapixels" in str(err)
    assert time.perf_counter() - start < 0.5  # nothing was decoded
    # no pixel data at all: still 413, so the header alone decided (decoding would say 422)
    assert rejected(png_header_only(w, h), "bomb.png").status == 413
    assert rejected(png_header_only(w, h - 2), "ok-size.png").status == 422


def test_pillow_bomb_limits_become_413():
    """Above Pillow's own limits (it warns at ~89 MP and raises at ~179 MP in open())."""
    small = encode(scene(), "JPEG")
    sof = small.index(b"\xff\xc0") + 5  # SOF0: precision, then height and width
    for side in (10_000, 30_000):  # 100 MP (Pillow warns) and 900 MP (Pillow raises)
        big = small[:sof] + struct.pack(">HH", side, side) + small[sof + 4:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            assert rejected(big, "bomb.jpg").status == 413


@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_files_are_422(fmt, cut):
    data = encode(scene(200, 150), fmt)
    err = rejected(data[: int(len(data) * cut)], f"cut.{fmt.lower()}")
    assert err.status == 422


def test_corrupt_files_are_422():
    assert rejected(b"\x89PNG\r\n\x1a\n" + bytes(100), "junk.png").status == 422
    assert rejected(b"\xff\xd8\xff\xe0" + b"garbage" * 20, "junk.jpg").status == 422
    assert rejected(png_header_only(0, 10), "empty.png").status == 422
    data = bytearray(encode(scene(), "PNG"))
    data[60:80] = bytes(20)  # inside the pixel data: the CRC and zlib stream break
    assert rejected(bytes(data), "broken.png").status == 422


# -- EXIF orientation ------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_upright_pixels(orientation):
    upright = scene(96, 64)
    stored = upright if orientation == 1 else upright.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    oracle = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))  # Pillow's own reading
    photo = ingest_photo(data, f"o{orientation}.jpg")
    assert (photo.width, photo.height) == (photo.orig_width, photo.orig_height) == (96, 64)
    work = pixels(photo.work)
    assert np.abs(work - np.asarray(upright, dtype=np.int16)).mean() < 3
    assert np.abs(work - np.asarray(oracle, dtype=np.int16)).mean() < 2
    assert Image.open(io.BytesIO(photo.work)).getexif().get(0x0112) is None  # not twice
    assert pixels(photo.thumb).shape == (64, 96, 3)


def test_orientation_and_downscale_together():
    upright = scene(1200, 3000)  # portrait photo, stored landscape with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    photo = ingest_photo(data, "portrait.jpg")
    assert (photo.orig_width, photo.orig_height) == (1200, 3000)
    assert (photo.width, photo.height) == (819, 2048)
    expected = upright.resize((819, 2048), Image.Resampling.LANCZOS)
    assert np.abs(pixels(photo.work) - np.asarray(expected, dtype=np.int16)).mean() < 3
    assert Image.open(io.BytesIO(photo.thumb)).size == (102, 256)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_orientation_read_from_other_formats(fmt):
    upright = scene(96, 64)
    exif = Image.Exif()
    exif[0x0112] = 8
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(upright.transpose(INVERSE[8]), fmt, exif=exif.tobytes(), **kw)
    photo = ingest_photo(data, f"o8.{fmt.lower()}")
    assert (photo.width, photo.height, photo.orig_width, photo.orig_height) == (96, 64, 96, 64)
    assert np.abs(pixels(photo.work) - np.asarray(upright, dtype=np.int16)).mean() < 3


# -- metadata ----------------------------------------------------------------------------------

def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (39.0, 54.0, 26.0), 3: "E", 4: (116.0, 23.0, 29.0)})
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_gps_and_other_metadata_never_reach_the_working_copy_or_thumbnail(fmt):
    kw = {"exif": _gps_exif().tobytes()}
    if fmt == "JPEG":
        kw.update(comment=b"secret comment", xmp=b"<x:xmpmeta><exif:GPSLatitude>39,54N"
                  b"</exif:GPSLatitude></x:xmpmeta>")
    data = encode(scene(), fmt, **kw)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the original has GPS
    photo = ingest_photo(data, f"gps.{fmt.lower()}")
    assert photo.original == data  # kept as uploaded
    for out in (photo.work, photo.thumb):
        img = Image.open(io.BytesIO(out))
        assert not img.getexif() and not img.getexif().get_ifd(0x8825)
        assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(img.info)
        for secret in (b"Exif", b"GPS", b"PhoneMaker", b"secret", b"xmpmeta"):
            assert secret not in out


def test_rgb_colour_profile_is_kept():
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = ingest_photo(encode(scene(), "JPEG", icc_profile=srgb), "icc.jpg")
    assert Image.open(io.BytesIO(photo.work)).info.get("icc_profile") == srgb


# -- downscaling ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "work", "thumb"), [
    ((2048, 2048), (2048, 2048), (256, 256)),
    ((2049, 1000), (2048, 1000), (256, 125)),  # 999.5 rounds up
    ((100, 5000), (41, 2048), (5, 256)),
    ((40_000, 3), (2048, 1), (256, 1)),
    ((300, 200), (300, 200), (256, 171)),
    ((200, 100), (200, 100), (200, 100)),
])
def test_downscaled_once_within_bounds(size, work, thumb):
    photo = ingest_photo(encode(Image.new("L", size, 120), "PNG"), "flat.png")
    assert (photo.width, photo.height) == work and photo.orig_width == size[0]
    assert Image.open(io.BytesIO(photo.work)).size == work
    assert Image.open(io.BytesIO(photo.thumb)).size == thumb
    assert max(work) <= WORK_LONG_SIDE and max(thumb) <= THUMB_LONG_SIDE


def test_big_jpeg_uses_draft_yet_matches_a_full_decode():
    base = Image.linear_gradient("L").resize((5000, 3750))
    img = Image.merge("RGB", (base, base.transpose(Image.Transpose.ROTATE_180), base))
    data = encode(img, "JPEG", quality=92)
    photo = ingest_photo(data, "big.jpg")
    assert (photo.width, photo.height) == (2048, 1536) and photo.orig_width == 5000
    full = Image.open(io.BytesIO(data)).resize((2048, 1536), Image.Resampling.LANCZOS)
    assert np.abs(pixels(photo.work) - np.asarray(full, dtype=np.int16)).mean() < 2


# -- pixel modes ---------------------------------------------------------------------------------

def test_16_bit_png_scaled_not_clipped():
    grey = (np.arange(64 * 32).reshape(32, 64) % 256).astype(np.uint16)
    photo = ingest_photo(png16(grey * 257), "deep.png")
    assert photo.work_format == "png"
    assert np.abs(pixels(photo.work, "L") - grey).max() <= 1
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 128)], axis=-1)
    photo = ingest_photo(png16(rgb * 257), "deep-rgb.png")
    assert np.abs(pixels(photo.work) - rgb).max() <= 1


def test_palette_png_with_transparency():
    img = Image.new("P", (64, 64), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 32, 64))  # left half blue, right half palette 0: transparent
    photo = ingest_photo(encode(img, "PNG", transparency=0), "pal.png")
    assert photo.work_format == "png"
    work = np.asarray(Image.open(io.BytesIO(photo.work)))
    assert work.shape == (64, 64, 4)
    assert (work[:, :32] == (0, 0, 255, 255)).all() and (work[:, 32:, 3] == 0).all()
    thumb = pixels(photo.thumb)  # JPEG: transparency on white paper
    assert np.abs(thumb[:, 40:] - 255).max() <= 3 and np.abs(thumb[:, :24] - (0, 0, 255)).max() < 8


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "TIFF"])
def test_transparency_in_other_formats_gives_a_png(fmt):
    img = scene().convert("RGBA")
    img.paste((0, 0, 0, 0), (48, 0, 96, 64))  # the right half transparent
    photo = ingest_photo(encode(img, fmt), f"alpha.{fmt.lower()}")
    assert photo.work_format == "png"
    assert np.asarray(Image.open(io.BytesIO(photo.work)).convert("RGBA"))[:, 60:, 3].max() == 0


def test_cmyk_jpeg_converted_to_rgb():
    img = scene()
    photo = ingest_photo(encode(img.convert("CMYK"), "JPEG", quality=95), "cmyk.jpg")
    assert Image.open(io.BytesIO(photo.work)).mode == "RGB"
    assert np.abs(pixels(photo.work) - np.asarray(img, dtype=np.int16)).mean() < 4


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 30), c) for c in ((220, 20, 20), (20, 20, 220))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    photo = ingest_photo(data, "anim.gif")
    assert photo.work_format == "jpeg"
    assert np.abs(pixels(photo.work) - (220, 20, 20)).max() < 12


@pytest.mark.parametrize(("mode", "fmt", "value", "expected"), [
    ("1", "PNG", 1, 255), ("L", "JPEG", 77, 77), ("LA", "PNG", (90, 255), 90),
    ("I", "TIFF", 65535 // 2, 127), ("F", "TIFF", 0.5, 128), ("I;16", "TIFF", 257 * 40, 40),
    ("YCbCr", "JPEG", (128, 128, 128), 128),
])
def test_pixel_modes_become_8_bit(mode, fmt, value, expected):
    img = Image.new(mode, (48, 32), value)
    if mode == "I":  # a second value keeps the range 16-bit (values, not the image's extremes)
        img.putpixel((0, 0), 0)
    photo = ingest_photo(encode(img, fmt), f"mode.{fmt.lower()}")
    assert abs(int(np.median(pixels(photo.work, "L"))) - expected) <= 2


def test_media_type_follows_the_sniffed_format():
    from dlcamp.camp.ingest import media_type

    assert media_type(b"\xff\xd8\xff\xe0" + bytes(60)) == "image/jpeg"
    assert media_type(b"\x89PNG\r\n\x1a\n" + bytes(56)) == "image/png"
    assert media_type(b"RIFF\0\0\0\0WEBPVP8 " + bytes(48)) == "image/webp"
    assert media_type(b"<svg xmlns='http://www.w3.org/2000/svg'>") == "application/octet-stream"
