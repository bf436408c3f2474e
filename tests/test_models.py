"""The registry: every model builds, runs and has the expected size; bad names are explained."""

from __future__ import annotations

import pytest
import torch

from dlcamp.core.config import Recipe
from dlcamp.core.errors import UnknownName
from dlcamp.models import count_parameters, create_model, list_models, model_recipe
from dlcamp.models.detector import is_detector
from dlcamp.models.registry import model_accepts
from dlcamp.train.run import make_config

LANGUAGE_MODELS = [n for n in list_models() if model_accepts(n, "vocab_size")]
DETECTORS = [n for n in list_models() if is_detector(n)]
TRANSLATORS = [n for n in list_models() if model_accepts(n, "tgt_vocab_size")]
IMAGE_MODELS = [n for n in list_models() if n not in LANGUAGE_MODELS + DETECTORS + TRANSLATORS]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_classifies_a_batch(name):
    model = create_model(name).eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.dlcamp_spec == {"name": name, "kwargs": {}}


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_takes_one_training_step(name):
    model = create_model(name, num_classes=2, image_size=64)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert isinstance(outputs, tuple) and all(torch.isfinite(o).all() for o in outputs)
    boxes = torch.tensor([[[4.0, 6.0, 40.0, 30.0]], [[0.0, 0.0, 0.0, 0.0]]])  # (2, 1, 4)
    loss, sums = model.loss(outputs, boxes, torch.tensor([[1], [-1]]))
    loss.backward()
    assert torch.isfinite(loss) and all(s.dim() == 0 for s in sums.values())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    found = model.eval().detect(model(torch.randn(2, 3, 64, 64)))
    assert len(found) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in found)


@pytest.mark.parametrize("name", TRANSLATORS)
def test_every_translator_takes_one_training_step_and_decodes(name):
    model = create_model(name, src_vocab_size=30, tgt_vocab_size=20, src_pad=1, tgt_pad=1)
    assert TRANSLATORS == ["bahdanau", "seq2seq", "transformer"]
    src, src_len = torch.randint(2, 30, (3, 6)), torch.tensor([6, 4, 2])
    tgt = torch.randint(2, 20, (3, 5))
    logits = model(src, src_len, tgt)
    assert logits.shape == (3, 5, 20) and torch.isfinite(logits).all()
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    state = model.begin_decode(src, src_len)
    step, _ = model.decode(tgt[:, :1], state)
    assert step.shape == (3, 1, 20)


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_every_language_model_predicts_the_next_token(name):
    model = create_model(name, vocab_size=40).eval()
    logits, state = model(torch.randint(40, (3, 7)))
    assert logits.shape == (3, 7, 40) and torch.isfinite(logits).all()
    assert model.dlcamp_spec == {"name": name, "kwargs": {"vocab_size": 40}}


def test_the_registry_has_the_sequence_models():
    assert {"rnn", "gru", "lstm", "deep-lstm", "bilstm", "rnn-scratch", "gru-scratch",
            "lstm-scratch"} <= set(LANGUAGE_MODELS)


@pytest.mark.parametrize("name", list_models())
def test_every_recipe_is_a_valid_config(name):
    recipe = model_recipe(name)
    assert isinstance(recipe, Recipe)  # checked against the config fields when it was made
    cfg = make_config(name, dataset="tang300" if name in LANGUAGE_MODELS else "fashion-mnist")
    settings = {**cfg.to_dict(), **cfg.train.to_dict()}
    assert all(settings[key] == value for key, value in recipe.items()), name
    create_model(name, **recipe.get("model_kwargs", {}))  # the recipe's model builds


@pytest.mark.parametrize("name,params", [
    ("softmax", 784 * 10 + 10),
    ("mlp", 784 * 256 + 256 + 256 * 10 + 10),
    # the book's LeNet: conv 6*(25+1), conv 16*(6*25+1), fc 400->120->84->10
    ("lenet", 6 * 26 + 16 * 151 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10),
])
def test_parameter_counts(name, params):
    assert count_parameters(create_model(name)) == params


@pytest.mark.parametrize("name", ["softmax", "mlp", "cnn"])
def test_small_images_and_other_class_counts(name):
    model = create_model(name, image_size=8, num_classes=4).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_rgb_input():
    model = create_model("lenet-modern", in_channels=3, image_size=32, width=2).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownName, match="did you mean 'lenet'"):
        create_model("lenett")


def test_unknown_argument_is_named():
    with pytest.raises(UnknownName, match="depth"):
        create_model("mlp", depth=3)


def test_lenet_refuses_too_small_images():
    with pytest.raises(ValueError, match="12x12"):
        create_model("lenet", image_size=8)


def test_test_time_flips_average_the_mirror_image_in_eval_mode_only():
    torch.manual_seed(0)
    plain = create_model("cnn")
    flipped = create_model("cnn", test_flip=True)
    assert list(flipped.state_dict()) == list(plain.state_dict())  # checkpoints interchange
    flipped.load_state_dict(plain.state_dict())
    x = torch.randn(5, 1, 28, 28)
    plain.eval(), flipped.eval()
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(-1))) / 2
        assert torch.allclose(flipped(x), expected, atol=1e-6)
        # a mirrored image gets the same answer as the image itself
        assert torch.allclose(flipped(x.flip(-1)), flipped(x), atol=1e-5)
    plain.train(), flipped.train()
    torch.manual_seed(1)
    a = plain(x)
    torch.manual_seed(1)
    assert torch.allclose(flipped(x), a)  # training: one plain forward pass


@pytest.mark.parametrize("channels_last", [False, True])
def test_dlcamp_avg_pool_equals_torchs_in_values_and_gradients(channels_last):
    from torch import nn

    from dlcamp.models.blocks import AvgPool2d

    torch.manual_seed(0)
    x = torch.randn(8, 6, 28, 28)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    pool = AvgPool2d(2).train()
    out = pool(ours)
    expected = nn.AvgPool2d(2)(ref)
    assert out.shape == (8, 6, 14, 14) and torch.allclose(out, expected, atol=1e-6)
    grad = torch.randn_like(out)
    out.backward(grad), expected.backward(grad)
    assert torch.allclose(ours.grad, ref.grad, atol=1e-6)
    assert repr(pool) == repr(nn.AvgPool2d(2))
    assert torch.allclose(pool.eval()(x), expected, atol=1e-6)
