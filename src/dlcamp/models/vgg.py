"""VGG (Simonyan & Zisserman, 2014) as in the book's section 8.2: networks built from blocks.

A VGG block is n 3x3 convolutions (padding 1) with ReLU, then a 2x2 max pool that halves
the side. `conv_arch` lists (number of convs, channels) per block; the default is VGG-11.
The book trains VGG-11 at 224x224 with the channels divided by `ratio = 4`: here that is
`width=0.25`. The small stem drops the first block's pooling so 28x28 images survive the
remaining four (28 -> 14 -> 7 -> 3 -> 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dlcamp.core.shapes import stack_output_size
from dlcamp.models.blocks import (
    ADAMW_RECIPE,
    check_sizes,
    conv_bn_relu,
    conv_relu,
    init_weights,
    pick_stem,
    scaled,
    too_small,
)
from dlcamp.models.registry import register_model

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, c_in: int, c_out: int, pool: bool = True,
              batch_norm: bool = False) -> nn.Sequential:
    layer = conv_bn_relu if batch_norm else conv_relu
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += layer(c_in, c_out)
        c_in = c_out
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_model("vgg", recipe=ADAMW_RECIPE.replace(
    epochs=8, model_kwargs=dict(width=0.25, hidden=512)))
def vgg(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0,
        conv_arch: Sequence[Sequence[int]] = VGG11, hidden: int = 4096, dropout: float = 0.5,
        batch_norm: bool = False, stem: str = "auto", init: str = "he") -> nn.Module:
    """VGG: blocks of 3x3 convs and a 2x2 max pool (VGG-11 by default), then a dropout MLP.

    `width` multiplies the block channels (the book's ratio=4 is width=0.25); `batch_norm`
    adds BN after every conv (VGG-BN, not in the book). `init`: "he", "xavier" or "torch".
    """
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    if not conv_arch:
        raise ValueError("conv_arch needs at least one (num_convs, channels) block")
    blocks, c_in, pools = [], in_channels, []
    for i, (num_convs, channels) in enumerate(conv_arch):
        pool = stem == "book" or i > 0  # the small stem keeps full resolution in block 1
        c_out = scaled(channels, width)
        blocks.append(vgg_block(num_convs, c_in, c_out, pool, batch_norm))
        c_in = c_out
        if pool:
            pools.append((2, 0, 2))  # 2x2 max pool, stride 2 (the 3x3 convs keep the size)
    try:
        side = stack_output_size(image_size, pools)
    except ValueError as e:
        raise too_small("vgg", image_size, stem) from e
    return init_weights(nn.Sequential(
        *blocks,                                         # (B, c, 7, 7) book; (B, c, 1, 1)
        nn.Flatten(),
        nn.Linear(c_in * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ), init)
