"""Other annotation tools' exports -> Annotations: Label Studio and CVAT.

Label Studio (https://labelstud.io/guide/export, .../guide/task_format,
.../tags/rectanglelabels):
- JSON export: a list of tasks; `data.image` is the image's URL, e.g.
  `/data/upload/1/abcd1234-photo.jpg` (an upload gets an 8-hex-digit prefix; local files
  are `/data/local-files/?d=folder/photo.jpg`). The export has no images: send a zip of
  the JSON and the image files, matched by base name with or without the prefix; the
  prefix is dropped from the name. Of a task's annotations the latest not cancelled one
  counts. Its `rectanglelabels` results give `value.x/y/width/height` in PERCENT of
  `original_width`/`original_height`; other result types are ignored. A rotated box
  (`value.rotation` != 0) is refused. A submitted annotation with no box marks the image as
  having no objects; a task without one is unlabelled. Classes: the label names, sorted.
- COCO export: `result.json` + `images/` (`file_name` "images/<prefix>-photo.jpg"),
  category ids from 0, boxes in whole pixels; it leaves out images without boxes (a known
  Label Studio issue). The JSON alone is refused unless `allow_missing_images`.
CVAT (https://docs.cvat.ai/docs/dataset_management/formats/):
- "COCO 1.0": `annotations/instances_<subset>.json` + `images/<subset>/` (older versions:
  `images/`); the subset of a task is `default`. A rotated box (attribute `rotation`) is
  refused.
- "YOLO 1.1" (Darknet): `obj.names` (a class per line), `obj.data` (`names = data/obj.names`,
  `train = data/train.txt`), `train.txt` (image paths), `obj_<subset>_data/` holding each
  image and its `<stem>.txt` (`class cx cy w h`, normalised). CVAT writes an empty label
  file for every image without boxes, so none is marked as having no objects.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from dlcamp.camp.coco import find_json, parse_coco
from dlcamp.camp.interchange import (
    Annotations,
    Bundle,
    ClassDef,
    ImageAnn,
    ImportFailed,
    checked_box,
    checked_classes,
    checked_image,
    image_size,
    member,
    number,
    size_value,
    unique_file_names,
)
from dlcamp.camp.yolo import parse_labels

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
Source = bytes | str | Path


def strip_upload_prefix(name: str) -> str:
    """`abcd1234-photo.jpg` -> `photo.jpg` (Label Studio's upload prefix)."""
    return _UPLOAD_PREFIX.sub("", name, count=1)


def _url_basename(url: str) -> str:
    parts = urlsplit(url.replace("\\", "/"))
    local = parse_qs(parts.query).get("d")  # /data/local-files/?d=folder/photo.jpg
    return posixpath.basename(unquote(local[0] if local else parts.path))


def import_labelstudio(src: Source, *, allow_missing_images: bool = False) -> Annotations:
    """A Label Studio JSON or COCO export (the JSON bytes, or a zip/folder with the images).

    Images named by the tasks but not in the upload raise ImportFailed listing them, unless
    `allow_missing_images` (then `data` is None and sizes come from `original_width`/
    `original_height`; a task with neither an image nor a box is skipped).
    """
    bundle = Bundle.open(src, "upload.json")
    name = find_json(bundle, "result.json")
    doc = bundle.json(name)
    if isinstance(doc, dict) and "images" in doc and "categories" in doc:
        folder = posixpath.dirname(name)
        return parse_coco(bundle, name, image_dirs=[folder], rename=lambda f: strip_upload_prefix(
            posixpath.basename(f)), allow_missing_images=allow_missing_images)
    tasks = [doc] if isinstance(doc, dict) else doc
    if not isinstance(tasks, list):
        raise ImportFailed(name, "", "expected Label Studio's task list (a JSON array)")
    index: dict[str, str | None] = {}
    for path in bundle.images():
        for key in {posixpath.basename(path), strip_upload_prefix(posixpath.basename(path))}:
            index[key] = None if index.get(key, path) != path else path
    parsed, labels = [_task(task, name, f"[{t}]") for t, task in enumerate(tasks)], set()
    for _, _, _, rects, _ in parsed:
        labels |= {r[1] for r in rects}
    classes = [ClassDef(n) for n in sorted(labels)]
    label_of = {c.name: k for k, c in enumerate(classes)}
    missing = [url for url, *_ in parsed if _lookup(index, url) is None]
    if missing and not allow_missing_images:
        raise ImportFailed(name, "data.image", f"{len(missing)} image(s) are not in the upload: "
                           f"{', '.join(_url_basename(u) for u in missing[:10])}; zip the "
                           "image files with the JSON, or import the annotations only")
    images, seen = [], set()
    for url, where, size, rects, no_objects in parsed:
        path = _lookup(index, url)
        data = bundle.image(path) if path else None
        if data is not None and size is not None:
            checked_image(path, data, *size, name, f"{rects[0][0]}.original_width")
        size = size or (image_size(path, data) if data is not None else None)
        if size is None:
            continue  # annotations only, and nothing known about this image
        file_name = strip_upload_prefix(_url_basename(url))
        if not file_name or file_name.lower() in seen:
            raise ImportFailed(name, f"{where}.data.image", f"{file_name!r} is in two tasks")
        seen.add(file_name.lower())
        boxes = [checked_box(name, rw, label_of[label], x / 100 * size[0], y / 100 * size[1],
                             (x + w) / 100 * size[0], (y + h) / 100 * size[1], *size)
                 for rw, label, x, y, w, h in rects]
        images.append(ImageAnn(file_name, size[0], size[1], boxes, no_objects, data))
    return Annotations(classes, images)


def _lookup(index: dict[str, str | None], url: str) -> str | None:
    base = _url_basename(url)
    return index.get(base) or index.get(strip_upload_prefix(base))


def _task(task: object, name: str, where: str) -> tuple:
    """(url, where, (w, h) or None, [(where, label, x, y, w, h) in %], no_objects)."""
    data = member(task, "data", name, where, "an object", (dict,))
    url = data.get("image")
    if url is None and len(strings := [v for v in data.values() if isinstance(v, str)]) == 1:
        url = strings[0]
    if not isinstance(url, str) or not _url_basename(url):
        raise ImportFailed(name, f"{where}.data.image", "missing image URL")
    annotations = task.get("annotations", task.get("completions", []))
    if not isinstance(annotations, list):
        raise ImportFailed(name, f"{where}.annotations", "expected an array")
    kept = [(str(a.get("updated_at") or a.get("created_at") or ""), i) for i, a in
            enumerate(annotations) if isinstance(a, dict) and not a.get("was_cancelled")
            and not a.get("skipped")]
    if not kept:
        return url, where, None, [], False
    a = max(kept)[1]
    rects, size = [], None
    results = member(annotations[a], "result", name, f"{where}.annotations[{a}]", "an array",
                     (list,))
    for r, result in enumerate(results):
        rw = f"{where}.annotations[{a}].result[{r}]"
        if not isinstance(result, dict) or result.get("type") != "rectanglelabels":
            continue
        value = member(result, "value", name, rw, "an object", (dict,))
        names = member(value, "rectanglelabels", name, f"{rw}.value", "an array", (list,))
        if len(names) != 1 or not isinstance(names[0], str) or not names[0]:
            raise ImportFailed(name, f"{rw}.value.rectanglelabels", "expected one label name")
        rotation = number(value.get("rotation", 0), name, f"{rw}.value.rotation")
        if rotation % 360:
            raise ImportFailed(name, f"{rw}.value.rotation", f"rotated boxes ({rotation:g} "
                               "degrees) are not supported; straighten the box in Label Studio")
        x, y, w, h = (number(member(value, k, name, f"{rw}.value", "a number", (int, float)),
                             name, f"{rw}.value.{k}") for k in ("x", "y", "width", "height"))
        for v, k in ((w, "width"), (h, "height")):
            if v <= 0:
                raise ImportFailed(name, f"{rw}.value.{k}", f"{k} must be positive, got {v:g}")
        box_size = tuple(size_value(member(result, k, name, rw, "a number", (int, float)),
                                    name, f"{rw}.{k}")
                         for k in ("original_width", "original_height"))
        if size not in (None, box_size):
            raise ImportFailed(name, f"{rw}.original_width", "differs from the image's other "
                               "boxes")
        size = box_size
        rects.append((rw, names[0], x, y, w, h))
    return url, where, size, rects, not rects


def import_cvat_coco(src: Source, *, allow_missing_images: bool = False) -> Annotations:
    """A CVAT "COCO 1.0" export (zip/folder, or one instances JSON as bytes) -> Annotations.

    Several subsets (a project export) are merged; they must share the class list.
    """
    bundle = Bundle.open(src, "instances_default.json").rooted("annotations", "images")
    names = [n for n in bundle.names() if re.fullmatch(r"annotations/instances_[^/]+\.json", n)]
    parts = []
    for name in names or [find_json(bundle, "instances_default.json")]:
        subset = re.sub(r"^instances_|\.json$", "", posixpath.basename(name))
        parts.append(parse_coco(bundle, name, image_dirs=[f"images/{subset}", "images"],
                                allow_missing_images=allow_missing_images))
    merged = Annotations(parts[0].classes, [])
    for name, part in zip(names or ["upload"], parts, strict=True):
        if [c.name for c in part.classes] != [c.name for c in merged.classes]:
            raise ImportFailed(name, "categories", "differ from the other subsets' categories")
        merged.images += part.images
    unique_file_names(merged.images, bundle.label)
    return merged


def import_cvat_yolo(src: Source, *, allow_missing_images: bool = False) -> Annotations:
    """A CVAT "YOLO 1.1" export with images (zip or folder) -> Annotations.

    `allow_missing_images` has no effect: YOLO coordinates need each image's size.
    """
    bundle = Bundle.open(src, "obj.names").rooted("obj.names", "obj.data")
    settings = _obj_data(bundle) if "obj.data" in bundle else {}
    names_file = _darknet_path(bundle, settings.get("names", "obj.names"))
    if names_file is None:
        raise ImportFailed(bundle.label, "", "no obj.names: not a CVAT YOLO 1.1 export")
    class_names = [line.strip() for line in bundle.text(names_file).splitlines() if line.strip()]
    checked_classes(class_names, names_file, "line {n}")
    in_data = re.compile(r"obj_[^/]+_data/")
    images = [p for p in bundle.images() if in_data.match(p)]
    if not images:
        raise ImportFailed(bundle.label, "", "no images in obj_<subset>_data/: export from CVAT "
                           "with 'Save images' on")
    for key in ("train", "valid"):
        listed = _darknet_path(bundle, settings[key]) if key in settings else None
        for i, line in enumerate(bundle.text(listed).splitlines() if listed else [], 1):
            if line.strip() and _darknet_path(bundle, line) is None:
                raise ImportFailed(listed, f"line {i}", f"{line.strip()} is not in the upload")
    stems = {posixpath.splitext(p)[0]: p for p in images}
    for name in bundle.names():
        if in_data.match(name) and name.endswith(".txt") and name[:-4] not in stems:
            raise ImportFailed(name, "", f"label file without an image ({name[:-4]}.jpg/.png)")
    result = []
    for path in images:
        data = bundle.image(path)
        width, height = image_size(path, data)
        label = posixpath.splitext(path)[0] + ".txt"
        text = bundle.text(label) if label in bundle else ""
        boxes = parse_labels(text, label, len(class_names), width, height)
        result.append(ImageAnn(posixpath.basename(path), width, height, boxes, False, data))
    unique_file_names(result, bundle.label)
    return Annotations([ClassDef(n) for n in class_names], result)


def _obj_data(bundle: Bundle) -> dict[str, str]:
    settings = {}
    for i, line in enumerate(bundle.text("obj.data").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ImportFailed("obj.data", f"line {i}", "expected `key = value`")
        settings[key.strip()] = value.strip()
    return settings


def _darknet_path(bundle: Bundle, value: str) -> str | None:
    """A path from obj.data or train.txt (`data/obj_train_data/a.jpg`) as found here."""
    path = re.sub(r"^(\./)+", "", value.strip().replace("\\", "/"))
    for candidate in (path, path.removeprefix("data/"), posixpath.basename(path)):
        if candidate in bundle:
            return candidate
    return None


# The names transfer.py's format table uses; each reads either Label Studio export.
import_labelstudio_json = import_labelstudio
import_labelstudio_coco = import_labelstudio
