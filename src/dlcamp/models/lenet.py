"""LeNet-5 (LeCun et al., 1998) as the book teaches it, with batch norm, and a modern variant."""

from __future__ import annotations

from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.core.shapes import stack_output_size
from dlcamp.models.blocks import AvgPool2d, BatchNormScratch
from dlcamp.models.registry import register_model

# (kernel, padding, stride) of the convolutions and poolings before the dense layers
LENET_LAYERS = ((5, 2, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2))  # 28 -> 28 -> 14 -> 10 -> 5
LENET_BN_LAYERS = ((5, 0, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2))  # 28 -> 24 -> 12 -> 8 -> 4


def _flat_side(model: str, image_size: int, layers: tuple[tuple[int, int, int], ...],
               smallest: int) -> int:
    """Side of the last feature maps, or a ValueError naming the smallest image that works."""
    try:
        return stack_output_size(image_size, layers)
    except ValueError as e:
        raise ValueError(f"{model} needs images of at least {smallest}x{smallest} pixels, "
                         f"got {image_size}") from e


# The book trains it with plain SGD, lr 0.9, batch 256, 10 epochs (sigmoid needs a large step).
# Precision and memory layout are chosen by the machine (dlcamp.train.speed); --precision fp32
# gives the book's arithmetic everywhere.
@register_model("lenet", recipe=Recipe(epochs=10, lr=0.9, momentum=0.0, batch_size=256))
def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """Classic LeNet-5: sigmoid activations and average pooling (the book's chapter-6 model)."""
    side = _flat_side("LeNet", image_size, LENET_LAYERS, 12)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),  # (B, 6, 28, 28)
        AvgPool2d(2),                                                       # (B, 6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),                      # (B, 16, 10, 10)
        AvgPool2d(2),                                                       # (B, 16, 5, 5)
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )


@register_model("lenet-modern", recipe=Recipe(epochs=10, lr=0.1, momentum=0.9, batch_size=256,
                                              schedule="onecycle"))
def lenet_modern(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 width: int = 1) -> nn.Module:
    """LeNet with batch norm, ReLU and max pooling; `width` multiplies the channel counts."""
    side = _flat_side("LeNet", image_size, LENET_LAYERS, 12)
    c1, c2 = 6 * width, 16 * width
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, kernel_size=5, padding=2, bias=False),
        nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=5, bias=False),
        nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * side * side, 120, bias=False), nn.BatchNorm1d(120), nn.ReLU(),
        nn.Linear(120, 84, bias=False), nn.BatchNorm1d(84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


# The book's BN-LeNet (ch. 8.5): plain SGD, lr 1.0, batch 256, 10 epochs; batch norm is what
# lets sigmoid networks take such a large step.
@register_model("lenet-bn", recipe=Recipe(epochs=10, lr=1.0, momentum=0.0, batch_size=256))
def lenet_bn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
             scratch: bool = False) -> nn.Module:
    """The book's LeNet with batch norm after every conv and linear layer (sigmoid, avg pool).

    `scratch=True` uses the hand-written BatchNormScratch instead of nn.BatchNorm1d/2d (the
    book's from-scratch version; same numbers, slower). Unlike LeNet-5, the first convolution
    has no padding, as in the book: 28 -> 24 -> 12 -> 8 -> 4.
    """
    side = _flat_side("BN-LeNet", image_size, LENET_BN_LAYERS, 16)

    def bn(features: int, num_dims: int) -> nn.Module:
        if scratch:
            return BatchNormScratch(features, num_dims)
        return nn.BatchNorm2d(features) if num_dims == 4 else nn.BatchNorm1d(features)

    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5), bn(6, 4), nn.Sigmoid(),  # (B, 6, 24, 24)
        AvgPool2d(2),                                                      # (B, 6, 12, 12)
        nn.Conv2d(6, 16, kernel_size=5), bn(16, 4), nn.Sigmoid(),          # (B, 16, 8, 8)
        AvgPool2d(2),                                                      # (B, 16, 4, 4)
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), bn(120, 2), nn.Sigmoid(),
        nn.Linear(120, 84), bn(84, 2), nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )
