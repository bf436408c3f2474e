"""Pascal VOC XML with its images: export and import.

The layout (the VOC development kit's, http://host.robots.ox.ac.uk/pascal/VOC/):

    Annotations/<stem>.xml     one per image: <filename>, <size>, an <object> per box
    JPEGImages/<file>          every image (PNG too: the folder name is VOC's)
    ImageSets/Main/train.txt   the image stems, one per line
    classes.json               ours: [{"name", "name_zh"}, ...], the class list in order

Coordinates: VOC numbers pixels from 1 and its corners are inclusive pixel indices, so a
box over the whole W x H image is xmin=1, ymin=1, xmax=W, ymax=H. Our boxes are continuous
[x1, y1, x2, y2] with (0, 0) the image's top-left corner, so exactly

    xmin = x1 + 1,  ymin = y1 + 1,  xmax = x2,  ymax = y2      (and back: x1 = xmin - 1)

as detectron2's VOC reader does. Whole numbers are written as such, others in full
(`repr`), so fractional boxes read back unchanged.

Every image gets an XML; ours carries the extra element <no_objects>1|0</no_objects>. In an
XML without it (LabelImg, other tools) no <object> means the image was checked and is
empty. XML is parsed with defusedxml (no entities, no external references). The class
order comes from classes.json, else Datumaro's labelmap.txt, else the sorted class names.
"""

from __future__ import annotations

import io
import json
import posixpath
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from PIL import Image

from dlcamp.camp.interchange import (
    MAX_TEXT_BYTES,
    Annotations,
    Bundle,
    ClassDef,
    ImageAnn,
    ImportFailed,
    checked_box,
    checked_classes,
    checked_image,
    export_names,
    fmt,
    image_size,
    member,
    parse_float,
    size_value,
    unique_file_names,
    write_zip,
)

CLASSES_NAME = "classes.json"


def export_voc(ann: Annotations) -> bytes:
    """`ann` as a zip in the Pascal VOC layout (see the module docstring).

    Raises BadArgument for an image without bytes or a box of an unknown class.
    """
    names = export_names(ann)
    classes = [{"name": c.name, "name_zh": c.name_zh} for c in ann.classes]
    files = [(CLASSES_NAME, json.dumps(classes, ensure_ascii=False, indent=1).encode())]
    stems = []
    for img, name in zip(ann.images, names, strict=True):
        stem = posixpath.splitext(name)[0]
        stems.append(stem)
        files.append((f"Annotations/{stem}.xml", _xml(img, name, ann.classes)))
        files.append((f"JPEGImages/{name}", img.data))
    files.append(("ImageSets/Main/train.txt", "".join(s + "\n" for s in stems).encode()))
    return write_zip(files)


def _xml(img: ImageAnn, name: str, classes: list[ClassDef]) -> bytes:
    root = ET.Element("annotation")
    _child(root, "folder", "JPEGImages")
    _child(root, "filename", name)
    size = _child(root, "size")
    with Image.open(io.BytesIO(img.data)) as im:
        depth = len(im.getbands())
    for tag, value in (("width", img.width), ("height", img.height), ("depth", depth)):
        _child(size, tag, str(value))
    _child(root, "segmented", "0")
    _child(root, "no_objects", "1" if img.no_objects else "0")
    for box in img.boxes:
        obj = _child(root, "object")
        for tag, value in (("name", classes[box.label].name), ("pose", "Unspecified"),
                           ("truncated", "0"), ("difficult", "0")):
            _child(obj, tag, value)
        bndbox = _child(obj, "bndbox")
        for tag, value in (("xmin", box.x1 + 1), ("ymin", box.y1 + 1), ("xmax", box.x2),
                           ("ymax", box.y2)):
            _child(bndbox, tag, fmt(value))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _child(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def import_voc(src: bytes | str | Path, *, allow_missing_images: bool = False) -> Annotations:
    """A Pascal VOC export (zip bytes or folder) -> Annotations.

    Images are looked up as JPEGImages/<filename>, else by the XML's stem with any image
    extension; they come sorted by XML name, then the images without an XML (unlabelled).
    A missing image raises ImportFailed unless `allow_missing_images` (then `data` is None,
    sizes as declared).
    Raises ImportFailed for anything malformed, naming the XML element.
    """
    bundle = Bundle.open(src, "annotation.xml").rooted("Annotations", "JPEGImages")
    xml_names = [n for n in bundle.names() if n.startswith("Annotations/") and
                 n.lower().endswith(".xml")]
    if not xml_names:
        raise ImportFailed(bundle.label, "", "no Annotations/*.xml: not a Pascal VOC export")
    parsed = [(n, _parse(bundle, n)) for n in xml_names]
    classes = _classes(bundle, parsed)
    label_of = {c.name: k for k, c in enumerate(classes)}
    by_stem: dict[str, list[str]] = {}
    for path in bundle.images():
        by_stem.setdefault(posixpath.splitext(posixpath.basename(path))[0], []).append(path)
    images, used = [], {}
    for name, root in parsed:
        img, path = _image(bundle, name, root, label_of, by_stem, allow_missing_images)
        key = (path or img.file_name).lower()
        if key in used:
            raise ImportFailed(name, "annotation/filename", f"{img.file_name} is also "
                               f"described by {used[key]}")
        used[key] = name
        images.append(img)
    for path in bundle.images():  # images nobody described: unlabelled
        if path.lower() not in used and path.startswith("JPEGImages/"):
            data = bundle.image(path)
            images.append(ImageAnn(posixpath.basename(path), *image_size(path, data), [],
                                   False, data))
    unique_file_names(images, bundle.label)
    return Annotations(classes, images)


def _parse(bundle: Bundle, name: str) -> ET.Element:
    try:
        root = SafeET.fromstring(bundle.read(name, MAX_TEXT_BYTES))
    except ET.ParseError as exc:
        line, column = exc.position
        raise ImportFailed(name, f"line {line} column {column}", "not well-formed XML") from None
    except DefusedXmlException as exc:
        raise ImportFailed(name, "", f"XML entities and DTDs are not allowed ({exc})") from None
    if root.tag != "annotation":
        raise ImportFailed(name, f"<{root.tag}>", "expected <annotation> as the root element")
    return root


def _text(element: ET.Element, path: str, file: str, where: str) -> str:
    found = element.find(path)
    if found is None or not (found.text or "").strip():
        raise ImportFailed(file, f"{where}/{path}", "missing or empty")
    return found.text.strip()


def _classes(bundle: Bundle, parsed: list[tuple[str, ET.Element]]) -> list[ClassDef]:
    if CLASSES_NAME in bundle:
        items = bundle.json(CLASSES_NAME)
        if not isinstance(items, list):
            raise ImportFailed(CLASSES_NAME, "", "expected an array of classes")
        classes = [ClassDef(member(c, "name", CLASSES_NAME, f"[{i}]", "a string", (str,)),
                            str(c.get("name_zh") or "")) for i, c in enumerate(items)]
    elif "labelmap.txt" in bundle:  # Datumaro/CVAT: "name:color:parts:actions" lines
        lines = bundle.text("labelmap.txt").splitlines()
        classes = [ClassDef(line.split(":", 1)[0].strip()) for line in lines
                   if line.strip() and not line.startswith("#")]
    else:
        found = {o.findtext("name", "").strip() for _, root in parsed
                 for o in root.findall("object")}
        classes = [ClassDef(n) for n in sorted(found - {""})]
    checked_classes([c.name for c in classes], CLASSES_NAME, "[{i}]")
    return classes


def _image(bundle: Bundle, name: str, root: ET.Element, label_of: dict[str, int],
           by_stem: dict[str, list[str]], allow_missing: bool) -> tuple[ImageAnn, str | None]:
    top = "annotation"
    width = size_value(_text(root, "size/width", name, top), name, f"{top}/size/width")
    height = size_value(_text(root, "size/height", name, top), name, f"{top}/size/height")
    stem = posixpath.splitext(posixpath.basename(name))[0]
    file_name = posixpath.basename((root.findtext("filename") or "").strip().replace("\\", "/"))
    candidates = [f"JPEGImages/{file_name}"] if file_name else []
    candidates += by_stem.get(posixpath.splitext(file_name)[0] or stem, [])
    candidates += by_stem.get(stem, [])
    path = next((p for p in candidates if p in bundle), None)
    if path is None and not allow_missing:
        raise ImportFailed(name, f"{top}/filename", f"image {file_name or stem!r} is not in "
                           "the upload (expected under JPEGImages/)")
    img = ImageAnn(posixpath.basename(path) if path else file_name or stem, width, height)
    if path is not None:
        img.data = bundle.image(path)
        checked_image(path, img.data, width, height, name, f"{top}/size")
    for k, obj in enumerate(root.findall("object"), start=1):
        where = f"{top}/object[{k}]"
        cname = _text(obj, "name", name, where)
        if cname not in label_of:
            raise ImportFailed(name, f"{where}/name", f"unknown class {cname!r}")
        xmin, ymin, xmax, ymax = (parse_float(_text(obj, f"bndbox/{t}", name, where), name,
                                              f"{where}/bndbox/{t}")
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        for low, high, axis in ((xmin, xmax, "x"), (ymin, ymax, "y")):
            if high <= low - 1:  # inclusive corners: xmax = xmin is one pixel wide
                raise ImportFailed(name, f"{where}/bndbox/{axis}max",
                                   f"{axis}max {high:g} is less than {axis}min {low:g}")
        img.boxes.append(checked_box(name, f"{where}/bndbox", label_of[cname], xmin - 1,
                                     ymin - 1, xmax, ymax, width, height))
    marker = (root.findtext("no_objects") or "").strip()
    if marker not in ("", "0", "1"):
        raise ImportFailed(name, f"{top}/no_objects", f"expected 0 or 1, got {marker!r}")
    img.no_objects = marker == "1" if marker else not img.boxes
    if img.no_objects and img.boxes:
        raise ImportFailed(name, f"{top}/no_objects", "marked as having no objects but has boxes")
    return img, path
