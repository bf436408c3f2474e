"""Convolution and pooling written by hand, to read next to `F.conv2d` and `F.max_pool2d`.

Lessons 2.02-2.04 build convolutional layers up from these functions: the two-dimensional
cross-correlation of one channel, then several input channels, several output channels, the
1x1 case as a matrix product, and pooling. Each works on one example (no batch axis) and
follows the definition with plain Python loops over the output positions: they are meant to
be read, and are tested against PyTorch's fast versions (tests/test_convolution.py).
Models use `nn.Conv2d` and `nn.MaxPool2d`. The output sizes come from the one formula in
dlcamp.core.shapes (`conv_output_size`), which the models and the NumPy engine use too.

    X = torch.arange(9.0).reshape(3, 3)
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    corr2d(X, K)              # tensor([[19., 25.], [37., 43.]])
    pool2d(X, 2, mode="max")  # tensor([[4.]]): stride defaults to the window size
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dlcamp.core.shapes import conv_output_size

IntOrPair = int | tuple[int, int]


def _pair(value: IntOrPair) -> tuple[int, int]:
    """3 -> (3, 3); (3, 5) stays (3, 5): one number for height and width, or one each."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def corr2d(X: Tensor, K: Tensor, padding: IntOrPair = 0, stride: IntOrPair = 1) -> Tensor:
    """Two-dimensional cross-correlation of one channel: Y[i, j] = sum(window * K).

    X is (h, w), K is (kh, kw). The input is first padded with zeros (`padding` rows/columns
    on each side), then the window moves `stride` steps at a time. Autograd sees every step,
    so gradients flow to both X and K (lesson 2.02 learns a kernel this way).
    """
    (ph, pw), (sh, sw) = _pair(padding), _pair(stride)
    kh, kw = K.shape
    X = F.pad(X, (pw, pw, ph, ph))  # (h + 2ph, w + 2pw): zeros around the border
    out_h = conv_output_size(X.shape[0], kh, 0, sh)
    out_w = conv_output_size(X.shape[1], kw, 0, sw)
    Y = torch.zeros(out_h, out_w, dtype=torch.result_type(X, K), device=X.device)
    for i in range(out_h):
        for j in range(out_w):
            window = X[i * sh:i * sh + kh, j * sw:j * sw + kw]  # (kh, kw)
            Y[i, j] = (window * K).sum()
    return Y  # (out_h, out_w)


def corr2d_multi_in(X: Tensor, K: Tensor, padding: IntOrPair = 0,
                    stride: IntOrPair = 1) -> Tensor:
    """Several input channels, one output channel: correlate channel by channel, then add.

    X is (c_in, h, w), K is (c_in, kh, kw); the result is one (out_h, out_w) map.
    """
    if X.shape[0] != K.shape[0]:
        raise ValueError(f"X has {X.shape[0]} channels but K has {K.shape[0]}")
    return sum(corr2d(x, k, padding, stride) for x, k in zip(X, K, strict=True))


def corr2d_multi_in_out(X: Tensor, K: Tensor, padding: IntOrPair = 0,
                        stride: IntOrPair = 1) -> Tensor:
    """Several input and output channels: one multi-input kernel per output channel.

    X is (c_in, h, w), K is (c_out, c_in, kh, kw) -- nn.Conv2d's weight layout -- and the
    result is (c_out, out_h, out_w).
    """
    return torch.stack([corr2d_multi_in(X, k, padding, stride) for k in K])


def corr2d_multi_in_out_1x1(X: Tensor, K: Tensor) -> Tensor:
    """A 1x1 convolution is a fully connected layer applied to every pixel: one matmul.

    X is (c_in, h, w), K is (c_out, c_in, 1, 1); the result is (c_out, h, w).
    """
    c_in, h, w = X.shape
    c_out = K.shape[0]
    if K.shape[1:] != (c_in, 1, 1):
        raise ValueError(f"K must be (c_out, {c_in}, 1, 1), got {tuple(K.shape)}")
    pixels = X.reshape(c_in, h * w)  # (c_in, h*w): one column per pixel
    Y = K.reshape(c_out, c_in) @ pixels  # (c_out, h*w)
    return Y.reshape(c_out, h, w)


def pool2d(X: Tensor, pool_size: IntOrPair, mode: str = "max", padding: IntOrPair = 0,
           stride: IntOrPair | None = None) -> Tensor:
    """Max or average pooling of one channel, like nn.MaxPool2d / nn.AvgPool2d.

    X is (h, w). `stride` defaults to the window size (windows do not overlap), as in torch.
    Padding is never the maximum (-inf) for max pooling; for average pooling it counts as
    zeros and the sum is divided by the full window size (torch's count_include_pad=True).
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    (kh, kw), (ph, pw) = _pair(pool_size), _pair(padding)
    sh, sw = _pair(pool_size if stride is None else stride)
    fill = float("-inf") if mode == "max" else 0.0
    X = F.pad(X, (pw, pw, ph, ph), value=fill)  # (h + 2ph, w + 2pw)
    out_h = conv_output_size(X.shape[0], kh, 0, sh)
    out_w = conv_output_size(X.shape[1], kw, 0, sw)
    Y = torch.zeros(out_h, out_w, dtype=X.dtype, device=X.device)
    for i in range(out_h):
        for j in range(out_w):
            window = X[i * sh:i * sh + kh, j * sw:j * sw + kw]  # (kh, kw)
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y  # (out_h, out_w)
