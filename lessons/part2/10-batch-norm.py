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
#     title: 批量规范化（batch normalization）
#     title_en: Batch normalization
#     minutes:
#       quick: 0.2
#       full: 2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 批量规范化（batch normalization）
#
# 训练线性回归时，我们先把每个特征标准化成均值 0、方差 1，优化就顺利得多。
# 深层网络里，每一层的输入是上一层的输出：它们的分布随着训练不停地变化，各层的数值范围可能差得很远，
# 学习率太大会发散，太小又学得慢。
#
# **批量规范化**（batch normalization，BN；Ioffe 和 Szegedy，2015）把"标准化"搬进网络内部：
# 每一层的输出先用**当前小批量**的均值和方差标准化，再用两个可学习的参数缩放和平移。
# 有了它，深层网络可以用大得多的学习率训练，收敛也快得多。本讲从零实现它，再用 LeNet 看看效果。

# %%
import inspect

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import histories_figure, shape_table, train_model
from dlcamp.models import book_config, count_parameters, create_model
from dlcamp.models import lenet as lenet_family
from dlcamp.models.blocks import BatchNormScratch, batch_norm
from dlcamp.train import make_config

QUICK = is_quick()  # 快速模式：只用 6000 张训练图片
SECONDS = None  # 不限时：按书中的设置训练 10 轮（快速模式只用 6000 张图片，几秒钟）
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 公式
#
# 设小批量 $\mathcal{B}$ 中的一个输入是 $\mathbf{x}$，先求小批量的均值和方差：
#
# $\hat{\boldsymbol{\mu}}_\mathcal{B} = \frac{1}{|\mathcal{B}|} \sum_{\mathbf{x} \in \mathcal{B}} \mathbf{x}, \qquad \hat{\boldsymbol{\sigma}}_\mathcal{B}^2 = \frac{1}{|\mathcal{B}|} \sum_{\mathbf{x} \in \mathcal{B}} (\mathbf{x} - \hat{\boldsymbol{\mu}}_\mathcal{B})^2 + \epsilon$
#
# 再标准化，并用**拉伸参数**（scale）$\boldsymbol{\gamma}$ 和**偏移参数**（shift）$\boldsymbol{\beta}$ 恢复表达能力：
#
# $\mathrm{BN}(\mathbf{x}) = \boldsymbol{\gamma} \odot \frac{\mathbf{x} - \hat{\boldsymbol{\mu}}_\mathcal{B}}{\hat{\boldsymbol{\sigma}}_\mathcal{B}} + \boldsymbol{\beta}$
#
# 小正数 $\epsilon$ 防止除以 0。要点有三个：
#
# - 全连接层之后：每个特征（每一列）单独算均值和方差；卷积层之后：每个**通道**单独算，
#   平均的范围是小批量里所有样本的所有像素位置；
# - 训练时用小批量的统计量；预测时没有"小批量"，改用训练中积累的**移动平均**（moving average），
#   所以模型的训练模式和评估模式（`model.train()` / `model.eval()`）行为不同；
# - BN 自带偏移 $\boldsymbol{\beta}$，所以它前面的卷积层或全连接层不需要偏置。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现
#
# `batch_norm` 是上面公式的直接翻译，另外顺手更新移动平均：

# %%
print(inspect.getsource(batch_norm))

# %% [markdown]
# 注意 `momentum` 的含义：PyTorch 里它是**新**统计量的权重（默认 0.1），书中的 0.9 是旧值的权重，两种写法是同一个更新。
# 把函数包成一个层，就是 `BatchNormScratch`：参数 `gamma`、`beta` 参与训练，移动平均存成缓冲区（buffer），
# 会跟着模型保存，但不被优化器更新：

# %%
print(inspect.getsource(BatchNormScratch))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 `nn.BatchNorm2d` 一模一样
#
# 给两者同样的输入和同样的 $\gamma$、$\beta$：训练模式下的输出、反向传播的梯度、更新后的移动平均，
# 以及评估模式下的输出，都应该相同。

# %%
torch.manual_seed(1)
ours, theirs = BatchNormScratch(3, num_dims=4), nn.BatchNorm2d(3)
with torch.no_grad():
    for layer in (ours, theirs):
        layer.train()
    ours.gamma.copy_(torch.tensor([1.0, 2.0, 0.5]))
    ours.beta.copy_(torch.tensor([0.0, -1.0, 3.0]))
    theirs.weight.copy_(ours.gamma)
    theirs.bias.copy_(ours.beta)
X = (torch.randn(8, 3, 5, 5) * 4 + 2).requires_grad_()  # (B, C, H, W), far from mean 0, var 1
X2 = X.detach().clone().requires_grad_()
Y_ours, Y_theirs = ours(X), theirs(X2)
weights = torch.randn_like(Y_ours)  # any loss will do: sum(weights * Y)
(weights * Y_ours).sum().backward()
(weights * Y_theirs).sum().backward()
print("per-channel mean after BN:", Y_ours.mean(dim=(0, 2, 3)).detach())  # = beta
print("max |difference| of outputs:", (Y_ours - Y_theirs).abs().max().item())
assert torch.allclose(Y_ours, Y_theirs, atol=1e-5)
assert torch.allclose(X.grad, X2.grad, atol=1e-5)
assert torch.allclose(ours.gamma.grad, theirs.weight.grad, atol=1e-4)
assert torch.allclose(ours.beta.grad, theirs.bias.grad, atol=1e-4)
assert torch.allclose(ours.moving_mean, theirs.running_mean, atol=1e-6)
assert torch.allclose(ours.moving_var, theirs.running_var, atol=1e-5)
ours.eval(), theirs.eval()
with torch.no_grad():
    assert torch.allclose(ours(X), theirs(X), atol=1e-5)  # evaluation: the moving averages
    assert not torch.allclose(ours(X), Y_ours, atol=1e-2)  # ... which differ from the batch's

# %% [markdown]
# 全连接层之后（二维输入）也一样，对应 `nn.BatchNorm1d`：

# %%
fc_ours, fc_theirs = BatchNormScratch(4, num_dims=2), nn.BatchNorm1d(4)
H = torch.randn(16, 4) * 3 - 1  # (B, F)
assert torch.allclose(fc_ours(H), fc_theirs(H), atol=1e-5)
assert torch.allclose(fc_ours.moving_var, fc_theirs.running_var, atol=1e-5)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 带批量规范化的 LeNet
#
# 书中把 BN 层加在 LeNet 每个卷积层和全连接层之后、sigmoid 之前。其余和第 2.05 讲的 LeNet 相同
# （只是第一个卷积层没有填充：28 → 24，展平后只有 256 维，全连接层反而小了）。
# `scratch=True` 用我们从零实现的 `BatchNormScratch`：

# %%
print(inspect.getsource(lenet_family.lenet_bn))
bn_lenet = create_model("lenet-bn")
print(shape_table(bn_lenet, (1, 28, 28)))

# %% [markdown]
# 从零实现的版本和用 `nn.BatchNorm` 的版本是同一个模型：把参数逐个复制过去，输出相同。
# 每个 BN 层只多了 $2c$ 个参数（$\gamma$ 和 $\beta$），移动平均不是参数：

# %%
scratch_lenet = create_model("lenet-bn", scratch=True)
with torch.no_grad():
    for a, b in zip(scratch_lenet.parameters(), bn_lenet.parameters(), strict=True):
        a.copy_(b)
X = torch.randn(32, 1, 28, 28)
assert torch.allclose(scratch_lenet(X), bn_lenet(X), atol=1e-5)
classic_params = count_parameters(create_model("lenet"))
print(f"LeNet {classic_params:,} parameters, BN-LeNet {count_parameters(bn_lenet):,}")
assert count_parameters(bn_lenet) == count_parameters(scratch_lenet)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练：LeNet 和 BN-LeNet
#
# 两个模型都用书中的设置：不带动量的 SGD、批量 256、10 轮，学习率分别是 0.9 和 1.0。
# 第 2.05 讲已经看到，sigmoid LeNet 开头有一段平台期；加上 BN 后会怎样？

# %%
runs = {}
for name in ("lenet", "lenet-bn"):
    book = book_config(name)
    print(book["section"], f"lr {book['recipe']['lr']}, book's test accuracy {book['book_test_acc']}")
    cfg = make_config(name, quick=QUICK, **book["recipe"], max_seconds=SECONDS)
    runs[name], _ = train_model(cfg)

# %%
histories_figure({name: trainer.history for name, trainer in runs.items()},
                 title="test accuracy per epoch, the book's settings", fig=plt.figure(figsize=(7, 3.6)))
plt.show()
first = {name: trainer.history[0]["test_acc"] for name, trainer in runs.items()}
final = {name: trainer.history[-1]["test_acc"] for name, trainer in runs.items()}
for name in runs:
    print(f"{name:9s} after epoch 1: {first[name]:.3f}   final: {final[name]:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 批量规范化用小批量的均值和方差标准化每一层的输出，再用可学习的 $\gamma$、$\beta$ 缩放和平移；
# - 全连接层按特征、卷积层按通道规范化；预测时用训练中积累的移动平均；
# - 同样的网络、同样大的学习率，BN-LeNet 第一轮就学到了东西，最终也更准确。
#
# 书中报告：LeNet 约 0.78，BN-LeNet 约 0.81（10 轮）。
#
# 自测：批量大小为 1 时，批量规范化会出什么问题？（试试 `BatchNormScratch(3)(torch.randn(1, 3, 1, 1))`。）

# %%
assert final["lenet-bn"] > final["lenet"] and first["lenet-bn"] > first["lenet"] + 0.2, (first, final)
if QUICK:
    assert final["lenet-bn"] >= 0.6, final  # a few seconds: far above chance (0.1)
else:
    assert final["lenet-bn"] >= book_config("lenet-bn")["book_test_acc"], final
print(f"lesson 2.10 done: BN-LeNet {final['lenet-bn']:.3f}, LeNet {final['lenet']:.3f}")
