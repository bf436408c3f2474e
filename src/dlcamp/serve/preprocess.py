"""Turn an uploaded image into exactly the tensor the model saw in training.

Training images (Fashion-MNIST, MNIST) are small grey squares with a dark background and a
bright object. A phone photo is the opposite on every count: big, in colour, often rotated by
its EXIF tag, usually a dark object on a light background. `Preprocess` bridges the two:

    decode (format and size checked before any pixel is decoded) -> EXIF orientation
    -> 8-bit grey: 16/32-bit and float pixels scaled, not clipped (`value_range`), alpha
       onto white -> shrink so the longer side is the training size, keeping proportions
    -> invert if the border is light -> stretch a grey background down to 0
    -> pad to a square with the background (0) -> normalise with the training mean/std
    (-> upsample)

Memory stays a small multiple of the image in 8-bit grey, whatever its shape or depth: Pillow
makes that one full-size grey copy; the decisions use its extremes and a histogram of its
border; numpy only ever holds the shrunk image. Shrinking before padding means a
200,000 x 1 strip becomes 28 x 1 and then 28 x 28, never a 200,000-pixel square (40 GB).

The settings come from the checkpoint (`Preprocess.from_checkpoint`), so the server and
`dlcamp evaluate` normalise identically.
Every problem raises `ImageError` with an HTTP status and a sentence for the user.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError, features

MAX_PIXELS = 24_000_000  # a 24-megapixel photo is fine; a 100k x 100k "bomb" is not

# The formats users send, as Pillow names them -> (the name users know, the Pillow feature
# its decoder needs; None: built into Pillow). Only these are opened: Pillow's rarer
# plugins (EPS runs Ghostscript, FITS, PSD, ...) stay out of reach of an upload.
_FORMATS = {"PNG": ("PNG", "zlib"), "JPEG": ("JPEG", "jpg"), "GIF": ("GIF", None),
            "BMP": ("BMP", None), "WEBP": ("WebP", "webp"), "TIFF": ("TIFF", None),
            "AVIF": ("AVIF", "avif"), "JPEG2000": ("JPEG 2000", "jpg_2000"),
            "PPM": ("PNM (PBM/PGM/PPM)", None)}
# ISO-BMFF brands of HEIC/HEIF files (an iPhone's default photo format)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_DEEP = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16/32-bit integer, 32-bit float


class ImageError(ValueError):
    """A bad upload: `status` is the HTTP status to answer with, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@functools.cache
def accepted_formats() -> tuple[str, ...]:
    """The Pillow format ids uploads may use: the common formats this Pillow build decodes
    (WebP, AVIF, JPEG 2000 only where Pillow was built with their libraries)."""
    Image.init()

    def decodes(feature: str | None) -> bool:
        if feature is None:
            return True
        if feature in features.codecs:
            return bool(features.check_codec(feature))
        return feature in features.modules and bool(features.check_module(feature))

    return tuple(f for f, (_, feature) in _FORMATS.items()
                 if f in Image.OPEN and decodes(feature))


def formats_sentence() -> str:
    """'PNG, JPEG, ... or TIFF': the accepted formats, for every message that names them."""
    names = [_FORMATS[f][0] for f in accepted_formats()]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class Preprocess:
    size: int = 28            # side of the square the model was trained on
    channels: int = 1
    mean: float = 0.0         # training statistics in [0, 1] units
    std: float = 1.0
    resize: int = 0           # the run upsampled batches to resize x resize (0: off)
    invert: str = "auto"      # auto | always | never: training images have dark backgrounds

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Preprocess:
        data = ckpt["data"]
        saved = data.get("preprocess", {})
        channels, height, _ = data["shape"]
        return cls(size=int(height), channels=int(channels), mean=float(data["mean"]),
                   std=float(data["std"]), resize=int(data.get("resize", 0)),
                   invert=saved.get("invert", "auto"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, data: bytes) -> Image.Image:
        """Bytes -> an upright PIL image in the mode it was stored in (any bit depth).

        Raises ImageError: 400 empty, truncated or damaged; 413 over MAX_PIXELS (checked from
        the header, before decoding); 415 not one of `accepted_formats()`, or a variant of one
        this Pillow build cannot decode (the message lists the accepted formats).
        """
        if not data:
            raise ImageError(f"the upload is empty: send the bytes of an image "
                             f"({formats_sentence()})")
        kind = "image"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=accepted_formats())
                kind, (width, height) = f"{img.format} file", img.size  # from the header
                if width * height > MAX_PIXELS:
                    raise ImageError(f"the image is {width} x {height} pixels; the limit is "
                                     f"{MAX_PIXELS // 1_000_000} megapixels", status=413)
                if width * height == 0:
                    raise ImageError(f"the image is {width} x {height} pixels: it has none")
                img.load()  # decodes now: truncated files fail here
                ImageOps.exif_transpose(img, in_place=True)  # no copy when already upright
        except ImageError:
            raise
        except UnidentifiedImageError as e:
            raise ImageError(_unreadable(data), status=415) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"the image is too large to decode safely: {e}", status=413) from e
        except (OSError, SyntaxError, ValueError) as e:
            if "not available" in str(e) or "unsupported" in str(e).lower():  # no decoder
                raise ImageError(f"this kind of {kind} cannot be decoded here "
                                 f"({e}); accepted formats: {formats_sentence()}",
                                 status=415) from e
            raise ImageError(f"the image could not be decoded (truncated or damaged?): {e}") \
                from e
        return img

    # -- pixels ---------------------------------------------------------------------------
    def to_array(self, img: Image.Image) -> np.ndarray:
        """Upright PIL image of any mode and shape -> (size, size) uint8 with a dark
        background, like a training image.

        The decisions (invert? how much to stretch?) use the full-size grey image's extremes
        and border histogram; the arithmetic is done on the image shrunk to `size` on its
        longer side; padding comes last. Memory: the grey image (1 byte a pixel) and little
        more.
        Raises ImageError (415) for a pixel mode Pillow cannot turn into grey.
        """
        grey = _grey(img)  # full size, mode L
        low, high = grey.getextrema()
        border = _border_histogram(grey)  # (256,) counts: the border is mostly background
        small = np.asarray(_shrink(grey, self.size), dtype=np.uint8)  # (h, w), longer == size
        levels = np.arange(256)
        if self.invert == "always" or (self.invert == "auto" and
                                       (border * levels).sum() / border.sum() > 127):
            small, border, high = 255 - small, border[::-1], 255 - low  # dark on light paper
        background = _median(border)
        if background > 8:  # grey paper, shadows: training backgrounds are 0, so stretch
            scale = 255.0 / max(float(high) - background, 1.0)
            small = np.clip((small.astype(np.float32) - background) * scale, 0, 255)
            small = small.astype(np.uint8)  # (a training image's background is 0: untouched)
        h, w = small.shape
        square = np.zeros((self.size, self.size), dtype=np.uint8)  # the background: 0
        top, left = (self.size - h) // 2, (self.size - w) // 2
        square[top:top + h, left:left + w] = small  # centred, proportions kept
        return square

    def to_tensor(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 pixels (..., H, W) -> the normalised float batch (B, C, H, W) of training.

        The same arithmetic as dlcamp.data.loader.TensorLoader: x * (1/(255 std)) - mean/std.
        """
        x = torch.as_tensor(pixels)
        x = x.reshape(-1, self.channels, self.size, self.size).float()
        x = x.mul_(1.0 / (255.0 * self.std)).add_(-self.mean / self.std)
        if self.resize and self.resize != self.size:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                              align_corners=False, antialias=False)
        return x

    def __call__(self, data: bytes) -> np.ndarray:
        """Image bytes -> (size, size) uint8; raises ImageError (see `decode`, `to_array`)."""
        return self.to_array(self.decode(data))


def value_range(img: Image.Image) -> tuple[float, float]:
    """The pixel values that become 0 and 255 when a deep image is scaled to 8 bits.

    Scaled, never clipped, so a 16-bit image of value v * 257 gives back exactly v:
      - 8-bit modes (L, RGB, ...):              (0, 255), unchanged
      - I;16, I;16L, I;16B, I;16N (16-bit):     (0, 65535), full scale
      - I (32-bit integer; 16-bit PNGs and TIFFs may open as I): (0, 65535) when every
        value fits 16 bits, otherwise the image's own (min, max)
      - F (32-bit float): (0, 1) when every value is in [0, 1], otherwise (min, max);
        NaN and infinities are left out of (min, max); scaled, NaN becomes 0 and an
        infinity the nearest end
    A constant image gets a range of width 1 (it becomes black).
    """
    if img.mode not in ("I", "F"):
        return (0.0, 65535.0) if img.mode.startswith("I;16") else (0.0, 255.0)
    low, high = (float(v) for v in img.getextrema())
    if not (math.isfinite(low) and math.isfinite(high)):  # NaN or inf: skip them (rare)
        a = np.asarray(img)
        finite = np.isfinite(a)
        low = float(a.min(where=finite, initial=np.inf)) if finite.any() else 0.0
        high = float(a.max(where=finite, initial=-np.inf)) if finite.any() else 1.0
    if img.mode == "I" and 0 <= low and high <= 65535:
        return 0.0, 65535.0
    if img.mode == "F" and 0 <= low and high <= 1:
        return 0.0, 1.0
    return low, max(high, low + 1.0)


def _unreadable(data: bytes) -> str:
    """Why Pillow could not identify the upload, for a 415."""
    if data[4:8] == b"ftyp" and any(brand in data[8:40] for brand in _HEIF_BRANDS):
        return ("HEIC/HEIF photos (an iPhone's default) cannot be read here: send a JPEG "
                "(iPhone: Settings > Camera > Formats > Most Compatible); accepted formats: "
                f"{formats_sentence()}")
    return f"the upload is not an image this server can read; accepted formats: " \
        f"{formats_sentence()}"


def _grey(img: Image.Image) -> Image.Image:
    """Any mode -> 8-bit grey (L) of the same size: deep pixels scaled by `value_range`,
    transparency onto white paper. Pillow does the work; at most 4 bytes a pixel meanwhile."""
    try:
        if img.mode in _DEEP:
            if img.mode not in ("I;16", "I", "F"):  # the modes Pillow scales directly
                img = img.convert("I")
            low, high = value_range(img)
            scale = 255.0 / (high - low)  # then + 0.5 and truncation to 8 bits: rounding
            return img.point(lambda v: v * scale + (0.5 - low * scale)).convert("L")
        if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (img.mode == "P" and
                                                             "transparency" in img.info):
            grey = img.convert("LA")  # a transparent drawing on white paper
            paper = Image.new("L", img.size, 255)
            paper.paste(grey.getchannel("L"), mask=grey.getchannel("A"))
            return paper
        if img.mode == "LAB":  # Pillow turns LAB into RGB only
            img = img.convert("RGB")
        return img if img.mode == "L" else img.convert("L")
    except (ValueError, OSError) as e:
        raise ImageError(f"images with {img.mode} pixels cannot be turned into grey here "
                         f"({e}); send RGB or greyscale {formats_sentence()}", 415) from e


def _shrink(img: Image.Image, size: int) -> Image.Image:
    """Resize (area averaging) so the longer side is `size`, keeping proportions; the short
    side is at least 1 pixel."""
    w, h = img.size
    longer = max(w, h)
    new = (max(1, round(w * size / longer)), max(1, round(h * size / longer)))
    return img if new == img.size else img.resize(new, Image.Resampling.BOX)


def _border_histogram(grey: Image.Image) -> np.ndarray:
    """How many pixels of each grey level (256,) the outermost rows and columns of an L
    image hold (corners twice). Histograms, not arrays: no copy of a 200,000-pixel edge."""
    w, h = grey.size
    boxes = ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))
    return np.sum([grey.crop(box).histogram() for box in boxes], axis=0)


def _median(counts: np.ndarray) -> float:
    """The median of the values a histogram (256,) counts, as np.median would give it."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    lower, upper = np.searchsorted(cumulative, [(n - 1) // 2, n // 2], side="right")
    return (float(lower) + float(upper)) / 2
