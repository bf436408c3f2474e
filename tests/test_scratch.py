"""dlcamp.engine: the NumPy engine against PyTorch as the oracle.

Every operation runs twice, once in the scratch engine and once in PyTorch, on the same float64
numbers (so the tolerances can be tight); the forward values and the gradients of every input,
for one random upstream gradient G (`out.backward(G)` in both), must agree. Hypothesis draws the
shapes, broadcasting patterns, indices, windows and seeds. On top of that: finite differences,
graph behaviour (shared nodes, deep chains, no_grad, freed graphs), dtype preservation, whole
networks against dlcamp.models, the optimisers against torch.optim, a real training run on
Fashion-MNIST and the error messages for bad input.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dlcamp.core.errors import CheckpointError
from dlcamp.data import load_dataset
from dlcamp.engine import (
    Tensor,
    avg_pool2d,
    conv2d,
    create_scratch_model,
    cross_entropy,
    dropout,
    is_grad_enabled,
    max_pool2d,
    no_grad,
)
from dlcamp.engine import nn as snn
from dlcamp.engine import optim as soptim
from dlcamp.models import create_model

SETTINGS = settings(max_examples=40, deadline=None)
TIGHT = dict(rtol=1e-9, atol=1e-12)  # float64 against float64
F32 = dict(rtol=1e-4, atol=1e-5)  # float32 networks against float32 networks
seeds = st.integers(0, 2**16)


# -- helpers ---------------------------------------------------------------------------------
def randn(shape, seed: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def away_from_zero(a: np.ndarray) -> np.ndarray:
    """Same signs, magnitudes at least 0.5: safe denominators."""
    return np.where(a < 0, -1.0, 1.0) * (0.5 + np.abs(a))


def close(actual, expected, **tol) -> None:
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(actual, expected, **(tol or TIGHT))


def compare(scratch_fn, torch_fn, *arrays: np.ndarray, seed: int = 0, **tol) -> Tensor:
    """Apply the op in both engines to copies of `arrays`; values and all gradients must match."""
    xs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = scratch_fn(*xs), torch_fn(*ts)
    assert out.shape == tuple(ref.shape)
    assert out.dtype == np.float64  # float64 in, float64 out
    close(out.data, ref, **tol)
    G = randn(out.shape, seed + 1)
    out.backward(G)
    ref.backward(torch.from_numpy(G))
    for x, t in zip(xs, ts, strict=True):
        assert x.grad is not None and x.grad.shape == x.shape
        close(x.grad, t.grad, **tol)
    return out


def shapes(min_dims: int = 0, max_dims: int = 4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4)


def broadcast_pair(max_dims: int = 4):
    """Two shapes that broadcast together (size-1 axes, missing leading axes, scalars)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims,
                                             max_side=4).map(lambda s: s.input_shapes)


# -- elementwise arithmetic with broadcasting --------------------------------------------------
BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
          "truediv": operator.truediv}


@SETTINGS
@given(st.sampled_from(sorted(BINARY)), broadcast_pair(), seeds)
def test_binary_ops_equal_torch_with_broadcasting(name, pair, seed):
    a, b = randn(pair[0], seed), randn(pair[1], seed + 7)
    if name == "truediv":
        b = away_from_zero(b)
    compare(BINARY[name], BINARY[name], a, b, seed=seed)


@SETTINGS
@given(st.sampled_from(sorted(BINARY)), broadcast_pair(), seeds)
def test_reflected_ops_with_numbers_and_arrays(name, pair, seed):
    """number OP tensor and ndarray OP tensor go through __radd__, __rsub__, ... and broadcast."""
    op = BINARY[name]
    x, array = randn(pair[0], seed), randn(pair[1], seed + 3)
    if name == "truediv":  # both end up as denominators
        x, array = away_from_zero(x), away_from_zero(array)
    for const in (0.3, -2, array):  # 0.3 is not exact in float32: float64 must stay float64
        torch_const = torch.from_numpy(const) if isinstance(const, np.ndarray) else const
        compare(lambda t, c=const: op(c, t), lambda t, c=torch_const: op(c, t), x, seed=seed)
        compare(lambda t, c=const: op(t, c), lambda t, c=torch_const: op(t, c), x, seed=seed)


UNARY = {  # name: (scratch, torch, input domain)
    "neg": (operator.neg, operator.neg, "any"),
    "exp": (Tensor.exp, torch.exp, "any"),
    "log": (Tensor.log, torch.log, "positive"),
    "relu": (Tensor.relu, torch.relu, "any"),
    "sigmoid": (Tensor.sigmoid, torch.sigmoid, "any"),
    "tanh": (Tensor.tanh, torch.tanh, "any"),
}


@SETTINGS
@given(st.sampled_from(sorted(UNARY)), shapes(), seeds)
def test_unary_ops_equal_torch(name, shape, seed):
    scratch_fn, torch_fn, domain = UNARY[name]
    x = randn(shape, seed, scale=3.0)
    if domain == "positive":
        x = np.abs(x) + 0.1
    compare(scratch_fn, torch_fn, x, seed=seed)


@SETTINGS
@given(st.sampled_from([-2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3]), shapes(), seeds)
def test_pow_with_scalar_exponents(k, shape, seed):
    x = randn(shape, seed)
    if k != int(k) or k < 0:  # fractional powers need x > 0, negative ones x away from 0
        x = np.abs(x) + 0.5
    compare(lambda t: t**k, lambda t: t**k, x, seed=seed)


def test_pow_rejects_a_tensor_exponent():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="exponent"):
        x ** Tensor(np.ones(3))


EXTREMES = np.array([-1000.0, -100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 1000.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_and_tanh_are_stable_at_large_magnitudes(dtype):
    """No overflow warning, no NaN: the naive 1 / (1 + exp(-x)) overflows at x = -1000."""
    for name in ("sigmoid", "tanh"):
        x = Tensor(EXTREMES.astype(dtype), requires_grad=True)
        t = torch.tensor(EXTREMES.astype(dtype), requires_grad=True)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = getattr(x, name)()
            out.backward(np.ones(EXTREMES.shape))
        ref = getattr(t, name)()
        ref.backward(torch.ones(EXTREMES.shape, dtype=t.dtype))
        assert out.dtype == dtype and np.isfinite(out.data).all() and np.isfinite(x.grad).all()
        close(out.data, ref, rtol=1e-6, atol=1e-7)
        close(x.grad, t.grad, rtol=1e-6, atol=1e-7)


# -- matrix product ----------------------------------------------------------------------------
@SETTINGS
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), broadcast_pair(max_dims=3),
       seeds)
def test_matmul_equals_torch_with_broadcast_batch_axes(n, k, m, batch, seed):
    a, b = randn((*batch[0], n, k), seed), randn((*batch[1], k, m), seed + 1)
    compare(operator.matmul, operator.matmul, a, b, seed=seed)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), seeds)
def test_matmul_with_a_constant_array_on_either_side(n, k, m, seed):
    a, w = randn((n, k), seed), randn((k, m), seed + 1)
    compare(lambda x: x @ w, lambda t: t @ torch.from_numpy(w), a, seed=seed)
    v = randn((m, n), seed + 2)
    compare(lambda x: v @ x, lambda t: torch.from_numpy(v) @ t, a, seed=seed)


# -- shape operations --------------------------------------------------------------------------
@st.composite
def reshape_case(draw):
    shape = draw(shapes(min_dims=1))
    target = list(draw(st.permutations(shape)))  # same size, different layout
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return shape, tuple(target), draw(st.booleans())


@SETTINGS
@given(reshape_case(), seeds)
def test_reshape_equals_torch(case, seed):
    shape, target, as_tuple = case
    scratch_fn = (lambda x: x.reshape(target)) if as_tuple else (lambda x: x.reshape(*target))
    compare(scratch_fn, lambda t: t.reshape(target), randn(shape, seed), seed=seed)


@SETTINGS
@given(shapes(min_dims=1), st.data(), seeds)
def test_flatten_equals_torch(shape, data, seed):
    start = data.draw(st.integers(0, len(shape) - 1))
    compare(lambda x: x.flatten(start), lambda t: t.flatten(start), randn(shape, seed),
            seed=seed)


@SETTINGS
@given(shapes(min_dims=1), st.data(), seeds)
def test_transpose_equals_torch_permute(shape, data, seed):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = randn(shape, seed)
    compare(lambda a: a.transpose(*perm), lambda t: t.permute(perm), x, seed=seed)
    reverse = tuple(reversed(range(len(shape))))
    compare(lambda a: a.T, lambda t: t.permute(reverse), x, seed=seed)  # .T reverses all axes
    compare(lambda a: a.transpose(), lambda t: t.permute(reverse), x, seed=seed)


def test_T_of_a_matrix_equals_torch_T():
    compare(lambda a: a.T @ a, lambda t: t.T @ t, randn((4, 3), 0))


# -- indexing ----------------------------------------------------------------------------------
@st.composite
def basic_index(draw, shape):
    """A tuple of ints and slices (positive steps, bounds past the ends) for leading axes."""
    items = []
    for n in shape[:draw(st.integers(1, len(shape)))]:
        if draw(st.booleans()):
            items.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 1, n + 1)
            items.append(slice(draw(bound), draw(bound), draw(st.none() | st.integers(1, 3))))
    return tuple(items)


@SETTINGS
@given(shapes(min_dims=1), st.data(), seeds)
def test_basic_indexing_equals_torch(shape, data, seed):
    index = data.draw(basic_index(shape))
    compare(lambda x: x[index], lambda t: t[index], randn(shape, seed), seed=seed)


@st.composite
def advanced_index(draw, shape):
    """Integer arrays with repeats (and negative entries): one on some axis, or two adjacent."""
    def int_array(n, size):
        return np.array(draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size)))

    size = draw(st.integers(1, 7))
    if len(shape) >= 2 and draw(st.booleans()):
        return (int_array(shape[0], size), int_array(shape[1], size))
    axis = draw(st.integers(0, len(shape) - 1))
    return (slice(None),) * axis + (int_array(shape[axis], size),)


def to_torch_index(index):
    return tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index)


@SETTINGS
@given(shapes(min_dims=1), st.data(), seeds)
def test_integer_array_indexing_equals_torch(shape, data, seed):
    index = data.draw(advanced_index(shape))
    compare(lambda x: x[index], lambda t: t[to_torch_index(index)], randn(shape, seed),
            seed=seed)


def test_repeated_indices_accumulate_their_gradients():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([1, 1, 3, 1])].sum().backward()
    assert x.grad.tolist() == [0.0, 3.0, 0.0, 1.0]


# -- reductions --------------------------------------------------------------------------------
@st.composite
def reduction_case(draw):
    shape = draw(shapes(min_dims=1))
    ndim = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in chosen)  # some negative
    return shape, axis, draw(st.booleans())


REDUCTIONS = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}


@SETTINGS
@given(st.sampled_from(sorted(REDUCTIONS)), reduction_case(), seeds)
def test_reductions_equal_torch(name, case, seed):
    shape, axis, keepdims = case
    dims = tuple(range(len(shape))) if axis is None else axis

    def scratch_fn(x):
        return getattr(x, name)(axis=axis, keepdims=keepdims)

    def torch_fn(t):
        return REDUCTIONS[name](t, dim=dims, keepdim=keepdims)

    compare(scratch_fn, torch_fn, randn(shape, seed), seed=seed)


def test_max_shares_the_gradient_between_ties_like_amax():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    compare(lambda x: x.max(axis=1), lambda t: t.amax(dim=1), a)
    compare(lambda x: x.max(), lambda t: t.amax(), a)


# -- log_softmax and cross_entropy -------------------------------------------------------------
@SETTINGS
@given(shapes(min_dims=1, max_dims=3), st.data(), st.sampled_from([1.0, 1000.0]), seeds)
def test_log_softmax_equals_torch_even_for_huge_logits(shape, data, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(shape, seed, scale)
    with np.errstate(over="raise", invalid="raise"):
        out = compare(lambda a: a.log_softmax(axis), lambda t: F.log_softmax(t, axis), x,
                      seed=seed, rtol=1e-9, atol=1e-9)
    assert np.isfinite(out.data).all()


@SETTINGS
@given(st.integers(1, 6), st.integers(2, 6), st.sampled_from([1.0, 1000.0]), seeds)
def test_cross_entropy_equals_torch_even_for_huge_logits(batch, classes, scale, seed):
    logits = randn((batch, classes), seed, scale)
    if scale > 1:
        logits[0, 0] = 1000.0  # exp(1000) overflows unless the max is subtracted first
    labels = np.random.default_rng(seed).integers(0, classes, batch)
    x, t = Tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    with np.errstate(over="raise", invalid="raise"):
        loss = cross_entropy(x, labels)
        loss.backward(np.array(1.7))
    ref = F.cross_entropy(t, torch.from_numpy(labels))
    (ref * 1.7).backward()
    assert loss.shape == () and loss.dtype == np.float64
    close(loss.data, ref, rtol=1e-9, atol=1e-9)
    close(x.grad, t.grad)


def test_cross_entropy_accepts_torch_labels():
    logits = randn((5, 3), 1)
    labels = torch.tensor([0, 2, 1, 1, 0])
    got = cross_entropy(Tensor(logits), labels).item()
    assert got == pytest.approx(F.cross_entropy(torch.from_numpy(logits), labels).item())


# -- convolution and pooling -------------------------------------------------------------------
@st.composite
def conv_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = draw(st.integers(0, 2) | st.tuples(st.integers(0, 2), st.integers(0, 2)))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c_in, h, w), (c_out, c_in, kh, kw), draw(st.integers(1, 3)), padding


@SETTINGS
@given(conv_case(), st.booleans(), seeds)
def test_conv2d_equals_torch(case, with_bias, seed):
    x_shape, w_shape, stride, padding = case
    x, w, b = randn(x_shape, seed), randn(w_shape, seed + 1), randn(w_shape[:1], seed + 2)
    if with_bias:
        compare(lambda x, w, b: conv2d(x, w, b, stride, padding),
                lambda x, w, b: F.conv2d(x, w, b, stride, padding), x, w, b, seed=seed)
    else:
        compare(lambda x, w: conv2d(x, w, None, stride, padding),
                lambda x, w: F.conv2d(x, w, None, stride, padding), x, w, seed=seed)


def test_conv2d_with_constant_numpy_weight_and_bias():
    x, w, b = randn((2, 2, 5, 5), 0), randn((3, 2, 3, 3), 1), randn((3,), 2)
    compare(lambda t: conv2d(t, w, b, 1, 1),
            lambda t: F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b), 1, 1), x)


@st.composite
def pool_case(draw):
    k = draw(st.integers(1, 4))
    padding = draw(st.integers(0, k // 2))  # torch allows at most half the window
    stride = draw(st.none() | st.integers(1, 3))
    h = draw(st.integers(max(1, k - 2 * padding), 9))
    w = draw(st.integers(max(1, k - 2 * padding), 9))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (n, c, h, w), k, stride, padding


@SETTINGS
@given(pool_case(), st.sampled_from(["max", "avg"]), seeds)
def test_pooling_equals_torch(case, mode, seed):
    shape, k, stride, padding = case
    scratch_pool = max_pool2d if mode == "max" else avg_pool2d
    torch_pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    compare(lambda x: scratch_pool(x, k, stride, padding),
            lambda t: torch_pool(t, k, stride, padding), randn(shape, seed), seed=seed)


# -- dropout -----------------------------------------------------------------------------------
def test_dropout_is_the_identity_for_p0_and_in_eval_mode():
    x = Tensor(randn((3, 4), 0), requires_grad=True)
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.7, training=False) is x
    layer = snn.Dropout(0.5).eval()
    assert layer(x) is x


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest(p):
    x_data = away_from_zero(randn((200, 500), 1))
    x = Tensor(x_data, requires_grad=True)
    out = dropout(x, p, rng=np.random.default_rng(2))
    kept = out.data != 0
    assert abs(1 - kept.mean() - p) < 0.01  # 100,000 draws: the std of the fraction is < 0.002
    close(out.data[kept], x_data[kept] / (1 - p))
    G = randn(x.shape, 3)
    out.backward(G)
    close(x.grad, G * kept / (1 - p))  # the gradient is the scaled mask
    assert dropout(Tensor(x_data.astype(np.float32)), p).dtype == np.float32


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(Tensor(np.ones(3)), p)
    with pytest.raises(ValueError, match="dropout probability"):
        snn.Dropout(p)


# -- finite differences ------------------------------------------------------------------------
def numerical_gradients(f, arrays: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the scalar f(*arrays), one element at a time (float64)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            plus = f(*arrays)
            a[i] = old - eps
            minus = f(*arrays)
            a[i] = old
            g[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_gradients(f, arrays: list[np.ndarray]) -> None:
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    f(*tensors).backward()

    def value(*arrays):
        with no_grad():
            return f(*(Tensor(a) for a in arrays)).item()

    for t, expected in zip(tensors, numerical_gradients(value, arrays), strict=True):
        np.testing.assert_allclose(t.grad, expected, rtol=1e-5, atol=1e-7)


def test_composite_function_matches_finite_differences():
    labels = np.array([2, 0, 1, 2])

    def f(x, w, b):
        h = (x @ w + b).tanh()                                   # matmul, broadcast add
        gate = (h * 2 - 1).sigmoid() / (1 + (w**2).sum())        # sub, pow, sum, div
        z = h * gate + x[:, :3].exp() * 0.1                      # slicing, exp
        return (cross_entropy(z, labels) + z.max(axis=1).mean()
                - z.log_softmax(axis=0)[np.array([0, 0, 3]), 1].sum() + (x * x).mean().log())

    check_gradients(f, [randn((4, 5), 0), randn((5, 3), 1), randn((3,), 2)])


def test_conv2d_and_max_pool2d_match_finite_differences():
    G = randn((2, 3, 4, 4), 3)

    def f(x, w, b):
        y = max_pool2d(conv2d(x, w, b, stride=1, padding=1), 2, stride=2, padding=1)
        return (avg_pool2d(y, 2, 1, 1) * G).sum()

    check_gradients(f, [randn((2, 2, 5, 5), 0), randn((3, 2, 3, 3), 1), randn((3,), 2)])


# -- graph behaviour ---------------------------------------------------------------------------
def test_a_tensor_used_twice_gets_both_gradient_paths():
    a = randn((3, 4), 0)
    compare(lambda x: x * x, lambda t: t * t, a)
    compare(lambda x: x + x.exp() * x, lambda t: t + t.exp() * t, a)


def test_diamond_graph_equals_torch():
    def diamond(x):  # x -> top, top feeds two branches that meet again (and top itself)
        top = x.exp()
        left, right = top * 2, top.tanh()
        return (left * right + top).sum(axis=0)

    compare(diamond, diamond, randn((4, 3), 1))


def test_a_deep_chain_needs_no_recursion():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(5000):  # far past Python's recursion limit of 1000
        y = y + 1.0
    (y * y).sum().backward()
    assert y.data.tolist() == [5001.0] * 3
    assert x.grad.tolist() == [10002.0] * 3


def test_no_grad_records_nothing_and_restores_the_flag():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2).exp().sum()
        assert not is_grad_enabled()
    assert not y.requires_grad and y._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    with pytest.raises(KeyError), no_grad():
        raise KeyError("the flag must come back even after an error")
    assert is_grad_enabled()
    assert (x * 2).requires_grad


def test_backward_needs_a_scalar_or_a_gradient():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"needs a scalar.*shape \(2, 3\)"):
        (x * 2).backward()


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(3)) * 2).sum().backward()


def test_leaf_gradients_add_up_over_two_backward_passes():
    a = randn((3, 4), 0)
    x, t = Tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)
    for scale in (1.0, -3.0):
        ((x * scale).tanh() * x).sum().backward()
        ((t * scale).tanh() * t).sum().backward()
        close(x.grad, t.grad)
    x.zero_grad()
    assert x.grad is None


def test_retain_graph_allows_a_second_backward_like_torch():
    a = randn((3,), 0)
    x, t = Tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)
    y, u = (x.exp() * x).sum(), (t.exp() * t).sum()
    y.backward(retain_graph=True)
    u.backward(retain_graph=True)
    y.backward()
    u.backward()
    close(x.grad, t.grad)


def test_backward_through_a_freed_graph_raises_like_torch():
    x = Tensor(np.ones(3), requires_grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (h * 2).sum().backward()  # silently stopping at h would leave x.grad too small
    loss = (x * 3).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()


def test_backward_on_a_leaf_accumulates_like_torch():
    x, t = Tensor(np.ones(3), requires_grad=True), torch.ones(3, requires_grad=True)
    for _ in range(2):
        x.backward(np.full(3, 2.0))
        t.backward(torch.full((3,), 2.0))
    close(x.grad, t.grad)


def test_leaf_gradients_are_private_writable_arrays():
    """As in torch, `p.grad *= c` (gradient clipping) changes that one gradient, nothing else."""
    a, b = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.ones((2, 3)), requires_grad=True)
    (a + b).sum().backward()  # a.grad and b.grad both come from one broadcast upstream gradient
    a.grad *= 0.5
    assert a.grad.tolist() == [[0.5] * 3] * 2 and b.grad.tolist() == [[1.0] * 3] * 2


def test_float32_stays_float32_through_every_op():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    img = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    b = Tensor(np.zeros(4, np.float32), requires_grad=True)
    labels = np.array([0, 5, 2, 1])
    bn1, bn2 = snn.BatchNorm(6), snn.BatchNorm(3)
    results = {
        "x * 2": x * 2, "x / 3.0": x / 3.0, "2 - x": 2 - x, "1.5 / x": 1.5 / x,
        "x + 0.1": x + 0.1, "x ** 2": x**2, "x ** -0.5": (x * x + 1) ** -0.5,
        "array * x": np.float32(2) * np.ones(6, np.float32) * x,
        "mean": x.mean(), "mean(0)": x.mean(axis=0), "sum": x.sum(axis=1), "max": x.max(),
        "exp": x.exp(), "log": (x * x + 1).log(), "relu": x.relu(), "sigmoid": x.sigmoid(),
        "tanh": x.tanh(), "log_softmax": x.log_softmax(), "matmul": x @ x.T,
        "reshape": x.reshape(2, 12), "getitem": x[np.array([0, 0, 3]), 1:],
        "dropout": dropout(x, 0.5), "cross_entropy": cross_entropy(x, labels),
        "batchnorm1d": bn1(x), "batchnorm2d": bn2(img),
        "conv2d": conv2d(img, w, b, stride=2, padding=1),
        "max_pool2d": max_pool2d(img, 3, 2, 1), "avg_pool2d": avg_pool2d(img, 3, 2, 1),
    }
    bn1.eval()
    bn2.eval()
    results.update({"batchnorm1d eval": bn1(x), "batchnorm2d eval": bn2(img)})
    wrong = {name: r.dtype for name, r in results.items() if r.dtype != np.float32}
    assert not wrong, f"upcast to float64: {wrong}"
    sum(r.sum() for r in results.values()).backward()
    for t in (x, img, w, b, bn1.weight, bn2.bias):
        assert t.grad.dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float32  # Python numbers: float32, like torch.tensor
    assert Tensor(np.ones(2)).dtype == np.float64  # arrays keep their dtype


# -- whole networks against dlcamp.models ------------------------------------------------------
NETWORKS = [("softmax", {}), ("mlp", {}), ("mlp", {"hidden": (64, 32), "dropout": 0.0}),
            ("lenet", {}), ("lenet-modern", {})]


def twins(name: str, kwargs: dict, seed: int = 0):
    """The scratch network and the PyTorch one from dlcamp.models, with the scratch weights."""
    snn.manual_seed(seed)
    scratch_net = create_scratch_model(name, **kwargs)
    torch_net = create_model(name, **kwargs)
    state = scratch_net.state_dict()
    assert set(state) == set(torch_net.state_dict())  # identical parameter and buffer names
    torch_net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return scratch_net, torch_net


def batch(seed: int, n: int = 16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


def losses(scratch_net, torch_net, x, y):
    loss = cross_entropy(scratch_net(Tensor(x)), y)
    ref = F.cross_entropy(torch_net(torch.from_numpy(x)), torch.from_numpy(y))
    return loss, ref


def assert_same_gradients(scratch_net, torch_net):
    torch_params = dict(torch_net.named_parameters())
    assert set(torch_params) == {name for name, _ in scratch_net.named_parameters()}
    for name, p in scratch_net.named_parameters():
        close(p.grad, torch_params[name].grad, **F32, err_msg=name)


@pytest.mark.parametrize(("name", "kwargs"), NETWORKS)
def test_network_loss_and_gradients_equal_torch(name, kwargs):
    scratch_net, torch_net = twins(name, kwargs)
    x, y = batch(1)
    loss, ref = losses(scratch_net, torch_net, x, y)
    assert loss.dtype == np.float32
    close(loss.data, ref, **F32)
    loss.backward()
    ref.backward()
    assert_same_gradients(scratch_net, torch_net)
    scratch_net.eval()
    torch_net.eval()
    with no_grad(), torch.no_grad():
        close(scratch_net(Tensor(x)).data, torch_net(torch.from_numpy(x)), **F32)


def test_dropout_network_in_eval_mode_equals_torch():
    scratch_net, torch_net = twins("mlp", {"hidden": (64, 32), "dropout": 0.5})
    scratch_net.eval()
    torch_net.eval()
    x, _ = batch(2)
    with no_grad(), torch.no_grad():
        close(scratch_net(Tensor(x)).data, torch_net(torch.from_numpy(x)), **F32)
    scratch_net.train()
    with no_grad(), torch.no_grad():  # dropout active in the scratch net only: outputs differ
        assert not np.allclose(scratch_net(Tensor(x)).data, torch_net(torch.from_numpy(x)))


def test_lenet_modern_training_steps_keep_batchnorm_state_equal_to_torch():
    """SGD steps in both engines: weights, running statistics and counters stay equal."""
    scratch_net, torch_net = twins("lenet-modern", {})
    opt = soptim.SGD(scratch_net.parameters(), lr=0.05, momentum=0.9)
    torch_opt = torch.optim.SGD(torch_net.parameters(), lr=0.05, momentum=0.9)
    for step in range(3):
        x, y = batch(10 + step)
        loss, ref = losses(scratch_net, torch_net, x, y)
        close(loss.data, ref, **F32)
        for o in (opt, torch_opt):
            o.zero_grad()
        loss.backward()
        ref.backward()
        for o in (opt, torch_opt):
            o.step()
    torch_state = torch_net.state_dict()
    for key, value in scratch_net.state_dict().items():
        close(value, torch_state[key], **F32, err_msg=key)
    assert int(scratch_net.state_dict()["1.num_batches_tracked"]) == 3
    scratch_net.eval()
    torch_net.eval()
    x, _ = batch(20)
    with no_grad(), torch.no_grad():
        close(scratch_net(Tensor(x)).data, torch_net(torch.from_numpy(x)), **F32)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 6)])
def test_batchnorm_equals_torch_batchnorm(shape):
    scratch_bn = snn.BatchNorm(shape[1])
    torch_bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(shape[1])
    rng = np.random.default_rng(0)
    with torch.no_grad():  # non-trivial affine parameters in both
        torch_bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, shape[1]).astype("f4")))
        torch_bn.bias.copy_(torch.from_numpy(rng.standard_normal(shape[1]).astype("f4")))
    scratch_bn.load_state_dict(torch_bn.state_dict())
    for step in range(3):
        a = (rng.standard_normal(shape) * 3 + step).astype(np.float32)
        x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        out, ref = scratch_bn(x), torch_bn(t)
        close(out.data, ref, **F32)
        G = rng.standard_normal(shape).astype(np.float32)
        out.backward(G)
        ref.backward(torch.from_numpy(G))
        close(x.grad, t.grad, **F32)
        close(scratch_bn.weight.grad, torch_bn.weight.grad, **F32)
        close(scratch_bn.bias.grad, torch_bn.bias.grad, **F32)
        scratch_bn.zero_grad()
        torch_bn.zero_grad()
    for key, value in torch_bn.state_dict().items():
        close(scratch_bn.state_dict()[key], value, **F32, err_msg=key)
    scratch_bn.eval()
    torch_bn.eval()
    a = rng.standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        close(scratch_bn(Tensor(a)).data, torch_bn(torch.from_numpy(a)), **F32)


@pytest.mark.parametrize(("name", "kwargs"), NETWORKS)
def test_torch_weights_load_into_the_scratch_network(name, kwargs):
    torch.manual_seed(0)
    torch_net = create_model(name, **kwargs)
    if name == "lenet-modern":  # a few batches so that the running statistics are not 0 and 1
        for seed in range(3):
            torch_net(torch.from_numpy(batch(seed)[0] * 2 + 1))
    snn.manual_seed(1)
    scratch_net = create_scratch_model(name, **kwargs)
    scratch_net.load_state_dict(torch_net.state_dict())
    scratch_net.eval()
    torch_net.eval()
    x, _ = batch(5)
    with no_grad(), torch.no_grad():
        close(scratch_net(Tensor(x)).data, torch_net(torch.from_numpy(x)), **F32)


def test_load_state_dict_refuses_weights_that_do_not_fit():
    snn.manual_seed(0)
    net = snn.lenet_modern()
    before = net.state_dict()
    snn.manual_seed(1)
    other = snn.lenet_modern().state_dict()  # fits, but holds different numbers
    with pytest.raises(CheckpointError, match=r"missing \['0.weight'\]"):
        net.load_state_dict({k: v for k, v in other.items() if k != "0.weight"})
    with pytest.raises(CheckpointError, match=r"unexpected \['99.bias'\]"):
        net.load_state_dict({**other, "99.bias": np.zeros(3)})
    with pytest.raises(CheckpointError, match=r"4.weight: expected shape \(16, 6, 5, 5\)"):
        net.load_state_dict({**other, "4.weight": np.zeros((16, 6, 3, 3))})
    with pytest.raises(CheckpointError, match=r"5.running_mean: expected shape \(16,\)"):
        net.load_state_dict({**other, "5.running_mean": np.zeros(1)})  # would broadcast
    for key, value in net.state_dict().items():  # a refused checkpoint changed nothing
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    net.load_state_dict(other)
    np.testing.assert_array_equal(net.state_dict()["0.weight"], other["0.weight"])


# -- optimisers against torch.optim ------------------------------------------------------------
OPTIMIZERS = {
    "sgd": (lambda p: soptim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "momentum": (lambda p: soptim.SGD(p, lr=0.1, momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "nesterov": (lambda p: soptim.SGD(p, lr=0.1, momentum=0.8, nesterov=True),
                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True)),
    "sgd-wd": (lambda p: soptim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
               lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05)),
    "nesterov-wd": (lambda p: soptim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=0.1),
                    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                              weight_decay=0.1)),
    "adam": (lambda p: soptim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-betas": (lambda p: soptim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6),
                   lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    "adam-wd": (lambda p: soptim.Adam(p, lr=0.01, weight_decay=0.1),
                lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1)),
    "adamw": (lambda p: soptim.Adam(p, lr=0.01, weight_decay=0.1, decoupled=True),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    "adamw-helper": (lambda p: soptim.AdamW(p, lr=0.01),
                     lambda p: torch.optim.AdamW(p, lr=0.01)),
}


def run_both(name: str, steps: int = 6, lr_after: dict[int, float] | None = None):
    """Same start, same gradients at every step; returns both parameter lists."""
    rng = np.random.default_rng(0)
    starts = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), ()]]
    params = [snn.Parameter(a) for a in starts]
    torch_params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in starts]
    make, make_torch = OPTIMIZERS[name]
    opt, torch_opt = make(params), make_torch(torch_params)
    for step in range(steps):
        if lr_after and step in lr_after:
            opt.param_groups[0]["lr"] = torch_opt.param_groups[0]["lr"] = lr_after[step]
        for p, t in zip(params, torch_params, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, t.grad = g, torch.from_numpy(g.copy())
        opt.step()
        torch_opt.step()
    return params, torch_params


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_equal_torch_optim(name):
    params, torch_params = run_both(name)
    for p, t in zip(params, torch_params, strict=True):
        assert p.dtype == np.float32 and p.shape == tuple(t.shape)  # a 0-d one stays 0-d
        close(p.data, t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_changing_the_learning_rate_takes_effect(name):
    params, torch_params = run_both(name, lr_after={2: 0.001, 4: 0.3})
    for p, t in zip(params, torch_params, strict=True):
        close(p.data, t, rtol=1e-5, atol=1e-6)
    p = snn.Parameter(np.ones(3))
    opt = soptim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    p.grad = np.ones(3, np.float32)
    opt.step()
    assert p.data.tolist() == [1.0] * 3 and opt.lr == 0.0


def test_step_skips_parameters_without_gradient_and_zero_grad_clears():
    p, q = snn.Parameter(np.ones(2)), snn.Parameter(np.ones(2))
    opt = soptim.Adam([p, q], lr=0.1)
    p.grad = np.ones(2, np.float32)
    opt.step()
    assert q.data.tolist() == [1.0, 1.0] and p.data[0] < 1
    opt.zero_grad()
    assert p.grad is None and q.grad is None


@pytest.mark.parametrize("make", [
    lambda p: soptim.SGD(p, lr=-0.1),
    lambda p: soptim.SGD(p, lr=0.1, momentum=-0.5),
    lambda p: soptim.SGD(p, lr=0.1, weight_decay=-1e-4),
    lambda p: soptim.Adam(p, lr=-1e-3),
    lambda p: soptim.Adam(p, betas=(1.0, 0.999)),
    lambda p: soptim.Adam(p, betas=(0.9, -0.1)),
    lambda p: soptim.SGD([], lr=0.1),
])
def test_bad_optimizer_settings_raise(make):
    with pytest.raises(ValueError, match="lr|beta|no parameters"):
        make([snn.Parameter(np.ones(2))])


def test_optimizer_state_must_match_the_parameters():
    opt = soptim.Adam([snn.Parameter(np.ones(2))])
    two = soptim.Adam([snn.Parameter(np.ones(2)), snn.Parameter(np.ones(3))])
    with pytest.raises(ValueError, match="state for 2 parameters"):
        opt.load_state_dict(two.state_dict())


# -- it learns ---------------------------------------------------------------------------------
def test_scratch_mlp_learns_fashion_mnist():
    data = load_dataset("fashion-mnist", "train").subset(2000, 0)
    x = ((data.images.numpy().astype(np.float32) / 255 - data.mean) / data.std)
    y = data.labels.numpy()
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
    snn.manual_seed(0)
    net = snn.mlp(hidden=(128,))
    opt = soptim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    history = []
    for _ in range(300):
        idx = rng.choice(len(y_train), 64, replace=False)
        loss = cross_entropy(net(Tensor(x_train[idx])), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert np.mean(history[:5]) > 1.5  # starts near log(10) = 2.3
    assert np.mean(history[-20:]) < 0.35 * np.mean(history[:5])
    net.eval()
    with no_grad():
        accuracy = (net(Tensor(x_test)).argmax(axis=1) == y_test).mean()
    assert accuracy > 0.75, f"held-out accuracy {accuracy:.3f}"


# -- bad input is reported ---------------------------------------------------------------------
def test_bad_input_raises_value_errors_that_name_the_problem():
    logits = Tensor(np.zeros((4, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"logits \(B, classes\) and labels \(B,\)"):
        cross_entropy(logits, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"logits \(B, classes\)"):
        cross_entropy(Tensor(np.zeros(3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
        cross_entropy(logits, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
        cross_entropy(logits, np.array([0, -1, 2, 2]))
    with pytest.raises(ValueError, match="labels must be integers"):
        cross_entropy(logits, np.array([0.0, 1.0, 2.0, 2.0]))
    with pytest.raises(ValueError, match="matmul needs at least 2-D"):
        Tensor(np.ones(3)) @ Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match="matmul needs at least 2-D"):
        Tensor(np.ones((2, 3))) @ np.ones(3)
    img = Tensor(np.ones((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="has 3 channels, the kernel expects 2"):
        conv2d(img, Tensor(np.ones((4, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d wants a batch of images \(N, C, H, W\)"):
        conv2d(Tensor(np.ones((3, 8, 8))), Tensor(np.ones((4, 3, 3, 3))))
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(img, Tensor(np.ones((4, 3, 9, 9))))
    for pool in (max_pool2d, avg_pool2d):
        with pytest.raises(ValueError, match="a 9x9 window does not fit into a 8x8 input"):
            pool(img, 9)
        with pytest.raises(ValueError, match="batch of images"):
            pool(Tensor(np.ones((8, 8))), 2)
    with pytest.raises(ValueError, match=r"BatchNorm wants \(N, C\) or \(N, C, H, W\)"):
        snn.BatchNorm(3)(Tensor(np.ones((2, 3, 4))))
