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
#     title: 图像分类数据集 Fashion-MNIST
#     title_en: The Fashion-MNIST image classification dataset
#     minutes:
#       quick: 0.1
#       full: 0.3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 图像分类数据集 Fashion-MNIST
#
# 接下来几讲要做图像分类（image classification）：给一张图片，判断它属于哪一类。
# 我们用的数据集是 Zalando 公司发布的 **Fashion-MNIST**：7 万张 28×28 的灰度图，
# 内容是 10 类服饰。它和手写数字 MNIST 的格式完全一样，但更难分类，
# 所以简单模型和好模型之间的差距看得更清楚。
#
# 本讲的内容：数据从哪里来、读进内存、看看图片和类别、类别是否均衡，
# 以及怎样把数据**快速**地分成小批量（minibatch）送给模型。

# %%
import subprocess
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import cjk_font, show_images
from dlcamp.data import TensorLoader, load_dataset
from dlcamp.data.datasets import FASHION_FILES, get_spec

QUICK = is_quick()  # 快速模式：测速时只用一部分训练集
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 数据从哪里来：离线可用
#
# 训练时不应该临时去网上下载。Debian/Ubuntu 把 Fashion-MNIST 打包成了
# `dataset-fashion-mnist`（`sudo apt-get install dataset-fashion-mnist`，
# 或运行项目里的 `scripts/install-data.sh`），文件装在 `/usr/share/datasets/fashion-mnist`。
# 一共四个 IDX 格式的文件：训练集和测试集各有一个图像文件、一个标签文件。
#
# dlcamp 读取每个文件时都会核对解压后内容的 SHA-256 校验和（checksum），
# 文件损坏或不完整时会给出一条清楚的错误信息和修复办法。命令 `dlcamp data info` 会报告这些：

# %%
info = subprocess.run([sys.executable, "-m", "dlcamp", "data", "info", "fashion-mnist"],
                      capture_output=True, text=True, check=True)
print(info.stdout)
print("files found in:", get_spec("fashion-mnist").locate())
for stem, digest in FASHION_FILES.items():
    print(f"  {stem:25s} sha256 {digest[:16]}...")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 读入内存
#
# `load_dataset` 返回一个 `ImageSet`：图像是形状为 (N, 1, 28, 28) 的 `uint8` 张量
# （1 是通道数 channel，灰度图只有一个通道），标签是 (N,) 的 `int64`，取值 0 到 9。
# 整个训练集只占 60000 × 784 字节 ≈ 47 MB，完全放得进内存；
# 保持 `uint8` 比转成 `float32` 省 4 倍空间，等取出一个批量时再转换。

# %%
train = load_dataset("fashion-mnist", "train")
test = load_dataset("fashion-mnist", "test")
print("train:", tuple(train.images.shape), train.images.dtype, tuple(train.labels.shape),
      train.labels.dtype)
print("test: ", tuple(test.images.shape), test.images.dtype)
print(f"pixels in 0..255: min {train.images.min()}, max {train.images.max()}; "
      f"train mean {train.mean:.4f}, std {train.std:.4f} (in [0, 1] units)")
print(f"memory: {train.images.numel() * train.images.element_size() / 2**20:.1f} MiB")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10 个类别
#
# 标签是整数，类别名称按标签顺序存放在 `classes`（英文）和 `classes_zh`（中文）里：

# %%
for i, (en, zh) in enumerate(zip(train.classes, train.classes_zh, strict=True)):
    print(f"{i}  {en:12s} {zh}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 看看图片
#
# `dlcamp.course.plot.show_images` 把一批灰度图画成网格，标题用中文类别名。
# 画中文需要中文字体；如果系统里没有（`cjk_font()` 返回 `None`），中文会显示成方框，
# 这时可以安装 `fonts-wqy-microhei`。

# %%
print("CJK font:", cjk_font())
first = train.images[:18]  # (18, 1, 28, 28) uint8
fig = show_images(first, train.label_names(train.labels[:18], lang="zh"), ncols=9)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 类别是否均衡
#
# `torch.bincount` 数出每个标签出现的次数。Fashion-MNIST 的每一类在训练集里正好 6000 张，
# 在测试集里正好 1000 张：类别完全均衡（balanced），所以随机猜测的准确率是 10%，
# 准确率也就是一个有意义的指标。

# %%
train_counts = torch.bincount(train.labels, minlength=10)
test_counts = torch.bincount(test.labels, minlength=10)
for zh, n_train, n_test in zip(train.classes_zh, train_counts.tolist(), test_counts.tolist(),
                               strict=True):
    print(f"{zh:4s} train {n_train:5d}  test {n_test:5d}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 读取小批量：两种加载器比一比
#
# 训练时每一步要取一个打乱顺序的小批量。PyTorch 通用的做法是
# `DataLoader` + `Dataset`：对批量里的**每个样本**调用一次 `dataset[i]`，
# 再用 `collate` 把它们拼成一批——每个样本都要走一遍 Python 代码。
#
# 数据本来就在内存里时，这一步完全可以省掉：dlcamp 的 `TensorLoader` 先打乱一个下标张量，
# 然后用**一次**索引操作取出整个批量，再对整批做类型转换和归一化（normalization）。
# 下面在同一个 CPU 上对同样的数据各跑一轮（epoch），两边都输出归一化后的 `float32` 批量。

# %%
BATCH = 256
bench = train.subset(10_000) if QUICK else train  # 快速模式：1 万张，约 40 个批量
scale, shift = 1 / (255 * train.std), -train.mean / train.std


def time_epoch(loader, normalise=False):
    """Seconds for one pass over `loader`, plus every label seen (to check them afterwards)."""
    labels = []
    start = time.perf_counter()
    for X, y in loader:
        if normalise:  # DataLoader yields uint8; do what TensorLoader does inside
            X = X.float() * scale + shift  # (B, 1, 28, 28)
        labels.append(y)
    return time.perf_counter() - start, torch.cat(labels)


fast = TensorLoader(bench, BATCH, shuffle=True)
slow = DataLoader(TensorDataset(bench.images, bench.labels), BATCH, shuffle=True, num_workers=0)
fast_s, fast_labels = min((time_epoch(fast) for _ in range(3)), key=lambda r: r[0])
slow_s, slow_labels = time_epoch(slow, normalise=True)
n = len(bench)
print(f"{n} examples, batch {BATCH}")
print(f"TensorLoader       : {fast_s:6.3f} s  {n / fast_s:12,.0f} examples/s")
print(f"DataLoader (sample): {slow_s:6.3f} s  {n / slow_s:12,.0f} examples/s")
print(f"TensorLoader is {slow_s / fast_s:.0f}x faster")

# %% [markdown]
# 差距来自每个样本一次的 Python 调用和拼接。`num_workers>0` 可以用多个进程把这部分藏起来，
# 但对几十 MB、已经在内存里的数据，更简单的办法是根本不去逐个取样本。
# 数据在 GPU 上时（`TensorLoader(..., device="cuda")`），整批索引同样在 GPU 上完成。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - Fashion-MNIST 来自 Debian 软件包，离线可用，读取时核对校验和；
# - 训练集 60000 张、测试集 10000 张，28×28 灰度图，10 个类别完全均衡；
# - 放得进内存的数据集，按批量索引比逐个样本读取快得多。
#
# 最后用断言检查本讲的要点都成立：

# %%
assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
assert len(train) == 60_000 and len(test) == 10_000
assert len(train.classes) == len(train.classes_zh) == 10
assert (train_counts == 6000).all() and (test_counts == 1000).all()
for labels in (fast_labels, slow_labels):
    assert len(labels) == n and labels.min() >= 0 and labels.max() <= 9
    assert torch.equal(labels.sort().values, bench.labels.sort().values)  # each example once
assert len(fig.axes) == 18
assert fast_s < slow_s, "the in-memory loader should beat per-sample indexing"
print("lesson 1.05 done: Fashion-MNIST is loaded, balanced and batched fast")
