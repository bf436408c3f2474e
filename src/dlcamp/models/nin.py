"""Network in Network (Lin, Chen & Yan, 2013) as in the book's section 8.3.

A NiN block is one ordinary convolution followed by two 1x1 convolutions (a small MLP applied
at every pixel), each with ReLU. There are no fully connected layers: the last block has one
channel per class and global average pooling turns each channel map into a score.
"""

from __future__ import annotations

from torch import nn

from dlcamp.core.shapes import stack_output_size
from dlcamp.models.blocks import (
    ADAMW_RECIPE,
    check_sizes,
    conv_relu,
    init_weights,
    pick_stem,
    scaled,
    too_small,
)
from dlcamp.models.registry import register_model


def nin_block(c_in: int, c_out: int, kernel_size: int, stride: int,
              padding: int) -> nn.Sequential:
    return nn.Sequential(*conv_relu(c_in, c_out, kernel_size, stride, padding),
                         *conv_relu(c_out, c_out, 1), *conv_relu(c_out, c_out, 1))


@register_model("nin", recipe=ADAMW_RECIPE.replace(
    epochs=10, lr=2e-3, model_kwargs=dict(width=0.25)))
def nin(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0,
        dropout: float = 0.5, stem: str = "auto", init: str = "he") -> nn.Module:
    """Network in Network: conv + two 1x1 convs per block, global average pooling, no dense layer.

    As in the book, the last block ends with a ReLU, so class scores are >= 0 before pooling.
    `init`: "he" (default), "xavier" (the book's) or "torch" (see blocks.init_weights).
    """
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    c1, c2, c3 = (scaled(c, width) for c in (96, 256, 384))
    if stem == "book":  # 11x11 stride 4, no padding: (B, 1, 224, 224) -> (B, 96, 54, 54)
        first, layers = nin_block(in_channels, c1, 11, 4, 0), [(11, 0, 4)]
    else:               # 3x3 stride 1: (B, 1, 28, 28) -> (B, c1, 28, 28)
        first, layers = nin_block(in_channels, c1, 3, 1, 1), []
    try:  # three 3x3 max pools, stride 2
        stack_output_size(image_size, layers + [(3, 0, 2)] * 3)
    except ValueError as e:
        raise too_small("nin", image_size, stem) from e
    return init_weights(nn.Sequential(
        first, nn.MaxPool2d(3, 2),                     # (B, c1, 26, 26) book; (B, c1, 13, 13)
        nin_block(c1, c2, 5, 1, 2), nn.MaxPool2d(3, 2),  # (B, c2, 12, 12); (B, c2, 6, 6)
        nin_block(c2, c3, 3, 1, 1), nn.MaxPool2d(3, 2),  # (B, c3, 5, 5); (B, c3, 2, 2)
        nn.Dropout(dropout),
        nin_block(c3, num_classes, 3, 1, 1),           # (B, classes, 5, 5); (B, classes, 2, 2)
        nn.AdaptiveAvgPool2d(1),                       # (B, classes, 1, 1)
        nn.Flatten(),                                  # (B, classes)
    ), init)
