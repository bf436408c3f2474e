"""dlcamp.vision.augment's camera augmentations (zoom out, gamma, blur, noise): each equals
torchvision.transforms.v2.functional image by image for the same parameters, boxes move with
the pixels, and a seeded generator repeats the batch.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from dlcamp.core.errors import BadArgument
from dlcamp.vision.augment import (
    add_noise,
    adjust_gamma,
    gaussian_blur,
    sample_uniform,
    sample_zooms,
    zoom_out,
    zoom_out_boxes,
)

SEEDS = st.integers(0, 2**31 - 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def affine_args(zoom: torch.Tensor, height: int, width: int) -> dict:
    """torchvision affine arguments of one zoom-out row (factor, top, left)."""
    f, top, left = zoom.tolist()
    return {"angle": 0.0, "translate": [left + (f - 1) * width / 2, top + (f - 1) * height / 2],
            "scale": f, "shear": [0.0, 0.0]}


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, height=st.integers(4, 40), width=st.integers(4, 40),
       lo=st.floats(0.3, 1.0), fill=st.floats(0.0, 1.0))
def test_zoom_out_equals_torchvision_affine(seed, height, width, lo, fill):
    g = gen(seed)
    images = torch.rand(3, 3, height, width, generator=g, dtype=torch.float64)  # no fp32 noise
    zooms = sample_zooms(3, height, width, (lo, 1.0), g)
    out = zoom_out(images, zooms, fill)
    for i in range(3):
        ref = TF.affine(images[i], **affine_args(zooms[i], height, width),
                        interpolation=InterpolationMode.BILINEAR, fill=fill)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_zoom_out_boxes_equal_torchvision_and_stay_inside():
    g = gen(1)
    height, width = 30, 40
    boxes = torch.tensor([[[2.0, 3.0, 20.0, 25.0], [0.0, 0.0, 40.0, 30.0]],
                          [[10.0, 5.0, 12.0, 9.0], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 3], [1, -1]])
    zooms = sample_zooms(2, height, width, (0.4, 0.9), g)
    moved = zoom_out_boxes(boxes, labels, zooms)
    for i in range(2):
        ref = TF.affine(tv_tensors.BoundingBoxes(boxes[i], format="XYXY",
                                                 canvas_size=(height, width)),
                        **affine_args(zooms[i], height, width))
        real = labels[i] >= 0
        torch.testing.assert_close(moved[i][real], ref[real].as_subclass(torch.Tensor),
                                   atol=1e-4, rtol=0)
    assert torch.equal(moved[1, 1], boxes[1, 1])                # padding untouched
    assert bool((moved[..., 2] <= width + 1e-4).all() and (moved[..., 3] <= height + 1e-4).all())
    # objects get smaller by the factor
    size = (moved[0, 0, 2:] - moved[0, 0, :2]) / (boxes[0, 0, 2:] - boxes[0, 0, :2])
    torch.testing.assert_close(size, zooms[0, :1].expand(2), atol=1e-5, rtol=0)


def test_a_bright_square_lands_in_its_moved_box():
    images = torch.zeros(1, 3, 32, 32)
    images[..., 8:24, 8:24] = 1.0
    box = torch.tensor([[[8.0, 8.0, 24.0, 24.0]]])
    zooms = torch.tensor([[0.5, 4.0, 10.0]])
    out = zoom_out(images, zooms, fill=0.0)
    x1, y1, x2, y2 = zoom_out_boxes(box, torch.tensor([[0]]), zooms)[0, 0].round().long().tolist()
    assert (x1, y1, x2, y2) == (14, 8, 22, 16)
    assert out[0, :, y1:y2, x1:x2].min() > 0.99
    assert out.sum() == pytest.approx(3 * 8 * 8, abs=1e-3)      # nothing else lights up


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, size=st.integers(8, 30), sigma_hi=st.floats(0.0, 2.0))
def test_gaussian_blur_equals_torchvision(seed, size, sigma_hi):
    g = gen(seed)
    images = torch.rand(3, 3, size, size + 3, generator=g, dtype=torch.float64)
    sigmas = sample_uniform(3, (0.0, sigma_hi), g)
    out = gaussian_blur(images, sigmas)
    k = 2 * int(torch.ceil(3 * sigmas.max()).item()) + 1
    for i in range(3):
        if k == 1 or sigmas[i] == 0:  # torchvision refuses sigma 0; ours leaves the image
            ref = images[i]
        else:
            ref = TF.gaussian_blur(images[i], [k, k], [float(sigmas[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_gamma_equals_torchvision_at_both_bounds():
    g = gen(2)
    images = torch.rand(4, 3, 9, 7, generator=g)
    gammas = torch.tensor([0.7, 1.0, 1.2, 1.6])
    for bound in (1.0, 255.0):
        out = adjust_gamma(images * bound, gammas, bound) / bound
        for i in range(4):
            torch.testing.assert_close(out[i], TF.adjust_gamma(images[i], float(gammas[i])),
                                       atol=1e-5, rtol=0)


def test_noise_has_the_asked_spread_and_repeats():
    images = torch.full((3, 3, 64, 64), 127.5)
    sigmas = torch.tensor([0.0, 0.02, 0.05])
    out = add_noise(images, sigmas, 255.0, gen(3))
    spread = (out - images).flatten(1).std(1)
    torch.testing.assert_close(spread, sigmas * 255, atol=0.3, rtol=0.03)
    assert torch.equal(out, add_noise(images, sigmas, 255.0, gen(3)))
    assert not torch.equal(out, add_noise(images, sigmas, 255.0, gen(4)))
    assert add_noise(torch.full((1, 1, 8, 8), 250.0), torch.tensor([0.5]), 255.0).max() <= 255


def test_bad_settings_are_refused():
    with pytest.raises(BadArgument, match="at most 1"):
        sample_zooms(2, 8, 8, (0.5, 1.5))
    with pytest.raises(BadArgument, match="low <= high"):
        sample_uniform(2, (1.0, 0.5))
    with pytest.raises(BadArgument, match=">= 0"):
        gaussian_blur(torch.rand(1, 3, 8, 8), torch.tensor([-1.0]))
    with pytest.raises(BadArgument, match="wider"):
        gaussian_blur(torch.rand(1, 3, 8, 8), torch.tensor([5.0]))
    with pytest.raises(BadArgument, match=r"\(B, 3\)"):
        zoom_out(torch.rand(2, 3, 8, 8), torch.ones(3, 3))
    with pytest.raises(BadArgument, match="float"):
        adjust_gamma(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.ones(1))
