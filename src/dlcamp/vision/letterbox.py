"""Letterboxing: fitting a photo of any shape into a detector's square input and back.

A width x height photo is resized by s = side / max(width, height) (proportions kept, the
longer side fills the square), centred, and the rest of the square is filled with one colour.
Boxes map into the square by x -> x * scale_x + left (y likewise) and back out by the inverse
(`Letterbox.to_input`, `Letterbox.to_original`). Training on a camp project
(dlcamp.camp.dataset), scoring (dlcamp.camp.scoring) and serving a detector
(dlcamp.serve.detect) all letterbox here, so a model sees the same pixels in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image


@dataclass(frozen=True)
class Letterbox:
    """How a width x height image was fitted into the model's side x side input: resized to
    (round(width * s), round(height * s)) with s = side / max(width, height), pasted at
    (left, top). `scale_x`, `scale_y` are the exact resize factors of each axis."""

    width: int
    height: int
    side: int
    scale_x: float
    scale_y: float
    left: int
    top: int

    @classmethod
    def fit(cls, width: int, height: int, side: int) -> Letterbox:
        longer = max(width, height)
        new_w = max(1, round(width * side / longer))
        new_h = max(1, round(height * side / longer))
        return cls(width, height, side, new_w / width, new_h / height,
                   (side - new_w) // 2, (side - new_h) // 2)

    @property
    def inner(self) -> tuple[int, int]:
        """(width, height) of the resized image inside the square."""
        return round(self.width * self.scale_x), round(self.height * self.scale_y)

    def to_original(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (K, 4) corner px of the model input -> corner px of the original image,
        clipped to it: x -> (x - left) / scale_x, y -> (y - top) / scale_y."""
        b = boxes.double()                                                  # (K, 4)
        x = ((b[:, 0::2] - self.left) / self.scale_x).clamp(0, self.width)   # (K, 2)
        y = ((b[:, 1::2] - self.top) / self.scale_y).clamp(0, self.height)   # (K, 2)
        return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)      # (K, 4)

    def to_input(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (K, 4) corner px of the original image -> corner px of the square input
        (float32): x -> x * scale_x + left, y -> y * scale_y + top."""
        scale = torch.tensor([self.scale_x, self.scale_y] * 2, dtype=torch.float64)
        shift = torch.tensor([self.left, self.top] * 2, dtype=torch.float64)
        return (boxes.double() * scale + shift).float()


def letterbox(img: Image.Image, side: int, fill: tuple[int, int, int]
              ) -> tuple[Image.Image, Letterbox]:
    """An RGB image -> (the side x side RGB model input, how it was placed). Shrinking
    averages areas (BOX: an exact 2x enlargement shrinks back to the same pixels), enlarging
    is bilinear."""
    box = Letterbox.fit(img.width, img.height, side)
    size = box.inner
    if size != img.size:
        shrink = size[0] <= img.width and size[1] <= img.height
        img = img.resize(size, Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
    square = Image.new("RGB", (side, side), fill)
    square.paste(img, (box.left, box.top))
    return square, box
