"""dlcamp's default recipe: a small, fast CNN for 28x28 grey images on a laptop CPU.

The recipe is tuned for the common laptop: 2 cores, AVX2, no native bf16 (issue 12). There,
one epoch of Fashion-MNIST takes 17-25 s in fp32 (channels-last), so the recipe trains 2
epochs (one-cycle with warm-up 0.15, SGD + Nesterov, lr 0.2, no label smoothing) and
classifies each test image together with its mirror image (test-time flips, `test_flip`):
92.1-92.4% test accuracy in 35-51 s of training (docs/benchmarks.md measures it on both CPU
kinds). What makes 2 epochs enough is the first layer: 16 filters fixed before training to
the 8 leading principal components of the training images' 3x3 patches and their negatives
(`whiten`, models/whitening.py). In trials at equal step counts (seeds 0-2) it turned 91.6%
after 2 epochs into 92.2-92.5%, and 2.5 epochs from 91.7-91.8% into 92.2%; label smoothing
0.1 and weight decay 1e-3 changed nothing beyond the seed-to-seed spread (+-0.15%).
Choices that make the network itself fast (the last stage has 48 channels: 18% fewer FLOPs
than 64, about 15% faster, the same accuracy):
- max pooling comes *before* batch norm and ReLU (conv -> pool -> BN -> ReLU), so those two
  run on a quarter of the pixels; max pooling commutes with ReLU and with BN's per-channel
  affine map when its scale is positive, so little is lost (about 1.3x faster here);
- the first convolution is narrow (16 channels) because it runs at full 28x28 resolution,
  and, frozen, it needs no weight gradient.
Narrower (16-24-48), shallower (one conv at 14x14 or at 7x7) or depthwise-separable variants
were 8-25% faster per epoch on the AVX2 path but lost 0.2-0.5% accuracy at equal epochs, so
they were no faster to 92%.
"""

from __future__ import annotations

from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.core.shapes import stack_output_size
from dlcamp.models.blocks import FlipAveraged
from dlcamp.models.registry import register_model
from dlcamp.models.whitening import PatchWhitening


def conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 'same' convolution without bias (the batch norm after it has one)."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


def bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


@register_model("cnn", recipe=Recipe(epochs=2, batch_size=256, lr=0.2, optimizer="sgd",
                                     momentum=0.9, nesterov=True, weight_decay=5e-4,
                                     schedule="onecycle", warmup=0.15, label_smoothing=0.0,
                                     augment="flip",
                                     model_kwargs=dict(widths=(16, 32, 48), test_flip=True,
                                                       whiten=True)))
def cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        widths: tuple[int, int, int] | list[int] = (16, 32, 64),
        test_flip: bool = False, whiten: bool = False) -> nn.Module:
    """Fast default CNN: five 3x3 convs, pool-then-BN-ReLU, three poolings, a linear head.

    (B, in_channels, S, S) -> (B, num_classes). `test_flip` averages the logits of each image
    and its mirror in evaluation mode (blocks.FlipAveraged); the recipe turns it on, and
    `dlcamp train` turns it off for data that mirroring changes (digits). `whiten` makes the
    first convolution a PatchWhitening layer (models/whitening.py), which `dlcamp train`
    fits to the training images and freezes before the first step; widths[0] must then be
    even and at most 2 * in_channels * 9.
    """
    w1, w2, w3 = widths
    try:  # three 2x2 max pools, stride 2 (the 3x3 convs keep the size)
        side = stack_output_size(image_size, [(2, 0, 2)] * 3)
    except ValueError as e:
        raise ValueError(f"the cnn pools three times: images need >= 8 pixels, "
                         f"got {image_size}") from e
    layers = [
        PatchWhitening(in_channels, w1) if whiten else conv(in_channels, w1),
        nn.MaxPool2d(2), *bn_relu(w1),                              # (B, w1, 14, 14)
        conv(w1, w2), *bn_relu(w2),                                 # (B, w2, 14, 14)
        conv(w2, w2), nn.MaxPool2d(2), *bn_relu(w2),                # (B, w2, 7, 7)
        conv(w2, w3), *bn_relu(w3),                                 # (B, w3, 7, 7)
        conv(w3, w3), nn.MaxPool2d(2), *bn_relu(w3),                # (B, w3, 3, 3)
        nn.Flatten(),                                               # (B, w3 * 9)
        nn.Linear(w3 * side * side, num_classes),
    ]
    return FlipAveraged(*layers) if test_flip else nn.Sequential(*layers)
