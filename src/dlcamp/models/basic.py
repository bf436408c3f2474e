"""Models of the basics chapter: softmax regression and the multilayer perceptron."""

from __future__ import annotations

from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.models.registry import register_model


@register_model("softmax", recipe=Recipe(epochs=10, lr=0.1, momentum=0.0, batch_size=256))
def softmax_regression(num_classes: int = 10, in_channels: int = 1,
                       image_size: int = 28) -> nn.Module:
    """Softmax regression: one linear layer on the flattened image (the loss applies softmax)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))


@register_model("mlp", recipe=Recipe(epochs=10, lr=0.1, momentum=0.0, batch_size=256))
def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: tuple[int, ...] | list[int] = (256,), dropout: float = 0.0) -> nn.Module:
    """Multilayer perceptron: Linear -> ReLU (-> Dropout) per hidden layer, then a linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * image_size**2
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
