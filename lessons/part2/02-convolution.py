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
#     title: 图像卷积（convolution）
#     title_en: Convolutions for images
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 图像卷积（convolution）
#
# 用多层感知机处理图片时，我们先把图片拉平成一个长向量，像素之间的位置关系就丢掉了；
# 而且参数多得惊人：一张 100 万像素的照片接一个 1000 个单元的隐藏层，光这一层就有 $10^9$ 个权重。
# 图片有两个性质可以利用：
#
# - **平移不变性**（translation invariance）：猫在左上角还是右下角，识别它的方法应该一样；
# - **局部性**（locality）：判断一个位置有什么，先看它附近的像素就够了。
#
# 把这两条写成网络层，就得到**卷积层**（convolutional layer）：用一个小小的**卷积核**（kernel）
# 在图片上滑动，每个位置都用同一组权重。本讲从零实现它，用它检测边缘，再从数据中把卷积核学出来。

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.convolution import corr2d
from dlcamp.data import load_dataset

QUICK = is_quick()  # 快速模式：学习卷积核的迭代次数少一些、容差宽一些
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 互相关运算（cross-correlation）
#
# 卷积层实际做的运算叫**互相关**：把形状为 $k_h \times k_w$ 的核 $K$ 放在输入 $X$ 的左上角，
# 对应元素相乘再求和，得到输出的一个元素；然后向右、向下一格一格地滑动：
#
# $Y_{i,j} = \sum_{a=0}^{k_h-1} \sum_{b=0}^{k_w-1} X_{i+a,\,j+b}\, K_{a,b}$
#
# 核必须完整地落在输入里面，所以 $n_h \times n_w$ 的输入得到
# $(n_h - k_h + 1) \times (n_w - k_w + 1)$ 的输出。dlcamp 的 `corr2d` 就是这个定义的直接翻译
# （参数 `padding` 和 `stride` 下一讲再用）：

# %%
print(inspect.getsource(corr2d))

# %%
X = torch.arange(9.0).reshape(3, 3)  # (3, 3)
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # (2, 2)
Y = corr2d(X, K)  # (2, 2): 0*0 + 1*1 + 3*2 + 4*3 = 19 in the top-left corner
print(Y)
assert torch.equal(Y, torch.tensor([[19.0, 25.0], [37.0, 43.0]]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 互相关还是卷积？
#
# 数学上的**卷积**要先把核上下、左右翻转，再做上面的运算。深度学习里核是学出来的：
# 用卷积学到的核，翻转一下就是用互相关学到的核，两者没有本质区别，
# 所以各个框架都直接实现互相关，却仍然叫它"卷积"。我们用 NumPy 的一维卷积 `np.convolve`
# 逐行验证：互相关配上翻转后的核，等于真正的卷积。

# %%
rng = np.random.default_rng(0)
image = rng.standard_normal((4, 7))  # (4, 7)
kernel = rng.standard_normal(3)  # a (1, 3) kernel: a row filter
ours = corr2d(torch.from_numpy(image), torch.from_numpy(kernel[::-1].copy()).reshape(1, 3))
numpy_conv = np.stack([np.convolve(row, kernel, mode="valid") for row in image])  # (4, 5)
print(np.round(ours.numpy(), 3))
assert np.allclose(ours.numpy(), numpy_conv)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现卷积层
#
# 卷积层 = 互相关 + 一个标量偏置（bias）。核的元素和偏置都是要学习的参数，
# 和全连接层一样，核用随机数初始化。为了简单，这个层只有一个输入通道、一个输出通道，
# 输入是一张 (h, w) 的图。

# %%
class Conv2D(nn.Module):
    """One input channel, one output channel: corr2d with a learned kernel, plus a bias."""

    def __init__(self, kernel_size: tuple[int, int]):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))  # (kh, kw)
        self.bias = nn.Parameter(torch.zeros(1))  # (1,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (h, w) -> (h - kh + 1, w - kw + 1)
        return corr2d(x, self.weight) + self.bias


layer = Conv2D((2, 3))
x = torch.randn(5, 6)
official = nn.Conv2d(1, 1, kernel_size=(2, 3))  # (N, C, H, W) in, (N, C, H, W) out
with torch.no_grad():  # give it our parameters: (kh, kw) -> (out, in, kh, kw)
    official.weight.copy_(layer.weight.reshape(1, 1, 2, 3))
    official.bias.copy_(layer.bias)
print(layer(x).shape, official(x[None, None]).shape)
assert torch.allclose(layer(x), official(x[None, None])[0, 0], atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 应用：检测边缘（edge detection）
#
# 一张 6×8 的"图片"：中间四列是黑的（0），两边是白的（1）。核 $K = [1, -1]$
# 计算每个像素和它右边邻居的差：颜色不变的地方输出 0，从白变黑的地方输出 1，从黑变白输出 $-1$。

# %%
X = torch.ones(6, 8)
X[:, 2:6] = 0  # (6, 8): a black band in the middle
K = torch.tensor([[1.0, -1.0]])  # (1, 2)
Y = corr2d(X, K)  # (6, 7)
print(X, Y, sep="\n")
assert torch.equal(Y[:, 1], torch.ones(6)) and torch.equal(Y[:, 5], -torch.ones(6))
assert (Y[:, [0, 2, 3, 4, 6]] == 0).all()

# %% [markdown]
# 这个核只看水平方向的变化。把图片转置（竖条变横条），边缘变成水平的，它就什么也检测不到了；
# 要检测水平边缘，得把核也转置：

# %%
print(corr2d(X.T, K).abs().sum(), corr2d(X.T, K.T).abs().sum())
assert corr2d(X.T, K).abs().sum() == 0
assert torch.equal(corr2d(X.T, K.T), Y.T)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在真实图片上看边缘
#
# 对 Fashion-MNIST 的图片用同样两个核（这次用 PyTorch 的 `F.conv2d`，一次处理一整批）。
# 左边是原图，中间是竖直边缘（核 $[1, -1]$），右边是水平边缘（核转置）。

# %%
fashion = load_dataset("fashion-mnist", "test").images  # (10000, 1, 28, 28) uint8
images = fashion[:3].float() / 255  # (3, 1, 28, 28) in [0, 1]
vertical = F.conv2d(images, K.reshape(1, 1, 1, 2))  # (3, 1, 28, 27)
horizontal = F.conv2d(images, K.T.reshape(1, 1, 2, 1))  # (3, 1, 27, 28)
fig, axes = plt.subplots(3, 3, figsize=(5, 5))
for row, pictures in enumerate(zip(images, vertical, horizontal, strict=True)):
    for ax, picture in zip(axes[row], pictures, strict=True):
        ax.imshow(picture[0], cmap="gray")
        ax.set_axis_off()
plt.show()
assert torch.allclose(vertical[0, 0], corr2d(images[0, 0], K))  # same numbers as ours

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从数据中学习卷积核
#
# 边缘检测的核是我们设计的。换个问题：只给输入 $X$ 和输出 $Y$，能不能把核学出来？
# 这正是训练卷积网络时发生的事。我们用上面的 $X$、$Y$，从随机的核出发，用梯度下降更新。
# 先用我们自己的 `Conv2D`：核和偏置一起学，损失取均方误差（对 42 个输出取平均），学习率 0.5。
# 学到的核应该接近 $[1, -1]$，偏置接近 0。

# %%
steps, tolerance = (30, 0.05) if QUICK else (100, 1e-3)
scratch = Conv2D((1, 2))
for step in range(steps):
    loss = ((scratch(X) - Y) ** 2).mean()
    loss.backward()
    with torch.no_grad():  # plain gradient descent, by hand
        for param in (scratch.weight, scratch.bias):
            param -= 0.5 * param.grad
            param.grad.zero_()
    if (step + 1) % (steps // 5) == 0:
        print(f"step {step + 1:3d}, loss {loss.item():.6f}")
print("learned kernel:", scratch.weight.detach(), "bias:", scratch.bias.detach())
assert torch.allclose(scratch.weight, K, atol=tolerance)
assert abs(scratch.bias.item()) < tolerance

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 简洁实现：`nn.Conv2d`
#
# `nn.Conv2d` 的输入、输出都是四维的：(批量大小, 通道数, 高, 宽)，
# 所以先把 $X$、$Y$ 变形为 (1, 1, 6, 8) 和 (1, 1, 6, 7)。这次按书中的设置：
# 不要偏置，损失取平方误差之和，学习率 0.03，优化器用 `torch.optim.SGD`。
# 书中这样迭代 10 次，学到的核已接近 $[1, -1]$；我们迭代的次数和上面相同。

# %%
conv = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
optimizer = torch.optim.SGD(conv.parameters(), lr=3e-2)
X4, Y4 = X.reshape(1, 1, 6, 8), Y.reshape(1, 1, 6, 7)
for _ in range(steps):
    loss = ((conv(X4) - Y4) ** 2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss {loss.item():.6f}, learned kernel {conv.weight.detach().reshape(1, 2)}")
assert torch.allclose(conv.weight.reshape(1, 2), K, atol=tolerance)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 再难一点：学一个 3×3 的核
#
# 目标换成 3×3 的 Sobel 核（一种常用的竖直边缘检测核），输出由它作用在一批图片上生成，
# 损失用均方误差。两组输入比一比：一组是随机噪声，一组是 Fashion-MNIST 图片。
# 噪声的像素互不相关，每个核元素的梯度"各管各"，几步就学准了；
# 真实图片里相邻像素高度相关，核的各个元素互相牵扯，同样的步数下离答案还远——
# 输入数据的性质会影响优化的难易，这个现象后面讲优化算法时还会遇到。

# %%
sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # (3, 3)


def learn_kernel(inputs: torch.Tensor, steps: int, lr: float = 0.5) -> torch.Tensor:
    """Fit a 3x3 kernel to Sobel's outputs on `inputs` (N, 1, H, W); return the kernel."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, kernel_size=3, bias=False)
    optimizer = torch.optim.SGD(conv.parameters(), lr=lr)
    targets = F.conv2d(inputs, sobel.reshape(1, 1, 3, 3))  # (N, 1, H-2, W-2)
    for _ in range(steps):
        loss = F.mse_loss(conv(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return conv.weight.detach().reshape(3, 3)


n_images, kernel_steps = (32, 30) if QUICK else (256, 100)
noise = torch.randn(n_images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
clothes = fashion[:n_images].float() / 255  # (n_images, 1, 28, 28)
from_noise, from_clothes = learn_kernel(noise, kernel_steps), learn_kernel(clothes, kernel_steps)
noise_error = (from_noise - sobel).abs().max().item()
clothes_error = (from_clothes - sobel).abs().max().item()
print(f"after {kernel_steps} steps: largest error from noise {noise_error:.2e}, "
      f"from Fashion-MNIST {clothes_error:.2e}")
print(from_clothes)
assert noise_error < 1e-3 and noise_error < clothes_error

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 特征图与感受野
#
# 卷积层的输出也叫**特征图**（feature map）：它是输入在空间维度上的一种"特征"表示。
# 输出中一个元素的**感受野**（receptive field）是前面各层中所有可能影响它的元素。
# 一层 2×2 卷积的输出元素只看 2×2 个输入；再叠一层 2×2 卷积，它就能看到 3×3 个输入了。
# 用自动微分验证：对第二层输出的一个元素求梯度，梯度不为 0 的输入就是它的感受野。

# %%
x = torch.randn(6, 6, requires_grad=True)
two_layers = corr2d(corr2d(x, torch.rand(2, 2) + 0.1), torch.rand(2, 2) + 0.1)  # (4, 4)
two_layers[1, 2].backward()
field = x.grad != 0  # (6, 6): which inputs can change this output
print(field.int())
assert field.sum() == 9 and field[1:4, 2:5].all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 卷积层做的是互相关：核在输入上滑动，对应元素相乘再求和，再加一个偏置；
# - 同一个核用在每个位置（平移不变性），每个输出只看附近一小块（局部性），所以参数很少；
# - 简单的核能检测边缘；核也可以从数据中学出来，这正是训练卷积网络的意义；
# - 多层卷积叠起来，后面的输出能"看到"更大的区域（感受野）。
#
# 自测：要检测图片里的对角线边缘，你会设计什么样的核？
#
# 最后用断言检查从零实现的互相关和 PyTorch 的 `F.conv2d` 在随机输入上结果相同：

# %%
rng = torch.Generator().manual_seed(1)
for _ in range(5 if QUICK else 50):
    h, w = torch.randint(3, 12, (2,), generator=rng).tolist()
    kh, kw = torch.randint(1, 4, (2,), generator=rng).tolist()
    X_r, K_r = torch.randn(h, w, generator=rng), torch.randn(kh, kw, generator=rng)
    assert torch.allclose(corr2d(X_r, K_r), F.conv2d(X_r[None, None], K_r[None, None])[0, 0],
                          atol=1e-5)
assert torch.allclose(scratch.weight, K, atol=tolerance)
print("lesson 2.02 done: corr2d equals F.conv2d, and a kernel can be learned from data")
