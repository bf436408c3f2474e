"""The registry: every model builds, runs and has the expected size; bad names are explained."""

from __future__ import annotations

import pytest
import torch

from dlcamp.errors import UnknownName
from dlcamp.models import count_parameters, create_model, list_models, model_recipe
from dlcamp.models.registry import model_accepts
from dlcamp.train import TrainConfig

LANGUAGE_MODELS = [n for n in list_models() if model_accepts(n, "vocab_size")]
IMAGE_MODELS = [n for n in list_models() if n not in LANGUAGE_MODELS]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_classifies_a_batch(name):
    model = create_model(name).eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.dlcamp_spec == {"name": name, "kwargs": {}}


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_every_language_model_predicts_the_next_token(name):
    model = create_model(name, vocab_size=40).eval()
    logits, state = model(torch.randint(40, (3, 7)))
    assert logits.shape == (3, 7, 40) and torch.isfinite(logits).all()
    assert model.dlcamp_spec == {"name": name, "kwargs": {"vocab_size": 40}}


def test_the_registry_has_the_sequence_models():
    assert {"rnn", "gru", "lstm", "deep-lstm", "bilstm", "rnn-scratch", "gru-scratch",
            "lstm-scratch"} <= set(LANGUAGE_MODELS)


RUN_KEYS = ("batch_size", "augment", "patience", "model_kwargs", "resize", "num_steps", "token",
            "sampling")


@pytest.mark.parametrize("name", list_models())
def test_every_recipe_is_a_valid_config(name):
    recipe = model_recipe(name)
    train_only = {k: v for k, v in recipe.items() if k not in RUN_KEYS}
    TrainConfig(**train_only)  # unknown keys would raise TypeError
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
    with pytest.raises(UnknownName, match="Did you mean 'lenet'"):
        create_model("lenett")


def test_unknown_argument_is_named():
    with pytest.raises(UnknownName, match="depth"):
        create_model("mlp", depth=3)


def test_lenet_refuses_too_small_images():
    with pytest.raises(ValueError, match="12x12"):
        create_model("lenet", image_size=8)
