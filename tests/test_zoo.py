"""The CNN zoo of the book's chapters 7-8: shapes at laptop and book sizes, parameter counts,
ResNet-18 against torchvision, batch norm from scratch against torch, learning, resizing."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.errors import BadArgument, UnknownName
from dlcamp.data import TensorLoader, load_dataset
from dlcamp.data.datasets import ImageSet
from dlcamp.models import book_config, count_parameters, create_model, model_recipe
from dlcamp.models.blocks import BatchNormScratch, batch_norm
from dlcamp.models.googlenet import STAGES
from dlcamp.train import make_config, train_run
from dlcamp.train.evaluate import evaluate_checkpoint
from dlcamp.train.run import RunConfig, _model_kwargs

ZOO = ["lenet-bn", "alexnet", "vgg", "nin", "googlenet", "resnet", "resnet18", "densenet"]


def cpu_model(name: str) -> nn.Module:
    """The model `dlcamp train --model NAME` trains: the recipe's arguments, 28x28 input."""
    return create_model(name, **model_recipe(name).get("model_kwargs", {}))


def book_model(name: str) -> tuple[nn.Module, int]:
    if name == "resnet":  # the generic ResNet has no book entry: ResNet-18's settings
        return create_model(name, image_size=96, stem="book"), 96
    cfg = book_config(name)
    return create_model(name, image_size=cfg["image_size"], **cfg["model_kwargs"]), \
        cfg["image_size"]


@pytest.fixture(scope="module")
def sizes() -> dict[str, tuple[int, int]]:
    """name -> (CPU-recipe parameters, book parameters)."""
    return {name: (count_parameters(cpu_model(name)), count_parameters(book_model(name)[0]))
            for name in ZOO}


def table(sizes: dict[str, tuple[int, int]]) -> str:
    rows = [f"{'model':<10} {'cpu params':>12} {'book params':>12}"]
    rows += [f"{n:<10} {c:>12,} {b:>12,}" for n, (c, b) in sizes.items()]
    return "\n" + "\n".join(rows)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("where", ["cpu", "book"])
def test_output_shape_at_cpu_and_book_size(name, where):
    torch.manual_seed(0)
    model, size = (cpu_model(name), 28) if where == "cpu" else book_model(name)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 1, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["alexnet", "vgg", "nin", "googlenet", "resnet", "densenet"])
def test_stem_follows_image_size_and_takes_rgb(name):
    small = create_model(name, in_channels=3, image_size=32, num_classes=7, width=0.25)
    book = create_model(name, in_channels=3, image_size=96, num_classes=7, width=0.25)
    forced = create_model(name, in_channels=3, image_size=96, num_classes=7, width=0.25,
                          stem="small")
    assert count_parameters(book) != count_parameters(small)  # another stem or flatten size
    with torch.no_grad():
        assert small.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)
        assert book.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 7)
        assert forced.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 7)


# -- parameter counts, from the layer formulas ----------------------------------------------
def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_out * (c_in * k * k + bias)


def linear(n_in: int, n_out: int) -> int:
    return n_out * (n_in + 1)


def bn(c: int) -> int:
    return 2 * c


def nin_block(c_in: int, c_out: int, k: int) -> int:
    return conv(c_in, c_out, k) + 2 * conv(c_out, c_out, 1)


def googlenet_params() -> int:
    n = conv(1, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    c_in = 192
    for stage in STAGES:
        for c1, (c2a, c2), (c3a, c3), c4 in stage:
            n += (conv(c_in, c1, 1) + conv(c_in, c2a, 1) + conv(c2a, c2, 3) + conv(c_in, c3a, 1)
                  + conv(c3a, c3, 5) + conv(c_in, c4, 1))
            c_in = c1 + c2 + c3 + c4
    return n + linear(c_in, 10)


def densenet_params(c: int = 64, growth: int = 32) -> int:
    n = conv(1, c, 7) + bn(c)
    for i in range(4):
        n += sum(bn(c + j * growth) + conv(c + j * growth, growth, 3) for j in range(4))
        c += 4 * growth
        if i < 3:
            n += bn(c) + conv(c, c // 2, 1)
            c //= 2
    return n + bn(c) + linear(c, 10)


BOOK_PARAMS = {
    "lenet-bn": conv(1, 6, 5) + bn(6) + conv(6, 16, 5) + bn(16) + linear(256, 120) + bn(120)
    + linear(120, 84) + bn(84) + linear(84, 10),
    "alexnet": conv(1, 96, 11) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3)
    + conv(384, 256, 3) + linear(256 * 5 * 5, 4096) + linear(4096, 4096) + linear(4096, 10),
    # VGG-11 with the book's ratio 4: channels 16, 32, 64, 64, 128 x 4, 7x7 at the end
    "vgg": conv(1, 16, 3) + conv(16, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3)
    + conv(64, 128, 3) + 3 * conv(128, 128, 3) + linear(128 * 7 * 7, 4096) + linear(4096, 4096)
    + linear(4096, 10),
    "nin": nin_block(1, 96, 11) + nin_block(96, 256, 5) + nin_block(256, 384, 3)
    + nin_block(384, 10, 3),
    "googlenet": googlenet_params(),
    "densenet": densenet_params(),
}


def test_book_parameter_counts(sizes):
    for name, expected in BOOK_PARAMS.items():
        assert sizes[name][1] == expected, f"{name}: expected {expected:,}" + table(sizes)
    # every laptop model is smaller than the book's (LeNet-BN is the same network)
    assert all(c < b for n, (c, b) in sizes.items() if n != "lenet-bn"), table(sizes)
    assert sizes["lenet-bn"][0] == sizes["lenet-bn"][1], table(sizes)


def torchvision_resnet18() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(num_classes=10)  # random weights: nothing downloaded
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def test_resnet18_is_torchvisions_resnet18():
    torch.manual_seed(0)
    ours = create_model("resnet18", image_size=96, stem="book")
    theirs = torchvision_resnet18()
    assert count_parameters(ours) == count_parameters(theirs) == 11_175_370
    # Same layers in the same order: map the weights across by position.
    mine, tv = ours.state_dict(), theirs.state_dict()
    assert len(mine) == len(tv)
    for (k1, v1), (k2, v2) in zip(mine.items(), tv.items(), strict=True):
        assert v1.shape == v2.shape, (k1, k2)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode really uses them
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    theirs.load_state_dict(dict(zip(tv, ours.state_dict().values(), strict=True)))
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)


# -- batch norm from scratch --------------------------------------------------------------
@pytest.mark.parametrize("num_dims,shape", [(2, (16, 5)), (4, (8, 3, 5, 5))])
def test_batch_norm_scratch_equals_torch(num_dims, shape):
    torch.manual_seed(0)
    features = shape[1]
    ours = BatchNormScratch(features, num_dims)
    ref = nn.BatchNorm1d(features) if num_dims == 2 else nn.BatchNorm2d(features)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2.0)
        ref.bias.uniform_(-1.0, 1.0)
        ours.gamma.copy_(ref.weight)
        ours.beta.copy_(ref.bias)
    for step in range(3):  # training: outputs, gradients and running statistics
        x = (torch.randn(shape) * (step + 1) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        assert torch.allclose(y, y_ref, atol=1e-5)
        w = torch.randn(shape)  # an arbitrary loss, so the gradient is not trivially zero
        (y * w).sum().backward()
        (y_ref * w).sum().backward()
        assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
        assert torch.allclose(ours.gamma.grad, ref.weight.grad, atol=1e-4)
        assert torch.allclose(ours.beta.grad, ref.bias.grad, atol=1e-4)
        ours.zero_grad()
        ref.zero_grad()
        assert torch.allclose(ours.moving_mean, ref.running_mean, atol=1e-6)
        assert torch.allclose(ours.moving_var, ref.running_var, atol=1e-5)  # unbiased
    x = torch.randn(shape)
    assert torch.allclose(ours.eval()(x), ref.eval()(x), atol=1e-5)


def test_batch_norm_function_and_errors():
    x = torch.randn(6, 4)
    y, mean, var = batch_norm(x, torch.ones(4), torch.zeros(4), torch.zeros(4), torch.ones(4),
                              momentum=1.0)
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-6)
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(var, x.var(0))  # unbiased
    with pytest.raises(ValueError, match="more than one value"):
        batch_norm(x[:1], torch.ones(4), torch.zeros(4), torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="num_dims"):
        BatchNormScratch(4, num_dims=3)


def test_lenet_bn_from_scratch_equals_concise():
    torch.manual_seed(0)
    concise = create_model("lenet-bn")
    scratch = create_model("lenet-bn", scratch=True)
    assert count_parameters(concise) == count_parameters(scratch)
    src = [t for k, t in concise.state_dict().items() if not k.endswith("num_batches_tracked")]
    scratch.load_state_dict(dict(zip(scratch.state_dict(), src, strict=True)))
    x = torch.randn(8, 1, 28, 28)
    assert torch.allclose(concise(x), scratch(x), atol=1e-5)  # training mode: batch statistics
    assert torch.allclose(concise.eval()(x), scratch.eval()(x), atol=1e-5)


# -- learning -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("fashion-mnist", "train").subset(64, seed=1)
    return next(iter(TensorLoader(data, batch_size=64)))


@pytest.mark.parametrize("name", ZOO)
def test_loss_falls_on_a_fixed_batch(name, batch):
    """Learning happens: Adam fits 64 images well below chance level (ln 10) within 60 steps.

    Most models get there in 5-20 steps; NiN, whose class maps pass a ReLU, takes ~40.
    """
    torch.manual_seed(0)
    x, y = batch
    model = cpu_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 3))
        if losses[-1] < 0.8 * math.log(10):
            break
    assert losses[-1] < 0.8 * math.log(10) < losses[0], f"{name}: losses {losses}"


# -- bad arguments ------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs,fragment", [
    ("resnet", {"stem": "huge"}, "stem must be"),
    ("alexnet", {"image_size": 40, "stem": "book"}, "shrinks 40x40"),
    ("vgg", {"image_size": 8}, "shrinks 8x8"),
    ("nin", {"width": 0}, "width must be > 0"),
    ("densenet", {"blocks": []}, "at least one dense block"),
    ("resnet", {"blocks": [2, 0]}, "blocks"),
    ("lenet-bn", {"image_size": 12}, "16x16"),
])
def test_bad_arguments_are_explained(name, kwargs, fragment):
    with pytest.raises(BadArgument, match=fragment):
        create_model(name, **kwargs)


def test_unknown_argument_and_book_name():
    with pytest.raises(UnknownName, match="depth"):
        create_model("resnet18", depth=34)
    with pytest.raises(UnknownName, match="resnet18"):
        book_config("resnet50")


def test_book_config_is_a_complete_run():
    cfg = book_config("alexnet")
    assert cfg["image_size"] == 224 and cfg["book_test_acc"] == 0.88
    run = make_config(cfg["model"], **cfg["recipe"])
    assert run.resize == 224 and run.model_kwargs == {"width": 1.0, "hidden": 4096,
                                                      "stem": "book", "init": "xavier"}
    assert run.train.lr == 0.01 and run.train.momentum == 0.0 and run.train.epochs == 10
    assert run.augment == "none" and run.train.precision == "fp32"
    assert run.train.schedule == "constant"
    assert _model_kwargs(run, (1, 28, 28), 10)["image_size"] == 224  # the model sees 224


# -- resizing in the loader ---------------------------------------------------------------
def test_loader_resizes_whole_batches():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    data = ImageSet("toy", "train", images, torch.arange(10), ["c"] * 10, ["c"] * 10,
                    mean=0.5, std=0.25)
    plain = torch.cat([xb for xb, _ in TensorLoader(data, batch_size=4)])
    big = torch.cat([xb for xb, _ in TensorLoader(data, batch_size=4, resize=24)])
    assert big.shape == (10, 1, 24, 24)
    expected = F.interpolate(plain, size=(24, 24), mode="bilinear", align_corners=False)
    assert torch.allclose(big, expected, atol=1e-5)
    # bilinear upsampling interpolates: values stay within each image's range, means agree
    lo, hi = plain.amin(dim=(1, 2, 3)), plain.amax(dim=(1, 2, 3))
    assert (big.amin(dim=(1, 2, 3)) >= lo - 1e-5).all()
    assert (big.amax(dim=(1, 2, 3)) <= hi + 1e-5).all()
    assert torch.allclose(big.mean(dim=(1, 2, 3)), plain.mean(dim=(1, 2, 3)), atol=0.1)
    same = torch.cat([xb for xb, _ in TensorLoader(data, batch_size=4, resize=8)])
    assert torch.equal(same, plain)
    with pytest.raises(ValueError, match="resize"):
        TensorLoader(data, resize=-1)


def test_resize_round_trips_through_the_run_config():
    cfg = make_config("resnet18", resize=64, epochs=1)
    assert cfg.resize == 64
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    old = cfg.to_dict()
    del old["resize"]  # a config.json written before resize existed
    assert RunConfig.from_dict(old).resize == 0
    assert make_config("resnet18").resize == 0


def test_a_resized_run_trains_and_evaluates_alike(tmp_path):
    cfg = make_config("lenet-bn", quick=True, epochs=1, resize=32)
    trainer, out = train_run(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert trainer.model.dlcamp_spec["kwargs"]["image_size"] == 32
    assert json.loads((out / "config.json").read_text())["resize"] == 32
    result = evaluate_checkpoint(out / "checkpoint.pt", quick=True)  # resizes as in training
    assert result["acc"] == pytest.approx(trainer.history[-1]["test_acc"])
    assert result["acc"] > 0.5
