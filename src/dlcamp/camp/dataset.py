"""A camp project as detection data: `project_sets(store, pid, image_size)` -> (train, val).

Each photo's working copy (the upright, downscaled JPEG the annotators drew on) is
**letterboxed** into an image_size x image_size square: scaled by s = side / max(w, h) to
(round(w s), round(h s)) pixels, aspect kept, and centred on a grey square, exactly as
`dlcamp detect` and the server fit a photo (dlcamp.serve.detect.Letterbox), so the detector
sees photos at training time as it will see them later. A box (x1, y1, x2, y2) in the
working copy's pixels becomes (x1 sx + left, y1 sy + top, x2 sx + left, y2 sy + top).

Only **accepted** boxes count (proposed = 0: a model's proposals are not ground truth until
someone accepts them; deleted = 0). An image is used when it has an accepted box, or is marked
"no objects" (a true negative), or was reviewed as done. The validation split is chosen by
the original photo's SHA-256 (`val_split`): the same photo lands in the same split in every
run, whatever else is added to the project.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dlcamp.core.errors import BadArgument
from dlcamp.data.detection import DetectionSet
from dlcamp.vision.letterbox import Letterbox, letterbox

MIN_IMAGES = 4  # usable images a project needs before it can be trained
FILL = (127, 127, 127)  # the letterbox's grey: ~the detectors' normalisation mean (0 after it)

# images that train: an accepted live box, or marked as holding no objects, or reviewed
# "done" without open proposals (an image whose only boxes are unreviewed proposals would
# otherwise train as pure background)
_USABLE_SQL = """
SELECT i.id, i.sha256, i.work_sha256, i.width, i.height, i.file_name
FROM images i
WHERE i.project_id = ? AND (i.no_objects = 1 OR EXISTS (
    SELECT 1 FROM boxes b WHERE b.image_id = i.id AND b.deleted = 0 AND b.proposed = 0)
    OR (i.review = 'done' AND NOT EXISTS (
    SELECT 1 FROM boxes b WHERE b.image_id = i.id AND b.deleted = 0 AND b.proposed = 1)))
ORDER BY i.id"""
_BOXES_SQL = """
SELECT b.image_id, b.label, b.x1, b.y1, b.x2, b.y2
FROM boxes b JOIN images i ON b.image_id = i.id
WHERE i.project_id = ? AND b.deleted = 0 AND b.proposed = 0
ORDER BY b.image_id, b.id"""


def fit_photo(img: Image.Image, side: int, fill: tuple[int, int, int] = FILL
              ) -> tuple[torch.Tensor, Letterbox]:
    """A PIL image -> ((3, side, side) uint8 tensor, its Letterbox), letterboxed exactly as the
    server letterboxes (dlcamp.vision.letterbox); transparency lies on `fill`."""
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.new("RGB", img.size, fill)
        img.paste(rgba, mask=rgba.getchannel("A"))
    square, fit = letterbox(img.convert("RGB"), side, fill)
    pixels = torch.from_numpy(np.asarray(square, dtype=np.uint8).copy())  # (side, side, 3)
    return pixels.permute(2, 0, 1).contiguous(), fit


def load_work(store, pid: str, iid: int, side: int, fill: tuple[int, int, int] = FILL
              ) -> tuple[torch.Tensor, Letterbox]:
    """The working copy of image `iid`, letterboxed: ((3, side, side) uint8, Letterbox), the
    Letterbox of the stored working-copy size. Raises NotFound (camp.reads)."""
    with Image.open(store.image_blob(pid, iid, "work")) as img:
        img.load()
        return fit_photo(img, side, fill)


def val_split(sha256s: list[str], val_fraction: float = 0.2) -> list[bool]:
    """Which images are validation images: those whose SHA-256 (hex), read as a number in
    [0, 1) from its first 8 hex digits, is below val_fraction. With >= 2 images at least one
    is in val (the lowest hash) and at least one in train (the highest). Same photo, same
    split, in every run."""
    if not 0 <= val_fraction < 1:
        raise BadArgument(f"val_fraction must lie in [0, 1), got {val_fraction}")
    keys = [int(sha[:8], 16) / 16**8 for sha in sha256s]
    val = [k < val_fraction for k in keys]
    if len(keys) >= 2 and not any(val):
        val[keys.index(min(keys))] = True
    if len(keys) >= 2 and all(val):
        val[keys.index(max(keys))] = False
    return val


def project_sets(store, pid: str, image_size: int, val_fraction: float = 0.2,
                 fill: tuple[int, int, int] = FILL) -> tuple[DetectionSet, DetectionSet]:
    """(train, val) DetectionSets of project `pid` of a CampStore: images (N, 3, image_size,
    image_size) uint8 letterboxed working copies, boxes (N, M, 4) float32 corner pixels of
    the square, labels (N, M) int64 (-1 padding); class names from the project. Each set's
    `meta` holds {"project", "image_ids", "sha256"} (per image, in order).

    Raises NotFound (no such project) and BadArgument when fewer than MIN_IMAGES images are
    usable or no accepted box exists, or for an image_size below 32."""
    if not 32 <= image_size <= 2048:
        raise BadArgument(f"image_size must be 32 to 2048 px, got {image_size}")
    project = store.get_project(pid)  # NotFound
    with store._read() as conn:  # one snapshot for the rows and the boxes
        rows = conn.execute(_USABLE_SQL, (pid,)).fetchall()
        box_rows = conn.execute(_BOXES_SQL, (pid,)).fetchall()
    if len(rows) < MIN_IMAGES or not box_rows:
        raise BadArgument(
            f"project {pid!r} has {len(rows)} usable image(s) and {len(box_rows)} accepted "
            f"box(es); training needs at least {MIN_IMAGES} images (boxed, marked 'no "
            "objects' or reviewed) and at least one box")
    per_image: dict[int, list[tuple]] = {}
    for iid, *box in box_rows:
        per_image.setdefault(iid, []).append(tuple(box))
    in_val = val_split([r[1] for r in rows], val_fraction)
    parts: dict[bool, dict[str, list]] = {
        v: {"images": [], "boxes": [], "labels": [], "ids": [], "sha": []} for v in (False, True)}
    for (iid, sha, _, width, height, _), val in zip(rows, in_val, strict=True):
        pixels, fit = load_work(store, pid, iid, image_size, fill)
        if (fit.width, fit.height) != (width, height):
            fit = Letterbox.fit(width, height, image_size)  # boxes are in the stored size's pixels
        found = per_image.get(iid, [])
        coords = torch.tensor([b[1:] for b in found], dtype=torch.float64).reshape(-1, 4)
        part = parts[val]
        part["images"].append(pixels)
        part["boxes"].append(fit.to_input(coords))
        part["labels"].append(torch.tensor([b[0] for b in found], dtype=torch.int64))
        part["ids"].append(iid)
        part["sha"].append(sha)
    names = [c["name"] for c in project["classes"]]
    names_zh = [c["name_zh"] or c["name"] for c in project["classes"]]
    sets = []
    for val in (False, True):
        part = parts[val]
        sets.append(DetectionSet.from_lists(
            part["images"], part["boxes"], part["labels"], names, names_zh,
            name=f"camp:{pid}", split="val" if val else "train",
            meta={"project": pid, "image_ids": part["ids"], "sha256": part["sha"]}))
    return sets[0], sets[1]
