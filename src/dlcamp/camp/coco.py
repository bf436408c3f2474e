"""COCO object-detection JSON with its images: export, and import of any COCO export.

The layout written (the COCO "instances" format, https://cocodataset.org/#format-data):

    annotations.json   {"info", "licenses", "images", "annotations", "categories"}
    images/<file_name>

- `bbox` is [x, y, width, height] in pixels from the image's top-left corner, floats
  written in full (they read back to the same box); `area` is width * height.
- `categories` get ids 1..K in the class order, with `name` and our extra `name_zh`.
- Every image is listed, boxes or not, with our extra key `no_objects` (true: checked and
  empty; false: not labelled yet). A COCO file without that key marks nothing as empty.

`parse_coco` reads any COCO instances JSON: ours, Label Studio's and CVAT's (`foreign.py`).
Categories are taken in the order of their ids (Label Studio numbers them from 0, CVAT and
we from 1). An annotation's `segmentation` is not read, its `bbox` is.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from pathlib import Path

from dlcamp.camp.interchange import (
    Annotations,
    Bundle,
    ClassDef,
    ImageAnn,
    ImportFailed,
    checked_box,
    checked_classes,
    checked_image,
    export_names,
    member,
    number,
    size_value,
    write_zip,
)

JSON_NAME = "annotations.json"
_MISSING_SHOWN = 10


def export_coco(ann: Annotations) -> bytes:
    """`ann` as a zip: annotations.json + images/ (see the module docstring).

    Raises BadArgument for an image without bytes or a box of an unknown class.
    """
    names = export_names(ann)
    images, annotations = [], []
    for image_id, (img, name) in enumerate(zip(ann.images, names, strict=True), start=1):
        images.append({"id": image_id, "file_name": name, "width": img.width,
                       "height": img.height, "no_objects": img.no_objects})
        for box in img.boxes:
            w, h = box.x2 - box.x1, box.y2 - box.y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": box.label + 1, "bbox": [box.x1, box.y1, w, h],
                                "area": w * h, "iscrowd": 0, "segmentation": []})
    categories = [{"id": k + 1, "name": c.name, "name_zh": c.name_zh, "supercategory": ""}
                  for k, c in enumerate(ann.classes)]
    doc = {"info": {"description": "dlcamp camp export", "version": "1.0"}, "licenses": [],
           "images": images, "annotations": annotations, "categories": categories}
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    files = [(JSON_NAME, text.encode())]
    files += [(f"images/{name}", img.data) for img, name in zip(ann.images, names, strict=True)]
    return write_zip(files)


def import_coco(src: bytes | str | Path, *, allow_missing_images: bool = False) -> Annotations:
    """A COCO export (zip bytes, folder, or the bare JSON as bytes) -> Annotations.

    The JSON is `annotations.json`, or else the one `.json` file in the upload; images are
    looked up next to it, under `images/`, or by base name anywhere in the upload. Images
    missing from the upload raise ImportFailed listing them, unless `allow_missing_images`
    (then `data` is None and the sizes are as declared). Raises ImportFailed for anything
    malformed.
    """
    bundle = Bundle.open(src, JSON_NAME).rooted(JSON_NAME)
    return parse_coco(bundle, find_json(bundle, JSON_NAME), image_dirs=["images", ""],
                      allow_missing_images=allow_missing_images)


def find_json(bundle: Bundle, preferred: str) -> str:
    """`preferred` if the upload has it, else its only `.json` file."""
    if preferred in bundle:
        return preferred
    found = [n for n in bundle.names() if n.lower().endswith(".json")]
    if len(found) != 1:
        raise ImportFailed(bundle.label, "", f"expected {preferred} or exactly one .json file, "
                           f"found {len(found)}: {', '.join(found[:5]) or 'none'}")
    return found[0]


def parse_coco(bundle: Bundle, name: str, *, image_dirs: list[str], allow_missing_images: bool,
               rename: Callable[[str], str] = posixpath.basename) -> Annotations:
    """The COCO JSON `name` in `bundle` -> Annotations, images read from the bundle.

    `image_dirs`: folders (relative to the bundle) that `file_name` is relative to, tried in
    order before a look-up by base name; `rename` turns a `file_name` into the name the image
    gets (default: its base name).
    """
    doc = bundle.json(name)
    if not isinstance(doc, dict):
        raise ImportFailed(name, "", "expected a JSON object with images, annotations and "
                           "categories (is this a COCO file?)")
    classes, label_of = _categories(member(doc, "categories", name, "", "an array", (list,)),
                                    name)
    images, by_id, missing, seen = [], {}, [], set()
    index = _basename_index(bundle)
    for i, item in enumerate(member(doc, "images", name, "", "an array", (list,))):
        where = f"images[{i}]"
        image_id = member(item, "id", name, where, "a number or string", (int, str))
        file_name = member(item, "file_name", name, where, "a string", (str,))
        width = size_value(member(item, "width", name, where, "a number", (int, float)),
                           name, f"{where}.width")
        height = size_value(member(item, "height", name, where, "a number", (int, float)),
                            name, f"{where}.height")
        no_objects = item.get("no_objects", False)
        if not isinstance(no_objects, bool):
            raise ImportFailed(name, f"{where}.no_objects", "expected true or false")
        if image_id in by_id:
            raise ImportFailed(name, f"{where}.id", f"image id {image_id!r} appears twice")
        img = ImageAnn(rename(file_name.replace("\\", "/")), width, height, [], no_objects)
        path = _find_image(bundle, file_name, image_dirs, index)
        if path is None:
            missing.append(file_name)
        else:
            img.data = bundle.image(path)
            checked_image(path, img.data, width, height, name, where)
        if not img.file_name or img.file_name.lower() in seen:
            raise ImportFailed(name, f"{where}.file_name",
                               f"duplicate or empty file name {img.file_name!r}")
        seen.add(img.file_name.lower())
        by_id[image_id] = img
        images.append(img)
    if missing and not allow_missing_images:
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise ImportFailed(name, "images", f"{len(missing)} image file(s) are not in the upload: "
                           f"{', '.join(missing[:_MISSING_SHOWN])}{more}; export with images, "
                           "or import the annotations only")
    for i, item in enumerate(member(doc, "annotations", name, "", "an array", (list,))):
        _annotation(item, name, f"annotations[{i}]", by_id, label_of)
    for i, img in enumerate(images):
        if img.no_objects and img.boxes:
            raise ImportFailed(name, f"images[{i}].no_objects",
                               f"{img.file_name} is marked as having no objects but has boxes")
    return Annotations(classes, images)


def _categories(items: list, name: str) -> tuple[list[ClassDef], dict[int, int]]:
    found: dict[int, ClassDef] = {}
    for i, item in enumerate(items):
        where = f"categories[{i}]"
        cid = member(item, "id", name, where, "a whole number", (int,))
        cname = member(item, "name", name, where, "a string", (str,))
        name_zh = item.get("name_zh", "")
        if cid in found:
            raise ImportFailed(name, f"{where}.id", f"category id {cid} appears twice")
        found[cid] = ClassDef(cname, name_zh if isinstance(name_zh, str) else "")
    order = sorted(found)
    classes = [found[cid] for cid in order]
    checked_classes([c.name for c in classes], name, "categories[{i}]")
    return classes, {cid: k for k, cid in enumerate(order)}


def _annotation(item: object, name: str, where: str, by_id: dict, label_of: dict) -> None:
    image_id = member(item, "image_id", name, where, "a number or string", (int, str))
    cid = member(item, "category_id", name, where, "a whole number", (int,))
    bbox = member(item, "bbox", name, where, "an array", (list,))
    if image_id not in by_id:
        raise ImportFailed(name, f"{where}.image_id", f"unknown image id {image_id!r}")
    if cid not in label_of:
        raise ImportFailed(name, f"{where}.category_id", f"unknown category id {cid}")
    if len(bbox) != 4:
        raise ImportFailed(name, f"{where}.bbox",
                           f"expected 4 numbers [x, y, width, height], got {len(bbox)}")
    x, y, w, h = (number(v, name, f"{where}.bbox[{k}]") for k, v in enumerate(bbox))
    for k, (value, what) in enumerate(((w, "width"), (h, "height")), start=2):
        if value <= 0:
            problem = "is negative" if value < 0 else "is zero"
            raise ImportFailed(name, f"{where}.bbox[{k}]", f"{what} {problem}")
    attributes = item.get("attributes")
    rotation = attributes.get("rotation", 0) if isinstance(attributes, dict) else 0
    if isinstance(rotation, int | float) and rotation % 360:
        raise ImportFailed(name, f"{where}.attributes.rotation", f"rotated boxes ({rotation:g} "
                           "degrees) are not supported; straighten or redraw the box")
    img = by_id[image_id]
    img.boxes.append(checked_box(name, f"{where}.bbox", label_of[cid], x, y, x + w, y + h,
                                 img.width, img.height))


def _basename_index(bundle: Bundle) -> dict[str, str | None]:
    index: dict[str, str | None] = {}
    for path in bundle.images():
        base = posixpath.basename(path)
        index[base] = None if base in index else path  # None: ambiguous
    return index


def _find_image(bundle: Bundle, file_name: str, dirs: list[str],
                index: dict[str, str | None]) -> str | None:
    clean = file_name.replace("\\", "/")
    if ".." not in clean.split("/") and not clean.startswith("/"):
        for folder in dirs:
            path = posixpath.normpath(posixpath.join(folder, clean)) if clean else ""
            if path in bundle:
                return path
    return index.get(posixpath.basename(clean))
