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
#     title: softmax 回归从零开始
#     title_en: Softmax regression from scratch
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # softmax 回归从零开始
#
# 线性回归预测的是一个数；分类（classification）问题要回答的却是"属于哪一类"。
# softmax 回归（softmax regression）仍然是一个线性模型，只是输出不再是一个数，
# 而是每个类别一个分数，再用 softmax 函数把这些分数变成概率。
#
# 本讲用 Fashion-MNIST（10 类衣物的 28×28 灰度图）把它从零写出来：
#
# 1. 参数 $\mathbf{W}$ 和 $\mathbf{b}$；
# 2. 亲手写 softmax，以及它数值稳定的版本；
# 3. 亲手写交叉熵损失（cross-entropy loss）；
# 4. 准确率（accuracy）；
# 5. 用上一讲的小批量 SGD 训练。

# %%
import inspect
import time

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import evaluate_accuracy, train_scratch
from dlcamp.data.loader import make_loaders
from dlcamp.train.plot import curves_figure

QUICK = is_quick()
# Quick mode: 6,000 training and 2,000 test images, 2 epochs; full mode: all 70,000 images.
NUM_EPOCHS = 2 if QUICK else 10
BATCH_SIZE = 256
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 数据
#
# `make_loaders` 把整个数据集放在内存里，按批给出图像和标签。图像已经归一化（normalise）：
# 减去训练集像素的均值、除以标准差，所以像素值不在 [0, 1] 里，而是大致以 0 为中心。
# 标签是 0–9 的整数。

# %%
loaders = make_loaders("fashion-mnist", BATCH_SIZE, quick=QUICK)
classes = loaders.train_set.classes
X, y = next(iter(loaders.train))
print(X.shape, X.dtype, y.shape, y.dtype)  # (256, 1, 28, 28) float32, (256,) int64
print("train:", len(loaders.train_set), "test:", len(loaders.test_set))
print("first labels:", [classes[i] for i in y[:5]])
assert X.shape == (BATCH_SIZE, 1, 28, 28) and y.shape == (BATCH_SIZE,)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型参数
#
# softmax 回归不关心像素的位置，把每张 28×28 的图展平（flatten）成长度 784 的向量。
# 10 个类别各有一组 784 个权重和一个偏置，于是
# $\mathbf{W}$ 的形状是 (784, 10)，$\mathbf{b}$ 的形状是 (10,)。
# 和线性回归一样，权重取自 $N(0, 0.01^2)$，偏置为 0。

# %%
NUM_INPUTS, NUM_OUTPUTS = 28 * 28, 10
W = torch.normal(0.0, 0.01, size=(NUM_INPUTS, NUM_OUTPUTS), requires_grad=True)  # (784, 10)
b = torch.zeros(NUM_OUTPUTS, requires_grad=True)                                # (10,)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## softmax
#
# 模型先算出每一类的分数 $\mathbf{o} = \mathbf{x}\mathbf{W} + \mathbf{b}$，这些未归一化的分数叫
# logits。它们可正可负，加起来也不等于 1。softmax 把它们变成概率：
#
# $$\mathrm{softmax}(\mathbf{o})_j = \frac{\exp(o_j)}{\sum_k \exp(o_k)}$$
#
# 取指数保证每一项为正，除以总和保证每行加起来是 1；分数越大，概率越大，
# 所以最大的那一项不变。对一批数据，每一行各自做 softmax。

# %%
def softmax_naive(O: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax straight from the formula."""
    E = torch.exp(O)                        # (B, C)
    return E / E.sum(dim=1, keepdim=True)   # (B, C) / (B, 1) broadcasts per row


O = torch.randn(2, 5)  # (2, 5)
P = softmax_naive(O)   # (2, 5)
print(P, P.sum(dim=1))
assert (P > 0).all() and torch.allclose(P.sum(dim=1), torch.ones(2))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### 数值稳定的 softmax
#
# $\exp$ 增长极快：float32 里 $\exp(89)$ 就已经溢出（overflow）成 `inf`，而 `inf / inf` 是 `nan`。
# 好在给一行的所有分数同时减去同一个数，softmax 的结果不变（分子分母同乘 $\exp(-c)$）。
# 减去这一行的最大值后，最大的指数是 $\exp(0) = 1$，永远不会溢出：
#
# $$\mathrm{softmax}(\mathbf{o})_j = \frac{\exp(o_j - \max_k o_k)}{\sum_i \exp(o_i - \max_k o_k)}$$

# %%
def softmax(O: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax that subtracts each row's maximum first, so exp never overflows."""
    shifted = O - O.max(dim=1, keepdim=True).values  # (B, C), largest entry of each row is 0
    E = torch.exp(shifted)                           # (B, C) in (0, 1]
    return E / E.sum(dim=1, keepdim=True)            # (B, C)


big = torch.tensor([[100.0, 90.0, 80.0], [1.0, 2.0, 3.0]])  # (2, 3)
print("naive: ", softmax_naive(big))
print("stable:", softmax(big))
assert torch.isnan(softmax_naive(big)[0]).any()  # exp(100) = inf, inf / inf = nan
assert torch.allclose(softmax(big), torch.softmax(big, dim=1))
assert torch.allclose(softmax(O), torch.softmax(O, dim=1))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型
#
# 展平、做一次矩阵乘法、加偏置、再做 softmax。`reshape(-1, 784)` 中的 `-1` 让批量大小自动推出。

# %%
def net(X: torch.Tensor) -> torch.Tensor:
    """Softmax regression: class probabilities of each image in the batch."""
    O = X.reshape(-1, NUM_INPUTS) @ W + b  # (B, 784) @ (784, 10) + (10,) -> (B, 10) logits
    return softmax(O)                      # (B, 10), each row sums to 1


probs = net(X)
print(probs.shape, probs[0])  # (256, 10): almost uniform before training, about 0.1 each
assert probs.shape == (BATCH_SIZE, NUM_OUTPUTS)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 交叉熵损失
#
# 一个样本的真实类别是 $y$，模型给它的概率是 $\hat{y}_y$。交叉熵损失是
#
# $$\ell = -\log \hat{y}_y$$
#
# 模型越有把握地答对（$\hat{y}_y \to 1$），损失越接近 0；把真实类别的概率压得越低，损失越大。
#
# 不需要循环，也不需要把标签变成独热（one-hot）向量：用两个下标张量一起索引，
# `y_hat[rows, y]` 从第 $i$ 行取出第 `y[i]` 列，正好是每个样本真实类别的预测概率。

# %%
y_hat_demo = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])  # (2, 3): two examples, 3 classes
y_demo = torch.tensor([0, 2])                                   # (2,): their true classes
print(y_hat_demo[torch.arange(2), y_demo])                     # (2,): tensor([0.1, 0.5])


def cross_entropy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of probabilities y_hat (B, C) and integer labels y (B,)."""
    picked = y_hat[torch.arange(len(y)), y]  # (B,): probability given to the true class
    return -torch.log(picked)                # (B,)


print(cross_entropy(y_hat_demo, y_demo))
assert torch.allclose(cross_entropy(y_hat_demo, y_demo), -torch.log(torch.tensor([0.1, 0.5])))
# The same number as torch's loss, which starts from logits (lesson 1.07 explains why):
assert torch.allclose(cross_entropy(softmax(O), torch.tensor([1, 3])),
                      torch.nn.functional.cross_entropy(O, torch.tensor([1, 3]), reduction="none"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 准确率
#
# 损失便于求导，但人们关心的是分类的准确率：预测正确的样本占多少。
# 预测的类别就是概率（或分数）最大的那一列，`argmax(dim=1)`；
# 和标签比较得到布尔张量，求和就是答对的个数。
#
# 在整个测试集上的准确率由 `dlcamp.course.basics.evaluate_accuracy(net, loader)` 计算，
# 之后的分类课都会用到它。
# 它对任何"输入一批图像、输出 (B, C) 分数"的可调用对象都适用——我们手写的函数 `net`，或者一个
# `nn.Module`。核心只有几行：
#
# ```python
# with torch.no_grad():                         # evaluation builds no graph
#     for X, y in loader:
#         correct += int((net(X).argmax(dim=1) == y).sum())
#         total += len(y)
# return correct / total
# ```

# %%
correct = (y_hat_demo.argmax(dim=1) == y_demo).sum().item()  # predictions: 2 and 2
print(f"demo accuracy: {correct}/{len(y_demo)}")
acc_before = evaluate_accuracy(net, loaders.test)
print(f"test accuracy before training: {acc_before:.3f}")  # near chance: about 0.1
assert correct == 1

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 循环的结构和线性回归那一讲完全相同：前向计算、对一批损失之**和**反向传播、`sgd_` 更新并清零梯度。
# 学习率 0.1，批量大小 256。每一轮记录训练集上的平均损失和准确率（边训练边累计），
# 以及测试集上的准确率。

# %% [markdown]
# 后面的从零实现（多层感知机、权重衰减、暂退法……）都用同一个循环，所以它只写一次，放在
# `dlcamp.course.basics.train_scratch` 里。打印出来读一读——就是上面说的那几步：

# %%
print(inspect.getsource(train_scratch))

# %%
LR = 0.1
start = time.perf_counter()
history = train_scratch(net, [W, b], cross_entropy, loaders.train, loaders.test,
                        epochs=NUM_EPOCHS, lr=LR)
print(f"{time.perf_counter() - start:.1f} s")
curves_figure(history, "softmax regression from scratch", fig=plt.figure(figsize=(9, 3.4)))
plt.show()

# %% [markdown]
# 训练损失一路下降，测试准确率却会在相邻两轮之间跳动几个百分点：学习率固定为 0.1，
# 而输入经过归一化后数值比 [0, 1] 大，每一步走得相对较大，参数在最优点附近来回摆动。
# 逐渐减小学习率（learning rate schedule）可以让它稳定下来，后面的课会讲到。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 预测
#
# 看几张测试图片：标题第一行是真实类别，第二行是模型的预测。
# 出错的多半是彼此相像的类别，比如衬衫（shirt）、T 恤（T-shirt/top）和套头衫（pullover）。

# %%
X_test, y_test = next(iter(loaders.test))
with torch.no_grad():
    pred = net(X_test[:8]).argmax(dim=1)  # (8,)
fig, axes = plt.subplots(1, 8, figsize=(12, 2))
for ax, image, label, guess in zip(axes, X_test[:8], y_test[:8], pred, strict=True):
    ax.imshow(image[0].numpy(), cmap="gray")  # (28, 28)
    ax.set_title(f"{classes[label]}\n{classes[guess]}", fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - softmax 回归 = 线性层 + softmax，输出每一类的概率；
# - softmax 先减去每行最大值，结果不变，却不会溢出；
# - 交叉熵取真实类别概率的负对数，用 `y_hat[range(n), y]` 一次取出整批；
# - 训练循环与线性回归相同，只换了模型和损失。
#
# 《动手学深度学习》（d2l）用同样的设置（学习率 0.1、批量 256、10 轮）报告的测试准确率约为 0.83。
# 最后用断言检查本讲的结果：

# %%
final_loss, final_test_acc = history[-1]["train_loss"], history[-1]["test_acc"]
print(f"test accuracy {final_test_acc:.3f} (before training {acc_before:.3f})")
assert final_loss < history[0]["train_loss"], history  # the loss fell
assert final_loss < (1.0 if QUICK else 0.6), history
assert final_test_acc > (0.70 if QUICK else 0.80), final_test_acc
assert final_test_acc > acc_before + 0.5
print("lesson 1.06 done: softmax regression from scratch learned Fashion-MNIST")
