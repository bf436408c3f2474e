"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as in the book's section 8.1.

The book trains it on Fashion-MNIST upsampled to 224x224, one input channel, full width
(96-256-384-384-256 channels, two 4096-unit hidden layers): a GPU model. The same constructor
builds a laptop version: a 3x3 stride-1 stem instead of the 11x11 stride-4 one, so 28x28
images keep their detail, and fewer channels (`width`) and hidden units (`hidden`).
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


@register_model("alexnet", recipe=ADAMW_RECIPE.replace(
    epochs=10, model_kwargs=dict(width=0.25, hidden=1024)))
def alexnet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
            width: float = 1.0, hidden: int = 4096, dropout: float = 0.5,
            stem: str = "auto", init: str = "he") -> nn.Module:
    """AlexNet: five convs (11x11/4 stem at book size), three max pools, two dropout MLP layers.

    `init`: "he" (default), "xavier" (the book's) or "torch" (see blocks.init_weights).
    """
    check_sizes(width, image_size)
    stem = pick_stem(stem, image_size)
    c1, c2, c3, c4, c5 = (scaled(c, width) for c in (96, 256, 384, 384, 256))
    if stem == "book":  # (B, 1, 224, 224) -> (B, 96, 54, 54): big kernel, big stride
        first = conv_relu(in_channels, c1, kernel_size=11, stride=4, padding=1)
        layers = [(11, 1, 4)]
    else:               # (B, 1, 28, 28) -> (B, c1, 28, 28)
        first = conv_relu(in_channels, c1, kernel_size=3)
        layers = []
    layers += [(3, 0, 2)] * 3  # three overlapping 3x3 max pools, stride 2 (convs keep sizes)
    try:
        side = stack_output_size(image_size, layers)
    except ValueError as e:
        raise too_small("alexnet", image_size, stem) from e
    return init_weights(nn.Sequential(
        *first, nn.MaxPool2d(3, 2),                   # (B, c1, 26, 26) book; (B, c1, 13, 13)
        *conv_relu(c1, c2, kernel_size=5), nn.MaxPool2d(3, 2),  # (B, c2, 12, 12); (B, c2, 6, 6)
        *conv_relu(c2, c3), *conv_relu(c3, c4), *conv_relu(c4, c5),
        nn.MaxPool2d(3, 2),                           # (B, c5, 5, 5) book; (B, c5, 2, 2)
        nn.Flatten(),
        nn.Linear(c5 * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ), init)
