"""Between a camp project and the annotation formats: `export_project`, `import_project`.

An export is a zip of the project's working copies (EXIF orientation applied, long side at
most 2048 px) with every box in those pixels, and every image in it, boxed or not; an image
marked "no objects" stays so (interchange.py says how each format records it).

An import goes through the same checks as an upload: each image is ingested (ingest.py:
sniffed, decoded, oriented, downscaled once), and its boxes are scaled by the same factor as
its pixels, so they stay on the objects. The class list is matched by name; names the project
lacks are appended. Either every image and box is stored, in one transaction, or nothing is:
any problem raises ImportFailed (naming the file and where in it) before the store is touched.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

from dlcamp.camp import coco, foreign, voc, yolo
from dlcamp.camp.ingest import PhotoRejected, ingest_photo, safe_file_name, sniff
from dlcamp.camp.interchange import Annotations, BoxAnn, ClassDef, ImageAnn, ImportFailed
from dlcamp.camp.storage import CampStore
from dlcamp.core.errors import BadArgument
from dlcamp.data.detection import DetectionSet

EXPORTERS = {"coco": coco.export_coco, "yolo": yolo.export_yolo, "voc": voc.export_voc}
IMPORTERS = {"coco": coco.import_coco, "yolo": yolo.import_yolo, "voc": voc.import_voc,
             "labelstudio": foreign.import_labelstudio_json,
             "labelstudio-coco": foreign.import_labelstudio_coco,
             "cvat-coco": foreign.import_cvat_coco, "cvat-yolo": foreign.import_cvat_yolo}
EXPORT_FORMATS = tuple(EXPORTERS)
IMPORT_FORMATS = tuple(IMPORTERS)


def project_annotations(store: CampStore, pid: str) -> Annotations:
    """The project as `Annotations` (one consistent read), image bytes = working copies, with
    its accepted boxes only (a model's open proposals are not labels). Raises
    storage.NotFound."""
    snap = store.snapshot(pid)
    classes = [ClassDef(c["name"], c.get("name_zh", "")) for c in snap["classes"]]
    images = []
    for img in snap["images"]:
        boxes = [BoxAnn(b["label"], b["x1"], b["y1"], b["x2"], b["y2"]) for b in img["boxes"]
                 if not b.get("proposed")]
        data = store.blobs.read(img["work_sha256"])
        ext = ".jpg" if sniff(data) == "jpeg" else ".png"  # working copies are one or the other
        images.append(ImageAnn(safe_file_name(img["file_name"], ext), img["width"],
                               img["height"], boxes, bool(img["no_objects"]), data))
    return Annotations(classes, images)


def export_project(store: CampStore, pid: str, fmt: str) -> bytes:
    """The project as a zip in `fmt` ("coco" | "yolo" | "voc"). Raises KeyError for another
    format name, storage.NotFound for an unknown project."""
    return EXPORTERS[fmt](project_annotations(store, pid))


def _scaled(box: BoxAnn, sx: float, sy: float, width: int, height: int) -> tuple:
    return (box.label, min(box.x1 * sx, width), min(box.y1 * sy, height),
            min(box.x2 * sx, width), min(box.y2 * sy, height))


def import_project(store: CampStore, pid: str, fmt: str, data: bytes | Path,
                   name: str = "upload") -> dict:
    """Add an export of another project or tool (`fmt`: one of IMPORT_FORMATS) to project
    `pid`: zip or JSON bytes, or a folder. -> {"images_added", "boxes_added", "duplicates"}.
    Raises ImportFailed (nothing stored), KeyError for an unknown format."""
    ann = IMPORTERS[fmt](data)
    items = []
    for img in ann.images:
        if img.data is None:
            raise ImportFailed(name, img.file_name, "the image file is not in the upload; "
                               "export with images included, or add them to the zip")
        try:
            photo = ingest_photo(img.data, img.file_name)
        except PhotoRejected as e:
            raise ImportFailed(name, img.file_name, str(e)) from None
        sx, sy = photo.width / img.width, photo.height / img.height
        items.append({"original": photo.original, "work": photo.work, "thumb": photo.thumb,
                      "file_name": safe_file_name(img.file_name), "width": photo.width,
                      "height": photo.height, "orig_width": photo.orig_width,
                      "orig_height": photo.orig_height, "no_objects": img.no_objects,
                      "boxes": [_scaled(b, sx, sy, photo.width, photo.height)
                                for b in img.boxes]})
    classes = [{"name": c.name, "name_zh": c.name_zh} for c in ann.classes]
    return store.import_annotations(pid, items, classes)


def scene_zip(data: DetectionSet, fmt: str = "coco", tags: tuple[str, ...] = (),
              prefix: str = "img") -> bytes:
    """A DetectionSet (a split of a synthetic scene set, say) as an import zip in `fmt`
    ("coco" | "yolo" | "voc"): its images as lossless PNG files `<prefix>NNNN.png`, its boxes
    in their pixels, and with `tags` a `conditions.csv` of those condition tags (testset.py
    reads it). For trying the camp without photos, tests, benchmarks. Raises BadArgument for
    a tag the set does not carry, KeyError for another format."""
    missing = [t for t in tags if t not in data.conditions]
    if missing:
        raise BadArgument(f"{data.name or 'the set'} has no condition {missing[0]!r}; it has "
                          f"{', '.join(sorted(data.conditions)) or 'none'}")
    images, rows = [], ["file_name," + ",".join(tags)]
    for i in range(len(data)):
        name = f"{prefix}{i:04d}.png"
        buffer = io.BytesIO()
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(buffer, "PNG")
        keep = data.labels[i] >= 0
        boxes = [BoxAnn(int(k), *map(float, b)) for k, b in
                 zip(data.labels[i][keep].tolist(), data.boxes[i][keep].tolist(), strict=True)]
        height, width = data.images.shape[-2:]
        images.append(ImageAnn(name, width, height, boxes, not boxes, buffer.getvalue()))
        rows.append(",".join([name, *(str(data.conditions[t][i]) for t in tags)]))
    classes = [ClassDef(n, z) for n, z in zip(data.class_names, data.class_names_zh,
                                               strict=True)]
    exported = EXPORTERS[fmt](Annotations(classes, images))
    if not tags:
        return exported
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(exported)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("conditions.csv", "\n".join(rows) + "\n")
    return out.getvalue()
