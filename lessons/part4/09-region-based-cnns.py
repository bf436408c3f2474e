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
#     title: 区域卷积神经网络（R-CNN）系列
#     title_en: Region-based CNNs (R-CNNs)
#     minutes:
#       quick: 0.2
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 区域卷积神经网络（R-CNN）系列
#
# SSD 和 YOLO 是**单阶段**（one-stage）检测器：一次前向传播，直接在锚框或网格上给出类别和框。
# 另一条路线是**两阶段**（two-stage）：先找出一些"可能有物体"的**候选区域**（region proposal），
# 再对每个区域分类、修正框。这就是 R-CNN 系列（region-based CNN），本讲对应《动手学深度学习》14.8 节：
#
# | 模型 | 候选区域 | 每个区域的特征 |
# |---|---|---|
# | R-CNN（2014） | 选择性搜索（selective search），约 2000 个 | 每个区域裁下来、缩放，**各自**跑一遍 CNN |
# | Fast R-CNN（2015） | 选择性搜索 | 整张图只跑**一次** CNN，用 **RoI 汇聚**（RoI pooling）从特征图上取每个区域的特征 |
# | Faster R-CNN（2015） | **区域提议网络**（region proposal network, RPN）：锚框 + 二分类 + 偏移量 + NMS | 同上 |
# | Mask R-CNN（2017） | RPN | **RoI 对齐**（RoI Align）：双线性插值，不取整，像素级任务（分割）需要它 |
#
# 完整训练一个 Faster R-CNN 在 CPU 上太慢（torchvision 的预训练权重也要联网下载），本讲不训练，
# 而是把其中最关键的两个算子——`torchvision.ops.roi_pool` 和 `roi_align`——拆开看清楚，
# 再用 `dlcamp.vision` 的锚框和 NMS 走一遍"候选区域 → 区域特征"的流程。

# %%
import math

import matplotlib.pyplot as plt
import skimage.data
import torch
import torchvision
from torch import nn
from torchvision import ops

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes
from dlcamp.vision.anchors import decode_offsets, multibox_prior
from dlcamp.vision.boxes import box_iou, nms

QUICK = is_quick()  # 本讲没有训练，快速模式和完整模式一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## RoI 汇聚（RoI pooling）
#
# 候选区域大小各不相同，后面的全连接层却要固定长度的输入。**RoI 汇聚**把任意大小的区域
# 分成固定的 $h \times w$ 个格子，每格取最大值，输出总是 $h \times w$。
#
# 书中的例子：一张 4×4 的特征图，两个区域在**原图**上是 (0, 0, 20, 20) 和 (0, 10, 30, 30)；
# 特征图比原图小 10 倍（`spatial_scale=0.1`），区域映射到特征图上再取 2×2 的输出。
# 区域的第一列是它属于批量里的第几张图。

# %%
X = torch.arange(16.0).reshape(1, 1, 4, 4)                          # (B, C, H, W)
rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32)
pooled = ops.roi_pool(X, rois, output_size=(2, 2), spatial_scale=0.1)  # (2 regions, 1, 2, 2)
print(X[0, 0])
print(pooled)
assert pooled.tolist() == [[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]]  # the book's

# %% [markdown]
# 第一个区域映射到特征图的第 0–2 行、0–2 列（3×3 个元素），分成 2×2 格后每格取最大：5、6、9、10。
# 注意 RoI 汇聚把区域的坐标**取整**到特征图的格点上：区域移动不到一格时，输出可能完全不变。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## RoI 对齐（RoI Align）
#
# Mask R-CNN 发现取整带来的错位对像素级的任务（分割）伤害很大，于是改用 **RoI 对齐**：
# 区域坐标保持小数；每个输出格子里均匀取几个**采样点**（`sampling_ratio=2` 即 2×2 个），
# 每个点的值用周围 4 个元素**双线性插值**（bilinear interpolation）得到，再取平均。
# `aligned=True` 时坐标先减 0.5，让特征图元素的中心对准像素中心（Detectron2 的修正，推荐用）。
#
# 下面手算一个格子，和 torchvision 对照。双线性插值按 torchvision 的边界规则写：
# 超出特征图一格以外的点算 0，稍微超出的点贴到边上。

# %%
def bilinear(fmap: torch.Tensor, y: float, x: float) -> float:
    """Value of a (H, W) map at a real point, as roi_align interpolates it."""
    h, w = fmap.shape
    if y < -1 or y > h or x < -1 or x > w:
        return 0.0
    y, x = min(max(y, 0.0), h - 1), min(max(x, 0.0), w - 1)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return float((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x1]
                 + ly * (1 - lx) * fmap[y1, x0] + ly * lx * fmap[y1, x1])


def roi_align_bin(fmap, box, scale, out, row, col, samples=2):
    """One output cell (row, col) of roi_align(aligned=True) for box (x1, y1, x2, y2):
    (its value, the sample points (y, x) on the feature map)."""
    x1, y1, x2, y2 = (v * scale - 0.5 for v in box)                 # aligned: shift by half
    bin_h, bin_w = (y2 - y1) / out, (x2 - x1) / out
    points = [(y1 + row * bin_h + (i + 0.5) * bin_h / samples,
               x1 + col * bin_w + (j + 0.5) * bin_w / samples)
              for i in range(samples) for j in range(samples)]
    return sum(bilinear(fmap, y, x) for y, x in points) / len(points), points


aligned = ops.roi_align(X, rois, output_size=(2, 2), spatial_scale=0.1, sampling_ratio=2,
                        aligned=True)                               # (2, 1, 2, 2)
print(aligned)
by_hand, points = roi_align_bin(X[0, 0], [0, 10, 30, 30], 0.1, 2, row=1, col=0)  # region 2
print("cell (1, 0) of region 2, sample points (y, x):", points)
print(f"by hand {by_hand:.4f}, torchvision {aligned[1, 0, 1, 0]:.4f}")
assert math.isclose(by_hand, float(aligned[1, 0, 1, 0]), abs_tol=1e-5)
for r in range(2):
    for row in range(2):
        for col in range(2):
            box = rois[r, 1:].tolist()
            hand, _ = roi_align_bin(X[0, 0], box, 0.1, 2, row, col)
            assert math.isclose(hand, float(aligned[r, 0, row, col]), abs_tol=1e-5)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 取整的代价
#
# 把第二个区域在原图上向右挪 3 个像素（特征图上 0.3 格）：RoI 汇聚的输出纹丝不动，
# RoI 对齐的输出随之平滑地变化。检测的框、分割的掩码都要精确到像素，所以后来的模型都用 RoI 对齐。

# %%
shifted = rois[1:].clone()
shifted[:, [1, 3]] += 3.0
pool_same = torch.equal(ops.roi_pool(X, shifted, (2, 2), 0.1), pooled[1:])
align_moved = ops.roi_align(X, shifted, (2, 2), 0.1, 2, aligned=True) - aligned[1:]
print("roi_pool unchanged:", pool_same, "| roi_align change:", align_moved.flatten().tolist())
assert pool_same and (align_moved > 0.2).all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从候选区域到区域特征
#
# 现在在真实照片上走一遍 Faster R-CNN 的前半段：
#
# 1. **主干网络**（backbone）对整张图算一次特征图。这里用 torchvision 的 ResNet-18 的前三个阶段，
#    **随机初始化**（本讲只看形状和流程，不看分类对不对）；步幅 16，512×512 的图得到 32×32 的特征图；
# 2. **RPN**：在特征图每个单元上放锚框（`multibox_prior`），对每个锚框打"是不是物体"的分数、预测偏移量，
#    `decode_offsets` 得到框，NMS 去重，留下分数最高的几十个作为候选区域。
#    训练好的 RPN 才会打分；这里**用锚框和手标框（4.03 讲）的 IoU 加上噪声来模拟**这个分数；
# 3. **RoI 对齐**：每个候选区域从特征图上取出固定 7×7 的特征，送进后面的分类和回归头。

# %%
image = skimage.data.astronaut()
pixels = torch.as_tensor(image).permute(2, 0, 1)[None].float() / 255  # (1, 3, 512, 512)
resnet = torchvision.models.resnet18(weights=None)                    # random weights: shapes only
backbone = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                         resnet.layer1, resnet.layer2, resnet.layer3).eval()
with torch.no_grad():
    features = backbone(pixels)                                       # (1, 256, 32, 32)
stride = pixels.shape[-1] // features.shape[-1]
print("feature map", tuple(features.shape), "stride", stride)
assert features.shape == (1, 256, 32, 32) and stride == 16

# %%
hand_boxes = torch.tensor([[150.0, 15.0, 300.0, 180.0], [350.0, 0.0, 470.0, 285.0],
                           [278.0, 345.0, 512.0, 512.0], [130.0, 348.0, 205.0, 422.0]])
# head, rocket and helmet as in lesson 4.03, and the mission patch on her sleeve (small)
scale = torch.tensor([512.0, 512.0, 512.0, 512.0])
anchors = multibox_prior(32, 32, [0.5, 0.3, 0.15], [1, 2, 0.5]) * scale  # (32*32*5, 4) pixels
offsets = torch.zeros_like(anchors)                                 # an untrained RPN: no shift
proposals = decode_offsets(anchors, offsets).clamp(0, 512)          # (5120, 4)
g = torch.Generator().manual_seed(0)
objectness = box_iou(proposals, hand_boxes).max(1).values + 0.05 * torch.rand(len(proposals),
                                                                               generator=g)
keep = nms(proposals, objectness, 0.7)[:20]                         # top 20 after NMS
proposals = proposals[keep]
print(f"{len(anchors)} anchors -> {len(keep)} proposals after NMS")
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(image)
draw_boxes(ax, proposals, linewidth=1)
plt.show()

# %%
regions = ops.roi_align(features, [proposals], output_size=(7, 7), spatial_scale=1 / stride,
                        sampling_ratio=2, aligned=True)             # (20, 256, 7, 7)
head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 7 * 7, 256), nn.ReLU())
num_classes = 5                                                    # 4 objects + background
cls_layer, box_layer = nn.Linear(256, num_classes), nn.Linear(256, 4 * num_classes)
with torch.no_grad():
    hidden = head(regions)
    class_scores, box_deltas = cls_layer(hidden), box_layer(hidden)
print("region features", tuple(regions.shape), "-> class scores", tuple(class_scores.shape),
      "and box offsets", tuple(box_deltas.shape))
sizes = (proposals[:, 2:] - proposals[:, :2]).prod(1)
print(f"proposal areas from {sizes.min():.0f} to {sizes.max():.0f} px^2, features all 7 x 7")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - R-CNN 对每个候选区域各跑一次 CNN，很慢；Fast R-CNN 整图只算一次，用 RoI 汇聚取区域特征；
# - Faster R-CNN 用 RPN（锚框 + 二分类 + 偏移量 + NMS）代替选择性搜索，候选区域也能学；
# - RoI 汇聚把坐标取整，RoI 对齐用双线性插值保留小数位置，Mask R-CNN 靠它做到像素级精确；
# - 不管区域多大，RoI 汇聚/对齐都输出固定大小的特征。
#
# 自测：两阶段检测器为什么通常比单阶段的更准、更慢？RPN 的"二分类"和第二阶段的分类有什么不同？

# %%
assert regions.shape == (len(proposals), 256, 7, 7) and sizes.max() > 4 * sizes.min()
assert class_scores.shape == (len(proposals), num_classes)
best = box_iou(hand_boxes, proposals).max(1).values                 # every object is proposed
assert (best >= 0.5).all(), best
print(f"lesson 4.09 done: roi_pool = the book's values, roi_align = bilinear by hand, "
      f"{len(proposals)} proposals -> {tuple(regions.shape)} region features")
