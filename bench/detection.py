"""TinySSD training throughput: the book's loop side by side with dlcamp's, same model and data.

    python bench/detection.py                  # --batches 30 per row, 3 interleaved repeats
    python bench/detection.py --quick          # a few batches per row (smoke run)

Both rows train the same TinySSD (dlcamp.models.ssd, 128 px, the book's width and loss) on
the same scene set with plain SGD (lr 0.2, weight decay 5e-4, batch 32: the book's TinySSD
settings, d2l 14.7):
  book    the "Dive into Deep Learning" 14.7 way: a torch DataLoader over per-image float
          tensors, and the book's `multibox_target`: a Python loop over the images of the
          batch, and inside it a loop over each image's ground-truth boxes that claims the
          best anchor of each box in turn (d2l 14.4 `assign_anchor_to_bbox`); the loss is the
          book's (cross-entropy over anchor classes + L1 on masked offsets).
  dlcamp  dlcamp.data.detection_loader.DetectionLoader (the split on the device as uint8,
          batched with one index) and TinySSD.loss, whose anchor labelling is vectorised over
          the batch (dlcamp.vision.anchors.multibox_target).
Rows are timed in turn, `--repeats` times (median reported), after a few warm-up batches;
data loading is inside the timed loop. Both labellings give the same targets but for a few
anchors (counted before timing). The book's row runs in this process, so it gets dlcamp's
thread settings: the difference measured is the loop, not the process.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from common import markdown_table, parser, report, setup
from dlcamp.data.detection_loader import DetectionLoader
from dlcamp.models import create_model
from dlcamp.vision.anchors import encode_offsets
from dlcamp.vision.boxes import box_iou
from dlcamp.vision.scene_sets import load_scene_set

BATCH, LR, WEIGHT_DECAY = 32, 0.2, 5e-4


# --- the book's way -----------------------------------------------------------------------

class BookScenes(Dataset):
    """One image at a time as float, its boxes as (M, 5) rows (class, x1, y1, x2, y2),
    padding rows class -1: the layout of the book's banana set."""

    def __init__(self, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.targets = images, torch.cat([labels[..., None].float(), boxes], -1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.images[i].float() / 255 - 0.5) / 0.25, self.targets[i]


def book_assign(ground_truth: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5
                ) -> torch.Tensor:
    """The book's anchor assignment for one image, loop and all: (A,) index of each anchor's
    box or -1."""
    iou = box_iou(anchors, ground_truth)                                  # (A, G)
    matched = torch.full((len(anchors),), -1, dtype=torch.long)
    best, which = iou.max(dim=1)
    above = best >= threshold
    matched[above] = which[above]
    iou = iou.clone()
    for _ in range(ground_truth.shape[0]):           # each box claims its best anchor in turn
        flat = torch.argmax(iou)
        a, g = flat // iou.shape[1], flat % iou.shape[1]
        matched[a] = g
        iou[:, g] = -1
        iou[a, :] = -1
    return matched


def book_multibox_target(anchors: torch.Tensor, targets: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The book's labelling: a Python loop over the images of the batch."""
    offsets, masks, classes = [], [], []
    for rows in targets:                                                  # (M, 5) per image
        rows = rows[rows[:, 0] >= 0]
        matched = book_assign(rows[:, 1:], anchors)
        positive = matched >= 0
        cls = torch.zeros(len(anchors), dtype=torch.long)
        cls[positive] = rows[matched[positive], 0].long() + 1
        box = anchors.clone()
        box[positive] = rows[matched[positive], 1:]
        mask = positive[:, None].float().expand(-1, 4)
        offsets.append(encode_offsets(anchors, box) * mask)
        masks.append(mask)
        classes.append(cls)
    return torch.stack(offsets), torch.stack(masks), torch.stack(classes)


def book_batches(data, n_batches: int):
    loader = DataLoader(BookScenes(data.images, data.boxes, data.labels), batch_size=BATCH,
                        shuffle=True)
    while True:
        for xb, yb in loader:
            yield xb, yb
            n_batches -= 1
            if n_batches == 0:
                return


def book_step(model, opt, xb: torch.Tensor, yb: torch.Tensor) -> None:
    cls_preds, bbox_preds = model(xb)
    offsets, mask, classes = book_multibox_target(model.anchors, yb)
    b, c = cls_preds.shape[0], cls_preds.shape[2]
    cls = F.cross_entropy(cls_preds.reshape(-1, c), classes.reshape(-1), reduction="none")
    box = F.l1_loss(bbox_preds * mask, offsets, reduction="none")
    loss = cls.reshape(b, -1).mean(1) + box.reshape(b, -1).mean(1)
    opt.zero_grad()
    loss.mean().backward()
    opt.step()


# --- dlcamp's way -------------------------------------------------------------------------

def dlcamp_batches(data, n_batches: int):
    loader = DetectionLoader(data, batch_size=BATCH, shuffle=True, drop_last=True)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
            n_batches -= 1
            if n_batches == 0:
                return
        epoch += 1


def dlcamp_step(model, opt, xb, boxes, labels) -> None:
    loss, _ = model.loss(model(xb), boxes, labels)
    opt.zero_grad()
    loss.backward()
    opt.step()


# --- timing -------------------------------------------------------------------------------

def time_row(way: str, data, n_batches: int, warmup: int = 3) -> float:
    """Examples per second of `n_batches` training steps (after `warmup` steps)."""
    torch.manual_seed(0)
    model = book_tinyssd(data)
    opt = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    if way == "book":
        batches, step = book_batches(data, warmup + n_batches), book_step
    else:
        batches, step = dlcamp_batches(data, warmup + n_batches), dlcamp_step
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        step(model, opt, *batch)
    return n_batches * BATCH / (time.perf_counter() - start)


def book_tinyssd(data):
    """The book's TinySSD: full width, the book's loss (no hard-negative mining)."""
    return create_model("tinyssd", num_classes=data.num_classes,
                        image_size=data.images.shape[-1], width=1.0, hard_negatives=0.0)


def differing_labels(data, model) -> tuple[int, int]:
    """(anchors whose class differs between the book's labelling and dlcamp's, anchors) on
    the first 64 images. dlcamp follows torchvision's Matcher (each box keeps every anchor tied
    for its best IoU); the book claims one anchor per box greedily, so a few differ where two
    boxes want the same anchor."""
    from dlcamp.vision.anchors import multibox_target
    head = data.select(slice(0, 64))
    book = book_multibox_target(model.anchors, torch.cat(
        [head.labels[..., None].float(), head.boxes], -1))
    ours = multibox_target(model.anchors, head.boxes, head.labels)
    return int((book[2] != ours[2]).sum()), book[2].numel()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", default="fruit-1", help="scene set (dlcamp data info)")
    p.add_argument("--batches", type=int, default=30, help="timed batches per row")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    setup(args)
    n_batches = 3 if args.quick else args.batches
    repeats = 1 if args.quick else args.repeats
    data = load_scene_set(args.dataset, "train")
    model = book_tinyssd(data)
    differ, anchors = differing_labels(data, model)
    times: dict[str, list[float]] = {"book": [], "dlcamp": []}
    for _ in range(repeats):
        for way in times:
            times[way].append(time_row(way, data, n_batches))
    base = statistics.median(times["book"])
    rows = [{"loop": way, "ex_s": statistics.median(v), "speedup": statistics.median(v) / base}
            for way, v in times.items()]
    table = markdown_table(rows, [("loop", "loop", ""), ("examples/s", "ex_s", ",.0f"),
                                  ("× book", "speedup", ".2f")])
    note = (f"TinySSD, {args.dataset} train split ({data.images.shape[-1]} px), batch {BATCH}, "
            f"SGD lr {LR}: {n_batches} timed batches per row, median of {repeats} interleaved "
            f"repeats. Anchor classes that differ between the two labellings on 64 images: "
            f"{differ} of {anchors:,}.")
    results = {"rows": rows, "differing_labels": [differ, anchors]}
    report(args, "detection", results, table + "\n\n" + note)


if __name__ == "__main__":
    main()
