"""The scene synthesiser, its data sets and their sources (dlcamp.vision.scenes, scene_sets,
dlcamp.data.scene_sources, dlcamp.data.detection)."""

from __future__ import annotations

import dataclasses
import shutil
import struct

import numpy as np
import pytest
import torch

from dlcamp.core.errors import BadArgument, DatasetCorrupt, DatasetNotFound, UnknownName
from dlcamp.data import scene_sources
from dlcamp.data.detection import DetectionSet
from dlcamp.vision import scene_sets
from dlcamp.vision.scenes import SceneConfig, SceneObject, synthesise


def _pat(width: int, height: int, bpp: int, pixels: bytes, name: bytes = b"test") -> bytes:
    header_size = 24 + len(name) + 1
    return struct.pack(">5I", header_size, 1, width, height, bpp) + b"GPAT" + name + b"\0" + pixels


def _disc(radius: int, colour: tuple[int, int, int]) -> np.ndarray:
    """An opaque disc with a soft edge on a transparent square, (2r, 2r, 4) uint8."""
    yy, xx = np.mgrid[:2 * radius, :2 * radius] + 0.5 - radius
    alpha = np.clip(radius - np.hypot(yy, xx), 0, 1) * 255
    rgba = np.zeros((2 * radius, 2 * radius, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = alpha.astype(np.uint8)
    return rgba


OBJECTS = [SceneObject("red", 0, _disc(20, (220, 30, 30))),
           SceneObject("blue", 1, _disc(14, (30, 30, 220))),
           SceneObject("bar", 1, np.full((10, 40, 4), 200, np.uint8))]
BACKGROUNDS = [("noise", np.random.default_rng(0).integers(0, 256, (80, 90, 3), np.uint8)),
               ("tile.pat", np.full((16, 16, 3), 90, np.uint8))]
BUSY = SceneConfig(image_size=48, objects=(2, 5), scale=(0.3, 0.8), rotation=30.0,
                   border=0.3, min_visible=0.3)


def _draw(config=BUSY, n=24, seed=0) -> DetectionSet:
    return synthesise(config, OBJECTS, n, seed, backgrounds=BACKGROUNDS,
                      class_names=["disc", "other"], class_names_zh=["圆", "其他"])


# --- the synthesiser ----------------------------------------------------------------------

def test_synthesise_is_deterministic_and_prefix_stable():
    a, b = _draw(), _draw()
    assert a.to_bytes() == b.to_bytes()
    c = _draw(n=5)
    assert torch.equal(c.images, a.images[:5]) and c.conditions["blur"] == a.conditions["blur"][:5]
    assert not torch.equal(_draw(seed=1).images, a.images)


def test_boxes_are_the_bounding_boxes_of_the_visible_mask_pixels():
    data = _draw(n=40)
    assert data.images.shape == (40, 3, 48, 48) and data.masks.shape == (40, 48, 48)
    occluded_or_cut = 0
    for i in range(len(data)):
        t = data.targets(i)
        k = len(t["labels"])
        assert k >= 1 and set(np.unique(data.masks[i].numpy())) == set(range(k + 1))
        for j in range(k):
            ys, xs = torch.nonzero(data.masks[i] == j + 1, as_tuple=True)
            expected = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert torch.equal(t["boxes"][j], expected)
        occluded_or_cut += int(data.boxes[i, :k].eq(0).any() or data.boxes[i, :k].eq(48).any())
    assert occluded_or_cut > 0  # the busy config does cut objects at the border
    assert (data.labels[data.labels >= 0] <= 1).all()


def test_mostly_hidden_objects_are_removed():
    """Opaque rectangles, no rotation: a fully visible one fills its box exactly."""
    blocks = [SceneObject(f"block{i}", 0, np.full((12 + 6 * i, 30 - 4 * i, 4), 60 * i + 40,
                                                  np.uint8)) for i in range(3)]

    def fill_ratios(min_visible: float) -> tuple[list[float], float]:
        cfg = dataclasses.replace(BUSY, rotation=0.0, objects=(4, 4), min_visible=min_visible)
        data = synthesise(cfg, blocks, 30, 0, backgrounds=BACKGROUNDS, class_names=["block"])
        ratios = []
        for i in range(len(data)):
            for j, (x1, y1, x2, y2) in enumerate(data.targets(i)["boxes"].int().tolist()):
                ratios.append(float((data.masks[i] == j + 1).sum()) / ((x2 - x1) * (y2 - y1)))
        return ratios, float(data.num_objects().float().mean())

    strict, n_strict = fill_ratios(1.0)
    assert strict and all(r == 1.0 for r in strict)  # nothing covered, nothing cut
    loose, n_loose = fill_ratios(0.05)
    assert min(loose) < 1.0 and n_strict < n_loose <= 4  # occlusion kept only when allowed


def test_labels_follow_the_pasted_instances():
    data = _draw(n=30)
    key_label = {o.key: o.label for o in OBJECTS}
    for i in range(len(data)):
        keys = data.conditions["instances"][i].split("|")
        assert data.targets(i)["labels"].tolist() == [key_label[k] for k in keys]


def test_balance_draws_classes_equally_often_not_instances():
    many = [SceneObject("red", 0, _disc(10, (200, 0, 0)))] + [
        SceneObject(f"blue{i}", 1, _disc(10, (0, 0, 200))) for i in range(9)]

    def share_of_class_0(balance: bool) -> float:
        cfg = dataclasses.replace(BUSY, balance=balance, min_visible=0.01)
        data = synthesise(cfg, many, 60, 0, backgrounds=BACKGROUNDS, class_names=["a", "b"])
        return float((data.labels == 0).sum() / (data.labels >= 0).sum())

    assert 0.35 < share_of_class_0(True) < 0.65
    assert share_of_class_0(False) < 0.2


def test_lighting_blur_and_noise_are_recorded_per_image():
    cfg = dataclasses.replace(BUSY, blur=(1.0, 2.0), noise=(0.05, 0.1), brightness=(-0.3, -0.2))
    data = _draw(cfg, n=10)
    assert all(1.0 <= s <= 2.0 for s in data.conditions["blur"])
    assert all(-0.3 <= b <= -0.2 for b in data.conditions["brightness"])
    assert set(data.conditions["background_source"]) <= {"noise", "tile.pat"}
    assert data.images.float().mean() < _draw(n=10).images.float().mean()  # darker


def test_bad_inputs_are_reported():
    with pytest.raises(BadArgument):
        synthesise(BUSY, [], 3, 0, backgrounds=BACKGROUNDS, class_names=["x"])
    with pytest.raises(BadArgument):
        synthesise(BUSY, OBJECTS, 3, 0, backgrounds=BACKGROUNDS, class_names=["only-one"])
    with pytest.raises(BadArgument):
        _draw(dataclasses.replace(BUSY, objects=(3, 1)))


# --- the container -------------------------------------------------------------------------

def test_detection_set_select_targets_and_file_round_trip(tmp_path):
    data = _draw(n=12)
    sub = data.select([3, 1])
    assert torch.equal(sub.images[0], data.images[3]) and sub.conditions["blur"][1] == \
        data.conditions["blur"][1]
    assert sub.boxes.shape[1] == int(sub.num_objects().max())
    assert len(data.subset(5, seed=3)) == 5 and data.subset(50) is data
    path = data.save(tmp_path / "set.safetensors")
    back = DetectionSet.load(path)
    for f in ("images", "boxes", "labels", "masks"):
        assert torch.equal(getattr(back, f), getattr(data, f))
    assert back.conditions == data.conditions and back.class_names_zh == ["圆", "其他"]
    assert back.label_names(back.labels[0], "zh")[0] in ("圆", "其他")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DatasetCorrupt):
        DetectionSet.load(tmp_path / "bad.safetensors")
    with pytest.raises(BadArgument):
        DetectionSet(data.images, data.boxes, data.labels + 5, ["a"], ["甲"])


def test_from_lists_pads_and_targets_unpad():
    data = _draw(n=6)
    pieces = [data.targets(i) for i in range(6)]
    again = DetectionSet.from_lists(list(data.images), [t["boxes"] for t in pieces],
                                    [t["labels"] for t in pieces], data.class_names,
                                    data.class_names_zh, masks=data.masks)
    assert torch.equal(again.boxes, data.boxes) and torch.equal(again.labels, data.labels)
    empty = DetectionSet.from_lists([data.images[0]], [torch.zeros(0, 4)], [torch.zeros(0)],
                                    ["a"])
    assert empty.boxes.shape == (1, 0, 4) and empty.targets(0)["boxes"].shape == (0, 4)
    with pytest.raises(BadArgument):
        DetectionSet.from_lists([data.images[0]], [torch.zeros(2, 4)], [torch.zeros(1)], ["a"])


# --- sources -------------------------------------------------------------------------------

def test_read_pat_decodes_grey_rgb_and_rgba_and_rejects_bad_files():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(scene_sources.read_pat(_pat(3, 2, 3, rgb.tobytes())), rgb)
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = scene_sources.read_pat(_pat(3, 2, 1, grey.tobytes()))
    assert out.shape == (2, 3, 3) and np.array_equal(out[..., 2], grey)
    rgba = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(scene_sources.read_pat(_pat(3, 2, 4, rgba.tobytes())), rgba[..., :3])
    with pytest.raises(DatasetCorrupt, match="truncated"):
        scene_sources.read_pat(_pat(3, 2, 3, rgb.tobytes()[:-1]))
    with pytest.raises(DatasetCorrupt, match="not a GIMP pattern"):
        scene_sources.read_pat(_pat(3, 2, 3, rgb.tobytes()).replace(b"GPAT", b"GIMP"))


def test_read_pat_on_an_installed_pattern():
    path = scene_sources.resolve("gimp/Stone/granite1.pat")
    data = path.read_bytes()
    width, height = struct.unpack(">2I", data[8:16])
    img = scene_sources.read_pat(path)
    assert img.shape == (height, width, 3) and img.std() > 5  # a texture, not a flat colour


def test_missing_source_names_the_debian_package(isolated_data, monkeypatch):
    monkeypatch.setenv("DLCAMP_SYSTEM_ROOT", str(isolated_data / "system"))
    with pytest.raises(DatasetNotFound, match="apt-get install tuxpaint-stamps-default"):
        scene_sources.resolve("tuxpaint/food/fruit/banana.png")
    with pytest.raises(DatasetNotFound, match="gimp-data"):
        scene_sets.build_split(scene_sets.get_scene_set("fruit-1"), "train", 2)


def test_changed_source_file_is_reported_as_corrupt(isolated_data):
    keys = ["tuxpaint/food/fruit/banana.png", "tuxpaint/food/fruit/kiwi.png"]
    pinned = {k: scene_sets.SHA256[k] for k in keys}
    originals = {k: scene_sources.resolve(k) for k in keys}
    for k in keys:  # a private copy under $DLCAMP_DATA/tuxpaint is found first
        dest = isolated_data / "data" / k
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(originals[k], dest)
    scene_sources.check_manifest(pinned)
    dest.write_bytes(dest.read_bytes() + b"x")
    with pytest.raises(DatasetCorrupt, match="kiwi.png"):
        scene_sources.check_manifest(pinned)


def test_stamp_style_tells_photos_from_clip_art():
    spec = scene_sets.get_scene_set("fruit-1")
    photos = spec.classes[0].keys()
    cartoons = scene_sources.list_stamps("food/fruit/cartoon")
    styles = {k: scene_sources.stamp_style(scene_sources.load_rgba(scene_sources.resolve(k)))
              for k in photos + cartoons}  # the statistic alone (no folder name)
    assert all(styles[k] == "photo" for k in photos)
    assert sum(styles[k] == "clipart" for k in cartoons) >= len(cartoons) - 2
    assert all(scene_sources.stamp_style(np.zeros((9, 9, 4), np.uint8), k) == "clipart"
               for k in cartoons)


# --- named sets ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", scene_sets.list_scene_sets())
def test_sets_split_by_instance_and_pin_every_file(name):
    spec = scene_sets.get_scene_set(name)
    train = {k for k, _ in spec.instances("train")}
    test = {k for k, _ in spec.instances("test")}
    assert train and test and not train & test
    assert test <= {k for k, _ in spec.instances("shift")}
    assert not set(spec.backgrounds) & set(spec.shift_backgrounds)
    assert set(scene_sets.manifest(spec)) == set(spec.files())
    info = scene_sets.scene_set_info(name)
    assert info["image_size"] == 128 and len(info["classes"]) == len(info["classes_zh"])
    knobs = info["shift_knobs"]
    assert {"scale", "blur", "brightness", "contrast", "backgrounds"} <= set(knobs)


def test_named_set_splits_differ_in_the_declared_knobs():
    spec = scene_sets.get_scene_set("objects-8")
    test = scene_sets.build_split(spec, "test", 24)
    shift = scene_sets.build_split(spec, "shift", 24)
    assert test.class_names[:2] == ["bird", "mammal"] and test.class_names_zh[0] == "鸟"
    assert set(test.conditions["background_source"]) <= {"mate", "skimage"}
    assert set(shift.conditions["background_source"]) <= {"gimp", "sklearn"}
    assert min(shift.conditions["blur"]) >= 0.6 > max(test.conditions["blur"])
    assert np.mean(shift.conditions["scale"]) < np.mean(test.conditions["scale"])
    assert shift.images.float().mean() < test.images.float().mean()  # darker
    instance_class = dict(spec.instances("test"))
    for i in range(len(test)):
        keys = test.conditions["instances"][i].split("|")
        assert test.targets(i)["labels"].tolist() == [instance_class[k] for k in keys]


def test_named_set_rebuilds_byte_identical_and_caches(isolated_data, monkeypatch):
    small = dataclasses.replace(scene_sets.get_scene_set("fruit-1"),
                                sizes=(("train", 6), ("test", 4), ("shift", 4)))
    monkeypatch.setattr(scene_sets, "get_scene_set", lambda name: small)
    assert scene_sets.build_split(small, "train").to_bytes() == \
        scene_sets.build_split(small, "train").to_bytes()
    built = scene_sets.load_scene_set("fruit-1", "train")
    path = scene_sets.cache_path(small, "train")
    assert path.is_file() and str(path).startswith(str(isolated_data / "cache"))
    stamp = path.stat().st_mtime_ns
    again = scene_sets.load_scene_set("fruit-1", "train")
    assert path.stat().st_mtime_ns == stamp and again.to_bytes() == built.to_bytes()
    assert again.meta["version"] == 1 and len(again) == 6
    head = scene_sets.load_scene_set("fruit-1", "train", n=2)  # sliced from the cache
    assert torch.equal(head.images, built.images[:2])
    fresh = scene_sets.load_scene_set("fruit-1", "test", n=2)  # drawn, not cached
    assert len(fresh) == 2 and not scene_sets.cache_path(small, "test").exists()
    assert torch.equal(fresh.images, scene_sets.load_scene_set("fruit-1", "test").images[:2])
    path.write_bytes(b"damaged")  # a damaged cache file is rebuilt, not an error
    assert scene_sets.load_scene_set("fruit-1", "train").to_bytes() == built.to_bytes()
    with pytest.raises(UnknownName, match="shift"):
        scene_sets.load_scene_set("fruit-1", "val")


def test_unknown_set_suggests_names():
    with pytest.raises(UnknownName, match="fruit-1"):
        scene_sets.get_scene_set("fruit1")


def test_show_detections_draws_one_rectangle_per_real_box():
    import matplotlib.pyplot as plt

    from dlcamp.course.plot import show_detections

    data = _draw(n=5)
    fig = show_detections(data.images, data.boxes, data.labels, data.class_names_zh)
    assert len(fig.axes) == 5
    assert [len(ax.patches) for ax in fig.axes] == data.num_objects().tolist()
    plt.close(fig)
    per_image = [data.targets(i) for i in range(5)]
    fig = show_detections(data.images.float() / 255, [t["boxes"] for t in per_image],
                          [t["labels"] for t in per_image], data.class_names,
                          scores=[torch.ones(len(t["labels"])) for t in per_image])
    assert sum(len(ax.patches) for ax in fig.axes) == int(data.num_objects().sum())
    plt.close(fig)
    with pytest.raises(ValueError):
        show_detections(data.images, data.boxes[:2], data.labels, data.class_names)


def test_cli_data_info_lists_scene_sets(isolated_data, capsys):
    from dlcamp.cli.main import main

    assert main(["data", "info", "objects-8"]) == 0
    out = capsys.readouterr().out
    assert "objects-8 v1" in out and "insect (昆虫)" in out and "train 2,000" in out
    assert "tuxpaint-stamps-default" in out and "dlcamp data build objects-8" in out
    assert main(["data", "info", "fruit"]) == 2
    assert "did you mean 'fruit-1'" in capsys.readouterr().err
    assert main(["data", "build"]) == 2
