"""Find objects in any photo with a trained detector: `dlcamp detect`, the server's POST /detect.

    dlcamp detect runs/yolo photo.jpg --out boxed.png --lang zh
    dlcamp serve runs/yolo            # POST /detect -> {"boxes": [...], "width", "height"}

A detector takes square images of one size (its `image_size`, 128 px for the scene sets). A
photo of any shape is **letterboxed**: shrunk (or enlarged) so its longer side fits, proportions
kept, then centred on a grey square (the normalisation's mean colour, 0 after normalising).
Stretching it to a square instead would squash every object, and the detectors learned the
objects' real shapes. The boxes come back in the model's pixels and are mapped to the
original photo's pixels by undoing the centring and the scale (`Letterbox.to_original`).

Images are decoded as the classifier server decodes them (`Preprocess.decode`: formats,
the pixel cap before decoding, EXIF orientation), so both endpoints refuse the same bad input.
Labels are drawn in English or Chinese; Chinese needs a CJK font (`cjk_font_file`), without
one the English names are drawn and a note says why.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from dlcamp.core.errors import BadArgument, CheckpointError, DatasetNotFound
from dlcamp.core.io import atomic_write_bytes
from dlcamp.models.registry import create_model
from dlcamp.serve.model import ServedModel
from dlcamp.serve.preprocess import ImageError, Preprocess, value_range
from dlcamp.vision.letterbox import Letterbox, letterbox  # noqa: F401  (dlcamp.serve.detect.Letterbox)

DEFAULT_SCORE, IOU, MAX_DETECTIONS = 0.3, 0.5, 100
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts",
             Path("/System/Library/Fonts"), Path("/Library/Fonts"), Path("C:/Windows/Fonts"))
# CJK font files, best first (Droid Sans Fallback has no Latin digits: a last resort)
CJK_FILES = ("wqy-microhei", "wqy-zenhei", "notosanscjk", "sourcehansans", "msyh", "simhei",
             "pingfang", "heiti", "notoserifcjk", "uming", "ukai", "simsun", "droidsansfallback")
COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60))


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB of the same size: 16/32-bit and float pixels scaled as the
    classifier server scales them (`value_range`), transparency onto `background`."""
    try:
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            img = img if img.mode in ("I;16", "I", "F") else img.convert("I")
            low, high = value_range(img)
            scale = 255.0 / (high - low)
            return img.point(lambda v: v * scale + (0.5 - low * scale)).convert("L") \
                .convert("RGB")
        if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            paper = Image.new("RGB", img.size, background)
            paper.paste(rgba, mask=rgba.getchannel("A"))
            return paper
        return img if img.mode == "RGB" else img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"images with {img.mode} pixels cannot be turned into RGB here ({e})",
                         415) from e


def is_detector_model(model: ServedModel) -> bool:
    return model.meta.get("kind") == "detection"


def require_detector(model: ServedModel, source: str = "this model") -> None:
    """CheckpointError unless `model` is a detector (an image classifier, say)."""
    if not is_detector_model(model):
        raise CheckpointError(f"{source} is an image classifier ({model.meta['model']} on "
                              f"{model.meta['dataset']}), not a detector: it names one class "
                              "per image and draws no boxes. Classify with `dlcamp serve` "
                              "(POST /predict), or train a detector: `dlcamp train --model "
                              "yolo --dataset fruit-1`.")


class Detector:
    """A served detector (PyTorch or ONNX backend) with its decoding and letterboxing."""

    def __init__(self, model: ServedModel) -> None:
        require_detector(model)
        self.model, meta = model, model.meta
        self.side = int(meta["image_size"])
        mean, std = (np.asarray(v, dtype=np.float32) for v in meta["normalize"])
        self.mean, self.std = mean, std
        self.fill = tuple(int(round(float(m) * 255)) for m in mean)
        # the decode lives in the model class: PyTorch uses its own module; for ONNX the class
        # is rebuilt from the metadata (its anchors / grid are made in __init__, no weights)
        self.decoder = model.module if model.module is not None else create_model(
            meta["detector"]["name"], **meta["detector"]["kwargs"]).eval()

    def prepare(self, images: list[Image.Image]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Upright PIL images -> normalised batch (B, 3, side, side) and their letterboxes."""
        squares, boxes = zip(*(letterbox(to_rgb(img, self.fill), self.side, self.fill)
                               for img in images), strict=True)
        x = np.stack([np.asarray(s, dtype=np.float32) for s in squares])  # (B, S, S, 3)
        x = (x / 255.0 - self.mean) / self.std                            # (B, S, S, 3)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), list(boxes)  # (B, 3, S, S)

    def __call__(self, images: list[Image.Image], score: float = DEFAULT_SCORE,
                 iou: float = IOU, max_detections: int = MAX_DETECTIONS
                 ) -> list[list[dict[str, Any]]]:
        """Objects per image, best first: {"index", "label", "label_zh", "score", "box":
        [x1, y1, x2, y2] in the original image's pixels (floats, 0.01 px)}."""
        x, placed = self.prepare(images)
        outputs = self.model.forward(x)
        found = self.decoder.detect(tuple(outputs), score_threshold=score, iou_threshold=iou,
                                    max_detections=max_detections)
        meta = self.model.meta
        results = []
        for det, box in zip(found, placed, strict=True):
            corners = box.to_original(det["boxes"])                          # (K, 4)
            results.append([{"index": int(k), "label": meta["classes"][k],
                             "label_zh": meta["classes_zh"][k], "score": round(float(s), 4),
                             "box": [round(float(v), 2) for v in c]}
                            for k, s, c in zip(det["labels"].tolist(), det["scores"], corners,
                                               strict=True)])
        return results


def detector_for(model: ServedModel) -> Detector:
    """The model's Detector, made once (CheckpointError for a classifier)."""
    if getattr(model, "_detector", None) is None:
        model._detector = Detector(model)
    return model._detector


def parse_score(value: Any) -> float:
    """A score threshold in [0, 1]; ImageError 422 otherwise."""
    try:
        score = float(value)
    except (TypeError, ValueError) as e:
        raise ImageError(f"score must be a number between 0 and 1, got {value!r}", 422) from e
    if not 0.0 <= score <= 1.0:
        raise ImageError(f"score must be between 0 and 1, got {score}", status=422)
    return score


def detect_bytes(model: ServedModel, data: bytes, score: float = DEFAULT_SCORE) -> dict[str, Any]:
    """The JSON answer of POST /detect for image bytes; ImageError (4xx) for bad bytes."""
    detector = detector_for(model)
    img = Preprocess().decode(data)  # the same checks as /predict
    boxes = detector([img], score=score)[0]
    return {"boxes": boxes, "width": img.width, "height": img.height,
            "model": model.meta["model"], "backend": model.backend}


@functools.cache
def cjk_font_file() -> Path | None:
    """An installed font file that draws Chinese (WenQuanYi, Noto CJK, Droid Sans Fallback,
    ...), or None."""
    def rank(path: Path) -> int:
        name = path.name.lower().replace("-", "").replace("_", "")
        return next((i for i, key in enumerate(CJK_FILES) if key.replace("-", "") in name),
                    len(CJK_FILES))

    files = sorted((p for folder in FONT_DIRS if folder.is_dir() for p in folder.rglob("*")
                    if p.suffix.lower() in (".ttf", ".ttc", ".otf")), key=lambda p: (rank(p), p))
    return files[0] if files and rank(files[0]) < len(CJK_FILES) else None


def _font(size: int, chinese: bool) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    path = cjk_font_file() if chinese else None
    if path is not None:
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def draw_boxes(img: Image.Image, boxes: list[dict[str, Any]], lang: str = "en"
               ) -> tuple[Image.Image, str | None]:
    """The image (RGB copy) with each box outlined and labelled "name 0.87"; lang "zh" labels
    in Chinese when a CJK font is installed. Returns (image, a note when Chinese fell back to
    English, else None)."""
    note = None
    chinese = lang == "zh"
    if chinese and cjk_font_file() is None:
        chinese, note = False, ("no CJK font found (e.g. apt install fonts-wqy-microhei): "
                                "labels drawn in English")
    out = to_rgb(img, (255, 255, 255)).copy()
    draw = ImageDraw.Draw(out)
    size = max(12, round(min(out.size) / 30))
    font, width = _font(size, chinese), max(2, round(min(out.size) / 200))
    for b in boxes:
        colour = COLOURS[b["index"] % len(COLOURS)]
        x1, y1, x2, y2 = b["box"]
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        text = f"{b['label_zh'] if chinese else b['label']} {b['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        lift = min(bottom - top + 2, y1)  # above the box, or inside it at the image's top
        draw.rectangle((left, top - lift, right + 4, bottom - lift), fill=colour)
        draw.text((x1 + 2, y1 - lift), text, fill=(255, 255, 255), font=font)
    return out, note


def read_image(path: Path | str) -> Image.Image:
    """An image file, decoded and checked as uploads are; DatasetNotFound / BadArgument."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFound(f"no image file at {path}")
    try:
        return Preprocess().decode(path.read_bytes())
    except ImageError as e:
        raise BadArgument(f"{path}: {e}") from e
    except OSError as e:
        raise BadArgument(f"{path} cannot be read: {e}") from e


def detect_files(run: Path | str, images: list[str], out: str | None = None,
                 out_dir: str | None = None, lang: str = "en", score: float = DEFAULT_SCORE
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """`dlcamp detect`: each image's boxes, and the drawn images written atomically (`out`
    for one image, or `out_dir`/<name>-boxed.png). Returns (one dict per image: "image",
    "width", "height", "boxes", "drawn"; notes to print)."""
    if out and len(images) > 1:
        raise BadArgument("--out names one file; for several images use --out-dir DIR")
    if lang not in ("en", "zh"):
        raise BadArgument(f"--lang must be en or zh, got {lang!r}")
    if not 0.0 <= score <= 1.0:
        raise BadArgument(f"--score must be between 0 and 1, got {score}")
    model = ServedModel.load(run)
    require_detector(model, str(run))
    detector, results, notes = detector_for(model), [], []
    for name in images:
        img = read_image(name)
        boxes = detector([img], score=score)[0]
        target = Path(out) if out else (Path(out_dir) / f"{Path(name).stem}-boxed.png"
                                        if out_dir else None)
        if target is not None:
            drawn, note = draw_boxes(img, boxes, lang)
            if note and note not in notes:
                notes.append(note)
            buffer = io.BytesIO()
            drawn.save(buffer, "PNG" if target.suffix.lower() not in (".jpg", ".jpeg")
                       else "JPEG")
            atomic_write_bytes(target, buffer.getvalue())
        results.append({"image": str(name), "width": img.width, "height": img.height,
                        "boxes": boxes, "drawn": str(target) if target else None})
    return results, notes


def format_detections(results: list[dict[str, Any]], lang: str = "en") -> str:
    """One block per image: a header, then "label  score  x1 y1 x2 y2" per box."""
    lines = []
    for r in results:
        lines.append(f"{r['image']} ({r['width']} x {r['height']} px): "
                     f"{len(r['boxes'])} object{'s' if len(r['boxes']) != 1 else ''}")
        for b in r["boxes"]:
            label = b["label_zh"] if lang == "zh" else b["label"]
            lines.append(f"  {label:<12} {b['score']:.3f}  "
                         + " ".join(f"{v:.1f}" for v in b["box"]))
        if r["drawn"]:
            lines.append(f"  drawn in {r['drawn']}")
    return "\n".join(lines)
