"""Annotation import/export: COCO, YOLO and VOC round trips, other tools' exports, bad input.

Round trips are property tests (hypothesis draws classes, image sizes, boxes, empty images);
pycocotools reads our COCO; the fixtures under tests/fixtures/camp/ are hand-written in each
tool's documented format and must import to the boxes computed by hand below; every
malformed upload gives one ImportFailed naming the file and the field or line.
"""

from __future__ import annotations

import functools
import io
import json
import warnings
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlcamp.camp import coco, foreign, interchange, voc, yolo
from dlcamp.camp.interchange import (
    Annotations,
    BoxAnn,
    ClassDef,
    ImageAnn,
    ImportFailed,
    export_names,
)
from dlcamp.core.errors import BadArgument

FIXTURES = Path(__file__).parent / "fixtures" / "camp"
SIZES = {"desk.jpg": (200, 100), "empty-table.png": (64, 48), "shelf.jpg": (120, 80),
         "shelf2.jpg": (120, 80), "shelf.png": (120, 80)}
FORMATS = {"coco": (coco.export_coco, coco.import_coco),
           "yolo": (yolo.export_yolo, yolo.import_yolo),
           "voc": (voc.export_voc, voc.import_voc)}


@functools.cache
def picture(width: int, height: int, kind: str = "png", orientation: int = 1) -> bytes:
    """A tiny image file of the given size (JPEG or PNG), optionally with an EXIF rotation."""
    im = Image.new("RGB", (width, height), ((width * 7) % 256, (height * 13) % 256, 90))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(out, "JPEG" if kind == "jpg" else "PNG", exif=exif.tobytes())
    return out.getvalue()


def named_picture(name: str) -> bytes:
    """The picture a fixture means by `name` (Label Studio's upload prefix allowed)."""
    return picture(*SIZES[foreign.strip_upload_prefix(name)],
                   "png" if name.endswith(".png") else "jpg")


def zipped(files: dict[str, bytes | str] | list[tuple[str, bytes | str]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # a duplicate name, on purpose
        for name, data in files.items() if isinstance(files, dict) else files:
            archive.writestr(name, data)
    return out.getvalue()


def fixture_files(folder: str) -> dict[str, bytes]:
    root = FIXTURES / folder
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def boxes_of(img: ImageAnn) -> list[tuple]:
    return [(b.label, b.x1, b.y1, b.x2, b.y2) for b in img.boxes]


# ---------------------------------------------------------------- round trips (property tests)

@st.composite
def boxes_in(draw, width: int, height: int, n_classes: int) -> BoxAnn:
    x1 = draw(st.floats(0, width - 0.5))
    y1 = draw(st.floats(0, height - 0.5))
    x2 = draw(st.floats(x1 + 0.5, width))
    y2 = draw(st.floats(y1 + 0.5, height))
    return BoxAnn(draw(st.integers(0, n_classes - 1)), x1, y1, x2, y2)


@st.composite
def datasets(draw) -> Annotations:
    n_classes = draw(st.integers(1, 4))
    classes = [ClassDef(draw(st.sampled_from(["cup", "red pen", "书", "phone"])) + str(k),
                        draw(st.sampled_from(["", "杯子", "红笔"]))) for k in range(n_classes)]
    images = []
    for i in range(draw(st.integers(1, 4))):
        width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
        kind = draw(st.sampled_from(["png", "jpg"]))
        boxes = draw(st.lists(boxes_in(width, height, n_classes), max_size=4))
        stem = draw(st.sampled_from(["IMG_0001", "照片", "my photo", "a.b"]))
        images.append(ImageAnn(f"{stem}-{i}.{kind}", width, height, boxes,
                               not boxes and draw(st.booleans()), picture(width, height, kind)))
    return Annotations(classes, images)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ann=datasets())
def test_round_trip_keeps_everything(fmt, ann):
    export, load = FORMATS[fmt]
    back = load(export(ann))
    assert back.classes == ann.classes
    before, after = ann.images, back.images
    if fmt != "coco":  # folders of files: the images come back sorted by path
        before = sorted(before, key=lambda i: i.file_name)
    assert [i.file_name for i in after] == [i.file_name for i in before]
    for old, new in zip(before, after, strict=True):
        assert (new.width, new.height, new.no_objects) == (old.width, old.height, old.no_objects)
        assert new.data == old.data
        # COCO and VOC write floats in full; YOLO prints 10 decimals of the normalised values
        tol = 2e-10 * max(old.width, old.height) if fmt == "yolo" else 1e-6
        assert [b[0] for b in boxes_of(new)] == [b[0] for b in boxes_of(old)]
        for a, b in zip(boxes_of(old), boxes_of(new), strict=True):
            assert a[1:] == pytest.approx(b[1:], abs=tol, rel=0)


def small_dataset() -> Annotations:
    return Annotations(
        [ClassDef("cup", "杯子"), ClassDef("pen", "笔"), ClassDef("unused")],
        [ImageAnn("desk.jpg", 200, 100, [BoxAnn(0, 20, 20, 70, 70), BoxAnn(1, 101.25, 0, 200,
                                                                              99.5)],
                  data=named_picture("desk.jpg")),
         ImageAnn("shelf.jpg", 120, 80, [], no_objects=True, data=named_picture("shelf.jpg")),
         ImageAnn("shelf2.jpg", 120, 80, [], data=named_picture("shelf2.jpg"))])


def test_pycocotools_reads_our_coco(tmp_path):
    from pycocotools.coco import COCO

    ann = small_dataset()
    files = unzip(coco.export_coco(ann))
    (tmp_path / "annotations.json").write_bytes(files["annotations.json"])
    api = COCO(str(tmp_path / "annotations.json"))
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == ["cup", "pen", "unused"]
    assert len(api.getImgIds()) == 3  # images without boxes are listed too
    for image_id, img in zip(sorted(api.getImgIds()), ann.images, strict=True):
        assert api.loadImgs(image_id)[0]["file_name"] == img.file_name
        assert files[f"images/{img.file_name}"] == img.data
        found = api.loadAnns(api.getAnnIds(imgIds=[image_id]))
        assert [a["bbox"] for a in found] == [[b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1]
                                              for b in img.boxes]
        assert [a["area"] for a in found] == [(b.x2 - b.x1) * (b.y2 - b.y1) for b in img.boxes]
        assert [a["category_id"] for a in found] == [b.label + 1 for b in img.boxes]


def test_exported_layouts_follow_each_format():
    ann = small_dataset()
    files = unzip(yolo.export_yolo(ann))
    config = yaml.safe_load(files["data.yaml"])
    assert {"path", "train", "val", "names"} <= set(config)
    assert config["names"] == {0: "cup", 1: "pen", 2: "unused"}
    assert config["no_objects"] == ["shelf.jpg"]
    assert files["labels/train/shelf.txt"] == b"" and files["labels/train/shelf2.txt"] == b""
    assert files["labels/train/desk.txt"].decode().splitlines()[0] == "0 0.225 0.45 0.25 0.5"
    files = unzip(voc.export_voc(ann))
    desk = files["Annotations/desk.xml"].decode()
    assert "<xmin>21</xmin>" in desk and "<xmax>70</xmax>" in desk  # 1-based pixel corners
    assert "<xmin>102.25</xmin>" in desk and "<ymax>99.5</ymax>" in desk
    assert "<object>" not in files["Annotations/shelf.xml"].decode()
    assert files["ImageSets/Main/train.txt"] == b"desk\nshelf\nshelf2\n"
    doc = json.loads(unzip(coco.export_coco(ann))["annotations.json"])
    assert doc["categories"][0] == {"id": 1, "name": "cup", "name_zh": "杯子",
                                    "supercategory": ""}
    assert [i["no_objects"] for i in doc["images"]] == [False, True, False]


def test_clashing_file_names_are_made_unique():
    ann = small_dataset()
    ann.images[1].file_name, ann.images[2].file_name = "DESK.png", "desk.jpg"
    assert export_names(ann) == ["desk.jpg", "DESK-2.png", "desk-3.jpg"]
    back = yolo.import_yolo(yolo.export_yolo(ann))
    assert sorted(i.file_name for i in back.images) == ["DESK-2.png", "desk-3.jpg", "desk.jpg"]
    ann.images[0].data = None
    with pytest.raises(BadArgument, match="no bytes"):
        coco.export_coco(ann)


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_from_a_folder_and_a_wrapped_zip(fmt, tmp_path):
    export, load = FORMATS[fmt]
    ann = small_dataset()
    files = unzip(export(ann))
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    for src in (tmp_path, zipped({f"team1-export/{n}": d for n, d in files.items()})):
        back = load(src)
        for old, new in zip(ann.images, back.images, strict=True):
            assert [b[0] for b in boxes_of(new)] == [b[0] for b in boxes_of(old)]
            for a, b in zip(boxes_of(old), boxes_of(new), strict=True):
                assert a[1:] == pytest.approx(b[1:], abs=1e-6, rel=0)


# ---------------------------------------------------------------- other tools' exports

def test_label_studio_json_export():
    files = fixture_files("labelstudio")
    # the photos as the team has them (no prefix) and one copied from Label Studio's media
    files |= {"photos/desk.jpg": named_picture("desk.jpg"), "camp/shelf.jpg":
              named_picture("shelf.jpg"), "0b1c2d3e-empty-table.png":
              named_picture("empty-table.png"), "a0b1c2d3-shelf2.jpg": named_picture("shelf2.jpg")}
    ann = foreign.import_labelstudio_json(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]
    got = {i.file_name: (boxes_of(i), i.no_objects, (i.width, i.height)) for i in ann.images}
    assert got == {
        "desk.jpg": ([(0, 20, 20, 70, 70), (1, 101, 0, 200, 100)], False, (200, 100)),
        "empty-table.png": ([], True, (64, 48)),  # submitted without a box
        "shelf.jpg": ([], False, (120, 80)),  # its only annotation was cancelled
        "shelf2.jpg": ([(0, 30, 20, 90, 60)], False, (120, 80))}  # the latest annotation
    assert all(i.data is not None for i in ann.images)


def test_label_studio_json_without_images():
    doc = fixture_files("labelstudio")["export.json"]
    with pytest.raises(ImportFailed) as caught:
        foreign.import_labelstudio_json(doc)
    assert "4 image(s) are not in the upload" in str(caught.value)
    assert "3f2a9c1e-desk.jpg" in str(caught.value)
    ann = foreign.import_labelstudio_json(doc, allow_missing_images=True)
    # without its file or a box, nothing gives an image's size: that task is left out
    assert [i.file_name for i in ann.images] == ["desk.jpg", "shelf2.jpg"]
    assert boxes_of(ann.images[0]) == [(0, 20, 20, 70, 70), (1, 101, 0, 200, 100)]


def test_label_studio_coco_export():
    files = fixture_files("labelstudio_coco")
    files |= {f"images/{n}": named_picture(n) for n in ("3f2a9c1e-desk.jpg",
                                                        "a0b1c2d3-shelf2.jpg")}
    ann = foreign.import_labelstudio_coco(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]  # category ids 0 and 1
    assert [(i.file_name, boxes_of(i)) for i in ann.images] == [
        ("desk.jpg", [(0, 20, 20, 70, 70), (1, 101, 0, 200, 100)]),
        ("shelf2.jpg", [(0, 30, 20, 90, 60)])]
    with pytest.raises(ImportFailed, match=r"upload\.json: images: 2 image file\(s\)"):
        foreign.import_labelstudio_coco(files["result.json"])
    only = foreign.import_labelstudio_coco(files["result.json"], allow_missing_images=True)
    assert [i.data for i in only.images] == [None, None]
    assert boxes_of(only.images[1]) == [(0, 30, 20, 90, 60)]


def test_cvat_coco_export():
    files = fixture_files("cvat_coco")
    files |= {f"images/default/{n}": named_picture(n) for n in ("desk.jpg", "shelf.png")}
    ann = foreign.import_cvat_coco(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]
    desk, shelf = ann.images
    assert boxes_of(desk) == [(1, 12.5, 30.25, 52.5, 30.25 + 30.85), (0, 150, 10, 199.5, 60)]
    assert (shelf.file_name, shelf.boxes, shelf.no_objects) == ("shelf.png", [], False)


def test_cvat_yolo_export():
    files = fixture_files("cvat_yolo")
    files |= {f"obj_train_data/{n}": named_picture(n) for n in ("desk.jpg", "shelf.png")}
    ann = foreign.import_cvat_yolo(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]
    desk, shelf = ann.images
    assert [b[0] for b in boxes_of(desk)] == [0, 1]
    assert boxes_of(desk)[0][1:] == pytest.approx((20, 20, 70, 70), abs=1e-9)
    assert boxes_of(desk)[1][1:] == pytest.approx((101, 0, 200, 100), abs=1e-9)
    assert (shelf.boxes, shelf.no_objects) == ([], False)  # CVAT writes empty files for all
    with pytest.raises(ImportFailed, match="Save images"):
        foreign.import_cvat_yolo(zipped(fixture_files("cvat_yolo")))


def test_roboflow_style_ultralytics_dataset():
    files = fixture_files("ultralytics")
    files |= {"train/images/desk.jpg": named_picture("desk.jpg"),
              "valid/images/shelf.jpg": named_picture("shelf.jpg")}
    ann = yolo.import_yolo(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]
    desk, shelf = ann.images
    assert boxes_of(desk)[1][1:] == pytest.approx((101, 0, 200, 100), abs=1e-9)
    assert (shelf.boxes, shelf.no_objects) == ([], True)  # an empty label file: background


def test_labelimg_style_voc():
    files = fixture_files("voc")
    files |= {f"JPEGImages/{n}": named_picture(n) for n in ("desk.jpg", "shelf.jpg")}
    files["JPEGImages/shelf2.jpg"] = named_picture("shelf2.jpg")  # no XML: unlabelled
    ann = voc.import_voc(zipped(files))
    assert [c.name for c in ann.classes] == ["cup", "pen"]
    got = {i.file_name: (boxes_of(i), i.no_objects) for i in ann.images}
    assert got == {"desk.jpg": ([(1, 101, 0, 200, 100), (0, 20, 20, 70, 70)], False),
                   "shelf.jpg": ([], True), "shelf2.jpg": ([], False)}


def test_exif_rotated_photo_is_checked_after_orientation():
    raw = picture(40, 20, "jpg", orientation=6)  # stored 40x20, shown 20x40

    def upload(width, height):
        doc = {"images": [{"id": 1, "file_name": "r.jpg", "width": width, "height": height}],
               "annotations": [], "categories": [{"id": 1, "name": "cup"}]}
        return zipped({"annotations.json": json.dumps(doc), "images/r.jpg": raw})

    assert (coco.import_coco(upload(20, 40)).images[0].width) == 20
    with pytest.raises(ImportFailed, match="EXIF orientation"):
        coco.import_coco(upload(40, 20))


# ---------------------------------------------------------------- malformed input

def coco_case(change):
    doc = {"images": [{"id": 1, "file_name": "desk.jpg", "width": 200, "height": 100}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
           "categories": [{"id": 1, "name": "cup"}]}
    change(doc)
    return lambda: coco.import_coco(zipped({"annotations.json": json.dumps(doc),
                                            "images/desk.jpg": named_picture("desk.jpg")}))


def ours_case(fmt, changes):
    export, load = FORMATS[fmt]
    files = unzip(export(small_dataset()))
    return lambda: load(zipped(files | changes))


def ls_case(change, every_box=False):
    doc = json.loads(fixture_files("labelstudio")["export.json"])
    for result in doc[0]["annotations"][0]["result"][: None if every_box else 1]:
        change(result)
    files = {"export.json": json.dumps(doc)} | {n: named_picture(n) for n in SIZES}
    return lambda: foreign.import_labelstudio_json(zipped(files))


def bbox(k, value):
    return coco_case(lambda d: d["annotations"][0]["bbox"].__setitem__(k, value))


BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><annotation>&lol2;</annotation>')
DESK_XML = unzip(voc.export_voc(small_dataset()))["Annotations/desk.xml"].decode()
DESK_TXT = "labels/train/desk.txt"

MALFORMED = [  # (id, call, file, where contains, reason contains)
    ("coco-bad-json", lambda: coco.import_coco(zipped({"annotations.json": '{"images": ['})),
     "annotations.json", "line 1", "not valid JSON"),
    ("coco-missing-key", coco_case(lambda d: d.pop("images")), "annotations.json", "",
     "missing key 'images'"),
    ("coco-negative-width", bbox(2, -5), "annotations.json", "annotations[0].bbox[2]",
     "width is negative"),
    ("coco-nan", bbox(1, float("nan")), "annotations.json", "annotations[0].bbox[1]",
     "not a finite number"),
    ("coco-string-number", bbox(0, "10"), "annotations.json", "annotations[0].bbox[0]",
     "expected a number, got string"),
    ("coco-box-outside", bbox(0, 190), "annotations.json", "annotations[0].bbox",
     "outside the 200x100 image"),
    ("coco-short-bbox", coco_case(lambda d: d["annotations"][0]["bbox"].pop()),
     "annotations.json", "annotations[0].bbox", "expected 4 numbers"),
    ("coco-unknown-category", coco_case(lambda d: d["annotations"][0].update(category_id=7)),
     "annotations.json", "annotations[0].category_id", "unknown category id 7"),
    ("coco-unknown-image", coco_case(lambda d: d["annotations"][0].update(image_id=9)),
     "annotations.json", "annotations[0].image_id", "unknown image id 9"),
    ("coco-wrong-image-size", coco_case(lambda d: d["images"][0].update(width=201)),
     "annotations.json", "images[0]", "is 201x100 px but the image is 200x100 px"),
    ("coco-negative-image-size", coco_case(lambda d: d["images"][0].update(height=-100)),
     "annotations.json", "images[0].height", "positive whole number"),
    ("coco-duplicate-file-name", coco_case(lambda d: d["images"].append(
        dict(d["images"][0], id=2))), "annotations.json", "images[1].file_name", "duplicate"),
    ("coco-images-missing", lambda: coco.import_coco(b'{"images": [{"id": 1, "file_name": '
                                                     b'"a.jpg", "width": 2, "height": 2}], '
                                                     b'"annotations": [], "categories": []}'),
     "annotations.json", "images", "1 image file(s) are not in the upload: a.jpg"),
    ("zip-slip", lambda: coco.import_coco(zipped({"../evil.json": "{}"})), "upload.zip",
     "../evil.json", "zip slip"),
    ("zip-absolute-path", lambda: coco.import_coco(zipped({"/etc/passwd": "x"})),
     "upload.zip", "/etc/passwd", "absolute"),
    ("zip-duplicate-entry", lambda: coco.import_coco(zipped([("annotations.json", "{}"),
                                                             ("annotations.json", "{}")])),
     "annotations.json", "", "appears twice"),
    ("not-a-zip", lambda: coco.import_coco(b"PK\x03\x04 truncated"), "upload.zip", "",
     "not a readable zip"),
    ("yolo-four-numbers", ours_case("yolo", {DESK_TXT: "0 0.2 0.4 0.2 0.5\n1 0.5 0.5 0.2\n"}),
     DESK_TXT, "line 2", "expected 5 numbers"),
    ("yolo-class-out-of-range", ours_case("yolo", {DESK_TXT: "7 0.5 0.5 0.1 0.1\n"}),
     DESK_TXT, "line 1", "class index 7 is out of range"),
    ("yolo-nan", ours_case("yolo", {DESK_TXT: "0 nan 0.5 0.1 0.1\n"}), DESK_TXT, "line 1",
     "not a finite number"),
    ("yolo-word", ours_case("yolo", {DESK_TXT: "0 0.5 zero 0.1 0.1\n"}), DESK_TXT, "line 1",
     "expected a number, got 'zero'"),
    ("yolo-box-outside", ours_case("yolo", {DESK_TXT: "0 0.99 0.5 0.2 0.2\n"}), DESK_TXT,
     "line 1", "outside"),
    ("yolo-label-without-image", ours_case("yolo", {"labels/train/ghost.txt": ""}),
     "labels/train/ghost.txt", "", "label file without an image"),
    ("yolo-bad-yaml", ours_case("yolo", {"data.yaml": "names: [cup\ntrain: images/train\n"}),
     "data.yaml", "line", "not valid YAML"),
    ("yolo-names-gap", ours_case("yolo", {"data.yaml": "train: images/train\n"
                                                       "names: {0: cup, 2: pen}\n"}),
     "data.yaml", "names", "without gaps"),
    ("voc-malformed-xml", ours_case("voc", {"Annotations/desk.xml": DESK_XML[:300]}),
     "Annotations/desk.xml", "line", "not well-formed XML"),
    ("voc-xmax-before-xmin", ours_case("voc", {"Annotations/desk.xml": DESK_XML.replace(
        "<xmax>70</xmax>", "<xmax>5</xmax>")}), "Annotations/desk.xml",
     "annotation/object[1]/bndbox/xmax", "less than xmin"),
    ("voc-missing-size", ours_case("voc", {"Annotations/desk.xml": DESK_XML.replace(
        "<width>200</width>", "")}), "Annotations/desk.xml", "annotation/size/width",
     "missing"),
    ("voc-unknown-class", ours_case("voc", {"Annotations/desk.xml": DESK_XML.replace(
        "<name>cup</name>", "<name>dog</name>")}), "Annotations/desk.xml",
     "annotation/object[1]/name", "unknown class 'dog'"),
    ("voc-entity-bomb", ours_case("voc", {"Annotations/desk.xml": BOMB}),
     "Annotations/desk.xml", "", "entities"),
    ("cvat-yolo-label-without-image", lambda: foreign.import_cvat_yolo(zipped(
        fixture_files("cvat_yolo") | {"obj_train_data/desk.jpg": named_picture("desk.jpg"),
                                      "train.txt": "data/obj_train_data/desk.jpg\n"})),
     "obj_train_data/shelf.txt", "", "label file without an image"),
    ("cvat-yolo-listed-image-missing", lambda: foreign.import_cvat_yolo(zipped(
        fixture_files("cvat_yolo") | {f"obj_train_data/{n}": named_picture(n)
                                      for n in ("desk.jpg", "shelf.png")}
        | {"train.txt": "data/obj_train_data/desk.jpg\ndata/obj_train_data/nope.jpg\n"})),
     "train.txt", "line 2", "nope.jpg is not in the upload"),
    ("labelstudio-rotated", ls_case(lambda r: r["value"].update(rotation=30)), "export.json",
     "[0].annotations[0].result[0].value.rotation", "rotated boxes (30 degrees)"),
    ("labelstudio-outside", ls_case(lambda r: r["value"].update(x=90)), "export.json",
     "[0].annotations[0].result[0]", "outside the 200x100 image"),
    ("labelstudio-no-size", ls_case(lambda r: r.pop("original_width")), "export.json",
     "[0].annotations[0].result[0]", "missing key 'original_width'"),
    ("labelstudio-wrong-size", ls_case(lambda r: r.update(original_width=400), every_box=True),
     "export.json",
     "original_width", "is 400x100 px but the image is 200x100 px"),
]


@pytest.mark.parametrize(("call", "file", "where", "reason"),
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_upload_names_file_and_place(call, file, where, reason):
    with pytest.raises(ImportFailed) as caught:
        call()
    error = caught.value
    assert error.file == file
    assert where in error.where, error
    assert reason in error.reason, error
    assert "\n" not in str(error) and str(error).startswith(f"{file}: ")


def test_size_caps(monkeypatch):
    upload = zipped({"annotations.json": "{}", "b.txt": "x" * 200, "c.txt": "y"})
    monkeypatch.setattr(interchange, "MAX_ENTRIES", 2)
    with pytest.raises(ImportFailed, match="3 entries; at most 2"):
        coco.import_coco(upload)
    monkeypatch.setattr(interchange, "MAX_ENTRIES", 50_000)
    monkeypatch.setattr(interchange, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(ImportFailed, match="uncompressed"):
        coco.import_coco(upload)
    monkeypatch.setattr(interchange, "MAX_TOTAL_BYTES", 10**9)
    monkeypatch.setattr(interchange, "MAX_JSON_BYTES", 1)
    with pytest.raises(ImportFailed, match=r"annotations\.json: larger than"):
        coco.import_coco(upload)
