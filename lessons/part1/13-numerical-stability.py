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
#     title: 前向传播、反向传播和数值稳定性
#     title_en: Forward and backward propagation, numerical stability
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 前向传播、反向传播和数值稳定性
#
# 到目前为止，梯度都是 `loss.backward()` 一行算出来的。这一讲先亲手走一遍
# **前向传播**（forward propagation）和**反向传播**（backpropagation），确认链式法则给出的梯度
# 和 autograd 一模一样；然后看深层网络里梯度为什么会**消失**（vanishing）或**爆炸**（exploding），
# 以及初始化（initialization）怎样帮我们避开它们。本讲不用数据集，几秒钟就能跑完。

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # everything here is small: quick and full mode do the same work
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 前向传播：把中间结果记下来
#
# 单隐藏层网络，批量 $B$ 个样本，损失取均方误差的一半：
#
# $\mathbf{Z} = \mathbf{X}\mathbf{W}_1 + \mathbf{b}_1,\quad
# \mathbf{H} = \tanh(\mathbf{Z}),\quad
# \mathbf{O} = \mathbf{H}\mathbf{W}_2 + \mathbf{b}_2,\quad
# L = \frac{1}{2B}\sum (\mathbf{O} - \mathbf{Y})^2$
#
# 前向时把 $\mathbf{Z}, \mathbf{H}, \mathbf{O}$ 都存下来：反向传播要用到它们。
# 这也是训练比推理更占内存的原因。

# %%
B, d, h, q = 8, 5, 4, 3
X, Y = torch.randn(B, d, dtype=torch.float64), torch.randn(B, q, dtype=torch.float64)
W1 = torch.randn(d, h, dtype=torch.float64, requires_grad=True)
b1 = torch.zeros(h, dtype=torch.float64, requires_grad=True)
W2 = torch.randn(h, q, dtype=torch.float64, requires_grad=True)
b2 = torch.zeros(q, dtype=torch.float64, requires_grad=True)

Z = X @ W1 + b1               # (B, h)
H = torch.tanh(Z)             # (B, h)
O = H @ W2 + b2               # (B, q)
L = ((O - Y) ** 2).sum() / (2 * B)
L.backward()                  # autograd's answer, to compare with ours

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 反向传播：从损失往回走，每步乘一个局部导数
#
# 按计算的逆序，每个量的梯度 = 后一个量的梯度 × 局部导数：
#
# - $\partial L/\partial \mathbf{O} = (\mathbf{O}-\mathbf{Y})/B$
# - $\partial L/\partial \mathbf{W}_2 = \mathbf{H}^\top (\partial L/\partial \mathbf{O})$，
#   $\partial L/\partial \mathbf{b}_2$ = 按行求和
# - $\partial L/\partial \mathbf{H} = (\partial L/\partial \mathbf{O})\,\mathbf{W}_2^\top$
# - $\partial L/\partial \mathbf{Z} = \partial L/\partial \mathbf{H} \odot (1 - \mathbf{H}^2)$
#   （$\tanh' = 1-\tanh^2$，逐元素相乘）
# - $\partial L/\partial \mathbf{W}_1 = \mathbf{X}^\top (\partial L/\partial \mathbf{Z})$，
#   $\partial L/\partial \mathbf{b}_1$ = 按行求和
#
# 检查形状是最好的自查方法：每个梯度都和它对应的量同形。

# %%
with torch.no_grad():
    dO = (O - Y) / B              # (B, q)
    dW2 = H.T @ dO                # (h, B) @ (B, q) -> (h, q)
    db2 = dO.sum(dim=0)           # (q,)
    dH = dO @ W2.T                # (B, q) @ (q, h) -> (B, h)
    dZ = dH * (1 - H ** 2)        # (B, h)
    dW1 = X.T @ dZ                # (d, B) @ (B, h) -> (d, h)
    db1 = dZ.sum(dim=0)           # (h,)

for name, ours, param in [("W1", dW1, W1), ("b1", db1, b1), ("W2", dW2, W2), ("b2", db2, b2)]:
    assert ours.shape == param.shape
    assert torch.allclose(ours, param.grad, atol=1e-12), name
print("hand-written gradients equal autograd's for W1, b1, W2, b2")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度消失：sigmoid 的导数最多 1/4
#
# 反向传播是一长串乘法。深层网络里，如果每一层都乘上一个小于 1 的数，梯度就会指数级变小。
# sigmoid 正是这样：$\sigma'(x) = \sigma(x)(1-\sigma(x)) \le 1/4$，
# 而且输入稍大（$|x|$ 较大，即**饱和**（saturation））时导数几乎为 0。
# 这是 ReLU 取代 sigmoid 成为隐藏层默认激活函数的主要原因之一。

# %%
x = torch.linspace(-8, 8, 161, requires_grad=True)  # (161,)
y = torch.sigmoid(x)
y.sum().backward()  # each y depends only on its own x: the sum's gradient is dy/dx pointwise

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x.detach(), y.detach(), label="sigmoid")
ax.plot(x.detach(), x.grad, label="derivative")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

print(f"max derivative {x.grad.max():.4f}, at x=8: {x.grad[-1]:.2e}")
assert x.grad.max() <= 0.25 + 1e-7
assert x.grad[0] < 1e-3 and x.grad[-1] < 1e-3  # |x| = 8: saturated
assert 0.25 ** 10 < 1e-6  # ten sigmoid layers can shrink a gradient a million times

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度爆炸：很多矩阵连乘
#
# 反过来，如果每层乘的矩阵"放大"信号，乘积就会指数级变大。把 100 个元素服从标准正态分布的
# 4×4 随机矩阵乘起来看看：

# %%
M = torch.randn(4, 4, dtype=torch.float64)
for _ in range(99):
    M = M @ torch.randn(4, 4, dtype=torch.float64)  # (4, 4)
print(f"norm of the product of 100 random 4x4 matrices: {torch.linalg.norm(M):.3e}")
assert torch.linalg.norm(M) > 1e10

# %% [markdown]
# 这样的梯度会让一步更新就把参数甩到毫无意义的地方：学习率再小也救不回来。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 对称性：为什么不能把权重都设成同一个数
#
# 若同一隐藏层的所有单元初始权重相同，它们前向时算出相同的值，反向时得到相同的梯度，
# 更新后仍然相同——无论训练多久，这一层都只相当于**一个**单元。随机初始化打破了这种对称性。
# 我们用一个小的合成数据集验证：

# %%
def constant_mlp(value: float) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    for param in net.parameters():
        nn.init.constant_(param, value)
    return net


Xs, ys = torch.randn(64, 5), torch.randn(64, 1)  # a tiny synthetic regression task
net = constant_mlp(0.1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for _ in range(50):
    loss = ((net(Xs) - ys) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()

W1s = net[0].weight.detach()  # (8, 5): one row per hidden unit
print(W1s[:3])
assert not torch.equal(W1s, torch.full_like(W1s, 0.1))  # the weights did change...
assert torch.allclose(W1s, W1s[0].expand_as(W1s))        # ...but all 8 rows are still equal
assert torch.allclose(net[2].weight, net[2].weight[0, 0].expand_as(net[2].weight))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Xavier 初始化：让方差一层层保持不变
#
# 设某层有 $n_\mathrm{in}$ 个输入、$n_\mathrm{out}$ 个输出，权重独立、均值 0、方差 $\sigma^2$，
# 输入均值 0、方差 $\gamma^2$。输出 $o = \sum_{j} w_j x_j$ 的方差是 $n_\mathrm{in}\sigma^2\gamma^2$。
# 要让前向时方差不变，需要 $n_\mathrm{in}\sigma^2 = 1$；反向传播时同理要 $n_\mathrm{out}\sigma^2 = 1$。
# 两者不能同时满足，**Xavier 初始化**（Xavier initialization，又称 Glorot 初始化）取折中：
#
# $\sigma^2 = \dfrac{2}{n_\mathrm{in} + n_\mathrm{out}}$，
# 用均匀分布 $U(-a, a)$（方差 $a^2/3$）实现时 $a = \sqrt{\dfrac{6}{n_\mathrm{in} + n_\mathrm{out}}}$。
#
# 先确认 `nn.init.xavier_uniform_` 的方差正是这个数：

# %%
n_in, n_out = 300, 500
W = nn.init.xavier_uniform_(torch.empty(n_out, n_in))  # (out, in), as nn.Linear stores it
print(f"variance {W.var():.6f}, formula {2 / (n_in + n_out):.6f}")
assert abs(W.var().item() / (2 / (n_in + n_out)) - 1) < 0.02
assert W.abs().max() <= math.sqrt(6 / (n_in + n_out))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 实验：10 层 tanh 网络里的激活值
#
# 每层 256 个单元、激活函数 tanh。分别用三种方式初始化权重，送入一批标准正态输入，
# 记录每层激活值的标准差：
#
# - $N(0, 1)$：每层输入被放大约 $\sqrt{256}=16$ 倍，tanh 几乎全部饱和在 ±1，导数≈0；
# - $N(0, 0.01^2)$：每层缩小约 6 倍，信号很快衰减到 0；
# - Xavier：激活值的标准差保持在适中的范围。

# %%
def layer_stds(init, depth: int = 10, width: int = 256) -> tuple[list[float], list[float]]:
    """Std of each layer's tanh output, and the fraction of units saturated (|h| > 0.99)."""
    torch.manual_seed(0)
    H = torch.randn(1024, width)  # (B, width)
    stds, saturated = [], []
    with torch.no_grad():
        for _ in range(depth):
            layer = nn.Linear(width, width)
            init(layer.weight)
            nn.init.zeros_(layer.bias)
            H = torch.tanh(layer(H))  # (B, width)
            stds.append(H.std().item())
            saturated.append((H.abs() > 0.99).float().mean().item())
    return stds, saturated


inits = {
    "N(0, 1)": lambda w: nn.init.normal_(w, 0.0, 1.0),
    "N(0, 0.01^2)": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "Xavier uniform": nn.init.xavier_uniform_,
}
results = {name: layer_stds(init) for name, init in inits.items()}

fig, ax = plt.subplots(figsize=(6, 3))
for name, (stds, _) in results.items():
    ax.plot(range(1, 11), stds, marker="o", label=name)
ax.set_xlabel("layer")
ax.set_ylabel("std of activations")
ax.set_yscale("log")
ax.legend()
plt.show()
for name, (stds, saturated) in results.items():
    print(f"{name:15s} std " + " ".join(f"{s:.3f}" for s in stds)
          + f" | saturated in last layer {saturated[-1]:.0%}")

# %%
normal_stds, normal_sat = results["N(0, 1)"]
small_stds, _ = results["N(0, 0.01^2)"]
xavier_stds, xavier_sat = results["Xavier uniform"]
assert min(normal_sat) > 0.8                    # N(0, 1): most units stuck at +-1
assert small_stds[-1] < 1e-6                    # N(0, 0.01^2): the signal has died
assert all(0.15 < s < 0.8 for s in xavier_stds)  # Xavier: a moderate band in every layer
assert max(xavier_sat) < 0.05

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 前向传播存下中间结果，反向传播按链式法则从后往前乘局部导数——和 autograd 算的完全一样；
# - 很多小于 1 的因子连乘导致梯度消失（sigmoid 饱和），很多大于 1 的因子连乘导致梯度爆炸；
# - 权重不能全相同（对称性），随机初始化的尺度也要合适：Xavier 让每层的方差大致不变。
#   `nn.Linear` 的默认初始化同样按 $1/\sqrt{n_\mathrm{in}}$ 缩放，出于同样的考虑。
#
# 自测：ReLU 网络的 Kaiming（He）初始化取 $\sigma^2 = 2/n_\mathrm{in}$，为什么多了一个 2？

# %%
print("lesson 1.13 done: gradients by hand equal autograd's; Xavier keeps activations in range")
