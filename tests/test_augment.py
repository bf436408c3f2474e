"""dlcamp.vision.augment: per-sample batch augmentation equals torchvision.transforms.v2 image
by image for the same parameters, differs between images, and repeats under a seeded generator.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlcamp.core.errors import BadArgument
from dlcamp.data import TensorLoader, load_dataset
from dlcamp.vision.augment import (
    BatchAugment,
    color_jitter,
    fallback_crop,
    hflip,
    hflip_boxes,
    resized_crop,
    resized_crop_boxes,
    sample_crops,
    sample_flips,
    sample_jitter,
)

SEEDS = st.integers(0, 2**31 - 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(g: torch.Generator, b: int, m: int, height: int, width: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, 4) corner boxes inside the image and labels (B, M) with some -1 padding rows."""
    xy = torch.rand(b, m, 2, generator=g) * torch.tensor([width, height]) * 0.9
    wh = torch.rand(b, m, 2, generator=g) * torch.tensor([width, height]) * 0.5 + 0.5
    boxes = torch.cat((xy, torch.minimum(xy + wh, torch.tensor([width, height]))), dim=-1)
    labels = torch.randint(0, 5, (b, m), generator=g)
    labels[torch.rand(b, m, generator=g) < 0.25] = -1
    return boxes, labels


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, height=st.integers(2, 40), width=st.integers(2, 40),
       out=st.tuples(st.integers(1, 48), st.integers(1, 48)),
       lo=st.sampled_from([0.01, 0.08, 0.5, 1.0]))
def test_resized_crop_equals_torchvision_per_image(seed, height, width, out, lo):
    g = gen(seed)
    images = torch.rand(4, 3, height, width, generator=g)               # (B, C, H, W)
    crops = sample_crops(4, height, width, (lo, 1.0), generator=g)      # (B, 4)
    ours = resized_crop(images, crops, out)
    theirs = torch.stack([TF.resized_crop(img, *crop.tolist(), size=list(out), antialias=False)
                          for img, crop in zip(images, crops, strict=True)])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, height=st.integers(1, 300), width=st.integers(1, 300),
       scale=st.sampled_from([(0.08, 1.0), (0.5, 0.5), (0.9, 1.0), (0.001, 0.002)]),
       ratio=st.sampled_from([(3 / 4, 4 / 3), (1.0, 1.0), (0.1, 0.2), (5.0, 10.0)]))
def test_crops_lie_inside_and_follow_the_rule(seed, height, width, scale, ratio):
    crops = sample_crops(64, height, width, scale, ratio, generator=gen(seed))
    top, left, h, w = crops.unbind(1)
    assert crops.dtype == torch.int64 and crops.shape == (64, 4)
    assert ((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0)).all()
    assert ((top + h <= height) & (left + w <= width)).all()
    # a crop that is not the fallback has an area in `scale` (up to rounding of w and h)
    area = (h * w).double() / (height * width)
    slack = (h + w + 1).double() / (height * width)
    fw, fh = fallback_crop(height, width, ratio)
    fallback = (h == fh) & (w == fw) & (top == (height - fh) // 2) & (left == (width - fw) // 2)
    assert ((area >= scale[0] - slack) & (area <= scale[1] + slack) | fallback).all()


def test_crop_sizes_match_torchvision_distribution():
    """Areas and aspect ratios drawn for 4,000 images have the statistics of torchvision's
    RandomResizedCrop.make_params drawn 4,000 times (different generators, same law)."""
    height, width, n = 60, 90, 4000
    ours = sample_crops(n, height, width, generator=gen(0)).double()     # (n, 4)
    torch.manual_seed(0)
    rrc = v2.RandomResizedCrop(32)
    probe = torch.zeros(3, height, width)
    theirs = torch.tensor([[p["top"], p["left"], p["height"], p["width"]] for p in
                           (rrc.make_params([probe]) for _ in range(n))], dtype=torch.float64)
    for stats in (lambda c: c[:, 2] * c[:, 3], lambda c: (c[:, 3] / c[:, 2]).log(),
                  lambda c: c[:, 0] / (height - c[:, 2] + 1)):
        a, b = stats(ours), stats(theirs)
        assert abs(a.mean() - b.mean()) < 0.1 * b.std()
        assert abs(a.std() - b.std()) < 0.08 * b.std()


def test_color_jitter_equals_torchvision_per_image():
    g = gen(1)
    images = torch.rand(8, 3, 12, 17, generator=g)
    factors = sample_jitter(8, 0.5, 0.5, 0.9, generator=g)               # (B, 3)
    theirs = torch.stack([
        TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)
        for img, (b, c, s) in zip(images, factors.tolist(), strict=True)])
    torch.testing.assert_close(color_jitter(images, factors), theirs, atol=1e-6, rtol=1e-5)
    # pixels in [0, 255] (TensorLoader's batches) give the same result scaled by 255
    torch.testing.assert_close(color_jitter(images * 255, factors, bound=255.0) / 255, theirs,
                               atol=1e-5, rtol=1e-5)
    grey = images[:, :1]                                                 # 1 channel
    theirs_grey = torch.stack([TF.adjust_contrast(TF.adjust_brightness(img, b), c)
                               for img, (b, c, _) in zip(grey, factors.tolist(), strict=True)])
    torch.testing.assert_close(color_jitter(grey, factors), theirs_grey, atol=1e-6, rtol=1e-5)


def test_flip_equals_torchvision_and_only_where_asked():
    images = torch.rand(6, 3, 5, 7, generator=gen(2))
    flips = torch.tensor([True, False, True, True, False, False])
    out = hflip(images, flips)
    for img, o, f in zip(images, out, flips, strict=True):
        torch.testing.assert_close(o, TF.horizontal_flip(img) if f else img, atol=0, rtol=0)


def test_boxes_flip_and_crop_like_torchvision_bounding_boxes():
    g = gen(3)
    b, m, height, width, size = 6, 7, 40, 50, (32, 24)
    boxes, labels = random_boxes(g, b, m, height, width)
    flips = sample_flips(b, 0.5, g)
    crops = sample_crops(b, height, width, (0.1, 1.0), generator=g)
    flipped = hflip_boxes(boxes, labels, flips, width)
    moved, kept = resized_crop_boxes(flipped, labels, crops, size)
    for i in range(b):
        tv = tv_tensors.BoundingBoxes(boxes[i], format="XYXY", canvas_size=(height, width))
        if flips[i]:
            tv = TF.horizontal_flip(tv)
        real = labels[i] >= 0
        torch.testing.assert_close(flipped[i][real], tv.as_subclass(torch.Tensor)[real])
        tv = TF.clamp_bounding_boxes(TF.resized_crop(tv, *crops[i].tolist(), size=list(size)))
        _, valid = TF.sanitize_bounding_boxes(tv)                        # min_size 1, area 1
        valid &= real
        assert torch.equal(kept[i] >= 0, valid)
        assert torch.equal(kept[i][valid], labels[i][valid])
        torch.testing.assert_close(moved[i][valid], tv.as_subclass(torch.Tensor)[valid])
        assert (moved[i][~valid] == 0).all()
    assert (kept[labels < 0] == -1).all() and (kept >= 0).any() and (kept[labels >= 0] < 0).any()


def test_each_image_draws_its_own_parameters():
    """The pitfall this module exists for: v2 on a batch applies ONE draw to every image."""
    images = torch.rand(1, 3, 24, 24, generator=gen(4)).expand(16, 3, 24, 24)
    aug = BatchAugment(flip=0.5, scale=(0.2, 1.0), brightness=0.5, contrast=0.5, saturation=0.5,
                       bound=1.0)
    ours = aug(images, gen(5))
    assert len({tuple(x.flatten()[:50].tolist()) for x in ours}) == 16  # 16 different images
    torch.manual_seed(0)
    theirs = v2.RandomResizedCrop(24, scale=(0.2, 1.0))(images)
    assert all(torch.equal(x, theirs[0]) for x in theirs)                # all the same crop


def test_same_generator_same_batch_and_zero_strength_is_identity():
    images = torch.rand(8, 3, 20, 20, generator=gen(6)) * 255
    aug = BatchAugment(flip=0.5, scale=(0.3, 1.0), brightness=0.4, contrast=0.4)
    torch.testing.assert_close(aug(images, gen(7)), aug(images, gen(7)), atol=0, rtol=0)
    assert not torch.equal(aug(images, gen(7)), aug(images, gen(8)))
    off = BatchAugment(flip=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(off(images, gen(9)), images, atol=1e-3, rtol=0)  # of 255
    boxes, labels = random_boxes(gen(10), 8, 3, 20, 20)
    _, same_boxes, same_labels = off.with_boxes(images, boxes, labels, gen(9))
    torch.testing.assert_close(same_boxes[labels >= 0], boxes[labels >= 0])
    assert torch.equal(same_labels, labels)


def test_with_boxes_moves_boxes_with_the_pixels():
    """A white square on black: after flip + crop its box still frames the white pixels."""
    images = torch.zeros(32, 1, 40, 40)
    images[:, :, 10:22, 5:15] = 1.0
    boxes = torch.tensor([[[5.0, 10.0, 15.0, 22.0], [0.0, 0.0, 0.0, 0.0]]]).expand(32, 2, 4)
    labels = torch.tensor([[0, -1]]).expand(32, 2)
    aug = BatchAugment(flip=0.5, scale=(0.3, 1.0), bound=1.0)
    out, moved, kept = aug.with_boxes(images, boxes, labels, gen(11))
    assert (kept[:, 1] == -1).all() and (kept[:, 0] >= 0).sum() >= 16
    for img, box, label in zip(out[:, 0], moved[:, 0], kept[:, 0], strict=True):
        ys, xs = torch.nonzero(img > 0.5, as_tuple=True)
        if label < 0:  # the square left the crop, or less than a pixel of it is left
            assert len(xs) == 0 or len(xs.unique()) <= 2 or len(ys.unique()) <= 2
            continue
        x1, y1, x2, y2 = box.tolist()
        assert xs.min() >= x1 - 1 and xs.max() <= x2 and ys.min() >= y1 - 1 and ys.max() <= y2


def test_tensor_loader_uses_it_and_bad_settings_are_refused():
    data = load_dataset("digits", "train").subset(40)
    aug = BatchAugment(flip=0.0, scale=(0.5, 1.0), contrast=0.5)
    plain = next(iter(TensorLoader(data, 40, shuffle=True)))[0]
    batch = next(iter(TensorLoader(data, 40, shuffle=True, augment=aug)))[0]
    assert batch.shape == plain.shape and not torch.allclose(batch, plain)
    for bad in (dict(flip=1.5), dict(scale=(0.0, 1.0)), dict(scale=(0.5, 2.0)),
                dict(ratio=(2.0, 1.0)), dict(brightness=-0.1)):
        with pytest.raises(BadArgument):
            BatchAugment(**bad)
    with pytest.raises(BadArgument, match="inside"):
        resized_crop(torch.zeros(1, 1, 8, 8), torch.tensor([[4, 0, 8, 8]]), (8, 8))
    with pytest.raises(BadArgument, match="float"):
        hflip(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.tensor([True]))
