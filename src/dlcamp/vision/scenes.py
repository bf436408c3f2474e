"""A deterministic scene synthesiser: object cut-outs pasted on background crops, with boxes and
masks taken from what stays visible.

`synthesise(config, objects, n, seed, backgrounds=...)` draws image i from its own generator,
`numpy.random.default_rng([seed, i])`, so a set is the same bytes on every rebuild and the
first k images do not depend on n. Per image:

1. a background: a random square crop (side = image size x `background_zoom`) of a photo
   scaled so its short side fits the largest crop, or of a tileable texture repeated at its
   native scale, resized to the image size;
2. 1..k objects (`objects` range), each a random instance (of a class drawn uniformly when
   `balance`, so rare classes are not starved by classes with many cut-outs) scaled so its
   longest side is `scale` x image size, flipped left-right (`flip`), rotated (`rotation`
   degrees), colour jittered (per-channel gain `colour`, `saturation`), and placed anywhere
   that keeps at least 1 - `border` of its width and height inside the image (so objects are
   cut at the border);
3. occlusion: objects are painted in order, a later one covering an earlier one. An object's
   *visible* pixels are its alpha >= 0.5 pixels inside the image and not covered later; an
   object whose visible pixels are fewer than `min_visible` of all its pixels is removed
   *before* painting (removing one only uncovers others), so no unlabelled fragment remains;
4. the box of object k is the bounding box of its visible mask pixels, as pixel edges:
   (min x, min y, max x + 1, max y + 1); the mask is the instance map (0 background, k object);
5. lighting on the whole image: contrast around 0.5, brightness offset, gamma, and a linear
   lighting gradient (`gradient` = largest gain change across the image, random direction);
   then Gaussian blur (sigma in pixels) and Gaussian noise (sigma in [0, 1] units).

Image-level draws are stored as per-image `conditions` of the returned DetectionSet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from dlcamp.core.errors import BadArgument
from dlcamp.data.detection import DetectionSet

Range = tuple[float, float]


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn; every range is (low, high), sampled uniformly per image/object."""

    image_size: int = 128  # square side, pixels
    objects: tuple[int, int] = (1, 3)  # objects per image drawn (inclusive), before removal
    scale: Range = (0.3, 0.6)  # object's longest side / image side
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    flip: bool = True  # random left-right flip
    border: float = 0.25  # at most this fraction of an object's width/height outside the image
    min_visible: float = 0.5  # objects less visible than this are removed (see module doc)
    colour: float = 0.1  # per-channel gain in [1 - colour, 1 + colour]
    saturation: Range = (0.8, 1.2)  # 0 = grey, 1 = unchanged
    brightness: Range = (-0.08, 0.08)  # added, [0, 1] units
    contrast: Range = (0.85, 1.15)  # around 0.5
    gamma: Range = (0.85, 1.15)
    gradient: float = 0.2  # lighting gain varies by up to this across the image
    blur: Range = (0.0, 0.6)  # Gaussian sigma, pixels
    noise: Range = (0.0, 0.02)  # Gaussian sigma, [0, 1] units
    background_zoom: Range = (1.0, 2.0)  # background crop side / image side
    balance: bool = True  # each object: a class uniformly, then one of its instances

    def check(self) -> None:
        """BadArgument if a setting cannot work."""
        lo, hi = self.objects
        if self.image_size < 8 or not 1 <= lo <= hi:
            raise BadArgument("SceneConfig needs image_size >= 8 and 1 <= objects[0] <= objects[1]")
        if not 0 < self.scale[0] <= self.scale[1] <= 1.5 or not 0 <= self.border < 0.5:
            raise BadArgument("SceneConfig needs 0 < scale <= 1.5 and 0 <= border < 0.5")
        if not 0 < self.min_visible <= 1 or self.background_zoom[0] < 0.25:
            raise BadArgument("SceneConfig needs 0 < min_visible <= 1 and background_zoom >= 0.25")


@dataclass(frozen=True)
class SceneObject:
    """One object instance: a cut-out (h, w, 4) uint8 RGBA, its class id and its source key."""

    key: str
    label: int
    rgba: np.ndarray


def _prepare_objects(objects: Sequence[SceneObject], size: int) -> list[Image.Image]:
    """Each cut-out as a PIL image no larger than needed (longest side <= 2 x image size)."""
    out = []
    for obj in objects:
        im = Image.fromarray(obj.rgba, "RGBA")
        if max(im.size) > 2 * size:
            f = 2 * size / max(im.size)
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                           Image.Resampling.BOX)
        out.append(im)
    return out


def _prepare_background(rgb: np.ndarray, key: str, side: int) -> np.ndarray:
    """A photo scaled so its short side is `side`; a texture (.pat) tiled to side x side."""
    h, w = rgb.shape[:2]
    if key.endswith(".pat"):
        reps = (math.ceil(side / h), math.ceil(side / w), 1)
        return np.ascontiguousarray(np.tile(rgb, reps)[:side, :side])
    f = side / min(h, w)
    im = Image.fromarray(rgb).resize((max(side, round(w * f)), max(side, round(h * f))),
                                     Image.Resampling.BILINEAR)
    return np.asarray(im)


def _background(rng: np.random.Generator, bg: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    s = cfg.image_size
    c = min(round(s * rng.uniform(*cfg.background_zoom)), *bg.shape[:2])
    y, x = rng.integers(bg.shape[0] - c + 1), rng.integers(bg.shape[1] - c + 1)
    crop = Image.fromarray(bg[y:y + c, x:x + c])
    if c != s:
        crop = crop.resize((s, s), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float32) / 255  # (S, S, 3)


def _draw_object(rng: np.random.Generator, im: Image.Image, cfg: SceneConfig
                 ) -> tuple[np.ndarray, float]:
    """A transformed cut-out as float (h, w, 4) in [0, 1], and its relative scale."""
    rel = rng.uniform(*cfg.scale)
    f = rel * cfg.image_size / max(im.size)
    im = im.resize((max(2, round(im.width * f)), max(2, round(im.height * f))),
                   Image.Resampling.BILINEAR)
    if cfg.flip and rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    if cfg.rotation > 0:
        im = im.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    a = np.asarray(im, dtype=np.float32) / 255  # (h, w, 4)
    gain = 1 + rng.uniform(-cfg.colour, cfg.colour, 3).astype(np.float32)
    sat = np.float32(rng.uniform(*cfg.saturation))
    rgb = a[..., :3]
    grey = rgb.mean(-1, keepdims=True)
    rgb = np.clip((grey + sat * (rgb - grey)) * gain, 0, 1)
    return np.concatenate([rgb, a[..., 3:]], -1), float(rel)


def _place(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> tuple[int, int]:
    """Top-left corner keeping >= 1 - border of the object's height and width inside."""
    s, b = cfg.image_size, cfg.border
    y = rng.integers(math.floor(-b * h), max(math.floor(-b * h), math.ceil(s - h + b * h)) + 1)
    x = rng.integers(math.floor(-b * w), max(math.floor(-b * w), math.ceil(s - w + b * w)) + 1)
    return int(y), int(x)


def _clip(y: int, x: int, h: int, w: int, s: int) -> tuple[slice, slice, slice, slice]:
    """Slices of the image and of the object for the part of the object inside the image."""
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, s), min(x + w, s)
    return (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)),
            slice(y0 - y, max(y0, y1) - y), slice(x0 - x, max(x0, x1) - x))


def _layout(drawn: list[tuple[np.ndarray, int, int]], s: int, min_visible: float) -> list[int]:
    """Indices of the objects kept: each keeps >= min_visible of its pixels visible."""
    totals = [max(1, int((a[..., 3] >= 0.5).sum())) for a, _, _ in drawn]
    keep = list(range(len(drawn)))
    while True:
        owner = np.full((s, s), -1, np.int64)  # (S, S): which object a pixel shows
        for k in keep:
            a, y, x = drawn[k]
            iy, ix, oy, ox = _clip(y, x, *a.shape[:2], s)
            owner[iy, ix][a[oy, ox, 3] >= 0.5] = k
        counts = np.bincount(owner.ravel() + 1, minlength=len(drawn) + 1)[1:]
        hidden = [k for k in keep if counts[k] < min_visible * totals[k]]
        if not hidden:
            return keep
        keep = [k for k in keep if k not in hidden]


def _lighting(rng: np.random.Generator, img: np.ndarray, cfg: SceneConfig) -> dict[str, float]:
    """Contrast, brightness, gamma and a lighting ramp, in place on (S, S, 3) float."""
    tags = {"contrast": rng.uniform(*cfg.contrast), "brightness": rng.uniform(*cfg.brightness),
            "gamma": rng.uniform(*cfg.gamma), "gradient": rng.uniform(0, cfg.gradient)}
    theta = rng.uniform(0, 2 * math.pi)
    img -= 0.5
    img *= tags["contrast"]
    img += 0.5 + tags["brightness"]
    np.clip(img, 0, 1, out=img)
    np.power(img, tags["gamma"], out=img)
    r = (np.arange(cfg.image_size, dtype=np.float32) + 0.5) / cfg.image_size - 0.5  # (S,)
    ramp = 1 + tags["gradient"] * (r[None, :] * math.cos(theta) + r[:, None] * math.sin(theta))
    img *= ramp[..., None]  # (S, S, 1)
    return {k: round(float(v), 4) for k, v in tags.items()}


def _pick(rng: np.random.Generator, k: int, groups: list[np.ndarray]) -> np.ndarray:
    """k object indices: a group (class) uniformly, then a member uniformly."""
    g = rng.integers(len(groups), size=k)  # (k,)
    u = rng.random(k)  # (k,)
    return np.array([groups[j][int(x * len(groups[j]))] for j, x in zip(g, u, strict=True)])


def _one_image(rng: np.random.Generator, cfg: SceneConfig, cutouts: list[Image.Image],
               objects: Sequence[SceneObject], backgrounds: list[tuple[str, np.ndarray]],
               groups: list[np.ndarray]):
    s = cfg.image_size
    b = int(rng.integers(len(backgrounds)))
    img = _background(rng, backgrounds[b][1], cfg)  # (S, S, 3) float
    kept: list[int] = []
    while not kept:  # at least one object: redraw (same generator) if all were hidden
        picks = _pick(rng, int(rng.integers(cfg.objects[0], cfg.objects[1] + 1)), groups)
        drawn, scales = [], []
        for p in picks:
            a, rel = _draw_object(rng, cutouts[p], cfg)
            drawn.append((a, *_place(rng, *a.shape[:2], cfg)))
            scales.append(rel)
        kept = _layout(drawn, s, cfg.min_visible)
    mask = np.zeros((s, s), np.uint8)
    for k, i in enumerate(kept, start=1):
        a, y, x = drawn[i]
        iy, ix, oy, ox = _clip(y, x, *a.shape[:2], s)
        part = a[oy, ox]  # (h', w', 4)
        alpha = part[..., 3:]
        img[iy, ix] = part[..., :3] * alpha + img[iy, ix] * (1 - alpha)
        mask[iy, ix][part[..., 3] >= 0.5] = k
    boxes = np.zeros((len(kept), 4), np.float32)
    for k in range(1, len(kept) + 1):
        ys, xs = np.nonzero(mask == k)
        boxes[k - 1] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    labels = np.array([objects[picks[i]].label for i in kept], np.int64)
    tags = _lighting(rng, img, cfg)
    sigma = float(rng.uniform(*cfg.blur))
    noise = float(rng.uniform(*cfg.noise))
    if noise > 0:
        img += rng.normal(0, noise, img.shape).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    if sigma > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    mean_scale = float(np.mean([scales[i] for i in kept]))
    tags.update(blur=round(sigma, 4), noise=round(noise, 4), scale=round(mean_scale, 4),
                scale_bucket="small" if mean_scale < 0.3 else
                "medium" if mean_scale < 0.5 else "large",
                n_objects=len(kept), background=backgrounds[b][0],
                background_source=backgrounds[b][0].split("/")[0],
                instances="|".join(objects[picks[i]].key for i in kept))
    return np.array(out), boxes, labels, mask, tags


def synthesise(config: SceneConfig, objects: Sequence[SceneObject], n: int, seed: int, *,
               backgrounds: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str],
               class_names_zh: Sequence[str] | None = None, name: str = "", split: str = ""
               ) -> DetectionSet:
    """Draw n scenes (see the module docstring) as a DetectionSet.

    objects: the instances to paste (labels in 0..len(class_names)-1); backgrounds: (key,
    (H, W, 3) uint8) pairs, a key ending in .pat is tiled. Returns images (n, 3, S, S) uint8,
    boxes (n, M, 4), labels (n, M) with -1 padding, masks (n, S, S), and per-image conditions
    (background, lighting draws, blur, noise, mean object scale and its bucket, instances).
    Raises BadArgument on an empty pool, bad labels or a bad config.
    """
    config.check()
    class_names_zh = list(class_names_zh or class_names)
    if not objects or not backgrounds or n < 0:
        raise BadArgument("synthesise needs at least one object, one background and n >= 0")
    if any(not 0 <= o.label < len(class_names) for o in objects):
        raise BadArgument(f"object labels must lie in 0..{len(class_names) - 1}")
    s = config.image_size
    side = math.ceil(s * config.background_zoom[1])
    bgs = [(key, _prepare_background(rgb, key, side)) for key, rgb in backgrounds]
    cutouts = _prepare_objects(objects, s)
    labels_of = np.array([o.label for o in objects])
    groups = ([np.flatnonzero(labels_of == c) for c in np.unique(labels_of)] if config.balance
              else [np.arange(len(objects))])
    results = [_one_image(np.random.default_rng([seed, i]), config, cutouts, objects, bgs, groups)
               for i in range(n)]
    m = max((len(r[2]) for r in results), default=0)
    images = torch.zeros(n, 3, s, s, dtype=torch.uint8)
    boxes = torch.zeros(n, m, 4, dtype=torch.float32)
    labels = torch.full((n, m), -1, dtype=torch.int64)
    masks = torch.zeros(n, s, s, dtype=torch.uint8)
    for i, (img, b, lab, mask, _) in enumerate(results):
        images[i] = torch.from_numpy(img).permute(2, 0, 1)  # (3, S, S)
        boxes[i, :len(b)] = torch.from_numpy(b)
        labels[i, :len(lab)] = torch.from_numpy(lab)
        masks[i] = torch.from_numpy(mask)
    keys = results[0][4].keys() if results else []
    conditions = {k: [r[4][k] for r in results] for k in keys}
    return DetectionSet(images, boxes, labels, list(class_names), class_names_zh, masks,
                        conditions, name, split)
