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
#     title: 暂退法（dropout）
#     title_en: Dropout
#     minutes:
#       quick: 0.1
#       full: 2.0
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 暂退法
#
# 一个好模型不应该依赖某几个特别的隐藏单元：输入稍有扰动，输出也不该大变。
# **暂退法**（dropout）把这个想法直接写进训练：每次前向计算时，随机把隐藏层的一部分输出置零，
# 网络只好把有用的信息分散到许多单元上，不能让某几个单元"互相配合着死记"训练数据。
# 这是一种正则化（regularization）手段，用来减轻过拟合（overfitting）。
#
# 本讲先手写暂退层，检查它的统计性质，再把它放进 MLP 里，最后用 `create_model` 的简洁版本。

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import evaluate_accuracy, train_scratch
from dlcamp.data.loader import make_loaders
from dlcamp.models import create_model
from dlcamp.train import EpochLog, PlotCurves, ProgressBar, TrainConfig, Trainer
from dlcamp.train.plot import curves_figure

QUICK = is_quick()
NUM_EPOCHS = 3 if QUICK else 10
torch.manual_seed(0)
loaders = make_loaders("fashion-mnist", batch_size=256, quick=QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 手写暂退层
#
# 以概率 $p$ 把每个元素置零，留下的元素除以 $1-p$：
# $h' = 0$（概率 $p$），否则 $h' = h / (1-p)$。
# 于是 $\mathbb{E}[h'] = (1-p)\cdot \frac{h}{1-p} = h$——**期望不变**，
# 下一层看到的输入在平均意义上和没有暂退时一样。

# %%
def dropout_layer(X: torch.Tensor, p: float) -> torch.Tensor:
    assert 0.0 <= p <= 1.0
    if p == 1.0:
        return torch.zeros_like(X)  # everything dropped (and no division by zero)
    mask = (torch.rand(X.shape, device=X.device) > p).float()  # 1 = keep, same shape as X
    return mask * X / (1.0 - p)


X = torch.arange(16, dtype=torch.float32).reshape(2, 8)  # (2, 8)
print(dropout_layer(X, 0.5))
assert torch.equal(dropout_layer(X, 0.0), X)
assert torch.equal(dropout_layer(X, 1.0), torch.zeros_like(X))

# Expectation: average many independent draws of the same X.
draws = torch.stack([dropout_layer(X, 0.5) for _ in range(20_000)])  # (20000, 2, 8)
print(draws.mean(dim=0))
assert torch.allclose(draws.mean(dim=0), X, atol=0.25)
assert abs((draws == 0).float().mean().item() - (0.5 + 0.5 / 16)) < 0.01  # p of them, plus X[0,0]=0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## `nn.Dropout`：训练时暂退，评估时什么也不做
#
# PyTorch 的 `nn.Dropout` 做的是同一件事。它看模块的 `training` 标志：
# `model.train()` 时随机置零并放大，`model.eval()` 时原样输出——
# 测试时我们要的是确定的预测，而期望不变正好保证了两种模式下输出的尺度一致。

# %%
drop = nn.Dropout(0.5)
ones = torch.ones(1000, 100)  # (1000, 100)
drop.train()
out_train = drop(ones)
drop.eval()
out_eval = drop(ones)
print("train: values", out_train.unique().tolist(), "mean", round(out_train.mean().item(), 3))
print("eval:  values", out_eval.unique().tolist())
assert set(out_train.unique().tolist()) == {0.0, 2.0}  # dropped, or scaled by 1/(1-p)
assert abs(out_train.mean().item() - 1.0) < 0.02
assert torch.equal(out_eval, ones)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现：带暂退的 MLP
#
# 784 → 256 → 256 → 10，两个隐藏层后各接一个暂退层。常见做法是靠近输入的层暂退得少一些：
# 第一层 $p=0.2$，第二层 $p=0.5$。
#
# 暂退只能在训练时打开。我们把参数包进一个小小的 `nn.Module`，用它自带的 `training` 标志来判断；
# `evaluate_accuracy` 评估前会调用 `net.eval()`，评估完再切回训练模式。
# 参数仍然是我们亲手创建的张量（用 `nn.Parameter` 包一层，好让模块认得它们）。
# 权重的标准差取 0.05 而不是第 1.08 讲的 0.01：信号要穿过两个隐藏层，0.01 会让它一层层缩小，
# 开头几轮几乎学不动（为什么，以及怎样系统地选这个数，见第 1.13 讲）。

# %%
class DropoutMLP(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (784, 256, 256, 10),
                 drops: tuple[float, ...] = (0.2, 0.5)):
        super().__init__()
        self.drops = drops
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_in, n_out) * 0.05) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in sizes[1:])

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        H = X.reshape(X.shape[0], -1)  # (B, 784)
        for W, b, p in zip(self.weights[:-1], self.biases[:-1], self.drops, strict=True):
            H = torch.relu(H @ W + b)  # (B, 256)
            if self.training:
                H = dropout_layer(H, p)
        return H @ self.weights[-1] + self.biases[-1]  # (B, 10) logits


def loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(y_hat, y, reduction="none")  # (B,)


net = DropoutMLP()
X, y = next(iter(loaders.test))
net.eval()
assert torch.equal(net(X[:4]), net(X[:4]))      # eval: deterministic
net.train()
assert not torch.equal(net(X[:4]), net(X[:4]))  # train: a fresh mask each call
history = train_scratch(net, list(net.parameters()), loss, loaders.train, loaders.test,
                        epochs=NUM_EPOCHS, lr=0.5)
curves_figure(history, "MLP + dropout, from scratch", fig=plt.figure(figsize=(9, 3.4)))
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 简洁实现
#
# 注册表里的 `mlp` 接受 `dropout` 参数，在每个隐藏层的 ReLU 后面加 `nn.Dropout`。
# 注意它对**所有**隐藏层用同一个暂退概率，不能像上面那样分层设 0.2/0.5；这里统一用 0.5。
# `Trainer` 在训练时调用 `model.train()`、评估时调用 `model.eval()`，暂退的开关不用我们操心。

# %%
torch.manual_seed(0)
concise = create_model("mlp", hidden=[256, 256], dropout=0.5)
print(concise)
assert sum(isinstance(m, nn.Dropout) for m in concise.modules()) == 2
config = TrainConfig(epochs=NUM_EPOCHS, lr=0.5, momentum=0.0, device="cpu")
callbacks = [ProgressBar(), EpochLog(), PlotCurves(title="MLP + dropout, concise")]
concise_history = Trainer(concise, config, callbacks=callbacks).fit(
    loaders.train, loaders.test, eval_split="test")  # records test_loss, test_acc

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 暂退法在训练时随机置零隐藏单元，并把留下的放大 $1/(1-p)$，使期望不变；
# - 评估（测试）时关闭暂退：`model.eval()`；
# - 它是一种正则化，迫使网络不依赖个别单元。
#
# 《动手学深度学习》在相同设置（784-256-256-10，暂退 0.2/0.5，学习率 0.5，批量 256，10 轮）下
# 报告的测试准确率约为 0.85。学习率 0.5 偏大，测试准确率在相邻几轮之间会上下跳动 1–3 个百分点，
# 看曲线的趋势，不要只看某一轮。

# %%
for name, h in [("scratch", history), ("concise", concise_history)]:
    print(f"{name}: test accuracy {h[-1]['test_acc']:.3f}")
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["test_acc"] > (0.70 if QUICK else 0.84), h[-1]
assert evaluate_accuracy(net, loaders.test) == history[-1]["test_acc"]  # eval mode: deterministic
print("lesson 1.12 done: dropout regularised an MLP on Fashion-MNIST")
