"""course/attention.py: heat maps of attention weights and Nadaraya-Watson pooling."""

from __future__ import annotations

import io
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dlcamp.course import attention as att
from dlcamp.course import plot


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.mark.parametrize(("shape", "panels"), [((2, 3, 4, 5), (2, 3)), ((4, 5), (1, 1)),
                                               ((3, 4, 5), (1, 3))])
def test_heatmaps_one_image_axes_per_matrix_and_a_colour_bar(shape, panels):
    weights = torch.rand(shape)
    fig = att.show_heatmaps(weights, "keys", "queries")
    try:
        images = _image_axes(fig)
        assert len(images) == panels[0] * panels[1] and len(fig.axes) == len(images) + 1
        grid = weights.reshape(*panels, 4, 5).numpy()
        for k, ax in enumerate(images):  # row by row, each panel its own matrix
            np.testing.assert_allclose(ax.images[0].get_array(), grid.reshape(-1, 4, 5)[k])
        assert {ax.images[0].get_clim() for ax in images} == {(0.0, float(weights.max()))}
        assert images[-1].get_xlabel() == "keys" and images[0].get_ylabel() == "queries"
    finally:
        plt.close(fig)


def test_heatmaps_titles_and_token_labels():
    src, tgt = ["open", "file", "<eos>"], ["打", "开", "文", "件"]
    fig = att.show_heatmaps(torch.rand(1, 2, 4, 3), "source", "target", titles=["head 1", "head 2"],
                            xticklabels=src, yticklabels=tgt)
    try:
        first, second = _image_axes(fig)
        assert [first.get_title(), second.get_title()] == ["head 1", "head 2"]
        assert [t.get_text() for t in first.get_xticklabels()] == src
        assert [t.get_text() for t in first.get_yticklabels()] == tgt
        fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)
    fig = att.show_heatmaps(torch.rand(2, 2, 3, 3), "k", "q", titles=list("abcd"))  # per panel
    try:
        assert [ax.get_title() for ax in _image_axes(fig)] == list("abcd")
    finally:
        plt.close(fig)


def test_heatmaps_bad_input_is_rejected_readably():
    with pytest.raises(ValueError, match=r"\(rows, cols, queries, keys\).*\(5,\)"):
        att.show_heatmaps(torch.rand(5), "k", "q")
    with pytest.raises(ValueError, match="rows, cols"):
        att.show_heatmaps(np.zeros((1, 1, 1, 2, 2)), "k", "q")
    with pytest.raises(ValueError, match="titles: got 3"):
        att.show_heatmaps(torch.rand(2, 2, 3, 3), "k", "q", titles=["a", "b", "c"])
    with pytest.raises(ValueError, match="xticklabels.*2 labels for 3"):
        att.show_heatmaps(torch.rand(4, 3), "k", "q", xticklabels=["a", "b"])
    with pytest.raises(ValueError, match="yticklabels"):
        att.show_heatmaps(torch.rand(4, 3), "k", "q", yticklabels=["a"])


def test_heatmaps_without_cjk_font_draw_without_glyph_warnings(monkeypatch):
    monkeypatch.setattr(att, "cjk_font", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = att.show_heatmaps(torch.rand(2, 2), "源", "目标", yticklabels=["文", "件"])
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert plot.cjk_font.__name__ == "cjk_font"  # the shared finder, not a copy


def test_toy_data_is_the_books_curve_and_reproducible():
    a, b = att.toy_regression_data(seed=3), att.toy_regression_data(seed=3)
    assert torch.equal(a.y_train, b.y_train) and a.x_train.shape == (50,)
    assert torch.all(a.x_train[1:] >= a.x_train[:-1]) and 0 <= a.x_train.min() < a.x_train.max() < 5
    x = a.x_test.double().numpy()
    np.testing.assert_allclose(a.y_truth, 2 * np.sin(x) + x**0.8, rtol=1e-6)
    assert a.x_test.shape == (50,) and abs(float(a.x_test[-1]) - 4.9) < 1e-5
    noise = a.y_train - att.toy_function(a.x_train)
    assert 0.3 < float(noise.std()) < 0.7  # N(0, 0.5^2)
    with pytest.raises(ValueError, match="n_train"):
        att.toy_regression_data(n_train=1)


@pytest.mark.parametrize("w", [1.0, 3.5])
def test_nadaraya_watson_equals_the_kernel_formula(w):
    """sum_i K(q - x_i) y_i / sum_j K(q - x_j), Gaussian K with its 1/sqrt(2 pi), in NumPy."""
    data = att.toy_regression_data(n_train=20, seed=1)
    q, x, y = (t.double().numpy() for t in (data.x_test, data.x_train, data.y_train))
    kernel = np.exp(-(((q[:, None] - x[None]) * w) ** 2) / 2) / np.sqrt(2 * np.pi)
    expected = (kernel * y).sum(1) / kernel.sum(1)
    y_hat, weights = att.nadaraya_watson(data.x_test.double(), data.x_train.double(),
                                         data.y_train.double(), w)
    np.testing.assert_allclose(y_hat.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(weights.sum(1).numpy(), 1.0, rtol=1e-12)
    assert weights.shape == (50, 20)


def test_average_pooling_and_per_query_keys():
    data = att.toy_regression_data(n_train=10)
    avg = att.average_pooling(data.x_test, data.y_train)
    assert avg.shape == (50,) and torch.allclose(avg, data.y_train.mean().expand(50))
    # a very wide kernel (w -> 0) weighs every key equally: average pooling
    wide, _ = att.nadaraya_watson(data.x_test, data.x_train, data.y_train, 1e-6)
    assert torch.allclose(wide, avg, atol=1e-5)
    keys, values = att.leave_one_out(data.x_train, data.y_train)
    assert keys.shape == values.shape == (10, 9)
    for i in range(10):  # row i is every point but i, in order
        assert torch.equal(keys[i], torch.cat([data.x_train[:i], data.x_train[i + 1:]]))
    shared, _ = att.nadaraya_watson(data.x_train, data.x_train, data.y_train, 2.0)
    per_query, _ = att.nadaraya_watson(data.x_train, data.x_train.expand(10, 10),
                                       data.y_train.expand(10, 10), 2.0)
    assert torch.allclose(shared, per_query)
    with pytest.raises(ValueError, match="values"):
        att.nadaraya_watson(data.x_test, data.x_train, data.y_train[:5])
    with pytest.raises(ValueError, match="queries"):
        att.gaussian_weights(data.x_test[None], data.x_train)


def test_learned_width_lowers_the_leave_one_out_loss():
    data = att.toy_regression_data()
    model, losses = att.fit_kernel_width(data)
    assert len(losses) == 21 and losses[-1] < 0.6 * losses[0]
    assert model.w.item() > 2.0  # narrower than the fixed kernel (w = 1)
    with torch.no_grad():
        y_hat = model(data.x_test, data.x_train, data.y_train)
    expected, weights = att.nadaraya_watson(data.x_test, data.x_train, data.y_train, model.w.item())
    assert torch.allclose(y_hat, expected) and torch.equal(model.attention_weights, weights)
    with pytest.raises(FloatingPointError, match="diverged"):
        att.fit_kernel_width(data, epochs=3, lr=1e30)  # w overflows
