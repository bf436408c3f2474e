"""YOLO detection data in the Ultralytics layout: export, and import of Ultralytics datasets.

The layout (https://docs.ultralytics.com/datasets/detect/):

    data.yaml              path, train, val, names {0: name, ...} (+ our names_zh, no_objects)
    images/train/<file>    every image
    labels/train/<stem>.txt   one line per box: `class cx cy w h`, the centre and size
                              divided by the image's width and height; empty: no boxes

- The camp keeps no train/val split (teams split when they train; the test set is the
  organisers'), so `val` names the same folder as `train`.
- `path: .` means "this folder" only when training is started from it: Ultralytics resolves
  a relative `path` against its own datasets folder, so set an absolute path there.
- Numbers are written with 10 decimals: a box reads back to within 1e-10 x the image size.
- Every image gets a label file. data.yaml's `no_objects:` lists the images checked and
  empty; the other box-less images are unlabelled. A data.yaml without that key follows
  Ultralytics: an empty label file is a background image (no objects), a missing one is
  unlabelled.

On import, `train`/`val`/`test` may each be a folder, a `.txt` list of image paths, or a list
of those, relative to data.yaml (`path` is ignored: it names a folder on the machine that
wrote the file; leading `../` are dropped, as in Roboflow's exports). A label file is found
as Ultralytics does: the last `/images/` of the image path replaced by `/labels/`. Images
come in sorted by path (a file list keeps its order).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import yaml

from dlcamp.camp.interchange import (
    Annotations,
    BoxAnn,
    Bundle,
    ClassDef,
    ImageAnn,
    ImportFailed,
    checked_box,
    checked_classes,
    export_names,
    image_size,
    parse_float,
    write_zip,
)

YAML_NAME = "data.yaml"
_HEADER = ("# dlcamp camp export: Ultralytics YOLO detection layout.\n"
           "# Ultralytics resolves a relative `path` against its datasets folder: set `path`\n"
           "# to this folder's absolute path before `yolo train data=data.yaml`.\n")


def export_yolo(ann: Annotations) -> bytes:
    """`ann` as a zip in the Ultralytics layout (see the module docstring).

    Raises BadArgument for an image without bytes or a box of an unknown class.
    """
    names = export_names(ann)
    config = {"path": ".", "train": "images/train", "val": "images/train",
              "names": {k: c.name for k, c in enumerate(ann.classes)},
              "names_zh": {k: c.name_zh for k, c in enumerate(ann.classes)},
              "no_objects": [n for img, n in zip(ann.images, names, strict=True)
                             if img.no_objects]}
    text = _HEADER + yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    files = [(YAML_NAME, text.encode())]
    for img, name in zip(ann.images, names, strict=True):
        lines = [label_line(b, img.width, img.height) for b in img.boxes]
        files.append((f"images/train/{name}", img.data))
        files.append((f"labels/train/{posixpath.splitext(name)[0]}.txt",
                      "".join(line + "\n" for line in lines).encode()))
    return write_zip(files)


def label_line(box: BoxAnn, width: int, height: int) -> str:
    """One YOLO label line: `class cx cy w h`, normalised by the image size."""
    values = ((box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height,
              (box.x2 - box.x1) / width, (box.y2 - box.y1) / height)
    return " ".join([str(box.label)] + [f"{v:.10f}".rstrip("0").rstrip(".") for v in values])


def parse_labels(text: str, file: str, n_classes: int, width: int, height: int) -> list[BoxAnn]:
    """The boxes of a YOLO label file, in pixels of a `width` x `height` image.

    Raises ImportFailed naming the line: not 5 numbers, a class index out of range, a
    non-positive size, a box outside the image (beyond the 1 px tolerance).
    """
    boxes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts, where = line.split(), f"line {lineno}"
        if not parts:
            continue
        if len(parts) != 5:
            polygon = " (polygon labels are not supported)" if len(parts) > 5 else ""
            raise ImportFailed(file, where, f"expected 5 numbers (class cx cy w h), "
                               f"got {len(parts)}{polygon}")
        label = parse_float(parts[0], file, where)
        if label != int(label) or not 0 <= label < n_classes:
            raise ImportFailed(file, where, f"class index {parts[0]} is out of range "
                               f"(the classes are 0..{n_classes - 1})")
        cx, cy, w, h = (parse_float(p, file, where) for p in parts[1:])
        if w <= 0 or h <= 0:
            raise ImportFailed(file, where, "box width and height must be positive")
        boxes.append(checked_box(file, where, int(label), (cx - w / 2) * width,
                                 (cy - h / 2) * height, (cx + w / 2) * width,
                                 (cy + h / 2) * height, width, height))
    return boxes


def import_yolo(src: bytes | str | Path, *, allow_missing_images: bool = False) -> Annotations:
    """An Ultralytics YOLO dataset (zip bytes or folder) with data.yaml -> Annotations.

    `allow_missing_images` has no effect: YOLO coordinates need each image's size. Raises
    ImportFailed for anything malformed, a label file without an image, two images with
    the same file name.
    """
    bundle = Bundle.open(src, YAML_NAME).rooted(YAML_NAME)
    if YAML_NAME not in bundle:
        raise ImportFailed(bundle.label, "", "no data.yaml at the top of the upload")
    config = load_yaml(bundle, YAML_NAME)
    classes = _classes(config)
    listed = config.get("no_objects")
    if listed is not None and not (isinstance(listed, list)
                                   and all(isinstance(n, str) for n in listed)):
        raise ImportFailed(YAML_NAME, "no_objects", "expected a list of file names")
    listed_set = set(listed or [])
    paths = _image_paths(bundle, config)
    label_paths = {_label_path(p): p for p in paths}
    for name in bundle.names():
        if "/labels/" in f"/{name}" and name.endswith(".txt") and name not in label_paths:
            raise ImportFailed(name, "", "label file without an image (expected "
                               f"{name.replace('labels/', 'images/')[:-4]}.<jpg|png|...>)")
    images, seen = [], {}
    for path in paths:
        base = posixpath.basename(path)
        if base.lower() in seen:
            raise ImportFailed(path, "", f"duplicate file name (also {seen[base.lower()]})")
        seen[base.lower()] = path
        data = bundle.image(path)
        width, height = image_size(path, data)
        label = _label_path(path)
        text = bundle.text(label) if label in bundle else None
        boxes = parse_labels(text, label, len(classes), width, height) if text else []
        empty = base in listed_set if listed is not None else (text is not None and not boxes)
        if empty and boxes:
            raise ImportFailed(YAML_NAME, "no_objects", f"{base} is listed but has boxes")
        images.append(ImageAnn(base, width, height, boxes, empty, data))
    for k, name in enumerate(listed or []):
        if name.lower() not in seen:
            raise ImportFailed(YAML_NAME, f"no_objects[{k}]", f"no image named {name!r}")
    return Annotations(classes, images)


def load_yaml(bundle: Bundle, name: str) -> dict:
    """A YAML mapping read with yaml.safe_load; ImportFailed naming the line otherwise."""
    try:
        doc = yaml.safe_load(bundle.text(name))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ImportFailed(name, where, f"not valid YAML ({getattr(exc, 'problem', exc)})"
                           ) from None
    if not isinstance(doc, dict):
        raise ImportFailed(name, "", "expected a YAML mapping with train, val and names")
    return doc


def _classes(config: dict) -> list[ClassDef]:
    names = config.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise ImportFailed(YAML_NAME, "names", "expected the class names {0: name, ...}")
    if sorted(names) != list(range(len(names))):
        raise ImportFailed(YAML_NAME, "names", "class ids must be 0, 1, ... without gaps")
    ordered = [names[k] for k in range(len(names))]
    checked_classes(ordered, YAML_NAME, "names[{i}]")
    if "nc" in config and config["nc"] != len(ordered):
        raise ImportFailed(YAML_NAME, "nc", f"nc is {config['nc']} but {len(ordered)} names")
    zh = config.get("names_zh")
    zh = zh if isinstance(zh, dict) else {}
    return [ClassDef(n, str(zh.get(k) or "")) for k, n in enumerate(ordered)]


def _image_paths(bundle: Bundle, config: dict) -> list[str]:
    found: list[str] = []
    images = bundle.images()
    for key in ("train", "val", "test"):
        entries = config.get(key)
        for entry in entries if isinstance(entries, list) else [entries]:
            if entry is None or entry == "":
                continue
            if not isinstance(entry, str):
                raise ImportFailed(YAML_NAME, key, "expected a folder or file list path")
            rel = _relative(entry, key)
            if rel.endswith(".txt") and rel in bundle:
                listed = [_relative(line, f"{rel} line {i}", rel)
                          for i, line in enumerate(bundle.text(rel).splitlines(), 1)
                          if line.strip()]
                for i, path in enumerate(listed, 1):
                    if path not in bundle:
                        raise ImportFailed(rel, f"line {i}", f"{path} is not in the upload")
                found += listed
            else:
                inside = [p for p in images if rel == "" or p.startswith(rel + "/")]
                if not inside:
                    raise ImportFailed(YAML_NAME, key, f"no images under {entry!r}")
                found += inside
    if not found:
        raise ImportFailed(YAML_NAME, "train", "no image folder given")
    return list(dict.fromkeys(found))  # val may name the train folder again


def _relative(entry: str, where: str, file: str = YAML_NAME) -> str:
    posix = entry.strip().replace("\\", "/")
    if posix.startswith("/") or posix[1:3] == ":/":
        raise ImportFailed(file, where, f"{entry!r} is an absolute path; make it relative "
                           "to data.yaml")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    while parts and parts[0] == "..":
        parts.pop(0)
    if ".." in parts:
        raise ImportFailed(file, where, f"{entry!r}: '..' inside a path is not allowed")
    return "/".join(parts)


def _label_path(image_path: str) -> str:
    head, sep, tail = f"/{image_path}".rpartition("/images/")
    path = f"{head}/labels/{tail}" if sep else f"/{image_path}"
    return posixpath.splitext(path)[0][1:] + ".txt"

