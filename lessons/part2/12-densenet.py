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
#     title: 稠密连接网络（DenseNet）
#     title_en: Densely connected networks (DenseNet)
#     minutes:
#       quick: 0.2
#       full: 9
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 稠密连接网络（DenseNet）
#
# ResNet 把一个块的输入**加**到输出上：$\mathbf{x} + g(\mathbf{x})$。
# **稠密连接网络**（DenseNet；Huang 等，2017）问：为什么要加？把它们**连结**（concatenate）起来，
# 信息就一点也不会被"混掉"：
#
# $\mathbf{x} \to \left[\mathbf{x},\ f_1(\mathbf{x}),\ f_2([\mathbf{x}, f_1(\mathbf{x})]),\ \ldots\right]$
#
# 块里的每一层都能看到它前面**所有**层的输出，并在此基础上加上几个新通道。
# 这样的连接很"稠密"，网络因此得名。通道数越连越多，所以还需要**过渡层**（transition layer）时不时地把它压下来。

# %%
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    describe_model,
    layer_shapes,
    lesson_run,
)
from dlcamp.models import book_config, count_parameters, create_model, model_recipe
from dlcamp.models import densenet as densenet_family

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 QUICK_STEPS 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 稠密块
#
# DenseNet 用 ResNet 改良后的"BN → ReLU → 卷积"顺序（先规范化和激活，再卷积）作为基本单元。
# 一个**稠密块**（dense block）由若干个这样的单元组成，每个单元输出 `growth_rate` 个通道（**增长率**），
# 并把它们连结到输入后面，一起交给下一个单元：

# %%
print(inspect.getsource(densenet_family.bn_relu_conv))
print(inspect.getsource(densenet_family.DenseBlock))

# %% [markdown]
# 2 个单元、增长率 10，输入 3 个通道：输出 $3 + 2 \times 10 = 23$ 个通道，高和宽不变。
# 前 3 个通道原封不动就是输入：

# %%
block = densenet_family.DenseBlock(num_convs=2, c_in=3, growth_rate=10)
X = torch.randn(4, 3, 8, 8)  # (B, C, H, W)
Y = block(X)
print(tuple(X.shape), "->", tuple(Y.shape))
assert Y.shape == (4, 23, 8, 8) and block.out_channels == 23
assert torch.equal(Y[:, :3], X)  # the input is carried along, not added to

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 过渡层
#
# 每个稠密块都让通道数增加，连上几个块模型就太大了。过渡层用 1×1 卷积减少通道数，
# 再用步幅为 2 的平均汇聚把高和宽减半：

# %%
print(inspect.getsource(densenet_family.transition))
trans = densenet_family.transition(23, 10)
print(tuple(Y.shape), "->", tuple(trans(Y).shape))
assert trans(Y).shape == (4, 10, 4, 4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 整个网络
#
# 主干和 ResNet 一样（7×7 卷积、BN、ReLU、最大汇聚）；然后是 4 个稠密块，每个 4 个单元、增长率 32，
# 每个块之后（最后一个除外）接一个把通道减半的过渡层；最后全局平均汇聚和全连接层：

# %%
print(inspect.getsource(densenet_family.densenet))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的尺寸：96×96
#
# 第一个稠密块的通道数：$64 + 4 \times 32 = 192$，过渡层减半成 96；下一个块又加 128……

# %%
BOOK = book_config("densenet")
BOOK_SIZE = BOOK["image_size"]
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("densenet", BOOK_SIZE, **BOOK["model_kwargs"])
channels = [row["shape"][1] for row in layer_shapes(book_net, (1, BOOK_SIZE, BOOK_SIZE))[1:8]]
assert channels == [192, 96, 224, 112, 240, 120, 248]

# %% [markdown]
# 和 ResNet-18 比一比：DenseNet 的参数少得多，因为每层只新增 32 个通道；
# 但因为要反复连结、在很宽的输入上做规范化，它在实际硬件上并不一定更快。

# %%
resnet_book = book_config("resnet18")
resnet = create_model("resnet18", image_size=resnet_book["image_size"], **resnet_book["model_kwargs"])
print(f"ResNet-18 {count_parameters(resnet):,} parameters, DenseNet {book_params:,}")
assert book_params < count_parameters(resnet) / 5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 28×28 的图片用 3×3、步幅 1、不带汇聚的主干（`stem="small"`）；`width` 同时缩放主干的通道数和增长率：

# %%
RECIPE = model_recipe("densenet")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("densenet", **RECIPE["model_kwargs"])
print(f"{book_flops / cpu_flops:.0f}x fewer FLOPs than the book's")
assert layer_shapes(cpu_net, (1, 28, 28))[-1]["shape"] == (1, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 完整模式按注册的 CPU 配方训练全部训练集；快速模式只用 6000 张图片、批量 64，训练 `QUICK_STEPS`（60）步（结果与机器快慢无关）。

# %%
cfg, trainer, loaders, acc = lesson_run("densenet", QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - DenseNet 把每一层的输出连结到后面所有层的输入上，而不是像 ResNet 那样相加；
# - 稠密块里每个"BN → ReLU → 卷积"单元新增 `growth_rate` 个通道；过渡层用 1×1 卷积和平均汇聚控制通道数和尺寸；
# - 参数比 ResNet 少，但连结和规范化带来的内存读写让它在 CPU 上并不便宜。
#
# 书中（96×96，10 轮）报告的测试准确率约为 0.885。
#
# 自测：一个有 4 个单元、增长率 32、输入 64 个通道的稠密块，它的最后一个卷积层的输入有多少个通道？

# %%
if QUICK:
    assert acc >= 0.4, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.12 done: DenseNet test accuracy {acc:.3f}")
