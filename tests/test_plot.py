"""The image grid shared by lessons: one axes per image, titles, any dtype, with or without CJK."""

from __future__ import annotations

import io
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from dlcamp.course import plot

TITLES = ["T恤", "裤子", "套衫", "连衣裙", "外套"]


@pytest.mark.parametrize("images", [
    torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8),
    torch.randn(5, 28, 28),
], ids=["uint8-NCHW", "float-NHW"])
def test_grid_has_one_titled_axes_per_image(images):
    fig = plot.show_images(images, TITLES, ncols=3)
    try:
        assert len(fig.axes) == 5  # 2 rows x 3 columns, the sixth slot removed
        assert [ax.get_title() for ax in fig.axes] == TITLES
        assert fig.axes[0].images[0].get_array().shape == (28, 28)
    finally:
        plt.close(fig)


def test_uint8_keeps_the_0_255_scale():
    fig = plot.show_images(torch.full((2, 1, 4, 4), 10, dtype=torch.uint8))
    try:
        assert fig.axes[0].images[0].get_clim() == (0, 255)
        assert all(ax.get_title() == "" for ax in fig.axes)
    finally:
        plt.close(fig)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="grey"):
        plot.show_images(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="titles"):
        plot.show_images(torch.zeros(2, 8, 8), ["one"])


def test_cjk_font_is_a_known_family_or_none():
    name = plot.cjk_font()
    assert name is None or name in {f.name for f in plot.font_manager.fontManager.ttflist}


def test_no_cjk_font_draws_without_glyph_warnings(monkeypatch):
    monkeypatch.setattr(plot, "cjk_font", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plot.show_images(torch.zeros(5, 1, 8, 8), TITLES)
        fig.savefig(io.BytesIO(), format="png")  # matplotlib looks glyphs up when drawing
        plt.close(fig)
    assert [ax for ax in fig.axes if ax.get_title()] and not [
        w for w in caught if "missing from font" in str(w.message)]



def test_draw_boxes_places_one_rectangle_per_box():
    fig, ax = plt.subplots()
    try:
        ax.imshow(torch.zeros(100, 120, 3).numpy())
        boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 120.0, 100.0]])
        rects = plot.draw_boxes(ax, boxes, ["猫", "dog"], colors="red")
        assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects] == [
            (10.0, 20.0, 40.0, 60.0), (0.0, 0.0, 120.0, 100.0)]
        assert [t.get_text() for t in ax.texts] == ["猫", "dog"]
        assert len(ax.patches) == 2 and plot.draw_boxes(ax, boxes[0])[0].get_width() == 40.0
        with pytest.raises(ValueError, match="labels"):
            plot.draw_boxes(ax, boxes, ["one"])
        with pytest.raises(ValueError, match="N, 4"):
            plot.draw_boxes(ax, torch.zeros(2, 5))
    finally:
        plt.close(fig)

