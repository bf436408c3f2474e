"""The book's single-shot multibox detector, TinySSD (d2l 14.7 "Single Shot Multibox Detection";
Liu et al. 2016, "SSD: Single Shot MultiBox Detector").

A base network of down-sampling blocks (3 -> 16 -> 32 -> 64 channels, each halving the side),
then three more down-sampling blocks and a global max-pool: five feature maps, each predicting,
for every pixel, the classes (background + num_classes) and the four offsets of its anchors.
The book's anchor sizes grow from 0.2 to 0.88 of the image over the five scales, with ratios
1, 2 and 0.5 (4 anchors a pixel). At the book's 256 px the maps are 32, 16, 8, 4 and 1 pixels
wide (5,444 anchors); at our scene sets' 128 px they are 16, 8, 4, 2 and 1 (1,364 anchors).

Training labels every anchor as the book does (dlcamp.vision.anchors.multibox_target,
vectorised over the batch): cross-entropy over each anchor's class plus L1 on the offsets of
the anchors that hold an object. The book averages both over all anchors (`hard_negatives=0`);
by default we normalise as the SSD paper does, by the positive anchors, keeping only the
3 x P hardest background anchors (hard negative mining): on our scene sets it reaches a given
mAP in about a third of the epochs (fruit-1, width 0.5: test mAP@0.5 0.44 vs 0.12 after one
epoch, 0.62 vs 0.46 after two). Detection decodes the offsets, keeps per class the boxes that
survive non-maximum suppression (torchvision.ops.batched_nms, one call for the whole batch)
and returns the best `max_detections` of each image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from dlcamp.core.config import Recipe
from dlcamp.models.detector import Detections, Detector
from dlcamp.models.registry import register_model
from dlcamp.vision.anchors import decode_offsets, multibox_prior, multibox_target

BOOK_SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
BOOK_RATIOS = (1.0, 2.0, 0.5)
PRE_NMS_TOP_K = 400  # candidates per image that reach NMS (torchvision's SSD keeps 400 too)


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + batch norm + ReLU, then 2x2 max-pool: (B, in, H, W) -> (B, out, H/2, W/2)."""
    layers: list[nn.Module] = []
    for c in (in_channels, out_channels):
        layers += [nn.Conv2d(c, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                   nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class TinySSD(Detector):
    """TinySSD (d2l 14.7). forward(images (B, 3, S, S)) -> (class logits (B, A, C + 1),
    offsets (B, A, 4)), A = 4 anchors x the pixels of the five maps; class 0 is background.

    `width` scales every channel count (1.0: the book's 16, 32, 64, 128); `sizes` and `ratios`
    are the anchors of each scale as fractions of the image side; `hard_negatives` is the
    loss's negatives-per-positive ratio (0: the book's loss; see `loss`). The anchors, in pixels of
    the input, are the buffer `anchors` (A, 4), made once. Raises ValueError when
    `image_size` is not a multiple of 16 or too small for five scales (< 32).
    """

    def __init__(self, num_classes: int = 1, image_size: int = 128, width: float = 1.0,
                 sizes: Sequence[Sequence[float]] = BOOK_SIZES,
                 ratios: Sequence[float] = BOOK_RATIOS, iou_threshold: float = 0.5,
                 hard_negatives: float = 3.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if image_size < 32 or image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 and >= 32, got {image_size}")
        if len(sizes) != 5 or len({len(s) for s in sizes}) != 1:
            raise ValueError("sizes must give the same number of sizes for each of 5 scales")
        self.num_classes, self.image_size = num_classes, image_size
        self.iou_threshold, self.hard_negatives = iou_threshold, hard_negatives
        c = [max(4, round(n * width)) for n in (16, 32, 64, 128)]
        self.num_anchors = len(sizes[0]) + len(ratios) - 1
        self.blocks = nn.ModuleList([
            nn.Sequential(down_sample_blk(3, c[0]), down_sample_blk(c[0], c[1]),
                          down_sample_blk(c[1], c[2])),                   # base net: S/8
            down_sample_blk(c[2], c[3]), down_sample_blk(c[3], c[3]),      # S/16, S/32
            down_sample_blk(c[3], c[3]), nn.AdaptiveMaxPool2d((1, 1))])    # S/64, 1
        outs = [c[2], c[3], c[3], c[3], c[3]]
        k, n = self.num_anchors, num_classes + 1
        self.cls_preds = nn.ModuleList(nn.Conv2d(o, k * n, 3, padding=1) for o in outs)
        self.bbox_preds = nn.ModuleList(nn.Conv2d(o, k * 4, 3, padding=1) for o in outs)
        sides = [image_size // 8, image_size // 16, image_size // 32, image_size // 64, 1]
        anchors = torch.cat([multibox_prior(s, s, list(size), list(ratios))
                             for s, size in zip(sides, sizes, strict=True)])
        self.register_buffer("anchors", anchors * image_size, persistent=False)  # (A, 4) px

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five maps the predictions are made on, largest first: (B, C_i, H_i, W_i)."""
        maps, x = [], images
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        cls, box = [], []
        for x, cls_pred, bbox_pred in zip(self.feature_maps(images), self.cls_preds,
                                          self.bbox_preds, strict=True):
            # (B, k*n, H, W) -> (B, H, W, k*n) -> (B, H*W*k, n): pixel-major, like the anchors
            cls.append(cls_pred(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1))
            box.append(bbox_pred(x).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)  # (B, A, C+1), (B, A, 4)

    def loss(self, outputs: tuple[torch.Tensor, ...], boxes: torch.Tensor, labels: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the anchors' classes plus L1 distance of the offsets of anchors
        with an object, per image, averaged over the batch. boxes (B, M, 4) px, labels (B, M)
        (-1: padding).

        hard_negatives = 0: the book's loss (d2l 14.7.2), both terms a mean over all anchors.
        hard_negatives = k > 0: SSD's (Liu et al. 2016, sec. 2.2), both terms summed and
        divided by the image's positive anchors P, the class term over the positives and the
        k * P background anchors with the largest loss only (hard negative mining; an image
        without objects keeps its k hardest), so the thousands of easy background anchors do
        not drown the few objects.
        Sums: loss, cls_loss, box_loss (summed over images), cls_err (misclassified anchors),
        anchors and n (images)."""
        cls_preds, bbox_preds = outputs[0].float(), outputs[1].float()
        offsets, mask, classes = multibox_target(self.anchors, boxes.float(), labels,
                                                 self.iou_threshold)  # (B,A,4) x2, (B,A)
        b = len(classes)
        ce = F.cross_entropy(cls_preds.reshape(-1, self.num_classes + 1), classes.reshape(-1),
                             reduction="none").reshape(b, -1)               # (B, A)
        l1 = F.l1_loss(bbox_preds * mask, offsets, reduction="none").sum(-1)  # (B, A)
        if self.hard_negatives:
            positive = classes > 0
            n_pos = positive.sum(1, keepdim=True)                           # (B, 1)
            negative_ce = torch.where(positive, torch.zeros_like(ce), ce.detach())
            rank = negative_ce.argsort(1, descending=True).argsort(1)       # (B, A) 0 = hardest
            hard = ~positive & (rank < self.hard_negatives * n_pos.clamp(min=1))  # (B, A)
            per = n_pos.squeeze(1).clamp(min=1)
            cls_loss = (ce * (positive | hard)).sum(1) / per                # (B,)
            box_loss = l1.sum(1) / per
        else:
            cls_loss, box_loss = ce.mean(1), l1.mean(1) / 4                 # (B,)
        total = cls_loss + box_loss
        sums = {"loss": total.detach().sum(), "cls_loss": cls_loss.detach().sum(),
                "box_loss": box_loss.detach().sum(),
                "cls_err": (cls_preds.argmax(-1) != classes).sum(),
                "anchors": torch.tensor(classes.numel()), "n": torch.tensor(b)}
        return total.mean(), sums

    @torch.no_grad()
    def detect(self, outputs: tuple[torch.Tensor, ...], score_threshold: float = 0.05,
               iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
        """Boxes (corner px, clipped to the image), scores and class ids (0..C-1) per image.

        Every (anchor, class) pair scoring above `score_threshold` is a candidate (the best
        PRE_NMS_TOP_K of each image); NMS runs per image and class in one batched call."""
        probs = F.softmax(outputs[0].float(), dim=-1)[..., 1:]              # (B, A, C)
        b, a, c = probs.shape
        anchors = self.anchors.expand(b, a, 4).reshape(-1, 4)
        boxes = decode_offsets(anchors, outputs[1].float().reshape(-1, 4))
        boxes = boxes.clamp(0, self.image_size).reshape(b, a, 4)           # (B, A, 4)
        scores, flat = probs.reshape(b, -1).topk(min(PRE_NMS_TOP_K, a * c), dim=1)  # (B, K)
        image = torch.arange(b, device=probs.device)[:, None].expand_as(flat)
        keep = scores > score_threshold
        scores, flat, image = scores[keep], flat[keep], image[keep]         # (N,) candidates
        label = flat % c
        cand = boxes[image, flat // c]                                       # (N, 4)
        kept = batched_nms(cand, scores, image * c + label, iou_threshold)  # best first
        image, order = image[kept], torch.argsort(image[kept], stable=True)  # by image, then score
        counts = torch.bincount(image, minlength=b).tolist()
        parts = zip(cand[kept][order].split(counts), scores[kept][order].split(counts),
                    label[kept][order].split(counts), strict=True)
        return [{"boxes": bx[:max_detections], "scores": sc[:max_detections],
                 "labels": lb[:max_detections]} for bx, sc, lb in parts]

    def describe(self) -> dict:
        return {**super().describe(), "anchors": len(self.anchors),
                "anchors_per_pixel": self.num_anchors}


# Half the book's channels (width 0.5): about 3x cheaper steps on a CPU. SSD's loss at lr 0.05
# (the book's lr 0.2 suits its own, smaller loss), batches of 16 (more steps per epoch: on
# fruit-1 test mAP@0.5 passed 0.9 after 7 epochs, vs 0.85 after 20 with batches of 32).
# Flip only: colour jitter gave the same mAP per epoch, random crops a lower one in 20 epochs.
TINYSSD_RECIPE = Recipe(epochs=20, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                        schedule="onecycle", batch_size=16, augment="flip",
                        model_kwargs={"width": 0.5})


@register_model("tinyssd", recipe=TINYSSD_RECIPE)
def tinyssd(num_classes: int = 1, image_size: int = 128, width: float = 1.0,
            hard_negatives: float = 3.0) -> TinySSD:
    """TinySSD (d2l 14.7): single-shot multibox detector, 5 scales, 4 anchors a pixel."""
    return TinySSD(num_classes, image_size, width, hard_negatives=hard_negatives)
