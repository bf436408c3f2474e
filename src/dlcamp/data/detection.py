"""`DetectionSet`: images with boxes, class labels, optional instance masks and per-image tags.

One container for every detection data set in dlcamp: the synthetic scenes
(`dlcamp.vision.scene_sets`) and photos people annotate themselves. Everything is an in-memory
tensor, padded to the most objects in any image (M):

- `images` (N, 3, H, W) uint8 RGB;
- `boxes` (N, M, 4) float32, corner format (x1, y1, x2, y2) in pixels, padding rows 0;
- `labels` (N, M) int64 class ids 0..C-1, -1 marks padding (the contract of
  `dlcamp.models.detector`);
- `masks` (N, H, W) uint8 instance map or None: 0 background, k = the visible pixels of object
  k (k = 1..M, in the order of the boxes);
- `conditions`: per-image tags, each a list of N str/float/int values (background source,
  lighting, scale bucket, blur...), for reports split by condition (covariate shift).

Saved as one safetensors file (the tensors) whose metadata holds the rest as JSON, written
atomically; loading never unpickles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dlcamp.core.errors import BadArgument, DatasetCorrupt, DatasetNotFound
from dlcamp.core.io import atomic_write_bytes

FORMAT = "dlcamp-detection-set/1"


@dataclass
class DetectionSet:
    """N images with padded boxes and labels (shapes in the module docstring)."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    boxes: torch.Tensor  # (N, M, 4) float32 corners, pixels
    labels: torch.Tensor  # (N, M) int64, -1 = padding
    class_names: list[str]
    class_names_zh: list[str]
    masks: torch.Tensor | None = None  # (N, H, W) uint8 instance map
    conditions: dict[str, list] = field(default_factory=dict)  # tag -> N values
    name: str = ""
    split: str = ""
    meta: dict = field(default_factory=dict)  # JSON-able: version, config, sources...

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check shapes, dtypes and label range; BadArgument names what is wrong."""
        n = len(self.images)
        if self.images.dim() != 4 or self.images.shape[1] != 3 or self.images.dtype != torch.uint8:
            raise BadArgument(f"images must be (N, 3, H, W) uint8, got "
                              f"{tuple(self.images.shape)} {self.images.dtype}")
        if self.boxes.dim() != 3 or self.boxes.shape[2] != 4 or self.boxes.shape[0] != n:
            raise BadArgument(f"boxes must be (N, M, 4) with N={n}, got {tuple(self.boxes.shape)}")
        if tuple(self.labels.shape) != tuple(self.boxes.shape[:2]):
            raise BadArgument(f"labels {tuple(self.labels.shape)} must be (N, M) = "
                              f"{tuple(self.boxes.shape[:2])}")
        self.boxes = self.boxes.float()
        self.labels = self.labels.long()
        if len(self.class_names) != len(self.class_names_zh):
            raise BadArgument("class_names and class_names_zh must have the same length")
        if self.labels.numel() and (self.labels.max() >= len(self.class_names)
                                    or self.labels.min() < -1):
            raise BadArgument(f"labels must lie in -1..{len(self.class_names) - 1}")
        if self.masks is not None and (tuple(self.masks.shape) != (n, *self.images.shape[2:])
                                       or self.masks.dtype != torch.uint8):
            raise BadArgument(f"masks must be (N, H, W) uint8, got {tuple(self.masks.shape)}")
        for key, values in self.conditions.items():
            if len(values) != n:
                raise BadArgument(f"condition {key!r} has {len(values)} values for {n} images")

    @classmethod
    def from_lists(cls, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                   labels: Sequence[torch.Tensor], class_names: list[str],
                   class_names_zh: list[str] | None = None, **fields) -> DetectionSet:
        """A set from per-image pieces (e.g. annotated photos, all resized to one size):
        images[i] (3, H, W) uint8, boxes[i] (K_i, 4) corner pixels, labels[i] (K_i,);
        pads to M = max K_i. Other fields (masks, conditions, name, ...) pass through."""
        if not len(images) == len(boxes) == len(labels):
            raise BadArgument(f"got {len(images)} images, {len(boxes)} box lists and "
                              f"{len(labels)} label lists")
        m = max((len(b) for b in boxes), default=0)
        padded_boxes = torch.zeros(len(images), m, 4)  # (N, M, 4)
        padded_labels = torch.full((len(images), m), -1, dtype=torch.int64)  # (N, M)
        for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
            if len(b) != len(lab):
                raise BadArgument(f"image {i}: {len(b)} boxes but {len(lab)} labels")
            padded_boxes[i, :len(b)] = b
            padded_labels[i, :len(b)] = torch.as_tensor(lab, dtype=torch.int64)
        stacked = (torch.stack([torch.as_tensor(x) for x in images]) if len(images)
                   else torch.zeros(0, 3, 1, 1, dtype=torch.uint8))
        return cls(stacked, padded_boxes, padded_labels, list(class_names),
                   list(class_names_zh or class_names), **fields)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def num_objects(self) -> torch.Tensor:
        """(N,) int64: objects per image (labels that are not padding)."""
        return (self.labels >= 0).sum(1)

    def targets(self, i: int) -> dict[str, torch.Tensor]:
        """Image i's objects without padding: boxes (K, 4) float32, labels (K,) int64."""
        keep = self.labels[i] >= 0  # (M,)
        return {"boxes": self.boxes[i][keep], "labels": self.labels[i][keep]}

    def select(self, index: Sequence[int] | torch.Tensor | slice) -> DetectionSet:
        """A new set with the images at `index` (padding trimmed to the new M)."""
        if isinstance(index, slice):
            index = range(len(self))[index]
        idx = torch.as_tensor(list(index) if not torch.is_tensor(index) else index,
                              dtype=torch.long)
        labels = self.labels[idx]
        m = int((labels >= 0).sum(1).max()) if len(idx) else 0
        masks = self.masks[idx] if self.masks is not None else None
        conditions = {k: [v[int(i)] for i in idx] for k, v in self.conditions.items()}
        return DetectionSet(self.images[idx], self.boxes[idx, :m], labels[:, :m],
                            list(self.class_names), list(self.class_names_zh), masks,
                            conditions, self.name, self.split, dict(self.meta))

    def subset(self, n: int, seed: int = 0) -> DetectionSet:
        """A random but reproducible subset of n images (quick mode); all of them if n >= N."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.select(idx.sort().values)

    def label_names(self, labels: Sequence[int] | torch.Tensor, lang: str = "en") -> list[str]:
        """Class names of label ids (padding -1 is skipped); lang 'en' or 'zh'."""
        names = self.class_names_zh if lang == "zh" else self.class_names
        return [names[int(c)] for c in labels if int(c) >= 0]

    # --- files ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The set as safetensors bytes (tensors) with JSON metadata (everything else)."""
        tensors = {"images": self.images.contiguous(), "boxes": self.boxes.contiguous(),
                   "labels": self.labels.contiguous()}
        if self.masks is not None:
            tensors["masks"] = self.masks.contiguous()
        info = {"format": FORMAT, "class_names": self.class_names,
                "class_names_zh": self.class_names_zh, "conditions": self.conditions,
                "name": self.name, "split": self.split, "meta": self.meta}
        return st_save(tensors, metadata={"dlcamp": json.dumps(info, ensure_ascii=False)})

    def save(self, path: str | Path) -> Path:
        """Write the set to `path` (one .safetensors file) atomically; returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> DetectionSet:
        """Read a set written by `save`. DatasetNotFound / DatasetCorrupt on a bad file."""
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFound(f"detection set file {path} does not exist.")
        try:
            with safe_open(str(path), framework="pt") as f:
                info = json.loads((f.metadata() or {})["dlcamp"])
            tensors = st_load(path.read_bytes())
        except Exception as e:  # safetensors raises its own error types; report one kind
            raise DatasetCorrupt(f"{path} is not a readable detection set ({e}). Delete it "
                                 "and build it again.") from e
        if info.get("format") != FORMAT:
            raise DatasetCorrupt(f"{path} has format {info.get('format')!r}, expected {FORMAT}.")
        return cls(tensors["images"], tensors["boxes"], tensors["labels"], info["class_names"],
                   info["class_names_zh"], tensors.get("masks"), info["conditions"],
                   info["name"], info["split"], info["meta"])
