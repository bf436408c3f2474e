# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   dlcamp:
#     title: 多尺度目标检测（multiscale object detection）
#     title_en: Multiscale object detection
#     minutes:
#       quick: 0.1
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 多尺度目标检测（multiscale object detection）
#
# 上一讲在图像的**每个像素**上生成锚框：一张 512×512 的照片、每个像素 5 个锚框，就是 130 万个，
# 太多了，而且相邻像素的锚框几乎一模一样。更省的做法是：
#
# - 只在一张**小特征图**的每个单元上放锚框，锚框的中心在图像上均匀分布；
# - 小物体用小锚框、大物体用大锚框：特征图越小（越深的层），每个单元看到的图像区域越大，锚框也就越大。
#
# 这就是**多尺度**（multiscale）检测，SSD 和 YOLO（从 v3 起）都这么做。本讲对应《动手学深度学习》14.5 节。

# %%
import matplotlib.pyplot as plt
import skimage.data
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes
from dlcamp.vision.anchors import multibox_prior
from dlcamp.vision.boxes import box_iou

QUICK = is_quick()
image = skimage.data.astronaut()  # (512, 512, 3)
height, width = image.shape[:2]
to_pixels = torch.tensor([width, height, width, height], dtype=torch.float32)
RATIOS = [1, 2, 0.5]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在特征图上放锚框
#
# 锚框的坐标是归一化的，所以特征图的高和宽决定的只是锚框**中心**的分布：一个 $h \times w$ 的特征图
# 给出 $h \times w$ 个均匀分布的中心，第 $(i, j)$ 个单元的中心在 $((j + 0.5)/w,\ (i + 0.5)/h)$。
# 下面这个函数把某个大小的锚框画在照片上（书中的 `display_anchors`）：

# %%
def display_anchors(fmap_h: int, fmap_w: int, size: float, ax) -> torch.Tensor:
    """Anchors of one size on an fmap_h x fmap_w feature map, drawn on the photo; in pixels."""
    anchors = multibox_prior(fmap_h, fmap_w, [size], RATIOS) * to_pixels   # (h*w*3, 4)
    ax.imshow(image)
    draw_boxes(ax, anchors, colors=["tab:blue", "tab:orange", "tab:green"] * fmap_h * fmap_w,
               linewidth=1)
    ax.set_title(f"{fmap_h}x{fmap_w} feature map, size {size}")
    ax.set_axis_off()
    return anchors


fig, axes = plt.subplots(1, 3, figsize=(12, 4))
shown = {}
for ax, (n, size) in zip(axes, [(4, 0.15), (2, 0.4), (1, 0.8)], strict=True):
    shown[n] = display_anchors(n, n, size, ax)
plt.show()

# %% [markdown]
# 4×4 的特征图上是 16 组小锚框，2×2 上 4 组大一些的，1×1 上只有一组，中心就在图像中心。
# 检查一下中心的位置：4×4 时相邻中心相距 512/4 = 128 像素，第一个在 (64, 64)。

# %%
centres = (shown[4][:, :2] + shown[4][:, 2:]) / 2                    # (48, 2) pixels
print(centres[::3][:5])
assert torch.allclose(centres[0], torch.tensor([64.0, 64.0]))
assert torch.allclose(centres[3], torch.tensor([192.0, 64.0]))      # the next cell to the right
assert len(shown[4]) == 4 * 4 * 3 and len(shown[1]) == 3
assert torch.allclose((shown[1][:, :2] + shown[1][:, 2:]) / 2, torch.tensor([256.0, 256.0]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 特征图从哪里来
#
# 卷积网络每经过一个步幅为 2 的层，特征图的高和宽就减半，每个单元对应的图像区域（**感受野**，
# receptive field）就变大。所以很自然地：**浅层**的大特征图负责小物体，**深层**的小特征图负责大物体。
# 下面用几个随机初始化的卷积块看看形状（SSD 的做法就是在每一块的输出上都放锚框、都做预测）：

# %%
def down_block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


blocks = nn.ModuleList([down_block(3, 8), *[down_block(8, 8) for _ in range(6)]])
x = torch.as_tensor(image).permute(2, 0, 1)[None].float() / 255     # (1, 3, 512, 512)
maps = []
with torch.no_grad():
    for block in blocks:
        x = block(x)
        maps.append(x.shape[-2:])
print([tuple(m) for m in maps])
assert [m[0] for m in maps] == [256, 128, 64, 32, 16, 8, 4]
per_map = {int(m[0]): int(m[0] * m[1]) * len(RATIOS) for m in maps[-4:]}
print("anchors on the last four maps:", per_map, "total", sum(per_map.values()))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 多尺度为什么有用
#
# 做个实验：随机生成 2000 个大小悬殊（边长从图像的 5% 到 90%）、形状各异的物体，
# 看每个物体能找到的最好锚框的 IoU。五种尺度：32×32 特征图配大小 0.05、16×16 配 0.1、
# 8×8 配 0.2、4×4 配 0.45、2×2 配 0.8。
# 单用一种尺度，只有大小合适的物体能被框好；几种尺度一起用，大多数物体都能找到合适的锚框
# （每个尺度只用了一个大小、三个宽高比，锚框不多，所以达不到 100%）。

# %%
g = torch.Generator().manual_seed(0)
n = 2000
centre = torch.rand(n, 2, generator=g)
side = torch.exp(torch.empty(n).uniform_(-3.0, -0.1, generator=g))  # 0.05 .. 0.9 of the image
ratio = torch.exp(torch.empty(n).uniform_(-0.7, 0.7, generator=g))  # width / height 0.5 .. 2
wh = torch.stack((side * ratio.sqrt(), side / ratio.sqrt()), 1)
objects = torch.cat((centre - wh / 2, centre + wh / 2), 1).clamp(0, 1)  # (n, 4) normalised

scales = [(32, 0.05), (16, 0.1), (8, 0.2), (4, 0.45), (2, 0.8)]
best = torch.stack([box_iou(objects, multibox_prior(s, s, [size], RATIOS)).max(1).values
                    for s, size in scales])                        # (5 scales, n)
every = best.max(0)                                                  # the best over all scales
area = ((objects[:, 2] - objects[:, 0]) * (objects[:, 3] - objects[:, 1])).sqrt()
for k, (s, size) in enumerate(scales):
    won = every.indices == k
    print(f"{s:2d}x{s:<2d} size {size:4.2f}: mean best IoU {best[k].mean():.2f}, "
          f"IoU>=0.5 for {(best[k] >= 0.5).float().mean():5.1%}; best scale for {int(won.sum()):4d} "
          f"objects of mean side {area[won].mean():.2f}")
print(f"all scales together: IoU>=0.5 for {(every.values >= 0.5).float().mean():.1%}")

# %% [markdown]
# 每种尺度都是"大小合适"的那些物体的最佳选择：赢的物体平均边长随特征图变小而变大。
# 合起来，达到 IoU 0.5 的物体比例远高于任何单一尺度。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 在小特征图上放锚框，中心均匀分布在图像上，锚框的数量大大减少；
# - 深层特征图小、感受野大，配大锚框检测大物体；浅层特征图大，配小锚框检测小物体；
# - 多个尺度一起用，各种大小的物体都能找到合适的锚框。
#
# 自测：如果只能用一种尺度，又想框好小物体，需要多大的特征图？锚框会增加多少？

# %%
single = (best >= 0.5).float().mean(1)                               # (5,) per scale
together = (every.values >= 0.5).float().mean()
winners = [area[every.indices == k].mean() for k in range(len(scales))]
assert all(a < b for a, b in zip(winners, winners[1:], strict=False)), winners  # bigger, coarser
assert together > single.max() + 0.2, (together, single)
print(f"lesson 4.05 done: multiscale anchors cover {together:.0%} of objects at IoU 0.5, "
      f"the best single scale {single.max():.0%}")
