"""DenseNet (Huang, Liu, van der Maaten & Weinberger, 2017) as in the book's section 8.7.

Where ResNet adds a block's output to its input, a dense block concatenates: every conv sees
the channels of all the convs before it, and adds `growth_rate` new ones. Transition layers
between dense blocks halve the channels (1x1 conv) and the side (2x2 average pool).

Layers are pre-activation (BN -> ReLU -> conv) and convolutions keep their bias, as in the
book, so the parameter count is the book's. The book's PyTorch code ends with a global *max*
pool; the paper and the book's other frameworks use a global average pool, as here.
The book trains it at 96x96 (24 -> 12 -> 6 -> 3 through the blocks); the small stem (3x3
stride 1, no max pool) gives 28 -> 14 -> 7 -> 3 for 28x28 images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlcamp.core.shapes import stack_output_size
from dlcamp.models.blocks import (
    BN_RECIPE,
    bn_stem,
    bn_stem_side,
    check_sizes,
    pick_stem,
    scaled,
    too_small,
)
from dlcamp.models.registry import register_model


def bn_relu_conv(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
                         nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2))


class DenseBlock(nn.Module):
    """`num_convs` BN-ReLU-conv layers; each one's input is the concatenation of all before."""

    def __init__(self, num_convs: int, c_in: int, growth_rate: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(bn_relu_conv(c_in + i * growth_rate, growth_rate)
                                   for i in range(num_convs))
        self.out_channels = c_in + num_convs * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        for conv in self.convs:
            x = torch.cat([x, conv(x)], dim=1)  # (B, c_in + k * growth, H, W)
        return x


def transition(c_in: int, c_out: int) -> nn.Sequential:
    """Fewer channels (1x1 conv) and half the side (2x2 average pool)."""
    return nn.Sequential(*bn_relu_conv(c_in, c_out, 1), nn.AvgPool2d(2))


@register_model("densenet", recipe=BN_RECIPE.replace(epochs=6, model_kwargs=dict(width=0.25)))
def densenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
             width: float = 1.0, growth_rate: int = 32, blocks: Sequence[int] = (4, 4, 4, 4),
             stem: str = "auto") -> nn.Module:
    """DenseNet: stem, dense blocks (4 convs, growth 32) joined by transition layers, avg pool.

    `width` scales the stem's 64 channels and the growth rate together.
    """
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    if not blocks or min(blocks) < 1:
        raise ValueError(f"blocks needs at least one dense block of >= 1 convs, got {blocks}")
    growth, channels = scaled(growth_rate, width), scaled(64, width)
    layers: list[nn.Module] = [bn_stem(in_channels, channels, stem, bias=True)]
    for i, num_convs in enumerate(blocks):
        block = DenseBlock(num_convs, channels, growth)
        layers.append(block)                  # (B, channels + num_convs * growth, H, W)
        channels = block.out_channels
        if i < len(blocks) - 1:
            layers.append(transition(channels, channels // 2))  # (B, channels / 2, H/2, W/2)
            channels = channels // 2
    try:  # each transition ends with a 2x2 average pool, stride 2
        stack_output_size(bn_stem_side(image_size, stem), [(2, 0, 2)] * (len(blocks) - 1))
    except ValueError as e:
        raise too_small("densenet", image_size, stem) from e
    return nn.Sequential(*layers, nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, channels)
                         nn.Linear(channels, num_classes))
