"""PatchWhitening: the first layer of the default recipe, fitted from data and frozen."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from dlcamp.data import make_loaders
from dlcamp.models import create_model
from dlcamp.models.whitening import PatchWhitening, input_whitening
from dlcamp.train.run import WHITENING_IMAGES, build, make_config


def correlated_images(n=64, c=1, side=12, seed=0):
    """Smooth random images: neighbouring pixels correlate, as in photographs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, side, side, generator=g)
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) + 0.3


def numpy_patches(images, k):
    """All k x k 'same'-padded patches as rows, (N*H*W, C*k*k), without torch's unfold."""
    x = np.pad(images.numpy().astype(np.float64), ((0, 0), (0, 0), (k // 2,) * 2, (k // 2,) * 2))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N,C,H,W,k,k
    n, c, h, w = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * k * k)


@pytest.mark.parametrize("channels,k,out", [(1, 3, 16), (3, 3, 8), (2, 2, 6)])
def test_filters_are_whitened_principal_components_of_patches(channels, k, out):
    images = correlated_images(c=channels)
    layer = PatchWhitening(channels, out, kernel_size=k, eps=1e-3).fit(images, chunk=10)
    p = numpy_patches(images, k)
    m = out // 2
    pca = PCA(n_components=m).fit(p)  # directions, from scikit-learn
    variances = np.linalg.eigvalsh(np.cov(p, rowvar=False, bias=True))[::-1][:m]
    w = layer.weight.detach().double().reshape(out, -1).numpy()
    directions = w[:m] / np.linalg.norm(w[:m], axis=1, keepdims=True)
    cosines = np.abs(np.sum(directions * pca.components_, axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-4)  # same axes, up to sign
    np.testing.assert_allclose(np.linalg.norm(w[:m], axis=1), 1 / np.sqrt(variances + 1e-3),
                               rtol=1e-4)
    np.testing.assert_allclose(w[m:], -w[:m])  # the negatives follow
    # whitened: the responses to the patches are uncorrelated with variance v / (v + eps)
    resp = (p - p.mean(0)) @ w[:m].T
    cov = resp.T @ resp / len(resp)
    np.testing.assert_allclose(cov, np.diag(variances / (variances + 1e-3)), atol=1e-4)


def test_fitted_layer_is_frozen_and_stays_frozen_through_a_checkpoint():
    layer = PatchWhitening(1, 4)
    assert layer.weight.requires_grad and not layer.fitted  # a plain conv until fitted
    layer.fit(correlated_images())
    assert not layer.weight.requires_grad and bool(layer.fitted)
    before = layer.weight.detach().clone()
    net = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = correlated_images(8)
    net(x)
    opt = torch.optim.SGD(net.parameters(), lr=1.0, weight_decay=0.1)
    F.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    assert layer.weight.grad is None and torch.equal(layer.weight, before)

    fresh = PatchWhitening(1, 4)
    fresh.load_state_dict(layer.state_dict())
    assert not fresh.weight.requires_grad and torch.equal(fresh.weight, before)
    unfitted = PatchWhitening(1, 4)
    fresh.load_state_dict(unfitted.state_dict())
    assert fresh.weight.requires_grad  # an unfitted state trains


def test_bad_settings_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="even out_channels"):
        PatchWhitening(1, 5)
    with pytest.raises(ValueError, match="<= 2 \\* 9"):
        PatchWhitening(1, 20)
    with pytest.raises(ValueError, match="eps"):
        PatchWhitening(1, 4, eps=0)
    layer = PatchWhitening(1, 4)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        layer.fit(torch.zeros(4, 3, 8, 8))
    bad = correlated_images()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer.fit(bad)
    assert layer.weight.requires_grad and not layer.fitted  # nothing half-done


def test_input_whitening_finds_only_an_unfitted_first_layer():
    net = create_model("cnn", widths=(16, 32, 48), test_flip=True, whiten=True)
    layer = input_whitening(net)
    assert layer is net[0] and isinstance(layer, PatchWhitening)
    layer.fit(correlated_images(side=28))
    assert input_whitening(net) is None  # already fitted
    assert input_whitening(create_model("lenet")) is None
    assert input_whitening(create_model("cnn")) is None  # off unless asked


def test_training_run_fits_the_first_layer_and_keeps_it():
    cfg = make_config("cnn", quick=True, max_steps=3)
    trainer, loaders, _ = build(cfg, None, progress=False, log=lambda _: None)
    layer = trainer.model[0]
    assert bool(layer.fitted)
    expected = PatchWhitening(1, 16).fit(loaders.train.head(WHITENING_IMAGES)).weight
    torch.testing.assert_close(layer.weight.detach().contiguous(), expected)
    trainer.fit(loaders.train)
    torch.testing.assert_close(layer.weight.detach().contiguous(), expected)  # frozen


def test_loader_head_is_the_first_images_normalised_without_augmentation():
    flip_all = lambda x, gen: x.flip(3)  # noqa: E731
    loaders = make_loaders("fashion-mnist", 32, quick=True, augment=flip_all)
    head = loaders.train.head(5)
    data = loaders.train_set
    expected = (data.images[:5].float() / 255 - data.mean) / data.std
    torch.testing.assert_close(head, expected)
    first_test = next(iter(loaders.test))[0][:5]
    torch.testing.assert_close(loaders.test.head(5), first_test)
