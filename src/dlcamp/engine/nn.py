"""Layers for the NumPy engine, shaped like torch.nn so that weights move between the two.

A Module is an object whose attributes are parameters, buffers and other modules. Parameter
names follow PyTorch's (`0.weight`, `3.bias`, `1.running_mean`), so `state_dict()` of a scratch
network loads into the same network built with torch.nn, and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dlcamp.core.errors import CheckpointError
from dlcamp.core.shapes import stack_output_size
from dlcamp.engine import conv
from dlcamp.engine.tensor import Tensor, dropout

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator used for initial weights and dropout masks."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng() -> np.random.Generator:
    return _rng


def get_rng_state() -> dict:
    """The generator's state as plain dicts, strings and ints: a checkpoint can hold it."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Continue the random stream where `get_rng_state()` was taken (a resumed run).

    Raises CheckpointError when `state` is not the state of this engine's generator.
    """
    global _rng
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"not a state of the NumPy engine's random generator: {e}") from e
    _rng = rng


class Parameter(Tensor):
    """A tensor that a Module owns and an optimiser updates: it always requires a gradient."""

    def __init__(self, data: np.ndarray) -> None:
        # np.array, not np.ascontiguousarray: that one turns a 0-d array into shape (1,)
        super().__init__(np.array(data, dtype=np.float32, order="C"), requires_grad=True)


class Module:
    training = True

    def __call__(self, *args: Tensor) -> Tensor:
        return self.forward(*args)

    def forward(self, *args: Tensor) -> Tensor:
        raise NotImplementedError

    def children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """Arrays that are state but not trained (BatchNorm's running statistics)."""
        for name in getattr(self, "buffer_names", ()):
            yield prefix + name, getattr(self, name)
        for name, child in self.children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: np.array(b, copy=True) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays in by name; missing, extra or wrongly shaped entries are refused."""
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        missing = sorted((set(params) | set(buffers)) - set(state))
        extra = sorted(set(state) - set(params) - set(buffers))
        if missing or extra:
            raise CheckpointError(f"weights do not fit this network: missing {missing}, "
                                  f"unexpected {extra}")
        arrays = {}  # check everything first: a refused checkpoint changes nothing
        for name, current in [*params.items(), *buffers.items()]:
            # np.asarray first: np.array(torch_tensor, dtype=...) warns (no `copy` in __array__)
            value = np.array(np.asarray(state[name]), dtype=current.dtype)  # an owned copy
            if value.shape != current.shape:  # buffers too: a (1,) running_mean broadcasts
                raise CheckpointError(f"{name}: expected shape {current.shape}, got {value.shape}")
            arrays[name] = value
        for name, p in params.items():
            p.data = arrays[name]
        for name in buffers:
            owner, attr = self._owner(name)
            setattr(owner, attr, arrays[name])

    def _owner(self, dotted: str) -> tuple[Module, str]:
        module, *path = self, *dotted.split(".")
        for part in path[:-1]:
            module = dict(module.children())[part]
        return module, path[-1]


class Sequential(Module):
    """Layers applied one after the other; they are named 0, 1, 2, ... as in PyTorch."""

    def __init__(self, *layers: Module) -> None:
        self.layers = list(layers)

    def children(self) -> Iterator[tuple[str, Module]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _uniform(bound: float, *shape: int) -> np.ndarray:
    return _rng.uniform(-bound, bound, size=shape).astype(np.float32)


class Linear(Module):
    """y = x W^T + b, initialised like PyTorch: uniform in +-1/sqrt(fan_in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(bound, out_features, in_features))
        self.bias = Parameter(_uniform(bound, out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        bound = 1.0 / np.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = Parameter(_uniform(bound, out_channels, in_channels, kernel_size,
                                         kernel_size))
        self.bias = Parameter(_uniform(bound, out_channels)) if bias else None
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return conv.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class BatchNorm(Module):
    """Batch normalisation over (N, C) or (N, C, H, W), written with ordinary tensor ops.

    Training: normalise with the batch's mean and variance and update the running averages.
    Evaluation: normalise with the running averages. Autograd differentiates it for us.
    """

    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.weight = Parameter(np.ones(num_features))
        self.bias = Parameter(np.zeros(num_features))
        self.running_mean = np.zeros(num_features, dtype=np.float32)
        self.running_var = np.ones(num_features, dtype=np.float32)
        self.num_batches_tracked = np.array(0, dtype=np.int64)
        self.eps, self.momentum = eps, momentum

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (2, 4):
            raise ValueError(f"BatchNorm wants (N, C) or (N, C, H, W), got shape {x.shape}")
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if self.training:
            mean = x.mean(axis=axes, keepdims=True)
            centred = x - mean
            var = (centred * centred).mean(axis=axes, keepdims=True)  # biased, as in the paper
            n = x.size // x.shape[1]
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean.data.reshape(-1)
            unbiased = var.data.reshape(-1) * (n / max(n - 1, 1))
            self.running_var = (1 - m) * self.running_var + m * unbiased
            self.num_batches_tracked = self.num_batches_tracked + 1
            x_hat = centred * (var + self.eps) ** -0.5
        else:
            scale = (self.running_var + self.eps) ** -0.5
            x_hat = (x - self.running_mean.reshape(shape)) * scale.reshape(shape)
        return x_hat * self.weight.reshape(shape) + self.bias.reshape(shape)


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Flatten(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class Dropout(Module):
    def __init__(self, p: float = 0.5) -> None:
        dropout(Tensor(np.zeros(1)), p, training=False)  # checks p now, not at the first batch
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, _rng)


class MaxPool2d(Module):
    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return conv.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    def forward(self, x: Tensor) -> Tensor:
        return conv.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


# -- the networks of the course, laid out exactly like dlcamp.models' PyTorch versions ------
def softmax_regression(num_classes: int = 10, in_channels: int = 1,
                       image_size: int = 28) -> Sequential:
    return Sequential(Flatten(), Linear(in_channels * image_size**2, num_classes))


def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: Sequence[int] = (256,), dropout: float = 0.0) -> Sequential:
    """Flatten, then Linear -> ReLU (-> Dropout) per hidden layer, then a linear head."""
    layers: list[Module] = [Flatten()]
    width = in_channels * image_size**2
    for h in hidden:
        layers += [Linear(width, h), ReLU()]
        if dropout:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Linear(width, num_classes))
    return Sequential(*layers)


# (kernel, padding, stride) of LeNet's conv(5, pad 2) -> pool 2 -> conv(5) -> pool 2
LENET_LAYERS = ((5, 2, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2))


def _lenet_side(image_size: int) -> int:
    """Side of LeNet's last feature maps (5 for 28x28 images)."""
    try:
        return stack_output_size(image_size, LENET_LAYERS)
    except ValueError as e:
        raise ValueError(f"LeNet needs images of at least 12x12 pixels, got {image_size}") from e


def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> Sequential:
    """The book's LeNet-5: sigmoid and average pooling."""
    side = _lenet_side(image_size)
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=2), Sigmoid(), AvgPool2d(2),
        Conv2d(6, 16, 5), Sigmoid(), AvgPool2d(2), Flatten(),
        Linear(16 * side * side, 120), Sigmoid(), Linear(120, 84), Sigmoid(),
        Linear(84, num_classes))


def lenet_modern(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 width: int = 1) -> Sequential:
    """LeNet with batch norm, ReLU and max pooling (dlcamp's `lenet-modern`)."""
    side, c1, c2 = _lenet_side(image_size), 6 * width, 16 * width
    return Sequential(
        Conv2d(in_channels, c1, 5, padding=2, bias=False), BatchNorm(c1), ReLU(), MaxPool2d(2),
        Conv2d(c1, c2, 5, bias=False), BatchNorm(c2), ReLU(), MaxPool2d(2), Flatten(),
        Linear(c2 * side * side, 120, bias=False), BatchNorm(120), ReLU(),
        Linear(120, 84, bias=False), BatchNorm(84), ReLU(),
        Linear(84, num_classes))

