"""Pieces the CNN zoo shares: laptop recipes, shape arithmetic, conv layers, stems,
initialisation, and batch normalisation written by hand.

Batch norm is here twice: `batch_norm` / `BatchNormScratch` by hand (the book's "from
scratch" version, checked against torch in tests/test_zoo.py), and torch's nn.BatchNorm2d
inside `conv_bn` / `conv_bn_relu`, which the zoo's models use for speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.core.shapes import stack_output_size

STEMS = ("book", "small")
BOOK_MIN_SIZE = 96  # stem="auto": the book's stem from this size up (the book uses 96 and 224)

# Laptop recipes (28x28 Fashion-MNIST, 2 CPU cores), each model adds width and epochs.
# With batch norm: dlcamp's default `cnn` recipe (SGD + Nesterov, one-cycle).
BN_RECIPE = Recipe(batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                   weight_decay=5e-4, schedule="onecycle", warmup=0.25, label_smoothing=0.1,
                   augment="flip")
# Without batch norm (AlexNet, VGG, NiN, GoogLeNet) SGD at that pace stalls or diverges in
# the first epoch; AdamW with a one-cycle warm-up trains all four.
ADAMW_RECIPE = BN_RECIPE.replace(optimizer="adamw", lr=1e-3, weight_decay=0.05)


# -- shapes and widths --------------------------------------------------------------------
def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


def pick_stem(stem: str, image_size: int) -> str:
    """'book' | 'small'; 'auto' picks the book's stem for images of 96 pixels and more."""
    if stem == "auto":
        return "book" if image_size >= BOOK_MIN_SIZE else "small"
    if stem not in STEMS:
        raise ValueError(f"stem must be 'auto', 'book' or 'small', got {stem!r}")
    return stem


def check_sizes(width: float, image_size: int) -> None:
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")


def too_small(model: str, image_size: int, stem: str) -> ValueError:
    fix = "larger images (resize)" + (" or stem='small'" if stem == "book" else "")
    return ValueError(f"{model} with the {stem} stem shrinks {image_size}x{image_size} images "
                      f"to nothing; use {fix}")


# -- layers -------------------------------------------------------------------------------
def conv_relu(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
              padding: int | None = None) -> list[nn.Module]:
    """Convolution (with bias) and ReLU: the building block of the pre-batch-norm networks."""
    padding = kernel_size // 2 if padding is None else padding
    return [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), nn.ReLU(inplace=True)]


def conv_bn(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
            padding: int | None = None) -> list[nn.Module]:
    """Convolution without bias (batch norm's shift replaces it), then batch norm."""
    padding = kernel_size // 2 if padding is None else padding
    return [nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(c_out)]


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None) -> list[nn.Module]:
    return [*conv_bn(c_in, c_out, kernel_size, stride, padding), nn.ReLU(inplace=True)]


def bn_stem(c_in: int, c_out: int, stem: str, bias: bool = False) -> nn.Sequential:
    """Stem of the batch-norm era (ResNet, DenseNet).

    book:  7x7 conv stride 2 -> BN -> ReLU -> 3x3 max pool stride 2 (a quarter of the side);
    small: 3x3 conv stride 1 -> BN -> ReLU (28-64 pixel images keep their resolution).
    """
    if stem == "book":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 7, 2, 3, bias=bias), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def bn_stem_side(image_size: int, stem: str) -> int:
    """Side after `bn_stem`: the book's stem divides it by about 4, the small one keeps it."""
    if stem == "book":  # 7x7 conv, padding 3, stride 2; 3x3 max pool, padding 1, stride 2
        return stack_output_size(image_size, [(7, 3, 2), (3, 1, 2)])
    return image_size


# -- batch normalisation from scratch -----------------------------------------------------
def batch_norm(X: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
               moving_mean: torch.Tensor, moving_var: torch.Tensor, eps: float = 1e-5,
               momentum: float = 0.1, training: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch normalisation by hand: returns (Y, new moving_mean, new moving_var).

    X is (B, F) after a linear layer or (B, C, H, W) after a convolution; statistics are per
    feature / per channel. `momentum` follows torch: the weight of the *new* batch statistic
    (the book writes momentum=0.9 for the weight of the old value; it is the same update).
    Training normalises with the batch's biased variance but, like torch, keeps a running
    average of the unbiased one (n / (n - 1) times larger). Evaluation uses the running values.
    """
    if X.dim() not in (2, 4):
        raise ValueError(f"batch_norm expects (B, F) or (B, C, H, W) input, got {tuple(X.shape)}")
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    shape = (1, -1) if X.dim() == 2 else (1, -1, 1, 1)  # broadcast per feature / channel
    if not training:
        X_hat = (X - moving_mean.view(shape)) / torch.sqrt(moving_var.view(shape) + eps)
    else:
        n = X.numel() // X.shape[1]  # values averaged per feature / channel
        if n < 2:
            raise ValueError("batch norm in training needs more than one value per channel")
        mean = X.mean(dim=dims, keepdim=True)                # (1, C) or (1, C, 1, 1)
        var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)  # biased: divides by n
        X_hat = (X - mean) / torch.sqrt(var + eps)
        with torch.no_grad():  # the running averages are statistics, not part of the graph
            moving_mean = (1 - momentum) * moving_mean + momentum * mean.flatten()
            moving_var = (1 - momentum) * moving_var + momentum * var.flatten() * n / (n - 1)
    Y = gamma.view(shape) * X_hat + beta.view(shape)
    return Y, moving_mean, moving_var


class BatchNormScratch(nn.Module):
    """The book's BatchNorm layer: `num_dims` 2 after a linear layer, 4 after a convolution.

    Same results as nn.BatchNorm1d / nn.BatchNorm2d (outputs, gradients, running statistics);
    the names follow the book: gamma (scale), beta (shift), moving_mean, moving_var.
    """

    def __init__(self, num_features: int, num_dims: int = 4, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        if num_dims not in (2, 4):
            raise ValueError(f"num_dims must be 2 (fully connected) or 4 (conv), got {num_dims}")
        self.num_dims, self.eps, self.momentum = num_dims, eps, momentum
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("moving_mean", torch.zeros(num_features))
        self.register_buffer("moving_var", torch.ones(num_features))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != self.num_dims:
            raise ValueError(f"expected {self.num_dims}-d input, got shape {tuple(X.shape)}")
        Y, mean, var = batch_norm(X, self.gamma, self.beta, self.moving_mean, self.moving_var,
                                  self.eps, self.momentum, self.training)
        if self.training:
            self.moving_mean.copy_(mean)
            self.moving_var.copy_(var)
        return Y

    def extra_repr(self) -> str:
        return f"{len(self.gamma)}, num_dims={self.num_dims}, momentum={self.momentum}"


# -- initialisation -----------------------------------------------------------------------
INITS = ("he", "xavier", "torch")


class AvgPool2d(nn.AvgPool2d):
    """nn.AvgPool2d(k) (stride k, no padding) that, when training on a CPU, runs as a depthwise
    convolution with every weight 1/k^2: the same averages, computed by oneDNN instead of
    ATen's pooling loop.

    (B, C, H, W) -> (B, C, H // k, W // k). For LeNet's first pooling (256 x 6 x 28 x 28,
    channels-last) forward + backward took 1.96 ms instead of 3.77 ms on an AVX2 CPU (1.9x);
    LeNet's training step became 10-20% faster (bench/throughput.py). In eval mode and on
    GPUs it is nn.AvgPool2d itself (so FLOP counts in eval mode see a pooling layer, not a
    convolution). The printed layer is the same.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if not self.training or x.device.type != "cpu" or x.dim() != 4:
            return super().forward(x)
        c = x.shape[1]
        weight = torch.full((c, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
        return F.conv2d(x, weight, stride=k, groups=c)  # (B, C, H // k, W // k)


class FlipAveraged(nn.Sequential):
    """An nn.Sequential classifier that, in evaluation mode, also classifies the mirror image
    and returns the mean of the two logits: test-time augmentation (TTA) with horizontal flips.

    (B, C, H, W) -> (B, classes). Training mode is a plain forward pass. Being part of the
    model, the flips happen wherever the model runs: the Trainer's tests, `dlcamp evaluate`,
    the server and the ONNX export agree. The state dict is that of the plain Sequential.
    Only for data whose labels survive mirroring (clothes, not digits).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)  # (B, classes)
        if self.training:
            return logits
        return (logits + super().forward(x.flip(-1))) / 2


def init_weights(model: nn.Module, scheme: str = "he") -> nn.Module:
    """Initialise the conv and linear layers of a network without batch norm.

    he:     He-normal conv weights (fan-in), linear weights N(0, 0.01), zero biases. torch's
            default init shrinks the signal by about sqrt(3) per ReLU layer, so a deep ReLU
            network without batch norm starts with near-constant outputs and learns slowly or
            not at all (NiN, GoogLeNet); He init keeps the signal's scale through the convs.
    xavier: Xavier-uniform weights, biases as torch makes them: what the book's train_ch6 does.
    torch:  leave torch's defaults.
    """
    if scheme not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {scheme!r}")
    for m in model.modules():
        if scheme == "torch" or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if scheme == "xavier":
            nn.init.xavier_uniform_(m.weight)
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        else:  # small linear layers (as torchvision's VGG): no huge logits at the start
            nn.init.normal_(m.weight, 0.0, 0.01)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model
