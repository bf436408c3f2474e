"""A loader for datasets that fit in memory: no workers, no per-sample Python.

The whole split lives on the training device as uint8 (4x smaller than float32). Each batch
is gathered with one index tensor, then converted, normalised and (optionally) augmented and
upsampled (`resize`, for models that expect the book's 96x96 or 224x224 inputs) as a whole
batch. Shuffling is seeded by (seed, epoch), so a resumed run sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dlcamp.data.datasets import ImageSet, load_dataset

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TensorLoader:
    """Iterate (images, labels) batches of an in-memory ImageSet on `device`."""

    def __init__(self, data: ImageSet, batch_size: int = 256, shuffle: bool = False,
                 device: torch.device | str = "cpu", drop_last: bool = False, seed: int = 0,
                 augment: Augment | None = None, resize: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if resize < 0:
            raise ValueError(f"resize must be a side length in pixels (0: off), got {resize}")
        self.data = data
        self.device = torch.device(device)
        self.x = data.images.to(self.device)  # (N, C, H, W) uint8
        self.y = data.labels.to(self.device)  # (N,) int64
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch, self.augment = seed, 0, augment
        self.resize = resize
        # Normalising x in [0, 255]: (x / 255 - mean) / std == x * scale + shift
        self.scale = 1.0 / (255.0 * data.std)
        self.shift = -data.mean / data.std

    def set_epoch(self, epoch: int) -> None:
        """Pick the shuffle order of `epoch` (the Trainer calls this before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen).to(self.device) if self.shuffle else None
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = start + self.batch_size
            if order is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:  # index_select: about 10x faster than x[idx] for a batch of rows
                idx = order[start:end]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            yield self._prepare(xb, gen), yb

    def head(self, n: int) -> torch.Tensor:
        """The first `n` images in stored order, (n, C, H, W) float32, normalised (and resized)
        as batches are, without augmentation: data for fitting a layer to the inputs."""
        return self._prepare(self.x[:n])

    def _prepare(self, xb: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32, augmented when `gen` is given, normalised, resized."""
        xb = xb.float()  # (B, C, H, W) float32 in [0, 255]; 0 is the background
        if self.augment is not None and gen is not None:
            xb = self.augment(xb, gen)
        xb = xb.mul_(self.scale).add_(self.shift)
        if self.resize and tuple(xb.shape[-2:]) != (self.resize, self.resize):
            # Per batch, on the device: the stored split stays small (uint8, original size).
            xb = F.interpolate(xb, size=(self.resize, self.resize), mode="bilinear",
                               align_corners=False, antialias=False)  # (B, C, R, R)
        return xb


def flip_and_shift(pad: int = 2, flip: bool = True) -> Augment:
    """Batch augmentation: random horizontal flip and a random shift of up to `pad` pixels."""

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        if flip:
            mask = (torch.rand(b, generator=gen) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        if pad:
            # Pad with background (0), then gather a shifted H x W window per image.
            xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
            dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen).to(x.device)
            dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen).to(x.device)
            rows = dy + torch.arange(h, device=x.device)  # (B, H) source row of each output row
            cols = dx + torch.arange(w, device=x.device)  # (B, W)
            c = x.shape[1]
            x = xp.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))  # (B,C,H,W+2p)
            x = x.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)
        return x

    return augment


@dataclass
class Loaders:
    """The data of a run, whatever the task: batches to train on and a held-out split.

    `eval` is the held-out split the run is measured on, and `eval_split` says truthfully
    which split that is: "test" for an image dataset, "val" for a text corpus (the corpora
    have no test split; dlcamp.text.data.TextLoaders). `loaders.test` and `loaders.val`
    name the split explicitly and refuse the other one, so a validation score is never
    reported as a test score by accident. Image runs also keep the ImageSets
    (`train_set`, `eval_set`, alias `test_set`): their classes, shape and statistics.
    """

    train: Iterable[Any]
    eval: Iterable[Any]
    train_set: ImageSet | None = None
    eval_set: ImageSet | None = None
    eval_split: str = "test"

    @property
    def test(self) -> Iterable[Any]:
        """The held-out loader, when it is a test split."""
        return self._held_out("test", self.eval)

    @property
    def val(self) -> Iterable[Any]:
        """The held-out loader, when it is a validation split."""
        return self._held_out("val", self.eval)

    @property
    def test_set(self) -> ImageSet | None:
        return self._held_out("test", self.eval_set)

    def _held_out(self, split: str, value: Any) -> Any:
        if self.eval_split != split:
            raise AttributeError(f"these loaders hold out the {self.eval_split!r} split, not "
                                 f"{split!r}; use `.eval` (and `.eval_split` to name it)")
        return value

    @property
    def describe(self) -> str:
        """One line for the log: how much data, e.g. "60,000 train / 10,000 test"."""
        if self.train_set is None or self.eval_set is None:
            return f"{len(self.train):,} train batches / {len(self.eval):,} {self.eval_split}"
        return f"{len(self.train_set):,} train / {len(self.eval_set):,} {self.eval_split}"


def make_loaders(dataset: str, batch_size: int = 256, device: torch.device | str = "cpu",
                 quick: bool = False, seed: int = 0, augment: Augment | None = None,
                 eval_batch_size: int = 1024,
                 resize: int = 0) -> Loaders:
    """Train (shuffled) and test loaders for a named dataset; quick mode keeps small subsets.

    `resize` > 0 upsamples every batch to resize x resize pixels (bilinear) on the device.
    """
    train, test = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    if quick:
        train, test = train.subset(6000, seed), test.subset(2000, seed)
    return Loaders(
        TensorLoader(train, batch_size, shuffle=True, device=device, seed=seed,
                     augment=augment, resize=resize),
        TensorLoader(test, eval_batch_size, device=device, resize=resize),
        train, test, eval_split="test",
    )
