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
#     title: 同样的时间比一比：卷积网络大比拼（comparison under a time budget）
#     title_en: Comparing CNNs under one time budget
#     minutes:
#       quick: 0.2
#       full: 22
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 同样的时间比一比：卷积网络大比拼
#
# 第 2.05—2.12 讲训练了八种卷积网络，每种都按自己的配方训练了不同的轮数，花的时间也差得很远。
# 直接比较它们的准确率并不公平：多训练一会儿，几乎任何模型都会更好。
#
# 这一讲换一个实际的问题：**在同一台机器上，每个模型只给同样多的训练时间，谁最准？**
# 同时记下两个与硬件无关的"成本"：参数量和每张图片的计算量（FLOPs），看看它们和实际用时是什么关系。

# %%
import inspect

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    QUICK_STEPS,
    compare_figure,
    compare_models,
    count_flops,
    rows_table,
)
from dlcamp.models import create_model

QUICK = is_quick()  # 快速模式：只比较四个小模型，每个训练 60 步、用 6000 张图片
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 计算量：FLOPs
#
# FLOPs（floating-point operations）是一张图片前向传播要做的浮点运算次数，一次乘加算 2 次。
# `count_flops` 用 PyTorch 的 `FlopCounterMode` 在一张假图片上数卷积和矩阵乘法的运算量
# （激活、汇聚、批量规范化这些逐元素的运算不计，它们的运算量很小，耗时却未必小）：

# %%
print(inspect.getsource(count_flops))
lenet_by_hand = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
assert count_flops(create_model("lenet"), (1, 28, 28)) == lenet_by_hand  # as in lesson 2.05

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 同样的时间预算
#
# `compare_models` 依次用每个模型注册的 CPU 配方训练，但把 `max_seconds` 设成同一个预算：
# 时间一到就停，而且学习率的变化（比如 one-cycle 的先升后降）按**时间**而不是轮数展开，
# 所以每个模型在预算结束时都已经把学习率降下来了。评估测试集的时间不算在预算里。

# %%
print(inspect.getsource(compare_models))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 开始比赛
#
# 参赛的是前面各讲的模型（都是 28×28 输入的 CPU 版本），外加 dlcamp 默认的小模型 `cnn` 作参照。
# 完整模式每个模型训练 120 秒，共二十多分钟；快速模式只比较四个小模型，每个训练 `QUICK_STEPS`（60）步
# （按步数而不是秒数，结果才不随机器忙闲变化）。

# %%
if QUICK:
    NAMES = ["lenet", "lenet-bn", "lenet-modern", "cnn"]
else:
    NAMES = ["lenet", "lenet-modern", "lenet-bn", "alexnet", "vgg", "nin", "googlenet", "resnet18",
             "densenet", "cnn"]
    SECONDS = 120.0
if QUICK:
    rows = compare_models(NAMES, steps_each=QUICK_STEPS, quick=True, batch_size=64)
else:
    rows = compare_models(NAMES, seconds_each=SECONDS)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 结果
#
# 表中 `epochs` 是预算内看过的训练集轮数，`MFLOP/ex` 是每张图片前向传播的百万次浮点运算，
# `book acc` 是书中在 GPU 上、用放大的图片训练 10 轮报告的准确率（只作参考：设置完全不同）。

# %%
budget = f"{QUICK_STEPS} steps" if QUICK else f"{SECONDS:g} s"
print(f"every model trained for {budget} on this machine\n")
print(rows_table(rows))

# %%
compare_figure(rows, title=f"test accuracy after {budget} of training each",
               fig=plt.figure(figsize=(7, 4.5)))
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## FLOPs 不等于时间
#
# 训练一张图片大约要前向传播 3 倍的 FLOPs。用它乘以每秒训练的图片数，就是每个模型在这台机器上实际达到的算力。
# 如果时间只由 FLOPs 决定，各个模型的这个数应该差不多；实际上差得很远：
# 小模型的卷积太小、喂不饱 CPU；批量规范化、连结（DenseNet）这类逐元素运算不算 FLOPs，却要读写大量内存。

# %%
for row in sorted(rows, key=lambda r: r["flops"]):
    per_second = row["examples"] / row["train_seconds"]
    print(f"{row['model']:<13} {per_second:>8,.0f} images/s  {3 * row['flops'] * per_second / 1e9:6.1f} GFLOP/s")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 比较模型要说清楚比的是什么：同样的轮数、同样的时间，还是同样的计算量？结论可能完全不同；
# - 在笔记本电脑的 CPU 上、只有几分钟时，小而快的模型能看更多的数据，往往胜过大模型；
#   书中的大模型要在 GPU 上、用更多的计算才显出优势；
# - FLOPs 和参数量与硬件无关，便于比较，但实际速度还取决于内存读写和硬件对各种运算的效率。
#
# 自测：把预算改成 10 倍，你预计排名会怎样变化？哪些模型会受益最多？

# %%
assert [row["model"] for row in rows] == NAMES
best = max(rows, key=lambda r: r["test_acc"])
for row in rows:
    if QUICK:  # the step budget stopped it
        assert row["examples"] == QUICK_STEPS * 64, row
    else:  # the clock stopped it (within a batch)
        assert 0 < row["train_seconds"] <= SECONDS + 5, row
    assert row["flops"] > 0 and row["params"] > 0
if QUICK:
    assert best["test_acc"] >= 0.6, best  # 60 steps: far above chance (0.1)
else:
    assert best["test_acc"] >= 0.88, best
    assert min(row["test_acc"] for row in rows) >= 0.5, rows  # every model learned
print(f"lesson 2.13 done: best in {budget}: {best['model']} ({best['test_acc']:.3f})")
