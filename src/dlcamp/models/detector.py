"""What every detector in the zoo promises (TinySSD, the YOLO-style one): one contract that the
Trainer's detection task, `dlcamp evaluate`, `dlcamp detect`, the server and ONNX export use.

Boxes are always corner format (x1, y1, x2, y2) in pixels of the model's input image. A batch
of ground truth is padded: `boxes` (B, M, 4) float and `labels` (B, M) int64 with -1 marking
padding rows (M = most objects in any image of the batch); class ids are 0..num_classes-1,
background is not a class id.
"""

from __future__ import annotations

import typing
from typing import Any

import torch
from torch import nn

from dlcamp.models.registry import model_entry

Detections = list[dict[str, torch.Tensor]]  # per image: boxes (K, 4), scores (K,), labels (K,)


class Detector(nn.Module):
    """Base class of the detectors.

    Subclasses set `num_classes` and `image_size` (the square side in pixels they are built for)
    and implement:
    - `forward(images)`: images (B, 3, H, W) float, normalised as `normalize` says; returns the
      raw outputs as a tuple of tensors (so the forward pass exports to ONNX unchanged);
    - `loss(outputs, boxes, labels)`: (scalar loss, dict of per-batch sums for the metrics
      table, each a 0-d tensor, e.g. `cls_loss`, `box_loss`), with target assignment
      vectorised over the whole batch (no per-image or per-anchor Python loop);
    - `detect(outputs, score_threshold, iou_threshold, max_detections)`: decoded boxes after
      per-class NMS, one dict per image (`Detections`).
    """

    num_classes: int
    image_size: int
    # input normalisation applied to uint8/255 pixels: (x - mean) / std, per RGB channel
    normalize: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    def loss(self, outputs: tuple[torch.Tensor, ...], boxes: torch.Tensor, labels: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def detect(self, outputs: tuple[torch.Tensor, ...], score_threshold: float = 0.05,
               iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a checkpoint or the server says about this detector."""
        return {"num_classes": self.num_classes, "image_size": self.image_size,
                "normalize": [list(self.normalize[0]), list(self.normalize[1])]}


def is_detector(name: str) -> bool:
    """Whether the registered model `name` is a Detector, read from its constructor's return
    annotation (`def tinyssd(...) -> TinySSD`), without building it. UnknownName for a name
    that is not registered."""
    fn = model_entry(name)
    try:
        hint = typing.get_type_hints(fn).get("return")
    except (NameError, TypeError):  # an annotation that does not resolve: not a detector
        return False
    return isinstance(hint, type) and issubclass(hint, Detector)
