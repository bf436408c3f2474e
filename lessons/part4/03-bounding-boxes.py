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
#     title: 目标检测和边界框（bounding box）
#     title_en: Object detection and bounding boxes
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 目标检测和边界框（bounding box）
#
# 图像分类回答"图里是什么"；**目标检测**（object detection）还要回答"在哪里"：
# 图里可能有好几个物体，每个都要给出类别和位置。自动驾驶要找出行人和车辆，
# 机器人要找到要抓的东西，手机相册要找到人脸——都是目标检测。
#
# 位置通常用**边界框**（bounding box）表示：一个和图像边平行、刚好框住物体的矩形。
# 本讲对应《动手学深度学习》14.3 节：边界框的两种写法、它们之间的转换，以及怎样把框画在图上。

# %%
import inspect

import matplotlib.pyplot as plt
import skimage.data
import torch
from torchvision import ops

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes
from dlcamp.vision.boxes import box_area, box_center_to_corner, box_corner_to_center

QUICK = is_quick()  # 本讲没有训练，快速模式和完整模式一样

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一张真实的照片
#
# 书中用的是一张猫狗照片，需要联网下载。我们用 scikit-image 自带的宇航员照片（NASA 拍摄，公有领域），
# 完全离线。图像是一个 (高, 宽, 3) 的数组；坐标原点在**左上角**，x 向右、y 向**下**增大，单位是像素。

# %%
image = skimage.data.astronaut()  # (512, 512, 3) uint8
height, width = image.shape[:2]
print(image.shape, image.dtype)
plt.imshow(image)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 边界框的两种写法
#
# - **角点格式**（corner format）：$(x_1, y_1, x_2, y_2)$，左上角和右下角的坐标
#   （torchvision 叫它 `xyxy`）；
# - **中心格式**（center format）：$(c_x, c_y, w, h)$，中心点坐标加上宽和高（`cxcywh`）。
#
# 下面的框是**我们用眼睛看着照片手工标的**（就像标注数据集的人做的那样），不是模型算出来的：
# 宇航员的头部、火箭和右下角的头盔。

# %%
names = ["head 头部", "rocket 火箭", "helmet 头盔"]
boxes = torch.tensor([[150.0, 15.0, 300.0, 180.0],    # head: (x1, y1, x2, y2) in pixels
                      [350.0, 0.0, 470.0, 285.0],     # the space shuttle model
                      [278.0, 345.0, 512.0, 512.0]])  # the helmet, cut by the image edge
print(box_corner_to_center(boxes))

# %% [markdown]
# 两种格式之间的换算只是加减乘除：
# $c_x = (x_1 + x_2)/2,\ w = x_2 - x_1$；反过来 $x_1 = c_x - w/2,\ x_2 = c_x + w/2$（y 方向同理）。
# `dlcamp.vision.boxes` 把它们写成了向量化的函数：最后一维是 4 个坐标，前面可以有任意多维，
# 一次转换所有的框，不需要循环。

# %%
print(inspect.getsource(box_corner_to_center))
print(inspect.getsource(box_center_to_corner))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 来回转换
#
# 先转成中心格式再转回来，应该得到原来的框。这些坐标都是整数像素，浮点运算也是精确的；
# torchvision 的 `ops.box_convert` 给出同样的结果。

# %%
centres = box_corner_to_center(boxes)
assert torch.equal(box_center_to_corner(centres), boxes)
assert torch.equal(centres, ops.box_convert(boxes, "xyxy", "cxcywh"))
cx, cy, w, h = centres[0].tolist()
print(f"head: centre ({cx}, {cy}), {w:.0f} x {h:.0f} pixels, area {box_area(boxes[0]):.0f}")
assert (cx, cy, w, h) == (225.0, 97.5, 150.0, 165.0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 把框画出来
#
# 书中的 `bbox_to_rect` 把一个框变成 matplotlib 的矩形。画框的函数几讲都要用，所以它放在包里：
# `dlcamp.course.plot.draw_boxes(ax, boxes, labels)`，输入角点格式的像素坐标。

# %%
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(image)
rects = draw_boxes(ax, boxes, names)
plt.show()
assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects][0] == (
    150.0, 15.0, 150.0, 165.0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 框里面的像素，和归一化坐标
#
# 框在数组里就是一个切片：行是 y、列是 x，所以是 `image[y1:y2, x1:x2]`（先 y 后 x，容易写反！）。
#
# 检测模型常用**归一化坐标**：把 x 除以宽、y 除以高，坐标都落在 [0, 1] 里，和图像大小无关。
# 下一讲的锚框就是这样表示的；画图时再乘回像素。

# %%
x1, y1, x2, y2 = boxes[0].int().tolist()
head = image[y1:y2, x1:x2]                                  # rows are y, columns are x
scale = torch.tensor([width, height, width, height])
normalised = boxes / scale                                  # (3, 4), all in [0, 1]
print(normalised)
plt.imshow(head)
plt.show()
assert head.shape == (165, 150, 3)
assert ((normalised >= 0) & (normalised <= 1)).all()
assert torch.equal(normalised * scale, boxes)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 目标检测 = 每个物体的类别 + 位置；位置用边界框表示；
# - 角点格式 $(x_1, y_1, x_2, y_2)$ 和中心格式 $(c_x, c_y, w, h)$ 可以互相转换；
# - 图像坐标原点在左上角，y 向下；数组切片先行（y）后列（x）；
# - 把坐标除以图像的宽和高，就得到和图像大小无关的归一化坐标。
#
# 自测：把照片水平翻转（数据增广常这么做），一个框 $(x_1, y_1, x_2, y_2)$ 会变成什么？
# 提示：新的 $x_1$ 是 `width - x2`。下面用断言检查这个答案。

# %%
flipped_image = image[:, ::-1]
flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1)
fx1, fy1, fx2, fy2 = flipped[0].int().tolist()
assert (flipped_image[fy1:fy2, fx1:fx2] == head[:, ::-1]).all()   # the same pixels, mirrored
assert torch.equal(box_corner_to_center(flipped)[:, 2:], centres[:, 2:])  # same sizes
print(f"lesson 4.03 done: {len(boxes)} boxes, corner <-> centre round trip exact, flip checked")
