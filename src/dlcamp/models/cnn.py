"""dlcamp's default recipe: a small, fast CNN for 28x28 grey images on a laptop CPU."""

from __future__ import annotations

from torch import nn

from dlcamp.models.registry import register_model


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution -> batch norm -> ReLU (no conv bias: batch norm has one)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register_model("cnn", recipe=dict(epochs=8, batch_size=256, lr=0.2, optimizer="sgd",
                                   momentum=0.9, nesterov=True, weight_decay=5e-4,
                                   schedule="onecycle", label_smoothing=0.1, bf16=True,
                                   channels_last=True, augment=True))
def cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        widths: tuple[int, ...] | list[int] = (32, 64, 128)) -> nn.Module:
    """Fast default CNN: conv-BN-ReLU blocks, pooling early, global max pool, linear head."""
    c1, c2, c3 = widths
    return nn.Sequential(
        conv_bn(in_channels, c1), nn.MaxPool2d(2),  # (B, c1, 14, 14)
        conv_bn(c1, c2), nn.MaxPool2d(2),           # (B, c2, 7, 7)
        conv_bn(c2, c3),                            # (B, c3, 7, 7)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),      # (B, c3)
        nn.Linear(c3, num_classes),
    )
