"""Convolution and pooling for the NumPy engine, vectorised with im2col.

A convolution slides a small kernel over the image. Done literally that is four nested Python
loops. *im2col* turns it into one matrix product instead: copy every kH x kW window of the
input into one row of a matrix `cols`, then

    output = cols @ weight.reshape(out_channels, -1).T

The backward pass runs the same trick in reverse: the gradient of `cols` is one matrix
product, and *col2im* adds each row back onto the window it was copied from (windows overlap,
so one input pixel collects gradient from several rows).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from dlcamp.core.shapes import conv_output_size
from dlcamp.engine.tensor import Tensor, lift


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """A read-only view (N, C, OH, OW, kH, kW) of every window of x (N, C, H, W): no copy.

    Moving one step along OH jumps `stride` rows in memory; moving along kH jumps one row.
    """
    n, c, h, w = x.shape
    try:
        oh, ow = conv_output_size(h, kh, stride=stride), conv_output_size(w, kw, stride=stride)
    except ValueError as e:
        raise ValueError(f"a {kh}x{kw} window does not fit into a {h}x{w} input (after padding, "
                         f"stride {stride}): {e}") from e
    s0, s1, s2, s3 = x.strides
    return as_strided(x, (n, c, oh, ow, kh, kw), (s0, s1, s2 * stride, s3 * stride, s2, s3),
                      writeable=False)


def col2im(grad_windows: np.ndarray, padded_shape: tuple[int, ...], stride: int,
           padding: tuple[int, int]) -> np.ndarray:
    """Add gradients of windows (N, C, OH, OW, kH, kW) back onto the (unpadded) input."""
    n, c, oh, ow, kh, kw = grad_windows.shape
    ph, pw = padding
    if stride == kh == kw and padded_shape[2:] == (oh * kh, ow * kw) and not ph and not pw:
        # Windows that tile the input without overlap (2x2 pooling, stride 2): every pixel is
        # in exactly one window, so col2im is just a reordering of the axes.
        return grad_windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * kh, ow * kw)
    out = np.zeros(padded_shape, dtype=grad_windows.dtype)
    for i in range(kh):          # kH * kW slice-adds, each over the whole batch at once
        for j in range(kw):
            out[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += \
                grad_windows[:, :, :, :, i, j]
    return out[:, :, ph:out.shape[2] - ph, pw:out.shape[3] - pw]


def _pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    ph, pw = padding
    if not ph and not pw:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _check_image(x: Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} wants a batch of images (N, C, H, W), got shape {x.shape}")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
           padding: int | tuple[int, int] = 0) -> Tensor:
    """Cross-correlation as nn.Conv2d: x (N, C, H, W), weight (O, C, kH, kW) -> (N, O, OH, OW)."""
    _check_image(x, "conv2d")
    weight = lift(weight)
    bias = None if bias is None else lift(bias)  # a NumPy bias, like a NumPy weight
    o, c, kh, kw = weight.shape
    if x.shape[1] != c:
        raise ValueError(f"conv2d: the input has {x.shape[1]} channels, the kernel expects {c}")
    padding = _pair(padding)
    xp = _pad(x.data, padding)
    win = windows(xp, kh, kw, stride)                            # (N, C, OH, OW, kH, kW)
    n, _, oh, ow = win.shape[:4]
    # im2col, one column per output pixel: (C*kH*kW, N*OH*OW). This order keeps the copy's
    # innermost loop running along a row of the image, which is what makes it fast.
    cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)
    w2 = weight.data.reshape(o, c * kh * kw)
    out = w2 @ cols                                              # (O, N*OH*OW)
    if bias is not None:
        out += bias.data[:, None]
    # (O, N, OH, OW) in memory, seen as (N, O, OH, OW): a transpose is free, no copy
    result = out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> None:
        g2 = g.transpose(1, 0, 2, 3).reshape(o, n * oh * ow)    # one column per output pixel
        weight.accumulate((g2 @ cols.T).reshape(weight.shape))
        if bias is not None:
            bias.accumulate(g2.sum(axis=1))
        if x.requires_grad:                                     # skipped for the input images
            gcols = (w2.T @ g2).reshape(c, kh, kw, n, oh, ow)
            x.accumulate(col2im(gcols.transpose(3, 0, 4, 5, 1, 2), xp.shape, stride, padding))

    return Tensor.make(result, parents, "conv2d", backward)


def max_pool2d(x: Tensor, kernel_size: int, stride: int | None = None,
               padding: int = 0) -> Tensor:
    """Maximum of each window; the gradient goes to the (first) largest element only."""
    _check_image(x, "max_pool2d")
    k, stride, pad = kernel_size, stride or kernel_size, _pair(padding)
    xp = _pad(x.data, pad, value=-np.inf)
    win = windows(xp, k, k, stride)                              # (N, C, OH, OW, k, k) view
    offsets = [(i, j) for i in range(k) for j in range(k)]
    # One elementwise maximum per position in the window: k*k whole-batch operations
    # (faster than an argmax along a short last axis, and no copy of the windows).
    out = win[..., 0, 0].copy()
    for i, j in offsets[1:]:
        np.maximum(out, win[..., i, j], out=out)

    def backward(g: np.ndarray) -> None:
        grad_windows = np.zeros(win.shape, dtype=g.dtype)
        unclaimed = np.ones(out.shape, dtype=bool)  # ties: the first maximum takes it all
        for i, j in offsets:
            first = unclaimed & (win[..., i, j] == out)
            grad_windows[..., i, j] = g * first
            unclaimed &= ~first
        x.accumulate(col2im(grad_windows, xp.shape, stride, pad))

    return Tensor.make(out, (x,), "max_pool2d", backward)


def avg_pool2d(x: Tensor, kernel_size: int, stride: int | None = None,
               padding: int = 0) -> Tensor:
    """Mean of each window (padding counts as zeros, like PyTorch's default)."""
    _check_image(x, "avg_pool2d")
    k, stride, pad = kernel_size, stride or kernel_size, _pair(padding)
    xp = _pad(x.data, pad)
    win = windows(xp, k, k, stride)
    out = win.mean(axis=(-2, -1), dtype=x.dtype)

    def backward(g: np.ndarray) -> None:
        share = np.broadcast_to((g / (k * k))[..., None, None], win.shape)
        x.accumulate(col2im(share, xp.shape, stride, pad))

    return Tensor.make(out, (x,), "avg_pool2d", backward)
