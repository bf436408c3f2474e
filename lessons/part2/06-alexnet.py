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
#     title: 深度卷积神经网络（AlexNet）
#     title_en: Deep convolutional neural networks (AlexNet)
#     minutes:
#       quick: 0.2
#       full: 7
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 深度卷积神经网络（AlexNet）
#
# LeNet 之后将近二十年，计算机视觉的主流并不是神经网络，而是"手工设计的特征 + 简单的分类器"：
# 研究者把大量心思花在 SIFT、HOG 这类特征提取方法上，分类器反倒是次要的。
# 2012 年，**AlexNet** 在 ImageNet 图像分类竞赛上把前五错误率（top-5 error）从约 26% 降到约 15%，
# 大家这才相信：好的特征可以直接从数据中**学**出来，而且比手工设计的更好。
#
# 这一步等了这么久，缺的是两样东西：**数据**（ImageNet 有 120 万张带标签的图片）和**算力**（GPU）。
# 这两样也是本讲的主题：我们会看到书中的 AlexNet 在 CPU 上有多贵，以及怎样把它缩小到笔记本电脑能训练的规模。

# %%
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    count_flops,
    describe_model,
    input_shape_of,
    lesson_run,
)
from dlcamp.models import alexnet as alexnet_family
from dlcamp.models import book_config, model_recipe

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 QUICK_STEPS 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从 LeNet 到 AlexNet
#
# 两者的设计思路一脉相承（卷积、汇聚、全连接），差别在于规模和几个关键的细节：
#
# - **更深更宽**：5 个卷积层 + 3 个全连接层，通道数是 LeNet 的十几倍，两个隐藏层各有 4096 个单元；
# - **ReLU** 代替 sigmoid：计算更简单，也不会因为饱和而让梯度消失；
# - 第一层用 11×11 的大卷积核、步幅 4，一下子把 224×224 的图片缩小到 54×54；
# - **最大汇聚**，窗口 3×3、步幅 2：相邻窗口互相重叠；
# - 全连接层之后用**暂退法**（dropout，第 1.12 讲）抑制过拟合，训练时还做了大量的图像增广。
#
# dlcamp 的 `alexnet` 同一个函数既能搭出书中的版本，也能搭出适合 28×28 小图片的版本：

# %%
print(inspect.getsource(alexnet_family.alexnet))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的尺寸：224×224
#
# 书中把 Fashion-MNIST 的图片放大到 224×224（单通道），用完整宽度的 AlexNet 训练。
# 用一张假图片逐层看输出形状：

# %%
BOOK = book_config("alexnet")
BOOK_SIZE = BOOK["image_size"]
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("alexnet", BOOK_SIZE, **BOOK["model_kwargs"])

# %% [markdown]
# 4600 多万个参数，绝大部分在两个 4096 单元的全连接层里（第一个就有 $6400 \times 4096 \approx 2600$ 万）；
# 计算量则主要在卷积层。这两个数决定了训练要多少内存和多少时间。

# %%
first_dense = 256 * 5 * 5 * 4096 + 4096
assert book_params > 40_000_000 and first_dense / book_params > 0.5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 在 CPU 上，我们直接用 28×28 的原图：没必要先放大 64 倍再用大步幅缩回来。
# 第一层换成 3×3、步幅 1 的卷积（`stem="small"`），通道数乘以 `width`，隐藏层单元也少一些；
# 这些参数写在注册的配方（recipe）里，层的种类和顺序仍是 AlexNet 的：

# %%
RECIPE = model_recipe("alexnet")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("alexnet", **RECIPE["model_kwargs"])
print(f"{book_params / cpu_params:.0f}x fewer parameters, {book_flops / cpu_flops:.0f}x fewer FLOPs")
assert [type(m) for m in cpu_net] == [type(m) for m in book_net]  # same layers, other sizes
assert book_flops > 20 * cpu_flops

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# `make_config("alexnet")` 取出注册的 CPU 配方：优化器、学习率和它的变化方式、数据增广等，
# 是为在 CPU 上训练几分钟而调出来的，和书中的设置不同（打印出来的就是全部设置）。
# 完整模式按配方训练全部训练集；快速模式只用 6000 张图片、批量 64，训练 `QUICK_STEPS`（60）步（结果与机器快慢无关）。

# %%
cfg, trainer, loaders, acc = lesson_run("alexnet", QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的 AlexNet 在这台机器上要训练多久？
#
# 训练一个样本大约要 3 倍于前向传播的 FLOPs（反向传播要对权重和输入各求一次梯度）。
# 用刚才训练的速度（样本/秒）乘以每个样本的 FLOPs，得到这台机器实际达到的算力；
# 再用它估算书中的 AlexNet 训练一轮（6 万张 224×224 图片）要多久：

# %%
rate = trainer.history[-1]["examples_per_s"] * 3 * count_flops(trainer.model, input_shape_of(cfg, loaders))
book_epoch_hours = 60_000 * 3 * book_flops / rate / 3600
print(f"achieved {rate / 1e9:.1f} GFLOP/s -> the book's AlexNet: about {book_epoch_hours:.1f} hours "
      f"per epoch, {10 * book_epoch_hours:.0f} hours for its 10 epochs")
assert book_epoch_hours > 0

# %% [markdown]
# 实际上大网络的卷积在 CPU 上效率更高一些，估计会偏保守；但数量级不会错：书中的设置是为 GPU 准备的。
# 这也是 2012 年 AlexNet 的作者用两块 GPU 训练了五六天的原因。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - AlexNet 把 LeNet 的思路放大：更深、更宽，用 ReLU、最大汇聚、暂退法和数据增广；
# - 书中的版本有 4600 多万个参数，大部分在全连接层；计算量主要在卷积层；
# - 小图片不必放大：换一个小的第一层、减少通道，同样的结构在 CPU 上几分钟就能训练。
#
# 书中在 224×224、10 轮后报告的测试准确率约为 0.88。
#
# 自测：把全连接层的 4096 个单元减半，参数量大约减少多少？FLOPs 呢？

# %%
if QUICK:
    assert acc >= 0.4, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.06 done: AlexNet test accuracy {acc:.3f}")
