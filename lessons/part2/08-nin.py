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
#     title: 网络中的网络（NiN）
#     title_en: Network in network (NiN)
#     minutes:
#       quick: 0.2
#       full: 6
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 网络中的网络（NiN）
#
# LeNet、AlexNet 和 VGG 的套路相同：卷积部分提取空间特征，最后用几个全连接层分类。
# 问题出在全连接层上：书中的 AlexNet 有 4600 多万个参数，其中 4300 万在全连接层里；
# 而且一展平，空间结构就丢了。
#
# **网络中的网络**（Network in Network, NiN；Lin、Chen 和 Yan，2013）提出了两个办法：
#
# 1. 在**每个像素位置**上放一个小小的多层感知机：就是 1×1 卷积（第 2.03 讲）；
# 2. 干脆不要全连接层：最后一层输出的通道数等于类别数，再对每个通道做**全局平均汇聚**（global average pooling）。

# %%
import inspect

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    QUICK_STEPS,
    describe_model,
    layer_shapes,
    lesson_run,
)
from dlcamp.models import book_config, count_parameters, create_model, model_recipe
from dlcamp.models import nin as nin_family

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 180 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1×1 卷积 = 每个像素上的全连接层
#
# 1×1 卷积在每个位置上把 $c_i$ 个通道的值线性组合成 $c_o$ 个，用的是同一个 $c_o \times c_i$ 的权重矩阵。
# 这正是一个作用在每个像素上的全连接层：把通道维挪到最后，用 `nn.Linear` 算一遍，结果相同。

# %%
conv1x1 = nn.Conv2d(16, 4, kernel_size=1)
linear = nn.Linear(16, 4)
with torch.no_grad():
    linear.weight.copy_(conv1x1.weight.reshape(4, 16))
    linear.bias.copy_(conv1x1.bias)
X = torch.randn(2, 16, 5, 5)  # (B, C, H, W)
per_pixel = linear(X.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, H, W, C) -> Linear -> back
print(conv1x1(X).shape, per_pixel.shape)
assert torch.allclose(conv1x1(X), per_pixel, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## NiN 块
#
# 一个 NiN 块是一个普通的卷积层（负责空间上的信息），后面跟两个 1×1 卷积层（每个像素上的两层 MLP），
# 每层之后都有 ReLU。卷积核大小、步幅和填充沿用 AlexNet 的：11×11、5×5、3×3。

# %%
print(inspect.getsource(nin_family.nin_block))
block = nin_family.nin_block(1, 96, kernel_size=11, stride=4, padding=0)
print(block(torch.randn(1, 1, 224, 224)).shape)  # (1, 96, 54, 54), like AlexNet's first layer
assert block(torch.randn(1, 1, 224, 224)).shape == (1, 96, 54, 54)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 整个网络
#
# 四个 NiN 块，前三个之后各有一个 3×3、步幅 2 的最大汇聚层；最后一个块输出 10 个通道，
# 每个通道对应一个类别。全局平均汇聚把每个通道的特征图平均成一个数，这就是该类别的分数：

# %%
print(inspect.getsource(nin_family.nin))

# %%
BOOK = book_config("nin")
BOOK_SIZE = BOOK["image_size"]
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("nin", BOOK_SIZE, **BOOK["model_kwargs"])

# %% [markdown]
# 和书中的 AlexNet 比：计算量相近，参数却少了二十多倍——省掉的正是全连接层。

# %%
alexnet_book = book_config("alexnet")
alexnet = create_model("alexnet", image_size=alexnet_book["image_size"], **alexnet_book["model_kwargs"])
alexnet_params = count_parameters(alexnet)
print(f"AlexNet {alexnet_params:,} parameters vs NiN {book_params:,}: {alexnet_params / book_params:.0f}x")
assert alexnet_params > 20 * book_params
assert not any(isinstance(m, nn.Linear) for m in book_net.modules())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 全局平均汇聚
#
# 最后一个 NiN 块输出 10 个 5×5 的特征图；对每张图求平均，就得到 10 个类别分数。
# 模型末尾的 `AdaptiveAvgPool2d(1)` 做的就是这件事：

# %%
book_net.eval()
with torch.no_grad():
    features = book_net[:-2](torch.randn(2, 1, BOOK_SIZE, BOOK_SIZE))  # (2, 10, 5, 5)
    scores = book_net[-2:](features)  # (2, 10)
print(features.shape, "->", scores.shape)
assert features.shape == (2, 10, 5, 5)
assert torch.allclose(scores, features.mean(dim=(2, 3)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 和 AlexNet 一样，28×28 的图片用 3×3、步幅 1 的第一个块（`stem="small"`），通道数乘以 `width`：

# %%
RECIPE = model_recipe("nin")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("nin", **RECIPE["model_kwargs"])
assert layer_shapes(cpu_net, (1, 28, 28))[-1]["shape"] == (1, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 完整模式按注册的 CPU 配方训练全部训练集；快速模式只用 6000 张图片、批量 64，训练 `3 * QUICK_STEPS`（180）步（结果与机器快慢无关；没有批量规范化的 NiN 起步较慢）。

# %%
cfg, trainer, loaders, acc = lesson_run("nin", QUICK, steps=3 * QUICK_STEPS)  # NiN starts slowly

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - NiN 块 = 一个卷积层 + 两个 1×1 卷积层，1×1 卷积就是每个像素上的全连接层；
# - 没有全连接层：最后一个块输出每个类别一个通道，全局平均汇聚得到分数；
# - 参数比 AlexNet 少得多，计算量相近。
#
# 书中（224×224，10 轮）报告的测试准确率约为 0.79。
#
# 自测：NiN 的最后一个块为什么要有 ReLU？去掉它、或者把全局平均汇聚换成最大汇聚，分数会有什么不同？

# %%
if QUICK:
    assert acc >= 0.3, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.08 done: NiN test accuracy {acc:.3f}")
