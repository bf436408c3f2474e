"""Image augmentation of whole batches, each image with its own random draw; boxes move too.

The book (d2l 14.1 "Image Augmentation") augments one PIL image at a time. On a batched tensor
`torchvision.transforms.v2` draws ONE set of random parameters per call: every image of the
batch gets the same flip, the same crop, the same colour change. Here every image draws its
own, and the batch is still transformed in a few tensor operations (no per-image Python):

    augment = BatchAugment(flip=0.5, scale=(0.5, 1.0), brightness=0.3, contrast=0.3)
    loader = TensorLoader(train_set, 64, shuffle=True, augment=augment)   # dlcamp.data

Drawing and applying are separate: `sample_flips`, `sample_crops`, `sample_jitter` draw the
parameters from a `torch.Generator` (same generator state, same batch: reproducible), and the
pure functions `hflip`, `resized_crop`, `color_jitter` (images) and `hflip_boxes`,
`resized_crop_boxes` (boxes) apply them, so an image and its boxes move together.
tests/test_augment.py checks each against `torchvision.transforms.v2.functional` for the same
parameters, one image at a time.

Images are float (B, C, H, W) with values in [0, bound]: bound 1.0 is torchvision's float
convention, 255.0 what `TensorLoader` hands to its `augment` (pixels before normalising).
Boxes follow the detector contract (models/detector.py): (B, M, 4) corner format
(x1, y1, x2, y2) in pixels, labels (B, M) int64 with -1 for padding rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dlcamp.core.errors import BadArgument

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise BadArgument(f"images must be a float tensor (B, C, H, W), got {images.dtype} "
                          f"{tuple(images.shape)}; convert with images.float()")


def _check_range(name: str, value: tuple[float, float], low: float = 0.0) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not low < lo <= hi:
        raise BadArgument(f"{name} must be (low, high) with {low} < low <= high, got {value}")
    return lo, hi


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


# -- flips ------------------------------------------------------------------------------------
def sample_flips(batch: int, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Which images to flip: (B,) bool, each True with probability `p` (BadArgument outside
    [0, 1])."""
    if not 0.0 <= p <= 1.0:
        raise BadArgument(f"flip probability must be in [0, 1], got {p}")
    return torch.rand(batch, generator=generator, device=_gen_device(generator)) < p


def hflip(images: Tensor, flips: Tensor) -> Tensor:
    """Mirror left-right the images where `flips` (B,) is True: (B, C, H, W) -> same shape."""
    _check_images(images)
    flips = flips.to(images.device)
    return torch.where(flips[:, None, None, None], images.flip(-1), images)  # (B, C, H, W)


def hflip_boxes(boxes: Tensor, labels: Tensor, flips: Tensor, width: int) -> Tensor:
    """The boxes (B, M, 4) of images `width` pixels wide, mirrored where `flips` (B,) is True:
    x1' = width - x2, x2' = width - x1. Padding rows (label -1) are left as they are."""
    x1, y1, x2, y2 = boxes.unbind(-1)                                   # (B, M) each
    mirrored = torch.stack((width - x2, y1, width - x1, y2), dim=-1)     # (B, M, 4)
    move = flips.to(boxes.device)[:, None] & (labels >= 0)              # (B, M)
    return torch.where(move[..., None], mirrored, boxes)


# -- random resized crops ---------------------------------------------------------------------
def sample_crops(batch: int, height: int, width: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 generator: torch.Generator | None = None, tries: int = 10) -> Tensor:
    """Random crop windows, one per image: (B, 4) int64 rows (top, left, height, width).

    torchvision's RandomResizedCrop rule (Szegedy et al. 2015, "Going deeper with
    convolutions", the Inception crops), drawn for the whole batch at once: the area is a
    fraction in `scale` of the image's, the aspect ratio (width / height) log-uniform in
    `ratio`; of `tries` draws per image the first that fits is kept, and an image with none
    falls back to the largest centred crop whose ratio lies in `ratio`.
    """
    s_lo, s_hi = _check_range("scale", scale)
    r_lo, r_hi = _check_range("ratio", ratio)
    if s_hi > 1.0:
        raise BadArgument(f"scale is a fraction of the image's area, at most 1, got {scale}")
    device = _gen_device(generator)
    u = torch.rand(3, batch, tries, generator=generator, device=device, dtype=torch.float64)
    area = height * width * (s_lo + (s_hi - s_lo) * u[0])                # (B, T)
    aspect = torch.exp(math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[1])
    w = torch.sqrt(area * aspect).round()                               # (B, T)
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)             # (B, T)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)            # (B, 1) first fit
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]           # (B,)
    ok = fits.any(dim=1)
    # The fallback: the whole image, trimmed to the nearest allowed aspect ratio.
    fw, fh = fallback_crop(height, width, (r_lo, r_hi))
    w = torch.where(ok, w, float(fw))
    h = torch.where(ok, h, float(fh))
    v = u[2, :, :2]                                                     # (B, 2) in [0, 1)
    top = torch.where(ok, (v[:, 0] * (height - h + 1)).floor(), (height - fh) // 2)
    left = torch.where(ok, (v[:, 1] * (width - w + 1)).floor(), (width - fw) // 2)
    return torch.stack((top, left, h, w), dim=1).long()                 # (B, 4)


def fallback_crop(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """(width, height) of the crop when no draw fits: the whole image, trimmed to the nearest
    aspect ratio in `ratio` (at least 1 pixel each way)."""
    if width / height < ratio[0]:
        return width, max(1, round(width / ratio[0]))
    if width / height > ratio[1]:
        return max(1, round(height * ratio[1])), height
    return width, height


def _check_crops(crops: Tensor, batch: int, height: int, width: int) -> None:
    if crops.shape != (batch, 4):
        raise BadArgument(f"crops must be (B, 4) rows (top, left, height, width) with B = "
                          f"{batch}, got {tuple(crops.shape)}")
    top, left, h, w = crops.unbind(1)
    if bool(((h < 1) | (w < 1) | (top < 0) | (left < 0) | (top + h > height)
             | (left + w > width)).any()):
        raise BadArgument(f"every crop must lie inside the {height}x{width} image and be at "
                          "least 1 pixel; draw them with sample_crops")


def resized_crop(images: Tensor, crops: Tensor, size: tuple[int, int]) -> Tensor:
    """Cut each image's window `crops[i]` = (top, left, height, width) and resize it to `size`
    = (out_h, out_w) by bilinear interpolation: (B, C, H, W) -> (B, C, out_h, out_w).

    Pixel for pixel what `F.resized_crop(image, *crops[i], size, antialias=False)` gives
    (torchvision.transforms.v2.functional): output pixel centre j samples the crop at
    (j + 0.5) * in / out - 0.5, clamped to the crop's first and last pixel (so no pixel outside
    the window leaks in), and one `grid_sample` reads all images at once. Without
    anti-aliasing, shrinking a crop to under half its size aliases, as torchvision's does.
    """
    _check_images(images)
    b, _, height, width = images.shape
    _check_crops(crops, b, height, width)
    out_h, out_w = size
    # Sample positions in float64 on the CPU (small: B x out), the grid on the images' device.
    top, left, h, w = crops.cpu().double().unbind(1)                    # (B,) each

    def source(n_out: int, start: Tensor, n_in: Tensor, n_image: int) -> Tensor:
        j = torch.arange(n_out, dtype=torch.float64) + 0.5
        pos = (j[None, :] * (n_in / n_out)[:, None] - 0.5).clamp(min=0)  # (B, n_out)
        pos = torch.minimum(pos, (n_in - 1)[:, None]) + start[:, None]    # image pixels
        pos = pos * (2 / max(n_image - 1, 1)) - 1                         # to [-1, 1]
        return pos.to(images.device, images.dtype)

    gy = source(out_h, top, h, height)                                  # (B, out_h)
    gx = source(out_w, left, w, width)                                  # (B, out_w)
    grid = torch.stack((gx[:, None, :].expand(b, out_h, out_w),
                        gy[:, :, None].expand(b, out_h, out_w)), dim=-1)  # (B, oh, ow, 2)
    return F.grid_sample(images, grid, mode="bilinear",
                         padding_mode="border", align_corners=True)     # (B, C, oh, ow)


def resized_crop_boxes(boxes: Tensor, labels: Tensor, crops: Tensor, size: tuple[int, int],
                       min_size: float = 1.0, min_area: float = 1.0) -> tuple[Tensor, Tensor]:
    """Move boxes (B, M, 4) with `resized_crop`: shift by the crop's corner, clip to the crop,
    scale to `size`. A box left narrower or lower than `min_size` pixels, or smaller than
    `min_area` square pixels (one that left the crop has width or height 0), gets label -1
    and box (0, 0, 0, 0): torchvision's F.resized_crop on BoundingBoxes, then
    ClampBoundingBoxes (float round-off can put x2 a hair past the edge) and
    SanitizeBoundingBoxes(min_size, min_area). Returns (boxes (B, M, 4), labels (B, M))."""
    out_h, out_w = size
    top, left, h, w = crops.to(boxes.device, boxes.dtype).unbind(1)     # (B,) each
    corner = torch.stack((left, top, left, top), dim=1)[:, None, :]     # (B, 1, 4)
    extent = torch.stack((w, h, w, h), dim=1)[:, None, :]
    clipped = torch.minimum((boxes - corner).clamp(min=0), extent)      # (B, M, 4)
    moved = clipped * torch.stack((out_w / w, out_h / h) * 2, dim=1)[:, None, :]
    moved = torch.minimum(moved, moved.new_tensor([out_w, out_h, out_w, out_h]))  # round-off
    bw, bh = moved[..., 2] - moved[..., 0], moved[..., 3] - moved[..., 1]  # (B, M)
    keep = (labels >= 0) & (bw >= min_size) & (bh >= min_size) & (bw * bh >= min_area)
    return (torch.where(keep[..., None], moved, torch.zeros_like(moved)),
            torch.where(keep, labels, torch.full_like(labels, -1)))


# -- colour -----------------------------------------------------------------------------------
def sample_jitter(batch: int, brightness: float = 0.0, contrast: float = 0.0,
                  saturation: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Colour factors, one row per image: (B, 3) = (brightness, contrast, saturation), each
    uniform in [max(0, 1 - s), 1 + s] for its strength s, as torchvision's ColorJitter draws
    them; strength 0 gives factor 1 (no change). BadArgument for a negative strength."""
    strengths = (brightness, contrast, saturation)
    if min(strengths) < 0:
        raise BadArgument(f"colour jitter strengths must be >= 0, got {strengths}")
    lo = torch.tensor([max(0.0, 1.0 - s) for s in strengths], dtype=torch.float64)
    hi = torch.tensor([1.0 + s for s in strengths], dtype=torch.float64)
    u = torch.rand(batch, 3, generator=generator, device=_gen_device(generator),
                   dtype=torch.float64).cpu()
    return (lo + (hi - lo) * u).float()                                 # (B, 3)


def _gray(images: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; a 1-channel image is its own."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b)[:, None]


def color_jitter(images: Tensor, factors: Tensor, bound: float = 1.0) -> Tensor:
    """Change brightness, contrast and saturation of each image by its own `factors` (B, 3).

    In this fixed order, each the blend `clip(f * x + (1 - f) * other, 0, bound)` that
    torchvision's adjust_* functions compute: brightness blends with black, contrast with the
    image's mean grey level, saturation with its grey version (a 1-channel image has no
    saturation to change). torchvision's ColorJitter shuffles the order per call; a fixed one
    keeps the batch vectorised. (B, C, H, W) -> same shape; C is 1 or 3.
    """
    _check_images(images)
    if images.shape[1] not in (1, 3) or factors.shape != (images.shape[0], 3):
        raise BadArgument(f"color_jitter takes 1- or 3-channel images and (B, 3) factors, got "
                          f"{tuple(images.shape)} and {tuple(factors.shape)}")
    f = factors.to(images.device, images.dtype)[:, :, None, None, None]  # (B, 3, 1, 1, 1)

    def blend(x: Tensor, factor: Tensor, other: Tensor | float) -> Tensor:
        return (factor * x + (1 - factor) * other).clamp(0, bound)

    x = blend(images, f[:, 0], 0.0)                                     # brightness
    x = blend(x, f[:, 1], _gray(x).mean(dim=(1, 2, 3), keepdim=True))   # contrast
    if x.shape[1] == 3:
        x = blend(x, f[:, 2], _gray(x))                                 # saturation
    return x


# -- another room, another camera: zoom out, gamma, blur, noise --------------------------------
def sample_uniform(batch: int, value_range: tuple[float, float],
                   generator: torch.Generator | None = None) -> Tensor:
    """(B,) float32 values uniform in `value_range` = (low, high), low <= high (BadArgument
    otherwise), drawn from `generator`, on the CPU."""
    lo, hi = (float(v) for v in value_range)
    if lo > hi:
        raise BadArgument(f"a range must be (low, high) with low <= high, got {value_range}")
    u = torch.rand(batch, generator=generator, device=_gen_device(generator)).cpu()
    return lo + (hi - lo) * u                                           # (B,)


def sample_zooms(batch: int, height: int, width: int, scale: tuple[float, float],
                 generator: torch.Generator | None = None) -> Tensor:
    """Zoom-out draws, one row per image: (B, 3) = (factor, top, left): the image shrinks
    by `factor`, uniform in `scale` with 0 < low <= high <= 1 (BadArgument otherwise), and
    its top-left corner lands at (top, left) pixels, uniform over the places that keep the
    shrunk image inside the canvas."""
    lo, hi = _check_range("zoom-out scale", scale)
    if hi > 1.0:
        raise BadArgument(f"zoom-out shrinks: its scale must be at most 1, got {scale}")
    factor = sample_uniform(batch, (lo, hi), generator)                  # (B,)
    where = torch.rand(batch, 2, generator=generator, device=_gen_device(generator)).cpu()
    top = where[:, 0] * height * (1 - factor)
    left = where[:, 1] * width * (1 - factor)
    return torch.stack((factor, top, left), dim=1)                      # (B, 3)


def zoom_out(images: Tensor, zooms: Tensor, fill: float | Tensor = 0.0) -> Tensor:
    """Shrink each image by its factor and paste it at (top, left) on a canvas of the same
    size filled with `fill` (a number, or (B, C) per image): the "expand" augmentation of
    SSD (Liu et al. 2016, sec. 3.6) that makes objects smaller. zooms (B, 3) from
    `sample_zooms`; (B, C, H, W) -> same shape.

    Bilinear, pixel for pixel `torchvision.transforms.v2.functional.affine(image, angle=0,
    translate, scale=factor, shear=0, interpolation=BILINEAR, fill)` with translate = the
    shrunk image's centre minus the canvas's (its edge pixels blend into the fill as
    torchvision's do). No anti-aliasing: a factor under 0.5 aliases."""
    _check_images(images)
    b, c, height, width = images.shape
    if zooms.shape != (b, 3):
        raise BadArgument(f"zooms must be (B, 3) rows (factor, top, left) with B = {b}, got "
                          f"{tuple(zooms.shape)}")
    f, top, left = zooms.to(images.device, torch.float64).unbind(1)     # (B,) each

    def source(n: int, start: Tensor) -> Tensor:  # output pixel centre -> input, in [-1, 1]
        centre = torch.arange(n, dtype=torch.float64, device=images.device) + 0.5
        return ((centre[None, :] - start[:, None]) / f[:, None]) * (2 / n) - 1  # (B, n)

    gy, gx = source(height, top), source(width, left)
    grid = torch.stack((gx[:, None, :].expand(b, height, width),
                        gy[:, :, None].expand(b, height, width)), dim=-1)  # (B, H, W, 2)
    ones = images.new_ones(b, 1, height, width)
    out = F.grid_sample(torch.cat((images, ones), 1), grid.to(images.dtype), mode="bilinear",
                        padding_mode="zeros", align_corners=False)       # (B, C + 1, H, W)
    out, mask = out[:, :c], out[:, c:]
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    fill = fill[:, :, None, None] if fill.dim() == 2 else fill
    return (out - fill) * mask + fill                                   # (B, C, H, W)


def zoom_out_boxes(boxes: Tensor, labels: Tensor, zooms: Tensor) -> Tensor:
    """Move boxes (B, M, 4) corner px with `zoom_out`: x' = left + factor * x, y' = top +
    factor * y. Padding rows (label -1) are left as they are. Returns (B, M, 4)."""
    f, top, left = zooms.to(boxes.device, boxes.dtype).unbind(1)        # (B,) each
    moved = boxes * f[:, None, None] + torch.stack((left, top, left, top), 1)[:, None, :]
    return torch.where((labels >= 0)[..., None], moved, boxes)


def adjust_gamma(images: Tensor, gammas: Tensor, bound: float = 1.0) -> Tensor:
    """Gamma correction, each image its own gamma (B,): bound * (x / bound) ** gamma, as
    torchvision's adjust_gamma (gain 1) computes for float images; gamma > 1 darkens the
    mid-tones. (B, C, H, W) -> same shape."""
    _check_images(images)
    g = gammas.to(images.device, images.dtype)[:, None, None, None]     # (B, 1, 1, 1)
    return ((images / bound).clamp(0, 1) ** g * bound).clamp(0, bound)


def gaussian_blur(images: Tensor, sigmas: Tensor) -> Tensor:
    """Gaussian blur, each image its own sigma (B,) in pixels (0: unchanged), one grouped
    separable convolution for the batch. The kernel has 2 * ceil(3 * max sigma) + 1 taps,
    weights exp(-x^2 / (2 sigma^2)) normalised, the edges reflected: torchvision's
    gaussian_blur with that kernel size. (B, C, H, W) -> same shape; BadArgument when the
    kernel is wider than the image or a sigma is negative."""
    _check_images(images)
    b, c, height, width = images.shape
    if bool((sigmas < 0).any()):
        raise BadArgument(f"blur sigmas must be >= 0, got {sigmas.min().item()}")
    radius = math.ceil(3 * float(sigmas.max())) if b else 0
    if radius == 0:
        return images
    if radius >= min(height, width):
        raise BadArgument(f"a blur sigma of {float(sigmas.max()):.2f} px needs a kernel wider "
                          f"than the {height}x{width} image")
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)           # (K,)
    s = sigmas.cpu().double().clamp(min=1e-6)[:, None]                  # (B, 1)
    kernel = torch.exp(-0.5 * (x[None, :] / s) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(images.device, images.dtype)  # (B, K)
    kernel = kernel.repeat_interleave(c, 0)                             # (B * C, K)
    flat = F.pad(images.reshape(1, b * c, height, width), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)        # along x
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)        # along y
    return flat.reshape(b, c, height, width)


def add_noise(images: Tensor, sigmas: Tensor, bound: float = 1.0,
              generator: torch.Generator | None = None) -> Tensor:
    """Add Gaussian noise of standard deviation sigma * bound (sigmas (B,), as fractions of
    the pixel range), each pixel its own draw, then clip to [0, bound]. (B, C, H, W) -> same
    shape."""
    _check_images(images)
    noise = torch.randn(images.shape, generator=generator, device=_gen_device(generator))
    s = sigmas.to(images.device, images.dtype)[:, None, None, None] * bound
    return (images + noise.to(images.device, images.dtype) * s).clamp(0, bound)


# -- the whole pipeline -----------------------------------------------------------------------
@dataclass(frozen=True)
class BatchAugment:
    """Random flip, random resized crop and colour jitter, drawn per image, for a batch.

    `flip`: probability of a left-right mirror; `scale`: the random resized crop's area range
    (None: no crop), `ratio` its aspect ratio range, the output keeps the input's size;
    `brightness`, `contrast`, `saturation`: ColorJitter strengths (0: off); `bound`: the
    largest pixel value (255 for TensorLoader batches, 1 for torchvision's float images).
    Called as `augment(images, generator)`: the `Augment` signature of dlcamp.data.loader.
    """

    flip: float = 0.5
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    bound: float = 255.0

    def __post_init__(self) -> None:  # fail when built, not in the middle of training
        sample_flips(0, self.flip)
        sample_jitter(0, self.brightness, self.contrast, self.saturation)
        _check_range("ratio", self.ratio)
        if self.scale is not None:
            sample_crops(0, 1, 1, self.scale, self.ratio)

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator | None
             ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The parameters of one batch: flips (B,), crops (B, 4) or None, factors (B, 3) or
        None."""
        flips = sample_flips(batch, self.flip, generator)
        crops = None if self.scale is None else sample_crops(batch, height, width, self.scale,
                                                              self.ratio, generator)
        jitter = (self.brightness, self.contrast, self.saturation)
        factors = sample_jitter(batch, *jitter, generator=generator) if any(jitter) else None
        return flips, crops, factors

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, _, height, width = images.shape
        flips, crops, factors = self.draw(b, height, width, generator)
        images = hflip(images, flips)
        if crops is not None:
            images = resized_crop(images, crops, (height, width))
        if factors is not None:
            images = color_jitter(images, factors, self.bound)
        return images                                                   # (B, C, H, W)

    def with_boxes(self, images: Tensor, boxes: Tensor, labels: Tensor,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The same augmentation for a detection batch: images (B, C, H, W), boxes (B, M, 4)
        corner pixels, labels (B, M) with -1 padding. The boxes flip and crop with their image;
        a box the crop leaves with under 1 pixel of width or height (or 1 pixel of area) is
        dropped (label -1). Returns (images, boxes, labels)."""
        if boxes.shape[:2] != labels.shape or boxes.shape[0] != images.shape[0]:
            raise BadArgument(f"boxes (B, M, 4) and labels (B, M) must match images (B, ...); "
                              f"got {tuple(boxes.shape)}, {tuple(labels.shape)}, "
                              f"{tuple(images.shape)}")
        b, _, height, width = images.shape
        flips, crops, factors = self.draw(b, height, width, generator)
        images, boxes = hflip(images, flips), hflip_boxes(boxes, labels, flips, width)
        if crops is not None:
            images = resized_crop(images, crops, (height, width))
            boxes, labels = resized_crop_boxes(boxes, labels, crops, (height, width))
        if factors is not None:
            images = color_jitter(images, factors, self.bound)
        return images, boxes, labels
