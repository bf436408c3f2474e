"""A tensor with reverse-mode automatic differentiation, written on NumPy.

Every operation does two things: it computes its result with NumPy (the *forward* pass) and,
if any input needs a gradient, it remembers its inputs and a small function that turns the
gradient of the result into gradients of the inputs (the *backward* rule). Results therefore
form a directed acyclic graph, the computational graph. `loss.backward()` walks that graph
once, from the loss back to the leaves, in reverse topological order, and applies the chain
rule at every node:

    x = Tensor(np.random.randn(3, 4), requires_grad=True)
    y = (x * 2).sum()
    y.backward()        # x.grad == 2 everywhere

The engine works on whole arrays, not single numbers, so one Python call moves millions of
numbers: that is what makes it fast enough to train real networks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

ArrayLike = Any
_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block no graph is recorded (evaluation, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _as_array(data: ArrayLike, dtype: Any = None) -> np.ndarray:
    """Arrays keep their dtype; Python numbers and lists become float32 (PyTorch's default).

    Keeping a float64 array float64 lets the gradient checks run in double precision; making
    `x * 2` multiply by a float32 2 keeps float32 tensors float32.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray | np.generic):  # np.float64(..) from a full reduction too
        return np.asarray(data)
    array = np.asarray(data)
    return array.astype(np.float32) if array.dtype.kind in "biuf" else array


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` back down to `shape`: the backward rule of broadcasting.

    If x of shape (3, 1) was broadcast to (2, 3, 4), each x element was used 2 * 4 times, so
    its gradient is the sum over the new leading axis and over the stretched axis.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _freed(grad: np.ndarray) -> None:
    """The backward rule of a node whose graph an earlier backward() freed."""
    raise RuntimeError("backward() through a graph that an earlier backward() already freed; "
                       "pass retain_graph=True to the first backward() to go through it twice")


class Tensor:
    """An n-dimensional array plus what is needed to differentiate through it."""

    __array_priority__ = 100  # numpy_array * tensor calls Tensor.__rmul__, not NumPy's loop

    def __init__(self, data: ArrayLike, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _as_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], None] | None = None
        self.op = ""  # name of the operation that made this tensor (for printing graphs)

    # -- building the graph -------------------------------------------------------------
    @staticmethod
    def make(data: np.ndarray, parents: tuple[Tensor, ...], op: str,
             backward: Callable[[np.ndarray], None]) -> Tensor:
        """A new result; it joins the graph only if grad is on and some parent needs a grad."""
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents, out._backward, out.op = parents, backward, op
        return out

    def accumulate(self, grad: np.ndarray) -> None:
        """Add an incoming gradient (a tensor used twice gets the sum of both paths)."""
        if not self.requires_grad:
            return
        grad = unbroadcast(grad, self.data.shape)
        if self.grad is None:
            # a leaf gets its own writable copy: the incoming array may be a read-only
            # broadcast view or shared with another input (a + b), and `p.grad *= c` must not
            # reach either
            self.grad = grad if self._backward is not None else np.array(grad)
        else:
            self.grad = self.grad + grad

    def backward(self, grad: ArrayLike | None = None, retain_graph: bool = False) -> None:
        """Fill `.grad` of every leaf this tensor depends on (d self / d leaf)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: did you "
                               "forget requires_grad=True, or compute it under no_grad()?")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar, this tensor "
                                   f"has shape {self.shape}; pass grad= of the same shape")
            grad = np.ones_like(self.data)
        order = self.topological_order()
        for node in order:  # intermediate gradients from an earlier call must not leak in
            if node._backward is not None:
                node.grad = None
        seed = np.broadcast_to(_as_array(grad, self.data.dtype), self.shape).copy()
        if self._backward is None:  # a leaf: its gradient adds up, as for any other leaf
            self.accumulate(seed)
            return
        self.grad = seed
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)
                if not retain_graph:  # free the graph as PyTorch does: memory goes back
                    node._backward, node._parents = _freed, ()

    def topological_order(self) -> list[Tensor]:
        """Nodes so that every node comes after all its inputs (iterative depth-first)."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)
        return order

    # -- plain properties -----------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        extra = f", op={self.op!r}" if self.op else (", requires_grad" if self.requires_grad
                                                     else "")
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}{extra})"

    # -- elementwise arithmetic (with broadcasting) ---------------------------------------
    def __add__(self, other: ArrayLike) -> Tensor:
        other = lift(other, like=self)

        def backward(g: np.ndarray) -> None:
            self.accumulate(g)
            other.accumulate(g)

        return Tensor.make(self.data + other.data, (self, other), "add", backward)

    def __mul__(self, other: ArrayLike) -> Tensor:
        other = lift(other, like=self)

        def backward(g: np.ndarray) -> None:
            self.accumulate(g * other.data)
            other.accumulate(g * self.data)

        return Tensor.make(self.data * other.data, (self, other), "mul", backward)

    def __truediv__(self, other: ArrayLike) -> Tensor:
        other = lift(other, like=self)

        def backward(g: np.ndarray) -> None:
            self.accumulate(g / other.data)
            other.accumulate(-g * self.data / (other.data * other.data))

        return Tensor.make(self.data / other.data, (self, other), "div", backward)

    def __neg__(self) -> Tensor:
        return Tensor.make(-self.data, (self,), "neg", lambda g: self.accumulate(-g))

    def __sub__(self, other: ArrayLike) -> Tensor:
        return self + (-lift(other, like=self))

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor):
            raise TypeError("only a number can be the exponent here (x ** 2, x ** -0.5)")
        k = self.data.dtype.type(exponent)

        def backward(g: np.ndarray) -> None:
            self.accumulate(g * k * self.data ** (k - 1))

        return Tensor.make(self.data**k, (self,), "pow", backward)

    __radd__ = __add__
    __rmul__ = __mul__

    def __rsub__(self, other: ArrayLike) -> Tensor:
        return lift(other, like=self) - self

    def __rtruediv__(self, other: ArrayLike) -> Tensor:
        return lift(other, like=self) / self

    # -- matrix product -------------------------------------------------------------------
    def __matmul__(self, other: ArrayLike) -> Tensor:
        """(..., n, k) @ (..., k, m); leading (batch) axes broadcast."""
        other = lift(other)
        a, b = self.data, other.data
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs at least 2-D operands, got {a.shape} @ {b.shape}; "
                             "reshape a vector to (1, n) or (n, 1)")

        def backward(g: np.ndarray) -> None:
            # C = A B  =>  dA = dC B^T,  dB = A^T dC  (then sum over broadcast batch axes)
            self.accumulate(g @ np.swapaxes(b, -1, -2))
            other.accumulate(np.swapaxes(a, -1, -2) @ g)

        return Tensor.make(a @ b, (self, other), "matmul", backward)

    def __rmatmul__(self, other: ArrayLike) -> Tensor:
        return lift(other) @ self

    # -- shape operations: the gradient is moved back, never changed ----------------------
    def reshape(self, *shape: Any) -> Tensor:
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        old = self.shape
        return Tensor.make(self.data.reshape(shape), (self,), "reshape",
                           lambda g: self.accumulate(g.reshape(old)))

    def flatten(self, start: int = 1) -> Tensor:
        """Keep the first `start` axes, merge the rest: (B, C, H, W) -> (B, C*H*W)."""
        return self.reshape(*self.shape[:start], -1)

    def transpose(self, *axes: int) -> Tensor:
        axes = tuple(range(self.ndim))[::-1] if not axes else axes
        inverse = tuple(np.argsort(axes))
        return Tensor.make(self.data.transpose(axes), (self,), "transpose",
                           lambda g: self.accumulate(g.transpose(inverse)))

    T = property(lambda self: self.transpose())

    def __getitem__(self, index: Any) -> Tensor:
        index = index.data if isinstance(index, Tensor) else index

        def backward(g: np.ndarray) -> None:
            full = np.zeros_like(self.data)
            np.add.at(full, index, g)  # add.at: an element picked twice gets both gradients
            self.accumulate(full)

        return Tensor.make(self.data[index], (self,), "getitem", backward)

    # -- reductions -----------------------------------------------------------------------
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        def backward(g: np.ndarray) -> None:
            if not keepdims and axis is not None:
                g = np.expand_dims(g, axis)
            self.accumulate(np.broadcast_to(g, self.shape))

        return Tensor.make(self.data.sum(axis=axis, keepdims=keepdims), (self,), "sum", backward)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        axes = range(self.ndim) if axis is None else np.atleast_1d(axis)
        n = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis, keepdims) * (1.0 / n)

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Maximum; ties share the gradient equally (as torch.amax does)."""
        out = self.data.max(axis=axis, keepdims=True)

        def backward(g: np.ndarray) -> None:
            g = g if keepdims or axis is None else np.expand_dims(g, axis)
            winners = self.data == out
            ties = winners.sum(axis=axis, keepdims=True, dtype=self.dtype)  # int would upcast
            self.accumulate(winners * (g / ties))

        value = out if keepdims else (out.reshape(()) if axis is None else out.squeeze(axis))
        return Tensor.make(value, (self,), "max", backward)

    # -- elementwise functions ------------------------------------------------------------
    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor.make(out, (self,), "exp", lambda g: self.accumulate(g * out))

    def log(self) -> Tensor:
        return Tensor.make(np.log(self.data), (self,), "log",
                           lambda g: self.accumulate(g / self.data))

    def relu(self) -> Tensor:
        mask = self.data > 0
        return Tensor.make(self.data * mask, (self,), "relu",
                           lambda g: self.accumulate(g * mask))

    def sigmoid(self) -> Tensor:
        # 1 / (1 + e^-x) overflows for very negative x; tanh form is stable everywhere
        out = 0.5 * (np.tanh(0.5 * self.data) + 1.0)
        return Tensor.make(out, (self,), "sigmoid",
                           lambda g: self.accumulate(g * out * (1.0 - out)))

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor.make(out, (self,), "tanh",
                           lambda g: self.accumulate(g * (1.0 - out * out)))

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - logsumexp(x): subtracting the max first keeps exp() from overflowing."""
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

        def backward(g: np.ndarray) -> None:
            # d/dx_j of (x_i - logsumexp x) = [i == j] - softmax_j
            self.accumulate(g - np.exp(out) * g.sum(axis=axis, keepdims=True))

        return Tensor.make(out, (self,), "log_softmax", backward)

    # comparisons give plain boolean arrays: they have no gradient
    def __gt__(self, other: ArrayLike) -> np.ndarray:
        return self.data > lift(other).data

    def __lt__(self, other: ArrayLike) -> np.ndarray:
        return self.data < lift(other).data

    def argmax(self, axis: int = -1) -> np.ndarray:
        return self.data.argmax(axis=axis)


def lift(x: ArrayLike, like: Tensor | None = None) -> Tensor:
    """Numbers and arrays become constant tensors (no gradient); tensors pass through.

    With `like`, a Python number takes like's float dtype: `x * 0.1` is exact for float64 x
    and stays float32 for float32 x.
    """
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, int | float) and like.dtype.kind == "f":
        return Tensor(x, dtype=like.dtype)
    return Tensor(x)


def tensor(data: ArrayLike, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def cross_entropy(logits: Tensor, labels: ArrayLike) -> Tensor:
    """Mean of -log softmax(logits)[label]; one fused node with the classic gradient.

    The gradient with respect to the logits is (softmax - one_hot(label)) / batch_size, which
    is both cheaper and more accurate than chaining log_softmax, indexing and mean.
    """
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy wants logits (B, classes) and labels (B,), got "
                         f"{logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu" or labels.min(initial=0) < 0 or \
            labels.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"labels must be integers in [0, {logits.shape[1]}), got "
                         f"{labels.dtype} values {np.unique(labels)[:10]}")
    x = logits.data
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    loss = -log_probs[rows, labels].mean()

    def backward(g: np.ndarray) -> None:
        d = np.exp(log_probs)        # softmax
        d[rows, labels] -= 1.0       # minus the one-hot target
        logits.accumulate(d * (g / len(labels)))

    return Tensor.make(np.asarray(loss, dtype=x.dtype), (logits,), "cross_entropy", backward)


def dropout(x: Tensor, p: float, training: bool = True,
            rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    rng = rng or np.random.default_rng()
    mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * mask
