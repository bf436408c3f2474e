"""ResNet (He, Zhang, Ren & Sun, 2016) as in the book's section 8.6: residual blocks.

A residual block computes relu(x + f(x)) with f = conv-BN-ReLU-conv-BN, so a block that learns
f = 0 passes its input through unchanged: adding blocks cannot make the function class worse.
When a block halves the side or changes the channels, a 1x1 convolution (stride 2) reshapes
the shortcut too.

Layer for layer this is torchvision's ResNet (convolutions without bias, batch norm on the
1x1 shortcut), so `resnet18(stem="book")` has exactly torchvision.models.resnet18's weights
apart from the one-channel first conv; the book's version differs only in small details (conv
biases, no BN on the shortcut). The book trains it at 96x96; the small stem (3x3 stride 1, no
max pool) keeps 28x28 images at full resolution for the first stage: 28 -> 28 -> 14 -> 7 -> 4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlcamp.models.blocks import BN_RECIPE, bn_stem, check_sizes, conv_bn, pick_stem, scaled
from dlcamp.models.registry import register_model


class Residual(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (identity, or 1x1 conv-BN when shapes change)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
        self.conv2, self.bn2 = conv_bn(c_out, c_out, 3)
        self.shortcut = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                         if stride != 1 or c_in != c_out else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        y = self.relu(self.bn1(self.conv1(x)))             # (B, c_out, H / stride, W / stride)
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


def resnet_stage(c_in: int, c_out: int, num_blocks: int, stride: int) -> nn.Sequential:
    """The first block changes shape (stride, channels); the others keep it."""
    blocks = [Residual(c_in, c_out, stride)]
    blocks += [Residual(c_out, c_out) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


# The generic entry's recipe is a quick ResNet-10 (one block per stage).
@register_model("resnet", recipe=BN_RECIPE.replace(
    epochs=8, model_kwargs=dict(blocks=(1, 1, 1, 1), width=0.25)))
def resnet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0,
           blocks: Sequence[int] = (2, 2, 2, 2), stem: str = "auto") -> nn.Module:
    """ResNet with `blocks` residual blocks per stage (64-128-256-512 channels times `width`)."""
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    if not blocks or min(blocks) < 1:
        raise ValueError(f"blocks needs at least one stage of >= 1 blocks, got {blocks}")
    channels = [scaled(64 * 2**i, width) for i in range(len(blocks))]
    stages, c_in = [], scaled(64, width)
    for i, (c_out, n) in enumerate(zip(channels, blocks, strict=True)):
        stages.append(resnet_stage(c_in, c_out, n, stride=1 if i == 0 else 2))
        c_in = c_out
    return nn.Sequential(
        bn_stem(in_channels, scaled(64, width), stem),  # (B, 64, 24, 24) book; (B, c, 28, 28)
        *stages,                                        # (B, 512, 3, 3) book; (B, c, 4, 4)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),          # (B, 512)
        nn.Linear(c_in, num_classes),
    )


@register_model("resnet18", recipe=BN_RECIPE.replace(epochs=6, model_kwargs=dict(width=0.25)))
def resnet18(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
             width: float = 1.0, stem: str = "auto") -> nn.Module:
    """ResNet-18: a stem, four stages of two residual blocks, global average pooling, linear."""
    return resnet(num_classes, in_channels, image_size, width, (2, 2, 2, 2), stem)
