"""Plot helpers shared by lessons: an image grid whose titles can be Chinese.

Chinese titles need a font with CJK glyphs. `cjk_font()` finds one if the system has it
(Debian: `apt-get install fonts-wqy-microhei`, see scripts/install-data.sh). Without one, titles
are drawn as given (Chinese characters appear as boxes) and matplotlib's per-glyph
"missing from font" warnings are silenced instead of filling the notebook.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# Family names (prefixes) of common fonts that can draw Chinese, most preferred first.
CJK_FAMILIES = ("Noto Sans CJK", "Source Han Sans", "WenQuanYi", "Droid Sans Fallback",
                "AR PL", "Noto Serif CJK", "Microsoft YaHei", "SimHei", "PingFang",
                "Hiragino Sans GB", "Heiti", "Arial Unicode MS")
# File names of the same fonts, to spot one that matplotlib's (stale) font cache does not know.
CJK_FILE = re.compile(r"wqy|cjk|droidsansfallback|uming|ukai|sourcehan|simhei|msyh|pingfang",
                      re.IGNORECASE)


def _known_cjk_family() -> str | None:
    names = {f.name for f in font_manager.fontManager.ttflist}
    for prefix in CJK_FAMILIES:
        hits = sorted(n for n in names if n.startswith(prefix))
        if hits:
            return hits[0]
    return None


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """Name of an installed font that can draw Chinese, or None when there is none.

    matplotlib caches its font list on first use; a font installed later is missing from that
    cache. If none is known but a CJK font file exists on the system, we add those files to
    the font manager once and save the refreshed cache.
    """
    name = _known_cjk_family()
    if name is not None:
        return name
    known = {f.fname for f in font_manager.fontManager.ttflist}
    new = [p for p in font_manager.findSystemFonts() if CJK_FILE.search(p) and p not in known]
    for path in new:
        try:
            font_manager.fontManager.addfont(path)
        except (OSError, RuntimeError, ValueError):  # unreadable or unsupported font file
            continue
    name = _known_cjk_family()
    if name is not None:
        try:  # save the cache under matplotlib's own name, so the next process skips this
            version = font_manager.FontManager.__version__
            cache = Path(matplotlib.get_cachedir()) / f"fontlist-v{version}.json"
            font_manager.json_dump(font_manager.fontManager, cache)
        except (OSError, AttributeError):  # read-only cache or a matplotlib without these
            pass
    return name


def _as_grey_batch(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) tensor/array -> (N, H, W) numpy array."""
    x = torch.as_tensor(images).detach().cpu()
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"show_images draws grey images (N, 1, H, W); got {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected images (N, 1, H, W) or (N, H, W), got {tuple(x.shape)}")
    return x.numpy()


def show_images(images: torch.Tensor | np.ndarray, titles: list[str] | None = None,
                ncols: int = 8, scale: float = 1.5) -> Figure:
    """Draw a grid of grey images with optional (Chinese) titles; returns the figure.

    uint8 images are shown on the 0..255 scale; float images are scaled per image.
    """
    x = _as_grey_batch(images)  # (N, H, W)
    n = len(x)
    if n == 0:
        raise ValueError("show_images needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {n} images but {len(titles)} titles")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    font = cjk_font()
    if font is None and titles and any(not t.isascii() for t in titles):
        # The boxes are warning enough; one warning per missing glyph is noise. Matplotlib
        # draws lazily (at display/save time), so the filter has to outlive this call.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.15),
                             squeeze=False)
    vrange = {"vmin": 0, "vmax": 255} if x.dtype == np.uint8 else {}
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.remove()  # so fig.axes holds exactly one axes per image
            continue
        ax.imshow(x[i], cmap="gray", **vrange)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontfamily=font or None, fontsize=10)
    fig.tight_layout()
    return fig


BOX_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:cyan", "tab:orange")


def draw_boxes(ax: Axes, boxes: torch.Tensor | np.ndarray, labels: list[str] | None = None,
               colors: str | list[str] | None = None, linewidth: float = 2.0) -> list[Rectangle]:
    """Draw corner-format boxes on an axes that shows an image; returns the rectangles.

    boxes (N, 4) as (x1, y1, x2, y2) in the image's pixels (as `ax.imshow` places them);
    labels: N strings (Chinese is fine) written in the top-left corner of each box. Colours
    cycle through `BOX_COLORS` unless one colour or a list of N is given. The book draws its
    boxes the same way (d2l 14.3's `bbox_to_rect`, 14.4's `show_bboxes`).
    Raises ValueError for a shape other than (N, 4) or a wrong number of labels or colours.
    """
    b = torch.as_tensor(boxes).detach().cpu().double()
    if b.ndim == 1 and b.numel() == 4:
        b = b[None]                                                       # one box
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"draw_boxes wants boxes (N, 4) as (x1, y1, x2, y2), got {tuple(b.shape)}")
    n = len(b)
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {n} boxes but {len(labels)} labels")
    if isinstance(colors, str):
        colors = [colors] * n
    colors = colors or [BOX_COLORS[i % len(BOX_COLORS)] for i in range(n)]
    if len(colors) != n:
        raise ValueError(f"got {n} boxes but {len(colors)} colours")
    font = cjk_font()
    if font is None and labels and any(not t.isascii() for t in labels):
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
    patches = []
    for i, (x1, y1, x2, y2) in enumerate(b.tolist()):
        rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colors[i],
                         linewidth=linewidth)
        patches.append(ax.add_patch(rect))
        if labels is not None:
            ax.text(x1, y1, labels[i], va="top", ha="left", fontsize=9, color="white",
                    fontfamily=font or None,
                    bbox={"facecolor": colors[i], "edgecolor": "none", "pad": 1})
    return patches


def show_detections(images: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor],
                    labels: torch.Tensor | list[torch.Tensor], class_names: list[str],
                    scores: torch.Tensor | list[torch.Tensor] | None = None,
                    titles: list[str] | None = None, ncols: int = 6, scale: float = 2.0
                    ) -> Figure:
    """A grid of RGB images with their boxes drawn and labelled; returns the figure.

    images (N, 3, H, W) uint8 (or float in [0, 1]); boxes either padded (N, M, 4) with labels
    (N, M) where -1 marks padding (a DetectionSet, a batch) or per-image lists of (K, 4) and
    (K,) (a detector's output); scores, if given, are printed after the class name. Box colour
    follows the class. Raises ValueError when the lengths differ.
    """
    x = torch.as_tensor(images).detach().cpu()
    n = len(x)
    if n == 0 or len(boxes) != n or len(labels) != n or (titles is not None and len(titles) != n):
        raise ValueError(f"show_detections needs N >= 1 images with N boxes, labels, titles; "
                         f"got {n}, {len(boxes)}, {len(labels)}")
    ncols = max(1, min(ncols, n))
    fig, axes = plt.subplots(math.ceil(n / ncols), ncols, figsize=(ncols * scale,
                             math.ceil(n / ncols) * scale * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.remove()
            continue
        img = x[i].permute(1, 2, 0)  # (H, W, 3)
        ax.imshow(img.numpy() if img.dtype == torch.uint8 else img.clamp(0, 1).numpy())
        ax.set_axis_off()
        lab = torch.as_tensor(labels[i]).cpu().long()
        keep = lab >= 0  # padding rows are -1
        texts = [class_names[int(c)] for c in lab[keep]]
        if scores is not None:
            s = torch.as_tensor(scores[i]).cpu()[keep]
            texts = [f"{t} {float(v):.2f}" for t, v in zip(texts, s, strict=True)]
        colors = [BOX_COLORS[int(c) % len(BOX_COLORS)] for c in lab[keep]]
        draw_boxes(ax, torch.as_tensor(boxes[i]).cpu()[keep].reshape(-1, 4), texts, colors,
                   linewidth=1.5)
        if titles is not None:
            ax.set_title(titles[i], fontfamily=cjk_font() or None, fontsize=9)
    fig.tight_layout()
    return fig
