"""Turn an uploaded image into exactly the tensor the model saw in training.

Training images (Fashion-MNIST, MNIST) are small grey squares with a dark background and a
bright object. A phone photo is the opposite on every count: big, in colour, often rotated by
its EXIF tag, usually a dark object on a light background. `Preprocess` bridges the two:

    decode (size checked before any pixel is decoded) -> EXIF orientation -> alpha onto white
    -> greyscale -> invert if the border is light -> stretch a grey background down to 0
    -> pad to a square with the background -> resize to the training size
    -> normalise with the training mean/std (-> upsample)

The settings come from the checkpoint (`Preprocess.from_checkpoint`), so the server and
`dlcamp evaluate` normalise identically. Every problem raises `ImageError` with an HTTP status
and a sentence for the user.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 24_000_000  # a 24-megapixel photo is fine; a 100k x 100k "bomb" is not


class ImageError(ValueError):
    """A bad upload: `status` is the HTTP status to answer with, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
        """Bytes -> an upright PIL image, refusing what is not a whole, reasonably sized image."""
        if not data:
            raise ImageError("the upload is empty: send the bytes of a PNG or JPEG image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                width, height = img.size  # read from the header: nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise ImageError(f"the image is {width} x {height} pixels; the limit is "
                                     f"{MAX_PIXELS // 1_000_000} megapixels", status=413)
                img.load()  # decodes now: truncated files fail here
        except ImageError:
            raise
        except UnidentifiedImageError as e:
            raise ImageError("the upload is not an image this server can read (PNG, JPEG, "
                             "GIF, BMP, WebP)", status=415) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"the image is too large to decode safely: {e}", status=413) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"the image could not be decoded (truncated or damaged?): {e}") \
                from e
        return ImageOps.exif_transpose(img)

    # -- pixels ---------------------------------------------------------------------------
    def to_array(self, img: Image.Image) -> np.ndarray:
        """Upright PIL image -> (size, size) uint8, dark background, like a training image."""
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)  # a transparent drawing on white paper
        grey = np.asarray(img.convert("L"), dtype=np.uint8)  # (H, W)
        if self.invert == "always" or (self.invert == "auto" and _border_mean(grey) > 127):
            grey = 255 - grey  # a dark object on light paper -> light object on black
        background = float(np.median(_border(grey)))
        if background > 8:  # grey paper, shadows: training backgrounds are 0, so stretch
            scale = 255.0 / max(float(grey.max()) - background, 1.0)
            grey = np.clip((grey.astype(np.float32) - background) * scale, 0, 255)
            grey = grey.astype(np.uint8)  # (a training image's background is 0: untouched)
        h, w = grey.shape
        if h != w:  # pad to a square with the background, keeping the object's proportions
            side = max(h, w)
            square = np.zeros((side, side), dtype=np.uint8)
            top, left = (side - h) // 2, (side - w) // 2
            square[top:top + h, left:left + w] = grey
            grey = square
        if grey.shape != (self.size, self.size):
            grey = np.asarray(Image.fromarray(grey).resize((self.size, self.size),
                                                            Image.Resampling.BOX))
        return grey

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
        return self.to_array(self.decode(data))


def _border(grey: np.ndarray) -> np.ndarray:
    """The outermost rows and columns: mostly background."""
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _border_mean(grey: np.ndarray) -> float:
    return float(_border(grey).mean())
