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
#     title: 汇聚层（pooling）
#     title_en: Pooling
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 汇聚层（pooling）
#
# 卷积层对位置非常敏感：上一讲的边缘检测中，图片里的边缘挪动一个像素，输出里的 1 和 $-1$ 也跟着挪一格。
# 可真实照片里的物体不会恰好待在同一个像素上。而且做分类时，我们最终关心的是"整张图里有没有猫"，
# 而不是每个像素上有什么，所以网络越往后，空间分辨率可以越低。
#
# **汇聚层**（pooling layer，也译作池化层）同时做这两件事：对一个小窗口里的值取最大值或平均值，
# 让表示对小的位移不那么敏感，并（配合步幅）缩小特征图。它和卷积层一样有窗口、填充和步幅，
# 但**没有参数**：做的是固定的运算。

# %%
import inspect
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.convolution import pool2d
from dlcamp.data import load_dataset

QUICK = is_quick()  # 快速模式：位移实验用的图片少一些，随机核对的次数少一些
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 最大汇聚与平均汇聚
#
# 和互相关一样，一个 $p_h \times p_w$ 的窗口从左上角开始在输入上滑动；
# 不同的是，窗口里的值不和核相乘，而是直接取**最大值**（最大汇聚，max pooling）
# 或**平均值**（平均汇聚，average pooling）。从零实现的 `pool2d` 只有一个通道：

# %%
print(inspect.getsource(pool2d))

# %% [markdown]
# 注意：和 PyTorch 一样，`pool2d` 的步幅默认等于窗口大小，窗口互不重叠。
# 下面的例子让 2×2 窗口每次只移动一格（`stride=1`），和上一讲的互相关一样滑动：

# %%
X = torch.arange(9.0).reshape(3, 3)  # (3, 3)
max_pooled = pool2d(X, 2, "max", stride=1)  # (2, 2)
avg_pooled = pool2d(X, 2, "avg", stride=1)  # (2, 2)
print(X, max_pooled, avg_pooled, sep="\n")
assert torch.equal(max_pooled, torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
assert torch.equal(avg_pooled, torch.tensor([[2.0, 3.0], [5.0, 6.0]]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 汇聚让表示对位移不那么敏感
#
# 拿一批 Fashion-MNIST 图片，用上一讲的核 $[1, -1]$ 得到竖直边缘图（取绝对值）。
# 再把每张图片向右平移一个像素，算一遍边缘图。两张边缘图逐像素比较，差别有多大？
# 再对两者都做一次步幅为 1 的最大汇聚，窗口越大，位移造成的差别就越小：
# 边缘挪了一格，但它仍然落在大部分同样的窗口里。

# %%
n_images = 32 if QUICK else 1000
images = load_dataset("fashion-mnist", "test").images[:n_images].float() / 255  # (N, 1, 28, 28)
shifted = torch.roll(images, shifts=1, dims=3)  # every image one pixel to the right
edge_kernel = torch.tensor([[1.0, -1.0]]).reshape(1, 1, 1, 2)
edges = F.conv2d(images, edge_kernel).abs()  # (N, 1, 28, 27)
edges_shifted = F.conv2d(shifted, edge_kernel).abs()  # (N, 1, 28, 27)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm()).item()


changes = {"no pooling": relative_change(edges, edges_shifted)}
for window in (2, 3, 4):
    changes[f"max pool {window}x{window}"] = relative_change(
        F.max_pool2d(edges, window, stride=1), F.max_pool2d(edges_shifted, window, stride=1))
for name, change in changes.items():
    print(f"{name:14s} a one-pixel shift changes the map by {change:.0%}")
values = list(changes.values())
assert all(a > b for a, b in itertools.pairwise(values)), "bigger windows change it less"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 填充和步幅
#
# 汇聚层也可以填充、设置步幅，输出形状的公式和卷积完全一样（上一讲的 `conv_output_size`）。
# `nn.MaxPool2d(3)` 的步幅默认是 3：在 4×4 的输入上只放得下一个 3×3 窗口。

# %%
X = torch.arange(16.0).reshape(1, 1, 4, 4)  # (batch, channels, height, width)
print(X)
print(nn.MaxPool2d(3)(X))
assert torch.equal(nn.MaxPool2d(3)(X), torch.tensor([[[[10.0]]]]))

# %% [markdown]
# 手动指定填充和步幅，窗口也可以是长方形的。最大汇聚补的不是 0，而是 $-\infty$：
# 补出来的值永远不会被选为最大值。从零实现的 `pool2d` 给出同样的结果：

# %%
square = nn.MaxPool2d(3, padding=1, stride=2)
oblong = nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))
print(square(X), oblong(X), sep="\n")
expected = torch.tensor([[5.0, 7.0], [13.0, 15.0]])
assert torch.equal(square(X)[0, 0], expected) and torch.equal(oblong(X)[0, 0], expected)
assert torch.equal(pool2d(X[0, 0], 3, "max", padding=1, stride=2), expected)
assert torch.equal(pool2d(X[0, 0], (2, 3), "max", padding=(0, 1), stride=(2, 3)), expected)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 平均汇聚时的填充
#
# 平均汇聚默认把补的 0 也算进平均值（`count_include_pad=True`），所以边角上的结果会偏小；
# 设成 `False` 则只对真正的像素求平均。`pool2d` 实现的是默认的行为：

# %%
avg = nn.AvgPool2d(3, padding=1, stride=2)
avg_real_only = nn.AvgPool2d(3, padding=1, stride=2, count_include_pad=False)
print(avg(X), avg_real_only(X), sep="\n")
assert torch.allclose(pool2d(X[0, 0], 3, "avg", padding=1, stride=2), avg(X)[0, 0])
assert avg(X)[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 9  # four real pixels, five zeros
assert avg_real_only(X)[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 多个通道
#
# 多通道输入时，汇聚层对**每个通道分别**汇聚，不像卷积层那样把各通道加起来。
# 所以输出通道数等于输入通道数。把 `X` 和 `X + 1` 叠成两个通道试试：

# %%
X2 = torch.cat((X, X + 1), dim=1)  # (1, 2, 4, 4)
Y2 = square(X2)  # (1, 2, 2, 2)
print(Y2)
by_hand = torch.stack([pool2d(channel, 3, "max", padding=1, stride=2) for channel in X2[0]])
assert Y2.shape == (1, 2, 2, 2) and torch.equal(Y2[0], by_hand)
assert torch.equal(Y2[0, 1], Y2[0, 0] + 1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 没有参数，但有梯度
#
# 汇聚层没有要学习的参数。反向传播时，最大汇聚只把梯度传给每个窗口里**取到最大值**的那个元素，
# 其余元素的梯度是 0；平均汇聚则把梯度平均分给窗口里的每个元素。

# %%
assert list(nn.MaxPool2d(2).parameters()) == [] and list(nn.AvgPool2d(2).parameters()) == []
x = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 7.0],
                  [0.0, 9.0, 6.0, 1.0], [2.0, 2.0, 3.0, 4.0]], requires_grad=True)
pool2d(x, 2, "max").sum().backward()
print(x.grad)
winners = torch.zeros(4, 4)
winners[[0, 1, 2, 2], [1, 2, 1, 2]] = 1  # where 5, 8, 9 and 6 sit: the four windows' maxima
assert torch.equal(x.grad, winners)
x.grad = None
pool2d(x, 2, "avg").sum().backward()
assert torch.equal(x.grad, torch.full((4, 4), 0.25))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 最大汇聚和平均汇聚在每个窗口里取最大值或平均值，没有参数；
# - 它让表示对小的位移不那么敏感，配合步幅还能缩小特征图、减少后面的计算量；
# - 填充、步幅和输出形状的规则和卷积层一样；多通道时每个通道分别汇聚，通道数不变。
#
# 自测：一个 2×2、步幅 2 的最大汇聚层，能不能用一个卷积层代替？平均汇聚呢？
#
# 最后用断言检查从零实现的 `pool2d` 在随机的窗口、填充和步幅上都和 PyTorch 相同：

# %%
rng = torch.Generator().manual_seed(1)
for _ in range(10 if QUICK else 100):
    kh, kw, sh, sw = (int(v) for v in torch.randint(1, 4, (4,), generator=rng))
    ph = int(torch.randint(0, kh // 2 + 1, (), generator=rng))  # torch allows up to half
    pw = int(torch.randint(0, kw // 2 + 1, (), generator=rng))  # the window
    h = int(torch.randint(max(1, kh - 2 * ph), 10, (1,), generator=rng))
    w = int(torch.randint(max(1, kw - 2 * pw), 10, (1,), generator=rng))
    x = torch.randn(h, w, generator=rng)
    for mode, torch_pool in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
        ours = pool2d(x, (kh, kw), mode, padding=(ph, pw), stride=(sh, sw))
        theirs = torch_pool(x[None, None], (kh, kw), (sh, sw), (ph, pw))[0, 0]
        assert torch.allclose(ours, theirs, atol=1e-6), (mode, kh, kw, ph, pw, sh, sw, h, w)
print("lesson 2.04 done: pool2d equals torch's max and average pooling")
