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
#     title: 填充（padding）、步幅（stride）与多通道（channels）
#     title_en: Padding, stride and multiple channels
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 填充（padding）、步幅（stride）与多通道（channels）
#
# 上一讲的卷积每做一次，输出就比输入小一圈：$n_h \times n_w$ 的输入配 $k_h \times k_w$ 的核，
# 输出只有 $(n_h-k_h+1)\times(n_w-k_w+1)$。叠很多层之后图片会越缩越小，边缘的像素也用得比中间少。
# 有时我们又希望尺寸**快点**变小，以减少计算。这一讲的两个超参数正好管这两件事：
# **填充**在输入四周补零，**步幅**让核每次多跳几格。
#
# 之后再把卷积推广到多个输入通道和多个输出通道——彩色图片有红绿蓝三个通道，
# 卷积层的输出也往往有几十上百个通道——最后看看特殊的 1×1 卷积。

# %%
import inspect
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.shapes import conv_output_size
from dlcamp.core.utils import is_quick
from dlcamp.course.convolution import (
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
)

QUICK = is_quick()  # 快速模式：核对输出形状公式时少试一些组合
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 填充：在四周补零
#
# 在输入的上下各补 $p_h$ 行 0、左右各补 $p_w$ 列 0，输出就变成
# $(n_h+2p_h-k_h+1)\times(n_w+2p_w-k_w+1)$。取 $p_h=(k_h-1)/2$、$p_w=(k_w-1)/2$，
# 输出和输入**一样大**。这要求核的边长是奇数——这也是卷积网络里的核几乎总是 1、3、5、7 的原因：
# 上下左右补得一样多，输出的 $Y_{i,j}$ 正好以输入的 $X_{i,j}$ 为中心。

# %%
X = torch.rand(1, 1, 8, 8)  # (batch, channels, height, width)
same_3x3 = nn.Conv2d(1, 1, kernel_size=3, padding=1)
same_5x3 = nn.Conv2d(1, 1, kernel_size=(5, 3), padding=(2, 1))
print(same_3x3(X).shape, same_5x3(X).shape)
assert same_3x3(X).shape == same_5x3(X).shape == (1, 1, 8, 8)
assert nn.Conv2d(1, 1, kernel_size=(5, 3), padding="same")(X).shape == X.shape  # torch works it out

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 步幅：每次多跳几格
#
# 步幅为 $s_h$、$s_w$ 时，核每次向下移动 $s_h$ 行、向右移动 $s_w$ 列。
# 只要核还能完整地放进（填充后的）输入，就能再算一个输出元素。数一数能放几次，就得到输出的形状：
#
# $\left\lfloor \dfrac{n_h + 2p_h - k_h}{s_h} \right\rfloor + 1 \;\times\;
# \left\lfloor \dfrac{n_w + 2p_w - k_w}{s_w} \right\rfloor + 1$
#
# 当 $p_h=(k_h-1)/2$ 且 $n_h$ 能被 $s_h$ 整除时，结果就是 $n_h/s_h$：步幅为 2 时高和宽各减半。
# `dlcamp.core.shapes.conv_output_size` 计算一个方向上的长度（dlcamp 的模型和从零写的引擎都用它；
# 它还多一个参数：空洞卷积的 dilation，默认 1 时就是上面的公式）：

# %%
print(inspect.getsource(conv_output_size))
half = nn.Conv2d(1, 1, kernel_size=3, padding=1, stride=2)
odd = nn.Conv2d(1, 1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4))
print(half(X).shape, odd(X).shape)
assert half(X).shape[2:] == (4, 4)
assert odd(X).shape[2:] == (conv_output_size(8, 3, 0, 3), conv_output_size(8, 5, 1, 4)) == (2, 2)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用 `nn.Conv2d` 核对公式
#
# 公式对不对，让 PyTorch 来检验：在一组输入大小、核大小、填充和步幅的组合上，
# 比较 `nn.Conv2d` 实际输出的形状和公式算出的形状。核放不进去的组合，两边都应该报错。

# %%
sizes = range(1, 13) if QUICK else range(1, 33)
kernels, paddings, strides = range(1, 6 if QUICK else 8), range(0, 3 if QUICK else 4), range(1, 4)
checked = refused = 0
for k, p, s in itertools.product(kernels, paddings, strides):
    conv = nn.Conv2d(1, 1, kernel_size=(k, 1), padding=(p, 0), stride=(s, 1))
    for n in sizes:
        x = torch.zeros(1, 1, n, 1)  # only the height varies: one formula at a time
        if n + 2 * p < k:  # the kernel does not fit: torch and the formula both refuse
            refused += 1
            try:
                conv(x)
                raise AssertionError(f"nn.Conv2d accepted n={n}, k={k}, p={p}")
            except RuntimeError:
                pass
            continue
        assert conv(x).shape[2] == conv_output_size(n, k, p, s), (n, k, p, s)
        checked += 1
print(f"formula equals nn.Conv2d on {checked} settings; {refused} too-small inputs refused by both")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现的填充和步幅
#
# 我们的 `corr2d` 也有 `padding` 和 `stride` 两个参数：先用 `F.pad` 在四周补零，
# 再让窗口每次跳 `stride` 格。它和 `F.conv2d` 的结果应当相同：

# %%
K = torch.randn(3, 5)
x = torch.randn(8, 8)
ours = corr2d(x, K, padding=(0, 1), stride=(3, 4))  # (2, 2)
theirs = F.conv2d(x[None, None], K[None, None], padding=(0, 1), stride=(3, 4))[0, 0]
print(ours, theirs, sep="\n")
assert torch.allclose(ours, theirs, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 多输入通道
#
# 输入有 $c_i$ 个通道时，核也要有 $c_i$ 个通道，形状为 $c_i \times k_h \times k_w$。
# 每个通道各做一次二维互相关，再把 $c_i$ 个结果**相加**，得到一个二维输出：

# %%
print(inspect.getsource(corr2d_multi_in))
X2 = torch.stack([torch.arange(9.0).reshape(3, 3), torch.arange(1.0, 10.0).reshape(3, 3)])
K2 = torch.stack([torch.arange(4.0).reshape(2, 2), torch.arange(1.0, 5.0).reshape(2, 2)])
print(X2.shape, K2.shape)  # (2, 3, 3) and (2, 2, 2)
Y2 = corr2d_multi_in(X2, K2)  # (2, 2)
print(Y2)
assert torch.equal(Y2, torch.tensor([[56.0, 72.0], [104.0, 120.0]]))
assert torch.equal(Y2, corr2d(X2[0], K2[0]) + corr2d(X2[1], K2[1]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 多输出通道
#
# 一个多输入通道的核只得到一个输出通道。想要 $c_o$ 个输出通道，就准备 $c_o$ 个这样的核，
# 叠成形状为 $c_o \times c_i \times k_h \times k_w$ 的四维张量——这正是 `nn.Conv2d.weight` 的形状。
# 可以把每个输出通道看成一个"特征检测器"，各自找输入中的一种模式。

# %%
K3 = torch.stack([K2, K2 + 1, K2 + 2])  # (3, 2, 2, 2): c_out, c_in, kh, kw
Y3 = corr2d_multi_in_out(X2, K3)  # (3, 2, 2)
print(K3.shape, Y3.shape)
print(Y3)
assert torch.equal(Y3[0], Y2)  # the first output channel uses the kernel from before
conv = nn.Conv2d(2, 3, kernel_size=2, bias=False)
print("nn.Conv2d(2, 3, 2).weight:", tuple(conv.weight.shape))
with torch.no_grad():
    conv.weight.copy_(K3)
assert torch.allclose(conv(X2[None])[0], Y3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1×1 卷积层
#
# $k_h=k_w=1$ 的核看不到相邻像素，似乎没什么用。其实它做的是：在**每个像素**上，
# 对 $c_i$ 个输入通道的值做一次线性组合，得到 $c_o$ 个输出通道。
# 这相当于在每个像素上用同一个全连接层（权重 $c_o \times c_i$），所以可以写成一次矩阵乘法：
# 把输入变形为 $c_i \times (hw)$，每列是一个像素。
# 后面的 NiN 和 GoogLeNet 会用 1×1 卷积来调整通道数、控制模型复杂度。

# %%
print(inspect.getsource(corr2d_multi_in_out_1x1))
X4 = torch.randn(3, 5, 6)  # (c_in, h, w)
K4 = torch.randn(2, 3, 1, 1)  # (c_out, c_in, 1, 1)
Y_matmul = corr2d_multi_in_out_1x1(X4, K4)  # (2, 5, 6)
Y_loops = corr2d_multi_in_out(X4, K4)  # (2, 5, 6)
linear = nn.Linear(3, 2, bias=False)  # the same weights as a fully connected layer
with torch.no_grad():
    linear.weight.copy_(K4.reshape(2, 3))
Y_linear = linear(X4.permute(1, 2, 0)).permute(2, 0, 1)  # (h, w, c_in) -> (h, w, c_out) -> back
print(Y_matmul.shape)
assert torch.allclose(Y_matmul, Y_loops, atol=1e-6)
assert torch.allclose(Y_matmul, Y_linear, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数和计算量
#
# 一个卷积层有 $c_o c_i k_h k_w$ 个权重和 $c_o$ 个偏置，和输入图片的大小**无关**。
# 计算量则和输出大小成正比：输出是 $m_h \times m_w$ 时，要做 $c_o c_i k_h k_w m_h m_w$ 次乘加。
# 以 28×28 的灰度图为例，比较一个输出 16 个通道的 3×3 卷积层和一个输出同样多个数的全连接层
# （全连接层放在第 2.01 讲介绍过的 `meta` 设备上：只数参数，不占内存）：

# %%
conv = nn.Conv2d(1, 16, kernel_size=3, padding=1)  # (1, 28, 28) -> (16, 28, 28)
dense = nn.Linear(28 * 28, 16 * 28 * 28, device="meta")  # same sizes; meta: shapes, no memory
conv_params = sum(p.numel() for p in conv.parameters())
dense_params = sum(p.numel() for p in dense.parameters())
multiply_adds = 16 * 1 * 3 * 3 * 28 * 28
print(f"conv: {conv_params} parameters, {multiply_adds:,} multiply-adds per image")
print(f"fully connected: {dense_params:,} parameters ({dense_params / conv_params:,.0f}x more)")
assert conv_params == 16 * 1 * 3 * 3 + 16

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 填充在四周补零，常用 $p=(k-1)/2$ 让输出和输入一样大；步幅大于 1 时输出按比例缩小；
# - 输出形状：$\lfloor (n+2p-k)/s \rfloor + 1$，和 `nn.Conv2d` 在所有试过的组合上一致；
# - 多输入通道：各通道分别互相关再相加；多输出通道：每个输出通道一个多通道核，
#   权重形状是 $c_o \times c_i \times k_h \times k_w$；
# - 1×1 卷积就是在每个像素上做同一个全连接层，可以写成一次矩阵乘法。
#
# 自测：输入 (3, 224, 224)，用 64 个 7×7 的核、步幅 2、填充 3，输出是什么形状？有多少个参数？
#
# 最后用断言检查从零实现的多通道卷积在随机的形状、填充和步幅上都和 `F.conv2d` 相同：

# %%
rng = torch.Generator().manual_seed(1)
for _ in range(5 if QUICK else 40):
    c_in, c_out, k, p, s = (int(v) for v in torch.randint(1, 4, (5,), generator=rng))
    p -= 1  # padding 0, 1 or 2
    n = int(torch.randint(max(1, k - 2 * p), 10, (1,), generator=rng))
    X_r = torch.randn(c_in, n, n, generator=rng)
    K_r = torch.randn(c_out, c_in, k, k, generator=rng)
    expected = F.conv2d(X_r[None], K_r, padding=p, stride=s)[0]  # (c_out, m, m)
    assert expected.shape[1] == conv_output_size(n, k, p, s)
    assert torch.allclose(corr2d_multi_in_out(X_r, K_r, p, s), expected, atol=1e-5)
print(f"checked {checked} shape settings")
print("lesson 2.03 done: padding, stride and channels behave as the formulas say")
