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
#     title: 锚框（anchor box）
#     title_en: Anchor boxes
#     minutes:
#       quick: 0.2
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 锚框（anchor box）
#
# 检测模型怎样"找"物体？一种经典做法是：先在图上铺满大量预先定好大小和形状的框，
# 叫**锚框**（anchor box）；模型对每个锚框回答两个问题——里面有没有物体、是哪一类，
# 以及要把这个锚框挪多少、拉伸多少才能刚好框住物体（**偏移量**，offset）。
# 最后把重叠的预测去掉，只留最好的一个（**非极大值抑制**，non-maximum suppression, NMS）。
#
# 本讲对应《动手学深度学习》14.4 节，一步步做：生成锚框 → 交并比 → 给锚框标注类别和偏移量 → NMS。
# 所有函数都在 `dlcamp.vision` 里（从零写出，测试中和 torchvision 逐一对照），本讲读它们、用它们。

# %%
import inspect

import matplotlib.pyplot as plt
import skimage.data
import torch
from torchvision import ops
from torchvision.models.detection._utils import BoxCoder, Matcher

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes
from dlcamp.vision.anchors import (
    OFFSET_WEIGHTS,
    decode_offsets,
    encode_offsets,
    match_anchors,
    multibox_prior,
)
from dlcamp.vision.boxes import box_iou, nms

QUICK = is_quick()  # 本讲没有训练，快速模式和完整模式一样
image = skimage.data.astronaut()  # (512, 512, 3), the photo of lesson 4.03
height, width = image.shape[:2]
to_pixels = torch.tensor([width, height, width, height], dtype=torch.float32)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 生成锚框
#
# 书中的做法：以特征图的**每个像素**为中心，按 $n$ 个**大小**（size，占图像边长的比例）
# $s_1, \dots, s_n$ 和 $m$ 个**宽高比**（aspect ratio，宽/高）$r_1, \dots, r_m$ 生成锚框。
# 全部组合有 $nm$ 个，太多；书中只取含 $s_1$ 或 $r_1$ 的组合：
# $(s_1, r_1), (s_2, r_1), \dots, (s_n, r_1), (s_1, r_2), \dots, (s_1, r_m)$，每个像素 $n + m - 1$ 个。
# 坐标是归一化的（除以宽和高），`multibox_prior` 一次生成全部锚框，没有循环：

# %%
print(inspect.getsource(multibox_prior))

# %% [markdown]
# 书中的例子：一张 561×728 的图，大小 (0.75, 0.5, 0.25)、宽高比 (1, 2, 0.5)，每个像素 5 个锚框，
# 共两百多万个。书里打印的像素 (250, 250) 的第一个锚框约为 (0.06, 0.07, 0.63, 0.82)，我们得到同样的数：

# %%
book = multibox_prior(561, 728, [0.75, 0.5, 0.25], [1, 2, 0.5])
print(book.shape)
first = book.reshape(561, 728, 5, 4)[250, 250, 0]
print(first)
assert book.shape == (561 * 728 * 5, 4)
assert torch.allclose(first, torch.tensor([0.06, 0.07, 0.63, 0.82]), atol=5e-3)

# %% [markdown] slideshow={"slide_type": "slide"}
# 在宇航员照片上画出以像素 (250, 250) 为中心的 5 个锚框。宽高比为 1 的锚框在**像素**上是正方形
# （`multibox_prior` 已经按图像的宽高比修正了宽度）。

# %%
sizes, ratios = [0.75, 0.5, 0.25], [1, 2, 0.5]
anchors = multibox_prior(height, width, sizes, ratios).reshape(height, width, 5, 4)
centre = anchors[250, 250] * to_pixels                              # (5, 4) pixels
labels = ["s=0.75, r=1", "s=0.5, r=1", "s=0.25, r=1", "s=0.75, r=2", "s=0.75, r=0.5"]
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(image)
draw_boxes(ax, centre, labels)
plt.show()
w, h = centre[:, 2] - centre[:, 0], centre[:, 3] - centre[:, 1]
assert torch.allclose(w[:3], h[:3]) and torch.allclose(w[3] / h[3], torch.tensor(2.0))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 交并比（IoU）
#
# 锚框"好不好"，看它和真实框重叠多少。**交并比**（intersection over union, IoU，也叫 Jaccard 系数）
# 是两个框交集面积除以并集面积：完全重合为 1，不相交为 0。`box_iou` 一次算出两组框两两之间的
# IoU 矩阵，和 `torchvision.ops.box_iou` 相同。

# %%
print(inspect.getsource(box_iou))
truth_px = torch.tensor([[150.0, 15.0, 300.0, 180.0], [278.0, 345.0, 512.0, 512.0]])  # head, helmet
truth = truth_px / to_pixels                                        # normalised, as anchors are
iou = box_iou(truth, centre / to_pixels)                            # (2, 5)
print(iou)
assert torch.allclose(iou, ops.box_iou(truth, centre / to_pixels))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 给锚框标注类别
#
# 训练时每个锚框都要有一个"答案"：它负责哪个真实框（或者是背景）。书中的规则：
#
# 1. 在 IoU 矩阵里找最大的元素，把那个锚框分给那个真实框，划掉这一行和这一列；重复，直到每个真实框都分到一个锚框；
# 2. 其余锚框：和它 IoU 最大的真实框若达到阈值（0.5），就分给那个框，否则是背景。
#
# 第 1 步保证每个物体至少有一个锚框。下面按书中的描述直接写出来（有 Python 循环，只为看清规则）：

# %%
def book_assign(truth: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5):
    """The book's rule, literally: -1 is background."""
    iou = box_iou(truth, anchors)                                   # (G, A)
    best, box = iou.max(dim=0)
    assigned = torch.where(best >= threshold, box, -1)              # step 2
    iou = iou.clone()
    for _ in range(len(truth)):                                     # step 1
        g, a = divmod(int(iou.argmax()), iou.shape[1])
        assigned[a] = g
        iou[g, :], iou[:, a] = -1, -1                               # strike out row and column
    return assigned


# %% [markdown]
# 书中的例子：一只狗、一只猫（类别 1、2，0 是背景）和 5 个锚框。书里得到的类别是 0, 1, 2, 0, 2。
# `dlcamp.vision.anchors.match_anchors` 用向量化的写法（没有循环）实现几乎相同的规则——这正是
# torchvision `Matcher(allow_low_quality_matches=True)` 的规则；只有两个物体抢同一个锚框时
# 两者才可能不同。在书中的例子上结果一样：

# %%
dog_cat = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.55, 0.2, 0.9, 0.88]])
five = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                     [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])
matches = match_anchors(dog_cat, five, 0.5)
print("classes:", (matches + 1).tolist())
assert (matches + 1).tolist() == [0, 1, 2, 0, 2]
assert torch.equal(book_assign(dog_cat, five), matches)
print(inspect.getsource(match_anchors))

# %% [markdown] slideshow={"slide_type": "slide"}
# 在照片上：真实框是头部和头盔；锚框铺在一张 8×8 的特征图上（每格 64 像素，大小 0.3、0.15，
# 宽高比 1、2、0.5，共 256 个）。被分到物体的锚框画成彩色，其余都是背景。
# 和 torchvision 的 `Matcher` 逐个锚框比较，完全相同。

# %%
grid_anchors = multibox_prior(8, 8, [0.3, 0.15], [1, 2, 0.5])     # (256, 4)
matches = match_anchors(truth, grid_anchors, 0.5)
theirs = Matcher(0.5, 0.5, allow_low_quality_matches=True)(box_iou(truth, grid_anchors))
assert torch.equal(matches, theirs.clamp(min=-1))
positive = matches >= 0
print(f"{len(grid_anchors)} anchors, {int(positive.sum())} positive:",
      [int((matches == g).sum()) for g in range(len(truth))], "for head and helmet")
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(image)
draw_boxes(ax, truth_px, ["head", "helmet"], colors="black", linewidth=3)
draw_boxes(ax, grid_anchors[positive] * to_pixels,
           colors=["tab:blue" if g == 0 else "tab:red" for g in matches[positive].tolist()],
           linewidth=1)
plt.show()
assert all(int((matches == g).sum()) >= 1 for g in range(len(truth)))  # nobody left out

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 偏移量
#
# 分到物体的锚框还要学习怎样变成真实框。直接预测坐标差不好学（大框和小框的数值范围差很多），
# 所以用 Faster R-CNN 的写法：中心的差除以锚框的宽高，宽高之比取对数；
# 书中再乘以 (10, 10, 5, 5)，让各项的数值大小差不多：
#
# $$\left(10\,\frac{x_b - x_a}{w_a},\ 10\,\frac{y_b - y_a}{h_a},\ 5 \log\frac{w_b}{w_a},\ 5 \log\frac{h_b}{h_a}\right)$$
#
# 书中例子打印的偏移量是 (1.40, 10.0, 2.59, 7.18)、(-1.20, 0.269, 1.68, -1.57)、
# (-0.571, -1.00, 0, 0.626)。`encode_offsets` 给出同样的数；`decode_offsets` 把它们变回框；
# torchvision 检测模型里的 `BoxCoder` 和它们一致。

# %%
matches = match_anchors(dog_cat, five, 0.5)
pos = matches >= 0
offsets = encode_offsets(five[pos], dog_cat[matches[pos]])          # (3, 4)
print(offsets)
book_offsets = torch.tensor([[1.40, 10.0, 2.59, 7.18], [-1.20, 0.269, 1.68, -1.57],
                             [-0.571, -1.00, 0.0, 0.626]])
assert torch.allclose(offsets, book_offsets, atol=5e-3)
assert torch.allclose(decode_offsets(five[pos], offsets), dog_cat[matches[pos]], atol=1e-6)
coder = BoxCoder(OFFSET_WEIGHTS)
assert torch.allclose(offsets, coder.encode_single(dog_cat[matches[pos]], five[pos]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 非极大值抑制（NMS）
#
# 预测时，好几个锚框可能都认为自己框住了同一个物体。NMS 的规则：取分数最高的框保留下来，
# 删掉和它 IoU 超过阈值的其他框；在剩下的框里重复。书中的例子：4 个预测框，
# 分数 0.9（狗）、0.8、0.7（也是狗，和第一个重叠很多）、0.9（猫），阈值 0.5 时保留第 0 和第 3 个：

# %%
print(inspect.getsource(nms))
predicted = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                          [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
scores = torch.tensor([0.9, 0.8, 0.7, 0.9])
keep = nms(predicted, scores, 0.5)
print("kept:", keep.tolist())
assert keep.tolist() == [0, 3] and torch.equal(keep, ops.nms(predicted, scores, 0.5))

# %% [markdown] slideshow={"slide_type": "slide"}
# 在照片上：模拟一个检测器在头部和头盔附近各给出一串抖动的框（分数随机），NMS 之后每个物体只剩一个框。

# %%
g = torch.Generator().manual_seed(0)
noisy = truth_px.repeat_interleave(6, 0) + torch.randn(12, 4, generator=g) * 12  # (12, 4)
noisy = torch.cat((noisy[:, :2], torch.maximum(noisy[:, 2:], noisy[:, :2] + 1)), 1)
noisy_scores = torch.rand(12, generator=g)
kept = nms(noisy, noisy_scores, 0.5)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
for ax, idx, title in ((axes[0], torch.arange(12), "before NMS"), (axes[1], kept, "after NMS")):
    ax.imshow(image)
    draw_boxes(ax, noisy[idx], [f"{s:.2f}" for s in noisy_scores[idx].tolist()], linewidth=1)
    ax.set_title(title)
    ax.set_axis_off()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 锚框：以特征图每个像素为中心，按若干大小和宽高比生成；
# - IoU 衡量两个框的重叠；训练时按 IoU 给每个锚框分配真实框（或背景），每个物体至少分到一个；
# - 模型学的是锚框到真实框的偏移量（中心差除以宽高、宽高比取对数）；
# - 预测时用 NMS 去掉重复的框。
#
# 自测：NMS 的阈值调到 0.9 会怎样？调到 0.1 呢？两个靠得很近的物体（比如一群人）会遇到什么问题？

# %%
print("kept:", kept.tolist())
assert len(kept) == 2 and torch.equal(kept, ops.nms(noisy, noisy_scores, 0.5))
assert set((kept // 6).tolist()) == {0, 1}                          # one box per object
assert len(nms(noisy, noisy_scores, 0.99)) > len(kept)              # a high threshold keeps more
print(f"lesson 4.04 done: book's anchors, labels, offsets and NMS reproduced; {len(kept)} boxes kept")
