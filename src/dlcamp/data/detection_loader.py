"""Batches of a detection set (images with boxes) on the training device, augmented as a batch.

Like `TensorLoader` (dlcamp.data.loader): the whole split lives on the device as uint8, each
batch is gathered with one index tensor, shuffling is seeded by (seed, epoch) so a resumed run
sees the same batches, and augmentation works on the whole batch at once (no per-image Python).
`augment(images, boxes, labels, generator) -> (images, boxes, labels)` gets the batch's pixels
as float in [0, 255] before normalisation and must move the boxes with the pixels, e.g.
`dlcamp.vision.augment.BatchAugment(...).with_boxes` (flip, random resized crop, colour jitter,
each image its own draw); this layer only calls it (dlcamp.train.detection chooses it).

A batch is (images (B, 3, H, W) float32 normalised, boxes (B, M, 4) float32 corner pixels,
labels (B, M) int64 with -1 marking padding rows): the contract of dlcamp.models.detector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from dlcamp.data.detection import DetectionSet

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BoxAugment = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], Batch]
Normalize = tuple[tuple[float, float, float], tuple[float, float, float]]


class DetectionLoader:
    """Iterate (images, boxes, labels) batches of an in-memory detection set on `device`.

    `data` holds images (N, 3, H, W) uint8, boxes (N, M, 4) float corner pixels and labels
    (N, M) int64 (-1: padding), as dlcamp.data.detection.DetectionSet does. Images become
    float (x / 255 - mean) / std with `normalize` = (mean, std) per RGB channel: the
    detector's own `normalize`."""

    def __init__(self, data: DetectionSet, batch_size: int = 32, shuffle: bool = False,
                 device: torch.device | str = "cpu", drop_last: bool = False, seed: int = 0,
                 augment: BoxAugment | None = None,
                 normalize: Normalize = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.device = torch.device(device)
        self.x = data.images.to(self.device)                   # (N, 3, H, W) uint8
        self.boxes = data.boxes.to(self.device).float()        # (N, M, 4)
        self.labels = data.labels.to(self.device).long()       # (N, M)
        if not (len(self.x) == len(self.boxes) == len(self.labels)):
            raise ValueError("images, boxes and labels must have the same length")
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch, self.augment = seed, 0, augment
        mean, std = (torch.tensor(v, dtype=torch.float32, device=self.device)[None, :, None, None]
                     for v in normalize)
        self.scale = 1.0 / (255.0 * std)                        # (1, 3, 1, 1)
        self.shift = -mean / std

    def set_epoch(self, epoch: int) -> None:
        """Pick the shuffle order and augmentation of `epoch` (the Trainer calls this)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.x)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen).to(self.device) if self.shuffle else None
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            if order is None:
                sl = slice(start, start + self.batch_size)
                xb, bb, lb = self.x[sl], self.boxes[sl], self.labels[sl]
            else:
                idx = order[start:start + self.batch_size]
                xb, bb, lb = (t.index_select(0, idx) for t in (self.x, self.boxes, self.labels))
            xb = xb.float()                                     # (B, 3, H, W) in [0, 255]
            if self.augment is not None:
                xb, bb, lb = self.augment(xb, bb, lb, gen)
            yield xb.mul_(self.scale).add_(self.shift), bb, lb
