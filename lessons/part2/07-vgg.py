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
#     title: 使用块的网络（VGG）
#     title_en: Networks using blocks (VGG)
#     minutes:
#       quick: 0.2
#       full: 8
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 使用块的网络（VGG）
#
# AlexNet 证明了深层卷积网络有效，却没有告诉我们**怎样设计**新的网络：它的每一层都是单独定下来的。
# 牛津大学视觉几何组（Visual Geometry Group）2014 年提出的 **VGG** 换了一种思路：
# 先设计一个可以重复使用的**块**（block），再把块一个接一个地堆起来。
# 从那以后，"用块搭网络"成了设计深层网络的标准做法，后面的 NiN、GoogLeNet、ResNet 都是如此。

# %%
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    count_flops,
    describe_model,
    layer_shapes,
    lesson_run,
)
from dlcamp.models import book_config, count_parameters, create_model, model_recipe
from dlcamp.models import vgg as vgg_family

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 QUICK_STEPS 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## VGG 块
#
# 一个 VGG 块由若干个 3×3 卷积层（填充 1，保持高和宽）和 ReLU 组成，最后接一个 2×2、步幅 2 的最大汇聚层，
# 把高和宽减半。参数 `num_convs` 是卷积层的个数，`c_out` 是输出通道数：

# %%
print(inspect.getsource(vgg_family.vgg_block))
block = vgg_family.vgg_block(num_convs=2, c_in=3, c_out=16)
X = torch.randn(1, 3, 32, 32)  # (B, C, H, W)
print(block)
print(X.shape, "->", block(X).shape)
assert block(X).shape == (1, 16, 16, 16)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 为什么都用 3×3？
#
# 两个 3×3 卷积层叠在一起，输出的每个元素能"看到"输入中 5×5 的区域，和一个 5×5 卷积层一样大；
# 但参数只有 $2 \times 3^2 c^2 = 18 c^2$ 个，少于 $5^2 c^2 = 25 c^2$ 个，中间还多了一次非线性。
# VGG 的论文发现：**又深又窄**的网络比浅而宽的效果更好。下面用梯度验证这个"看到的区域"（感受野，receptive field）：

# %%
c = 8
two_3x3 = torch.nn.Sequential(torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.Conv2d(c, c, 3, padding=1))
one_5x5 = torch.nn.Conv2d(c, c, 5, padding=2)
X = torch.randn(1, c, 11, 11, requires_grad=True)
two_3x3(X)[0, 0, 5, 5].backward()  # which inputs does the centre output depend on?
rows, cols = X.grad[0].abs().sum(0).nonzero(as_tuple=True)
print(f"receptive field of two 3x3 layers: {int(rows.max() - rows.min()) + 1} x {int(cols.max() - cols.min()) + 1}")
params = [sum(p.numel() for name, p in m.named_parameters() if name.endswith("weight"))
          for m in (two_3x3, one_5x5)]  # weights only, without the biases
print(f"weights: two 3x3 layers {params[0]}, one 5x5 layer {params[1]}")
assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 7, 3, 7)  # a 5x5 window
assert params == [18 * c * c, 25 * c * c]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从块到网络：`conv_arch`
#
# 整个网络由一串 VGG 块和 AlexNet 那样的三个全连接层组成。
# `conv_arch` 列出每个块的（卷积层数，输出通道数）；原论文的 VGG-11 有 5 个块、8 个卷积层，加上 3 个全连接层共 11 层：

# %%
print("VGG-11 conv_arch:", vgg_family.VGG11)
print(inspect.getsource(vgg_family.vgg))
assert sum(n for n, _ in vgg_family.VGG11) + 3 == 11

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的尺寸：224×224
#
# 五个块各把高和宽减半：$224 / 2^5 = 7$。完整宽度的 VGG-11 计算量太大，
# 书中把每层的通道数除以 4（`ratio = 4`，这里是 `width=0.25`）：

# %%
BOOK = book_config("vgg")
BOOK_SIZE = BOOK["image_size"]
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("vgg", BOOK_SIZE, **BOOK["model_kwargs"])
assert layer_shapes(book_net, (1, BOOK_SIZE, BOOK_SIZE))[4]["shape"] == (1, 128, 7, 7)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 28×28 的图片经不起五次减半（28 → 14 → 7 → 3 → 1 → 0）。于是第一个块不做汇聚（`stem="small"`），
# 剩下四个块把 28 缩到 1。卷积部分的结构不变，全连接层窄一些（配方里的参数）：

# %%
RECIPE = model_recipe("vgg")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("vgg", **RECIPE["model_kwargs"])
print(f"{book_flops / cpu_flops:.0f}x fewer FLOPs than the book's")
assert layer_shapes(cpu_net, (1, 28, 28))[4]["shape"][2:] == (1, 1)

# %% [markdown]
# 有了块，换一个更深的 VGG 只要改 `conv_arch`。例如 VGG-16（13 个卷积层）：

# %%
VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
vgg16 = create_model("vgg", conv_arch=VGG16, **RECIPE["model_kwargs"])
vgg16_flops = count_flops(vgg16, (1, 28, 28))
print(f"VGG-16 at 28x28: {count_parameters(vgg16):,} parameters, {vgg16_flops / 1e6:.1f} MFLOPs "
      f"({vgg16_flops / cpu_flops:.1f}x VGG-11)")
assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg16.modules()) == 13

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 用 VGG-11 的 CPU 配方训练（打印出来的是全部设置）。完整模式按配方训练全部训练集；
# 快速模式只用 6000 张图片、批量 64，训练 `QUICK_STEPS`（60）步（结果与机器快慢无关）。

# %%
cfg, trainer, loaders, acc = lesson_run("vgg", QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - VGG 用重复的块搭网络：若干个 3×3 卷积 + 一个 2×2 最大汇聚；
# - 两个 3×3 卷积的感受野和一个 5×5 的相同，参数却更少：深而窄优于浅而宽；
# - `conv_arch` 一行就能描述整个卷积部分，VGG-11、VGG-16 只是块的个数不同。
#
# 书中的 VGG-11（通道除以 4，224×224，10 轮）报告的测试准确率约为 0.92。
#
# 自测：VGG-11 的哪一层参数最多？哪一层计算量最大？（提示：比较上面两张表。）

# %%
if QUICK:
    assert acc >= 0.4, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.07 done: VGG-11 test accuracy {acc:.3f}")
