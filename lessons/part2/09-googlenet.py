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
#     title: 含并行连结的网络（GoogLeNet）
#     title_en: Multi-branch networks (GoogLeNet)
#     minutes:
#       quick: 0.2
#       full: 6
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 含并行连结的网络（GoogLeNet）
#
# 卷积核选多大？1×1、3×3 还是 5×5？不同大小的核看到的范围不同，各有用处。
# 2014 年赢得 ImageNet 竞赛的 **GoogLeNet**（Szegedy 等，2015）给出的回答是：**都用**。
# 它的基本单元 **Inception 块**把几条不同的路径并排放在一起，让训练自己决定更看重哪一条。
# 这样的设计让它在参数和计算量都不算大的情况下，比 VGG 更准确。

# %%
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    describe_model,
    layer_shapes,
    lesson_run,
)
from dlcamp.models import book_config, model_recipe
from dlcamp.models import googlenet as googlenet_family

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 QUICK_STEPS 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Inception 块
#
# 四条路径并行处理同一个输入：
#
# 1. 1×1 卷积；
# 2. 1×1 卷积减少通道，再 3×3 卷积；
# 3. 1×1 卷积减少通道，再 5×5 卷积；
# 4. 3×3 最大汇聚（步幅 1），再 1×1 卷积。
#
# 每条路径都用合适的填充保持高和宽不变，最后在**通道维**上把四个输出连结（concatenate）起来。

# %%
print(inspect.getsource(googlenet_family.Inception))

# %% [markdown]
# 以书中第一个 Inception 块为例：输入 192 个通道，四条路径分别输出 64、128、32、32 个通道，连起来是 256 个：

# %%
block = googlenet_family.Inception(192, 64, (96, 128), (16, 32), 32)
X = torch.randn(1, 192, 12, 12)  # (B, C, H, W)
for name in ("p1", "p2", "p3", "p4"):
    print(name, tuple(getattr(block, name)(X).shape))
print("block", tuple(block(X).shape))
assert block(X).shape == (1, 64 + 128 + 32 + 32, 12, 12)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1×1 卷积省下的参数
#
# 第三条路径如果直接在 192 个通道上做 5×5 卷积，要 $192 \times 25 \times 32 = 153{,}600$ 个权重；
# 先用 1×1 卷积降到 16 个通道，再做 5×5 卷积，只要 $192 \times 16 + 16 \times 25 \times 32 = 15{,}872$ 个，
# 还不到十分之一。这种"先压缩通道"的**瓶颈**（bottleneck）设计后来随处可见。

# %%
def weights(module: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if name.endswith("weight"))


direct = torch.nn.Conv2d(192, 32, kernel_size=5, padding=2)
print(f"5x5 directly: {weights(direct):,} weights; 1x1 then 5x5: {weights(block.p3):,}")
assert weights(direct) == 153_600 and weights(block.p3) == 15_872

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 整个网络
#
# GoogLeNet 先用两个模块（`b1`、`b2`：卷积和最大汇聚）把图片缩小，再接三组共 9 个 Inception 块，
# 组与组之间用最大汇聚把高和宽减半；最后和 NiN 一样用全局平均汇聚，只接一个全连接层。
# `STAGES` 列出每个块四条路径的通道数，都是论文里反复试出来的：

# %%
for i, stage in enumerate(googlenet_family.STAGES, start=1):
    print(f"stage {i}:", *stage)
print(inspect.getsource(googlenet_family.googlenet))
assert sum(len(stage) for stage in googlenet_family.STAGES) == 9

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的尺寸：96×96
#
# 完整的 GoogLeNet 计算量很大，书中把 Fashion-MNIST 的图片放大到 96×96（而不是 224×224）：

# %%
BOOK = book_config("googlenet")
BOOK_SIZE = BOOK["image_size"]
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("googlenet", BOOK_SIZE, **BOOK["model_kwargs"])
assert layer_shapes(book_net, (1, BOOK_SIZE, BOOK_SIZE))[4]["shape"] == (1, 1024, 3, 3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 28×28 的图片用 3×3、步幅 1 的第一层（`stem="small"`），每条路径的通道数乘以 `width`：

# %%
RECIPE = model_recipe("googlenet")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("googlenet", **RECIPE["model_kwargs"])
print(f"{book_flops / cpu_flops:.0f}x fewer FLOPs than the book's")
assert layer_shapes(cpu_net, (1, 28, 28))[-1]["shape"] == (1, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 完整模式按注册的 CPU 配方训练全部训练集；快速模式只用 6000 张图片、批量 64，训练 `QUICK_STEPS`（60）步（结果与机器快慢无关）。

# %%
cfg, trainer, loaders, acc = lesson_run("googlenet", QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - Inception 块把 1×1、3×3、5×5 卷积和最大汇聚四条路径并行，在通道维上连结；
# - 在大卷积之前用 1×1 卷积压缩通道（瓶颈），大大减少参数和计算；
# - GoogLeNet = 卷积"主干" + 9 个 Inception 块 + 全局平均汇聚 + 一个全连接层。
#
# 书中（96×96，10 轮）报告的测试准确率约为 0.89。
#
# 自测：Inception 块的第四条路径为什么要在最大汇聚之后再接一个 1×1 卷积？

# %%
if QUICK:
    assert acc >= 0.4, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.09 done: GoogLeNet test accuracy {acc:.3f}")
