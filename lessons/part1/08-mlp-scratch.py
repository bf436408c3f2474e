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
#     title: 多层感知机从零开始（multilayer perceptron）
#     title_en: Multilayer perceptron from scratch
#     minutes:
#       quick: 0.1
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 多层感知机从零开始
#
# softmax 回归是线性模型：它只能用一条条"直线"（超平面）把类别分开。
# **多层感知机**（multilayer perceptron，MLP）在输入和输出之间加入**隐藏层**（hidden layer），
# 并在隐藏层后接一个**非线性的激活函数**（activation function）。没有这个非线性，
# 两层线性变换叠在一起仍然只是一个线性变换；有了它，网络就能表示弯曲的决策边界。
#
# 本讲用张量亲手搭一个单隐藏层、256 个隐藏单元的 MLP，在 Fashion-MNIST 上训练。

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import evaluate_accuracy, train_scratch
from dlcamp.data.loader import make_loaders
from dlcamp.train.plot import curves_figure

QUICK = is_quick()
NUM_EPOCHS = 3 if QUICK else 10
torch.manual_seed(0)
loaders = make_loaders("fashion-mnist", batch_size=256, quick=QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 激活函数 ReLU
#
# 最常用的激活函数是修正线性单元（rectified linear unit，ReLU）：$\mathrm{ReLU}(x) = \max(x, 0)$。
# 它的导数在 $x>0$ 时为 1，在 $x<0$ 时为 0——梯度要么原样通过，要么被挡住，
# 不会像 sigmoid 那样在两端变得很小。我们自己写一个，并和 PyTorch 的版本对比数值与梯度：

# %%
def relu(X: torch.Tensor) -> torch.Tensor:
    return torch.maximum(X, torch.zeros_like(X))


x = (torch.arange(-3.0, 3.0, 0.5) + 0.25).requires_grad_()  # no 0: no slope there
relu(x).sum().backward()
assert torch.equal(relu(x), F.relu(x))
assert torch.equal(x.grad, (x > 0).float())  # slope 1 on the right, 0 on the left
print(x.grad)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型参数与前向计算
#
# 输入 784 维（28×28 展平），隐藏层 256 个单元，输出 10 类：
# $\mathbf{H} = \mathrm{ReLU}(\mathbf{X}\mathbf{W}_1 + \mathbf{b}_1)$，
# $\mathbf{O} = \mathbf{H}\mathbf{W}_2 + \mathbf{b}_2$。
#
# 权重用很小的随机数初始化（标准差 0.01）：如果全部设为 0，
# 同一层的每个隐藏单元会得到完全相同的梯度，永远学成一样的东西——随机初始化打破了这种对称性（symmetry）。

# %%
num_inputs, num_hiddens, num_outputs = 784, 256, 10
W1 = (torch.randn(num_inputs, num_hiddens) * 0.01).requires_grad_()
b1 = torch.zeros(num_hiddens, requires_grad=True)
W2 = (torch.randn(num_hiddens, num_outputs) * 0.01).requires_grad_()
b2 = torch.zeros(num_outputs, requires_grad=True)
params = [W1, b1, W2, b2]


def net(X: torch.Tensor) -> torch.Tensor:
    X = X.reshape(-1, num_inputs)  # (B, 784)
    H = relu(X @ W1 + b1)          # (B, 256)
    return H @ W2 + b2             # (B, 10) logits


print(net(next(iter(loaders.test))[0]).shape)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失与训练
#
# 损失直接用 PyTorch 的交叉熵（它对 logits 先做数值稳定的 log-softmax，上一讲已经讲过原理），
# 取 `reduction="none"`，得到每个样本的损失。训练循环与 softmax 回归完全相同，
# 所以调用同一个 `train_scratch`：

# %%
def loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(y_hat, y, reduction="none")  # (B,)


print(inspect.signature(train_scratch))
acc_before = evaluate_accuracy(net, loaders.test)
history = train_scratch(net, params, loss, loaders.train, loaders.test,
                        epochs=NUM_EPOCHS, lr=0.1)
curves_figure(history, "MLP from scratch", fig=plt.figure(figsize=(9, 3.4)))
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 隐藏层 + 非线性激活让模型不再是线性的；
# - 参数要随机初始化以打破对称性；
# - 训练循环不变，变的只是模型。
#
# 《动手学深度学习》在相同设置（256 个隐藏单元、学习率 0.1、批量 256、10 轮）下
# 报告的测试准确率约为 0.84。
# 我们的数据加载器对输入做了标准化（减均值、除以标准差），通常还会更高一点。

# %%
final = history[-1]
print(f"test accuracy {final['test_acc']:.3f} (before training {acc_before:.3f})")
assert final["train_loss"] < history[0]["train_loss"]
assert final["test_acc"] > (0.72 if QUICK else 0.84), final
print("lesson 1.08 done: an MLP written by hand learned Fashion-MNIST")
