"""dlcamp.course.convolution: hand-written convolution and pooling equal PyTorch's; and the one
output-size formula (dlcamp.core.shapes) equals the shapes of nn.Conv2d and nn.MaxPool2d."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcamp.core.shapes import conv_output_size, stack_output_size
from dlcamp.course.convolution import (
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
    pool2d,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def conv_case(draw, max_channels: int = 1):
    """A random (c_in, h, w) input and window with padding and stride that fit it."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    c_in = draw(st.integers(1, max_channels))
    seed = draw(st.integers(0, 2**16))
    return c_in, (h, w), (kh, kw), (ph, pw), (sh, sw), seed


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_corr2d_on_a_small_example():
    X = torch.arange(9.0).reshape(3, 3)
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))


@SETTINGS
@given(conv_case())
def test_corr2d_equals_conv2d(case):
    _, (h, w), (kh, kw), padding, stride, seed = case
    X, K = randn(h, w, seed=seed), randn(kh, kw, seed=seed + 1)
    expected = F.conv2d(X[None, None], K[None, None], padding=padding, stride=stride)[0, 0]
    assert torch.allclose(corr2d(X, K, padding, stride), expected)


def test_corr2d_gradients_equal_conv2d():
    X, K = randn(6, 7, seed=0).requires_grad_(), randn(2, 3, seed=1).requires_grad_()
    X2, K2 = X.detach().clone().requires_grad_(), K.detach().clone().requires_grad_()
    (corr2d(X, K, padding=1, stride=2) ** 2).sum().backward()
    (F.conv2d(X2[None, None], K2[None, None], padding=1, stride=2) ** 2).sum().backward()
    assert torch.allclose(X.grad, X2.grad) and torch.allclose(K.grad, K2.grad)


@SETTINGS
@given(conv_case(max_channels=3), st.integers(1, 3))
def test_multi_channel_correlation_equals_conv2d(case, c_out):
    c_in, (h, w), (kh, kw), padding, stride, seed = case
    X, K = randn(c_in, h, w, seed=seed), randn(c_out, c_in, kh, kw, seed=seed + 1)
    expected = F.conv2d(X[None], K, padding=padding, stride=stride)[0]  # (c_out, oh, ow)
    assert torch.allclose(corr2d_multi_in_out(X, K, padding, stride), expected)
    assert torch.allclose(corr2d_multi_in(X, K[0], padding, stride), expected[0])


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6),
       st.integers(0, 2**16))
def test_1x1_convolution_is_a_matmul_over_pixels(c_in, c_out, h, w, seed):
    X, K = randn(c_in, h, w, seed=seed), randn(c_out, c_in, 1, 1, seed=seed + 1)
    Y = corr2d_multi_in_out_1x1(X, K)
    assert Y.shape == (c_out, h, w)
    assert torch.allclose(Y, corr2d_multi_in_out(X, K))
    assert torch.allclose(Y, F.conv2d(X[None], K)[0])


def torch_length(layer: torch.nn.Module, n: int) -> int | None:
    """The output height of `layer` for an (1, 1, n, 1) input, or None when torch refuses it."""
    try:
        return layer(torch.zeros(1, 1, n, 1)).shape[2]
    except RuntimeError:
        return None


GRID = list(itertools.product(range(1, 6), range(0, 3), range(1, 4), range(1, 3)))


@pytest.mark.parametrize("kernel,padding,stride,dilation", GRID)
def test_conv_output_size_equals_nn_conv2d_and_max_pool2d(kernel, padding, stride, dilation):
    conv = torch.nn.Conv2d(1, 1, (kernel, 1), padding=(padding, 0), stride=(stride, 1),
                           dilation=(dilation, 1))
    # torch refuses pooling padding over half the window: those settings are not pools
    pool = torch.nn.MaxPool2d((kernel, 1), (stride, 1), (padding, 0), (dilation, 1)) \
        if 2 * padding <= kernel else None
    for n in range(1, 16):
        expected = torch_length(conv, n)
        if expected is None:  # the window does not fit: torch and the formula both refuse
            with pytest.raises(ValueError, match="does not fit"):
                conv_output_size(n, kernel, padding, stride, dilation)
            continue
        assert conv_output_size(n, kernel, padding, stride, dilation) == expected, n
        if pool is not None and torch_length(pool, n) is not None:
            assert torch_length(pool, n) == expected, n


@pytest.mark.parametrize("bad", [dict(kernel_size=0), dict(stride=0), dict(padding=-1),
                                 dict(dilation=0)])
def test_conv_output_size_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="need kernel_size >= 1"):
        conv_output_size(**{"size": 5, "kernel_size": 2, "padding": 0, "stride": 1, **bad})


def test_conv_output_size_explains_a_window_that_does_not_fit():
    with pytest.raises(ValueError, match=r"a window of 3 \(dilated to 5\) does not fit into 4 "
                                         r"elements with 0 of padding on each side"):
        conv_output_size(4, 3, dilation=2)


def test_stack_output_size_follows_a_network():
    lenet = [(5, 2, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2)]
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 5, padding=2), torch.nn.AvgPool2d(2),
                              torch.nn.Conv2d(1, 1, 5), torch.nn.AvgPool2d(2))
    for n in (12, 13, 28, 31):
        assert stack_output_size(n, lenet) == net(torch.zeros(1, 1, n, n)).shape[-1]
    assert stack_output_size(7, []) == 7
    with pytest.raises(ValueError, match=r"layer 3 \(kernel 2, padding 0, stride 2\): a window"):
        stack_output_size(11, lenet)  # 11 -> 11 -> 5 -> 1 -> nothing


def test_shape_mismatches_are_reported():
    with pytest.raises(ValueError, match="does not fit"):
        corr2d(torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="channels"):
        corr2d_multi_in(torch.zeros(2, 4, 4), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=r"c_out, 2, 1, 1"):
        corr2d_multi_in_out_1x1(torch.zeros(2, 4, 4), torch.zeros(3, 2, 2, 2))
    with pytest.raises(ValueError, match="mode"):
        pool2d(torch.zeros(4, 4), 2, mode="min")


def test_pool2d_on_a_small_example():
    X = torch.arange(9.0).reshape(3, 3)
    assert torch.equal(pool2d(X, 2, stride=1), torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    assert torch.equal(pool2d(X, 2, "avg", stride=1), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # torch's limit
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return (h, w), (kh, kw), (ph, pw), stride, draw(st.integers(0, 2**16))


@SETTINGS
@given(pool_case())
def test_pool2d_equals_torch(case):
    (h, w), window, padding, stride, seed = case
    X = randn(h, w, seed=seed)
    torch_max = F.max_pool2d(X[None, None], window, stride, padding)[0, 0]
    torch_avg = F.avg_pool2d(X[None, None], window, stride, padding)[0, 0]
    assert torch.equal(pool2d(X, window, "max", padding, stride), torch_max)
    assert torch.allclose(pool2d(X, window, "avg", padding, stride), torch_avg)
