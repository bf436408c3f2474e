"""Attention lessons' shared pieces: heat maps of attention weights, Nadaraya-Watson pooling.

Lessons 7.05-7.10 draw attention weights with `show_heatmaps` (a grid of query-by-key
matrices, optionally labelled with tokens; Chinese tokens use `plot.cjk_font`). Lesson 7.05
pools with the oldest attention mechanism there is, Nadaraya-Watson kernel regression
(Nadaraya 1964, Watson 1964), on the book's toy data y = 2 sin(x) + x^0.8 + noise (zh.d2l.ai
section 10.2, "Attention Pooling: Nadaraya-Watson Kernel Regression" of the English 0.17
edition; the 1.0 edition's section 11.2 changed the curve).

    data = toy_regression_data()
    y_hat, weights = nadaraya_watson(data.x_test, data.x_train, data.y_train)   # (50,), (50, 50)
    fig = show_heatmaps(weights[None, None], "training inputs", "test inputs")

The layers the models use (masked softmax, additive and dot-product attention, multi-head
attention, positional encoding) are in dlcamp.models.attention.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from dlcamp.course.plot import cjk_font

# ---------------------------------------------------------------------------------------------
# Heat maps


def _as_grid(matrices: Tensor | np.ndarray) -> np.ndarray:
    """(Q, K), (n, Q, K) or (rows, cols, Q, K) -> a float (rows, cols, Q, K) numpy array."""
    x = torch.as_tensor(matrices).detach().cpu().double()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or 0 in x.shape:
        raise ValueError("show_heatmaps draws matrices (rows, cols, queries, keys) (or one "
                         f"(queries, keys) / a row (n, queries, keys)); got {tuple(x.shape)}")
    return x.numpy()


def _check_labels(labels: Sequence[str] | None, n: int, what: str) -> None:
    if labels is not None and len(labels) != n:
        raise ValueError(f"{what}: {len(labels)} labels for {n} {what.split('tick')[0]} "
                         "positions")


def show_heatmaps(matrices: Tensor | np.ndarray, xlabel: str = "keys", ylabel: str = "queries",
                  titles: Sequence[str] | None = None, figsize: tuple[float, float] | None = None,
                  cmap: str = "Reds", xticklabels: Sequence[str] | None = None,
                  yticklabels: Sequence[str] | None = None) -> Figure:
    """Draw a grid of attention-weight matrices with one shared colour bar; returns the figure.

    matrices: (rows, cols, Q, K) tensor or array (a single (Q, K) matrix or a row (n, Q, K) is
    accepted too): row q of a matrix holds the weights query q gives the K keys. All panels
    share one colour scale, from min(0, smallest value) to the largest value. xlabel / ylabel
    go under the bottom row / beside the left column. titles: one per column (placed on every
    row) or one per panel (row by row). xticklabels (K strings) and yticklabels (Q strings)
    name the keys and queries, e.g. source and target tokens; Chinese needs a CJK font
    (`plot.cjk_font`; without one the glyphs are boxes and the warnings are silenced).
    figsize defaults to about 2.5 inches a panel, more with tick labels.
    The figure has rows * cols image axes (`ax.images[0]` holds the matrix) plus the colour
    bar's axes. Raises ValueError for another shape or a wrong number of titles or labels.
    Layout after d2l.ai's `show_heatmaps` (section 11.1).
    """
    grid = _as_grid(matrices)
    rows, cols, n_q, n_k = grid.shape
    if titles is not None and len(titles) not in (cols, rows * cols):
        raise ValueError(f"titles: got {len(titles)}, want one per column ({cols}) "
                         f"or one per panel ({rows * cols})")
    _check_labels(xticklabels, n_k, "xticklabels: keys")
    _check_labels(yticklabels, n_q, "yticklabels: queries")
    texts = [*(titles or []), *(xticklabels or []), *(yticklabels or []), xlabel, ylabel]
    font = cjk_font()
    if font is None and any(not str(t).isascii() for t in texts):
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
    if figsize is None:
        cell = 0.3 if (xticklabels or yticklabels) else 0.0  # inches per labelled token
        width = max(2.5, cell * n_k + 1.0) if cell else 2.5
        height = max(2.5, cell * n_q + 1.0) if cell else 2.5
        figsize = (width * cols + 1.0, height * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False, layout="constrained")
    vmin, vmax = min(0.0, float(grid.min())), float(grid.max())
    image = None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = ax.imshow(grid[i, j], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            if i == rows - 1:
                ax.set_xlabel(xlabel, fontfamily=font or None)
            if j == 0:
                ax.set_ylabel(ylabel, fontfamily=font or None)
            if titles is not None:
                ax.set_title(titles[j] if len(titles) == cols else titles[i * cols + j],
                             fontfamily=font or None, fontsize=10)
            if xticklabels is not None:
                ax.set_xticks(range(n_k), list(xticklabels), rotation=90,
                              fontfamily=font or None, fontsize=8)
            if yticklabels is not None:
                ax.set_yticks(range(n_q), list(yticklabels) if j == 0 else [""] * n_q,
                              fontfamily=font or None, fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6)
    return fig


# ---------------------------------------------------------------------------------------------
# Nadaraya-Watson kernel regression


def toy_function(x: Tensor) -> Tensor:
    """The curve the toy data are drawn around: f(x) = 2 sin(x) + x^0.8 (for x >= 0)."""
    return 2 * torch.sin(x) + x**0.8


@dataclass(frozen=True)
class ToyData:
    """x_train (n,) sorted in [0, 5), y_train (n,) = f(x_train) + noise; x_test (m,) an even
    grid on [0, 5) and y_truth (m,) = f(x_test) without noise."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_truth: Tensor


def toy_regression_data(n_train: int = 50, noise: float = 0.5, seed: int = 0) -> ToyData:
    """The book's toy set (zh.d2l.ai 10.2): n_train inputs uniform on [0, 5), sorted, targets
    f(x) + N(0, noise^2), and 50 test inputs 0, 0.1, ..., 4.9. Same seed, same data."""
    if n_train < 2:
        raise ValueError(f"n_train must be at least 2, got {n_train}")
    gen = torch.Generator().manual_seed(seed)
    x_train = torch.sort(torch.rand(n_train, generator=gen) * 5).values
    y_train = toy_function(x_train) + noise * torch.randn(n_train, generator=gen)
    x_test = torch.arange(0, 5, 0.1)
    return ToyData(x_train, y_train, x_test, toy_function(x_test))


def average_pooling(queries: Tensor, values: Tensor) -> Tensor:
    """The dumbest estimator: every query (Q,) gets the mean of the values (K,); returns (Q,)."""
    return values.mean().expand(len(queries)).clone()


def gaussian_weights(queries: Tensor, keys: Tensor, w: Tensor | float = 1.0) -> Tensor:
    """Attention weights of Gaussian-kernel pooling: softmax_j(-((q_i - k_j) w)^2 / 2).

    queries (Q,), keys (K,) or (Q, K) (each query its own keys); w a scalar width parameter
    (the kernel's bandwidth is 1 / |w|). Returns (Q, K); each row sums to 1. The kernel's
    constant 1 / sqrt(2 pi) cancels in the normalisation.
    """
    if queries.ndim != 1 or keys.ndim not in (1, 2):
        raise ValueError(f"queries (Q,) and keys (K,) or (Q, K); got {tuple(queries.shape)} "
                         f"and {tuple(keys.shape)}")
    diffs = queries[:, None] - (keys[None] if keys.ndim == 1 else keys)  # (Q, K)
    return torch.softmax(-((diffs * w) ** 2) / 2, dim=1)


def nadaraya_watson(queries: Tensor, keys: Tensor, values: Tensor,
                    w: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
    """Nadaraya-Watson estimate f(q) = sum_j alpha(q, k_j) v_j with Gaussian weights.

    queries (Q,), keys and values (K,) (shared) or (Q, K) (per query). Returns the estimates
    (Q,) and the weights (Q, K).
    """
    if values.shape != keys.shape:
        raise ValueError(f"values {tuple(values.shape)} do not match keys {tuple(keys.shape)}")
    weights = gaussian_weights(queries, keys, w)
    return (weights * (values[None] if values.ndim == 1 else values)).sum(dim=1), weights


def leave_one_out(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """For each training point i, the other n - 1 points as its keys and values: two (n, n-1)
    tensors. Training the parametric kernel on these keeps a point from predicting itself
    (with itself as a key, a narrow kernel would just copy y_i: zero loss, useless model)."""
    n = len(x)
    others = ~torch.eye(n, dtype=torch.bool)
    return x[None].expand(n, n)[others].reshape(n, n - 1), y[None].expand(n, n)[others].reshape(
        n, n - 1)


class NWKernelRegression(nn.Module):
    """Parametric Nadaraya-Watson pooling: Gaussian weights with a learnable width w.

    forward(queries (Q,), keys (K,) or (Q, K), values like keys) -> estimates (Q,); the last
    weights (Q, K) are kept in `.attention_weights`. w starts at `w0` (the book starts from a
    random number in [0, 1)).
    """

    def __init__(self, w0: float = 1.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w0)))
        self.attention_weights: Tensor | None = None

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        y_hat, self.attention_weights = nadaraya_watson(queries, keys, values, self.w)
        return y_hat


def fit_kernel_width(data: ToyData, epochs: int = 20, lr: float = 5.0, w0: float = 1.0
                     ) -> tuple[NWKernelRegression, list[float]]:
    """Learn w by full-batch SGD on the leave-one-out loss mean((y_hat - y)^2 / 2).

    The book takes 5 SGD steps of learning rate 0.5 on the *summed* loss of its 50 points,
    i.e. 25 on the mean; 20 steps of 5 on the mean settle more calmly (w near 4 on the default
    data). Returns the model and the loss before each step and after the last one.
    Raises FloatingPointError when the loss is no longer finite (learning rate too large).
    """
    model = NWKernelRegression(w0)
    keys, values = leave_one_out(data.x_train, data.y_train)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = ((model(data.x_train, keys, values) - data.y_train) ** 2 / 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = ((model(data.x_train, keys, values) - data.y_train) ** 2 / 2).mean()
    losses.append(final.item())
    if not math.isfinite(losses[-1]):
        raise FloatingPointError(f"kernel width training diverged (lr={lr}): losses {losses}")
    return model, losses
