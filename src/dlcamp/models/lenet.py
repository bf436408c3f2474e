"""LeNet-5 (LeCun et al., 1998) as the book teaches it, and a modern variant."""

from __future__ import annotations

from torch import nn

from dlcamp.models.registry import register_model


def _lenet_flat_size(image_size: int) -> int:
    """Side length after conv(5, pad 2) -> pool 2 -> conv(5) -> pool 2."""
    side = (image_size // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"LeNet needs images of at least 12x12 pixels, got {image_size}")
    return side


# The book trains it with plain SGD, lr 0.9, batch 256, 10 epochs (sigmoid needs a large step).
# channels-last + bf16 autocast make its small convolutions and pooling ~2x faster on a CPU
# (bench/throughput.py); --no-bf16 gives the book's fp32 numbers.
@register_model("lenet", recipe=dict(epochs=10, lr=0.9, momentum=0.0, batch_size=256,
                                     channels_last=True, bf16=True))
def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """Classic LeNet-5: sigmoid activations and average pooling (the book's chapter-6 model)."""
    side = _lenet_flat_size(image_size)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),  # (B, 6, 28, 28)
        nn.AvgPool2d(2),                                                    # (B, 6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),                      # (B, 16, 10, 10)
        nn.AvgPool2d(2),                                                    # (B, 16, 5, 5)
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )


@register_model("lenet-modern", recipe=dict(epochs=10, lr=0.1, momentum=0.9, batch_size=256,
                                            schedule="onecycle"))
def lenet_modern(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 width: int = 1) -> nn.Module:
    """LeNet with batch norm, ReLU and max pooling; `width` multiplies the channel counts."""
    side = _lenet_flat_size(image_size)
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
