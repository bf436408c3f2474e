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
#     title: 权重衰减（weight decay）
#     title_en: Weight decay
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 权重衰减
#
# 上一讲看到：参数多、数据少，模型就容易过拟合。多收集数据往往做不到，
# 另一条路是限制模型的"能力"。**权重衰减**（weight decay）是最常用的一种**正则化**（regularization）方法：
# 在损失上加一项惩罚权重大小的 **L2 范数**（L2 norm）平方，
#
# $$L(\mathbf{w}, b) + \frac{\lambda}{2}\|\mathbf{w}\|^2 .$$
#
# $\lambda \ge 0$ 控制惩罚的强弱。它的梯度是 $\lambda \mathbf{w}$，所以每一步 SGD 都先把权重
# 按比例缩小一点（"衰减"），再沿损失的梯度走：
# $\mathbf{w} \leftarrow (1 - \eta\lambda)\mathbf{w} - \eta \nabla L$。偏置通常不惩罚。

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.course.basics import minibatches, sgd_, squared_loss, synthetic_linear
from dlcamp.train.plot import curves_figure

NUM_EPOCHS = 100  # quick mode is the same: 400 tiny steps take well under a second
LR, BATCH_SIZE = 0.003, 5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 高维线性回归
#
# 故意造一个容易过拟合的问题：200 维输入，却只有 20 个训练样本（测试样本 100 个）。
#
# $$y = 0.05 + \sum_{i=1}^{200} 0.01 x_i + \epsilon,\quad \epsilon \sim \mathcal{N}(0, 0.01^2).$$

# %%
NUM_INPUTS, N_TRAIN, N_TEST = 200, 20, 100
true_w, true_b = torch.full((NUM_INPUTS,), 0.01), 0.05
X, y = synthetic_linear(true_w, true_b, n=N_TRAIN + N_TEST, noise=0.01)  # (120, 200), (120, 1)
X_train, y_train = X[:N_TRAIN], y[:N_TRAIN]  # (20, 200), (20, 1)
X_test, y_test = X[N_TRAIN:], y[N_TRAIN:]    # (100, 200), (100, 1)
print(X_train.shape, X_test.shape)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练循环（本讲两种实现共用）
#
# 循环只做三件事：算一个批量的损失、反向传播、更新参数。
# "损失怎么算"和"参数怎么更新"作为函数传进来，从零实现和简洁实现就能共用同一个循环。
# 每轮结束时在整个训练集和测试集上算一次均方损失。

# %%
def train(net, batch_loss, update) -> list[dict[str, float]]:
    """Minibatch training; batch_loss(X, y) -> scalar to back-propagate, update() steps."""
    history = []
    for epoch in range(NUM_EPOCHS):
        for X_batch, y_batch in minibatches(X_train, y_train, BATCH_SIZE, seed=epoch):
            batch_loss(X_batch, y_batch).backward()
            update()
        with torch.no_grad():
            history.append({
                "epoch": epoch + 1,
                "train_loss": float(squared_loss(net(X_train), y_train).mean()),
                "test_loss": float(squared_loss(net(X_test), y_test).mean()),
            })
    return history


def show(history: list[dict[str, float]], title: str) -> None:
    fig = curves_figure(history, title, fig=plt.figure(figsize=(9, 3.4)))
    fig.axes[0].set_yscale("log")
    plt.show()
    last = history[-1]
    print(f"{title}: train loss {last['train_loss']:.2e}, test loss {last['test_loss']:.2e}")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现
#
# 惩罚项只有一行。损失按样本计算再求和，所以惩罚也加到每个样本上；
# `sgd_` 会除以批量大小，最后权重得到的额外梯度正好是 $\lambda\mathbf{w}$。

# %%
def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    return (w**2).sum() / 2  # () half the squared L2 norm


def train_scratch_wd(lambd: float) -> tuple[torch.Tensor, list[dict[str, float]]]:
    torch.manual_seed(0)
    w = torch.randn(NUM_INPUTS, 1, requires_grad=True)  # (200, 1)
    b = torch.zeros(1, requires_grad=True)

    def net(X: torch.Tensor) -> torch.Tensor:
        return X @ w + b  # (B, 1)

    def batch_loss(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (squared_loss(net(X), y) + lambd * l2_penalty(w)).sum()

    history = train(net, batch_loss, lambda: sgd_([w, b], LR, BATCH_SIZE))
    return w.detach(), history


w_plain, history_plain = train_scratch_wd(lambd=0)
show(history_plain, "scratch, lambda = 0")
w_decay, history_decay = train_scratch_wd(lambd=3)
show(history_decay, "scratch, lambda = 3")
print(f"||w||: {float(w_plain.norm()):.3f} without decay, {float(w_decay.norm()):.3f} with")

# %% [markdown] slideshow={"slide_type": "slide"}
# 不加惩罚时，训练损失几乎降到 0，测试损失却居高不下——20 个样本上 200 个自由的权重，
# 完全可以把噪声也"背"下来。$\lambda = 3$ 时训练损失变大了，测试损失却小得多：
# 权重被拉向 0，模型不再去拟合那些偶然的细节。
#
# ## 简洁实现
#
# PyTorch 的优化器自带 `weight_decay` 参数：更新时把 $\lambda\mathbf{w}$ 加到梯度上，
# 效果与上面的惩罚项相同，还省去了计算惩罚的前向和反向。用**参数组**（parameter groups）
# 只对权重衰减、不对偏置衰减。初始权重和数据顺序都与从零实现相同，结果应当一致。

# %%
def train_concise(wd: float) -> tuple[nn.Linear, list[dict[str, float]]]:
    net = nn.Linear(NUM_INPUTS, 1)
    torch.manual_seed(0)  # after nn.Linear's own initialisation used the generator
    with torch.no_grad():
        net.weight.copy_(torch.randn(NUM_INPUTS, 1).T)  # (1, 200) the scratch start
        net.bias.zero_()
    optimizer = torch.optim.SGD([
        {"params": [net.weight], "weight_decay": wd},
        {"params": [net.bias]},  # no decay on the bias
    ], lr=LR)

    def batch_loss(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return squared_loss(net(X), y).mean()  # mean: the optimizer does not divide by B

    def update() -> None:
        optimizer.step()
        optimizer.zero_grad()

    return net, train(net, batch_loss, update)


net_decay, history_concise = train_concise(wd=3)
show(history_concise, "concise, weight_decay = 3")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 权重衰减 = 损失加上 $\frac{\lambda}{2}\|\mathbf{w}\|^2$，等价于每步把权重缩小一点；
# - 它用更大的训练误差换更小的测试误差，是对付过拟合的常用工具；
# - PyTorch 里用优化器的 `weight_decay`，用参数组决定哪些参数衰减。
#
# 想一想：把 $\lambda$ 调到很大（例如 100），测试损失会怎样？为什么？

# %%
plain, decay, concise = history_plain[-1], history_decay[-1], history_concise[-1]
assert plain["train_loss"] < 0.1 * plain["test_loss"], plain  # overfits without decay
assert decay["test_loss"] < plain["test_loss"] / 5, (decay, plain)
assert w_decay.norm() < 0.5 * w_plain.norm()
assert abs(concise["test_loss"] - decay["test_loss"]) < 0.01 * decay["test_loss"], (concise, decay)
assert torch.allclose(net_decay.weight.detach().reshape(-1), w_decay.reshape(-1), atol=1e-4)
print("lesson 1.11 done: weight decay cut the test loss and shrank the weights")
