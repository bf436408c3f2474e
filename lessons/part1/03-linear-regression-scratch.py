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
#     title: 线性回归从零开始
#     title_en: Linear regression from scratch
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 线性回归从零开始
#
# 线性回归（linear regression）是最简单的监督学习模型：用输入特征的加权和再加一个常数来预测一个数。
# 它虽然简单，却已经包含了训练一个神经网络所需的全部环节：
#
# 1. 数据：特征 $\mathbf{X}$ 和标签 $\mathbf{y}$；
# 2. 模型：带参数的函数 $\hat{y} = \mathbf{x}^\top \mathbf{w} + b$；
# 3. 损失函数（loss function）：衡量预测有多差；
# 4. 优化算法（optimization algorithm）：根据梯度一点点改进参数。
#
# 本讲只用张量和自动求导，把这四步都亲手写出来。下一讲再用 PyTorch 的现成组件把它缩短成几行。

# %%
import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import minibatches, sgd_, squared_loss, synthetic_linear

QUICK = is_quick()
# Quick mode: 5x fewer examples but 5x more epochs, so the number of SGD steps stays the same.
NUM_EXAMPLES = 200 if QUICK else 1000
NUM_EPOCHS = 15 if QUICK else 3
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 生成数据集
#
# 为了能检查学得对不对，我们自己造数据：先选定"真实"参数 $\mathbf{w} = [2, -3.4]^\top$、$b = 4.2$，
# 从标准正态分布抽取特征，再按
#
# $$\mathbf{y} = \mathbf{X}\mathbf{w} + b + \epsilon$$
#
# 算出标签，其中噪声（noise）$\epsilon$ 服从均值 0、标准差 0.01 的正态分布。
# 这样训练结束后，就可以把学到的参数和真实参数直接比较。
#
# 生成数据的函数 `synthetic_linear` 在 `dlcamp.course.basics` 里，下一讲也会用到它。

# %%
true_w = torch.tensor([2.0, -3.4])
true_b = 4.2
features, labels = synthetic_linear(true_w, true_b, n=NUM_EXAMPLES)
print("features:", features.shape, "labels:", labels.shape)  # (n, 2), (n, 1)
print("first example:", features[0], labels[0])
assert features.shape == (NUM_EXAMPLES, 2) and labels.shape == (NUM_EXAMPLES, 1)

# %% [markdown]
# 画出第二个特征与标签的关系：点大致落在一条直线上（斜率约为 -3.4），
# 另一个特征和噪声让它们在直线周围散开。

# %%
plt.figure(figsize=(4.5, 3))
plt.scatter(features[:, 1].numpy(), labels[:, 0].numpy(), s=4)
plt.xlabel("feature x2")
plt.ylabel("label y")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小批量读取数据
#
# 训练时我们不一次用全部数据，而是每次取一小批（minibatch），算这一批的梯度，更新一次参数。
# 每一轮（epoch）先把样本顺序随机打乱，再按顺序切成若干批，每个样本恰好出现一次。
#
# `dlcamp.course.basics.minibatches` 的核心只有几行：一次 `randperm` 得到随机排列，然后按切片取下标——
# 整批用张量索引，不在 Python 里逐个样本地循环。
#
# ```python
# order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
# for start in range(0, n, batch_size):
#     idx = order[start:start + batch_size]  # (B,)
#     yield X[idx], y[idx]                   # (B, d), (B, 1)
# ```

# %%
batch_size = 10
X_batch, y_batch = next(minibatches(features, labels, batch_size))
print(X_batch.shape, y_batch.shape)  # (10, 2), (10, 1)
assert X_batch.shape == (batch_size, 2) and y_batch.shape == (batch_size, 1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 初始化模型参数
#
# 权重从均值 0、标准差 0.01 的正态分布中随机抽取，偏置（bias）初始化为 0。
# `requires_grad=True` 告诉自动求导：之后要对这些张量求梯度。

# %%
w = torch.normal(0.0, 0.01, size=(2, 1), requires_grad=True)  # (2, 1)
b = torch.zeros(1, requires_grad=True)                         # (1,)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型、损失函数与优化算法
#
# **模型**就是一次矩阵乘法加上偏置：$\mathbf{X}\mathbf{w}$ 的形状是 (B, 1)，
# 标量 $b$ 通过广播加到每一行上。
#
# **损失**用平方损失（squared loss）：$\ell = \frac{1}{2}(\hat{y} - y)^2$。系数 $\frac{1}{2}$
# 只是让求导后的式子更干净（导数是 $\hat{y} - y$）。`squared_loss` 先把 `y` 变成 `y_hat` 的形状，
# 以免 (B,) 和 (B, 1) 广播成一个 (B, B) 的矩阵——这是常见而且不报错的错误。
#
# ```python
# def squared_loss(y_hat, y):
#     return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2
# ```
#
# **优化算法**用小批量随机梯度下降（minibatch stochastic gradient descent，SGD）：
# 对一批的损失之**和**反向传播，再沿负梯度方向走一步，步长是学习率（learning rate）$\eta$
# 乘以这一批的平均梯度：
#
# $$\mathbf{w} \leftarrow \mathbf{w} - \frac{\eta}{|\mathcal{B}|} \sum_{i \in \mathcal{B}}
#   \partial_{\mathbf{w}} \ell^{(i)}$$
#
# ```python
# def sgd_(params, lr, batch_size):
#     with torch.no_grad():            # the update itself is not part of the model
#         for param in params:
#             param -= lr * param.grad / batch_size
#             param.grad.zero_()       # PyTorch adds gradients up; start the next batch from 0
# ```

# %%
def linreg(X: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The linear regression model."""
    return X @ w + b  # (B, 2) @ (2, 1) + (1,) -> (B, 1)


print(linreg(X_batch, w, b).shape)  # (10, 1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 训练循环每一步做三件事：用模型算预测和损失；`backward()` 求出损失对参数的梯度；
# 用 `sgd_` 更新参数。每一轮结束后，在全部数据上算一次平均损失，看看它是否在下降。
#
# 学习率和批量大小是超参数（hyperparameter）：不是学出来的，而是我们事先选定的。

# %%
lr = 0.03


def mean_loss() -> float:
    with torch.no_grad():
        return squared_loss(linreg(features, w, b), labels).mean().item()


losses = [mean_loss()]  # before training
for epoch in range(NUM_EPOCHS):
    for X_batch, y_batch in minibatches(features, labels, batch_size, seed=epoch):
        loss = squared_loss(linreg(X_batch, w, b), y_batch)  # (B, 1)
        loss.sum().backward()
        sgd_([w, b], lr, batch_size=len(y_batch))  # the last batch may be smaller
    losses.append(mean_loss())
    print(f"epoch {epoch + 1}, loss {losses[-1]:.6f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和真实参数比较
#
# 数据是我们造的，所以知道答案。学到的参数和真实参数非常接近；
# 剩下的误差来自噪声和有限的训练步数。

# %%
w_error = true_w - w.detach().reshape(true_w.shape)
b_error = true_b - b.item()
print("w estimate:", w.detach().reshape(-1), "error:", w_error)
print("b estimate:", round(b.item(), 4), "error:", round(b_error, 4))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 训练一个模型需要数据、模型、损失函数和优化算法四样东西；
# - 小批量 SGD：每批对损失之和求梯度，除以批量大小后沿负梯度走一步，再把梯度清零；
# - 参数更新要放在 `torch.no_grad()` 里，它不是计算图的一部分。
#
# 最后用断言检查本讲的结果：

# %%
assert w_error.abs().max() < 0.05, w_error
assert abs(b_error) < 0.05, b_error
assert losses[-1] < losses[0] / 100, losses
print("lesson 1.03 done: linear regression from scratch recovered w and b")
