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
#     title: 卷积神经网络（LeNet）
#     title_en: Convolutional neural networks (LeNet)
#     minutes:
#       quick: 0.2
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 卷积神经网络（LeNet）
#
# 前面几讲的卷积层、填充、步幅和汇聚层，终于可以拼成一个完整的网络了。
# **LeNet** 是最早投入实际使用的卷积神经网络（convolutional neural network, CNN）之一：
# Yann LeCun 等人在 1989—1998 年间为识别手写数字设计了它，九十年代末美国不少银行用它读支票上的数字。
#
# 第一部分的多层感知机把 28×28 的图片拉平成 784 维向量，像素之间的位置关系全丢了。
# LeNet 先用卷积层在原图上提取局部特征，再交给全连接层分类。本讲先看它的结构、参数和计算量，
# 再按《动手学深度学习》的设置训练它，最后和一个"现代化"的 LeNet 比一比。

# %%
import inspect

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    count_flops,
    histories_figure,
    layer_shapes,
    shape_table,
    train_model,
)
from dlcamp.models import book_config, count_parameters, create_model
from dlcamp.models import lenet as lenet_family
from dlcamp.train import make_config

QUICK = is_quick()  # 快速模式：只用 6000 张训练图片
SECONDS = None  # 不限时：快速模式也按配方训练完所有轮次（只用 6000 张图片，几秒钟）
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型的两个部分
#
# LeNet 由两部分组成：
#
# - **卷积编码器**（convolutional encoder）：两个"卷积层 → sigmoid → 平均汇聚"单元。
#   卷积核都是 5×5；第一层输出 6 个通道，第二层 16 个通道；每次汇聚（2×2，步幅 2）把高和宽减半。
# - **全连接层**（fully connected layers）：把 16 个 5×5 的特征图展平成 400 维向量，
#   再经过 120、84 个单元的两个隐藏层，最后输出 10 个类别的分数。
#
# 原版 LeNet 的输入是 32×32；Fashion-MNIST 是 28×28，所以第一个卷积层两边各填充 2 个像素，
# 输出仍是 28×28。dlcamp 注册表里的 `lenet` 就是这样定义的：

# %%
print(inspect.getsource(lenet_family.lenet))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 逐层看形状
#
# 把一张 28×28 的"假图片"（随机数）送进网络，记下每一层输出的形状。
# 卷积层让通道变多，汇聚层让高和宽变小：空间信息一步步地"折"进了通道里。

# %%
classic = create_model("lenet")
print(shape_table(classic, (1, 28, 28)))
shapes = [row["shape"] for row in layer_shapes(classic, (1, 28, 28))]
assert shapes[:6] == [(1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14),
                      (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5)]
assert shapes[6] == (1, 400) and shapes[-1] == (1, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数量和计算量
#
# 一个 $k \times k$ 卷积层有 $c_o (c_i k^2 + 1)$ 个参数（每个输出通道一个偏置）；
# 全连接层有 $n_o (n_i + 1)$ 个。计算量按 FLOPs（浮点运算次数）算，一次乘加记作 2 次：
# 卷积层的输出有 $c_o h w$ 个元素，每个要做 $c_i k^2$ 次乘加。
# `count_flops` 用 PyTorch 的 `FlopCounterMode` 数出一张图片前向传播的 FLOPs，和手算的一致：

# %%
conv_params = 6 * (1 * 25 + 1) + 16 * (6 * 25 + 1)
dense_params = 120 * (400 + 1) + 84 * (120 + 1) + 10 * (84 + 1)
conv_flops = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 6 * 25)
dense_flops = 2 * (400 * 120 + 120 * 84 + 84 * 10)
params, flops = count_parameters(classic), count_flops(classic, (1, 28, 28))
print(f"parameters {params:,}: convolutions {conv_params / params:.0%}, dense {dense_params / params:.0%}")
print(f"FLOPs per image {flops:,}: convolutions {conv_flops / flops:.0%}, dense {dense_flops / flops:.0%}")
assert params == conv_params + dense_params == 61_706
assert flops == conv_flops + dense_flops

# %% [markdown]
# 一个对比很能说明卷积层的特点：卷积层只占参数的 4%，却占了 86% 的计算量——
# 同一组小小的卷积核要在图片的每个位置上重复使用；全连接层正好相反，参数多、计算少。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 按书里的设置训练
#
# 书中用小批量随机梯度下降（不带动量）、学习率 0.9、批量 256，训练 10 轮。
# 学习率这么大，是因为 sigmoid 在输入远离 0 时梯度很小，步子小了几乎走不动。
# `book_config` 记录了书中每个模型的设置和它报告的测试准确率；`make_config` 把这些设置变成一次训练，
# `train_model` 用 dlcamp 的 `Trainer` 训练它，每轮结束在测试集上评估一次。

# %%
book = book_config("lenet")
print(book["section"], "- the book's test accuracy:", book["book_test_acc"])
print(book["recipe"])
classic_cfg = make_config("lenet", quick=QUICK, **book["recipe"], max_seconds=SECONDS)
classic_trainer, loaders = train_model(classic_cfg)
print(f"trained on {len(loaders.train_set):,} images, tested on {len(loaders.test_set):,}")

# %% [markdown]
# 注意前几轮：测试准确率停在 0.1 左右（随机猜），损失几乎不动，过一阵子才突然开始下降。
# 这段**平台期**（plateau）来自 sigmoid：初始时各层的输出挤在 0.5 附近，梯度又小又相似。
# 快速模式只训练几秒，通常还没走出平台期。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 现代化的 LeNet
#
# 把 LeNet 换上后来才普及的三个部件，结构（两个卷积层、三个全连接层）不变：
#
# - ReLU 代替 sigmoid：正半轴上梯度恒为 1，不会"饱和"；
# - 最大汇聚代替平均汇聚：保留每个窗口里最强的响应；
# - **批量规范化**（batch normalization，第 2.10 讲）：每层的输出先规范化，训练快而稳。
#
# 它的配方（recipe）也换成现代的：带动量的 SGD 和先升后降的 one-cycle 学习率。

# %%
print(inspect.getsource(lenet_family.lenet_modern))
modern = create_model("lenet-modern")
print(shape_table(modern, (1, 28, 28)))
assert [row["shape"] for row in layer_shapes(modern, (1, 28, 28))][-1] == (1, 10)

# %%
modern_cfg = make_config("lenet-modern", quick=QUICK, max_seconds=SECONDS)
print(modern_cfg.train)
modern_trainer, _ = train_model(modern_cfg)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 比一比
#
# 同样的数据、同样的 `Trainer`，只换了模型和配方。横轴用训练用掉的秒数，看谁学得快：

# %%
runs = {"LeNet (book: sigmoid, avg pool, SGD lr 0.9)": classic_trainer.history,
        "modern LeNet (ReLU, max pool, BN, one-cycle)": modern_trainer.history}
histories_figure(runs, x="train_seconds", title="test accuracy while training",
                 fig=plt.figure(figsize=(7, 3.6)))
plt.show()
for name, trainer in (("lenet", classic_trainer), ("lenet-modern", modern_trainer)):
    model = trainer.model
    print(f"{name:13s} test accuracy {trainer.history[-1]['test_acc']:.3f}  "
          f"{trainer.train_seconds:5.1f} s  {count_parameters(model):,} parameters  "
          f"{count_flops(model, (1, 28, 28)) / 1e6:.2f} MFLOPs per image")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - LeNet = 卷积编码器（卷积、激活、汇聚）+ 全连接层；卷积层参数少、计算多；
# - 书中的 sigmoid LeNet 要靠很大的学习率才能训练，开头还有一段平台期；
#   它在 10 轮后的测试准确率约为 0.78（书中的数字，运行之间会差一两个百分点）；
# - 换上 ReLU、最大汇聚和批量规范化，同样大小的网络学得又快又好。
#
# 自测：第一个卷积层如果不填充，后面每一层的形状会变成多少？全连接层的参数会变多还是变少？

# %%
classic_acc = classic_trainer.history[-1]["test_acc"]
modern_acc = modern_trainer.history[-1]["test_acc"]
assert modern_acc > classic_acc, (modern_acc, classic_acc)
if QUICK:
    assert modern_acc >= 0.7, modern_acc  # a few seconds: far above chance (0.1)
else:
    assert classic_acc >= book["book_test_acc"], (classic_acc, book["book_test_acc"])
    assert modern_acc >= classic_acc + 0.05, (modern_acc, classic_acc)
print(f"lesson 2.05 done: LeNet {classic_acc:.3f}, modern LeNet {modern_acc:.3f}")
