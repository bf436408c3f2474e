"""GoogLeNet (Szegedy et al., 2015) as in the book's section 8.4: Inception blocks.

An Inception block runs four paths side by side on the same input and concatenates their
channels: a 1x1 conv; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1. The 1x1 convs
before the larger kernels cut the channels (and the cost). Nine blocks in three stages, with
max pools between them, then global average pooling and one linear layer.

The book trains it at 96x96 (stem: 7x7 stride-2 conv and a max pool, a quarter of the side);
the small stem is a 3x3 stride-1 conv and the max pool (half the side), so a 28x28 image
reaches the Inception blocks at 7x7 and leaves them at 2x2.
Every pooling pads by 1, so any image size works (the side never drops below 1).
"""

from __future__ import annotations

import torch
from torch import nn

from dlcamp.models.blocks import (
    ADAMW_RECIPE,
    check_sizes,
    conv_relu,
    init_weights,
    pick_stem,
    scaled,
)
from dlcamp.models.registry import register_model


class Inception(nn.Module):
    """Four parallel paths; output channels c1 + c2[1] + c3[1] + c4."""

    def __init__(self, c_in: int, c1: int, c2: tuple[int, int], c3: tuple[int, int],
                 c4: int) -> None:
        super().__init__()
        self.p1 = nn.Sequential(*conv_relu(c_in, c1, 1))
        self.p2 = nn.Sequential(*conv_relu(c_in, c2[0], 1), *conv_relu(c2[0], c2[1], 3))
        self.p3 = nn.Sequential(*conv_relu(c_in, c3[0], 1), *conv_relu(c3[0], c3[1], 5))
        self.p4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_relu(c_in, c4, 1))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)  # (B, C, H, W)


# The book's nine blocks: (c1, (c2 reduce, c2), (c3 reduce, c3), c4) per block, in 3 stages.
STAGES = (
    ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)),
    ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64),
     (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
     (256, (160, 320), (32, 128), 128)),
    ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)),
)


@register_model("googlenet", recipe=ADAMW_RECIPE.replace(
    epochs=10, lr=2e-3, model_kwargs=dict(width=0.25)))
def googlenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
              width: float = 1.0, stem: str = "auto", init: str = "he") -> nn.Module:
    """GoogLeNet: a conv stem, nine Inception blocks in three stages, global average pooling.

    `init`: "he" (default), "xavier" (the book's) or "torch" (see blocks.init_weights).
    """
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    c64, c192 = scaled(64, width), scaled(192, width)
    if stem == "book":  # (B, 1, 96, 96) -> (B, 64, 24, 24)
        b1 = nn.Sequential(*conv_relu(in_channels, c64, 7, 2, 3), nn.MaxPool2d(3, 2, 1))
    else:               # (B, 1, 28, 28) -> (B, c64, 14, 14)
        b1 = nn.Sequential(*conv_relu(in_channels, c64, 3), nn.MaxPool2d(3, 2, 1))
    b2 = nn.Sequential(*conv_relu(c64, c64, 1), *conv_relu(c64, c192, 3),
                       nn.MaxPool2d(3, 2, 1))              # (B, 192, 12, 12); (B, c, 7, 7)
    stages, c_in = [], c192
    for i, stage in enumerate(STAGES):
        blocks = []
        for c1, c2, c3, c4 in stage:
            block = Inception(c_in, scaled(c1, width), (scaled(c2[0], width), scaled(c2[1], width)),
                              (scaled(c3[0], width), scaled(c3[1], width)), scaled(c4, width))
            blocks.append(block)
            c_in = block.out_channels
        if i < len(STAGES) - 1:
            blocks.append(nn.MaxPool2d(3, 2, 1))  # 12 -> 6 -> 3 (book); 7 -> 4 -> 2 (small)
        stages.append(nn.Sequential(*blocks))
    return init_weights(nn.Sequential(b1, b2, *stages,
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, 1024)
                                      nn.Linear(c_in, num_classes)), init)
