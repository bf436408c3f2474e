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
#     title: softmax 回归的简洁实现
#     title_en: Softmax regression, concisely
#     minutes:
#       quick: 0.1
#       full: 0.3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # softmax 回归的简洁实现
#
# 上一讲亲手写了 softmax 回归的每个部件。本讲换成现成的：
#
# | 上一讲（手写）                    | 本讲                                              |
# |-----------------------------------|---------------------------------------------------|
# | `X.reshape(-1, 784) @ W + b`      | `create_model("softmax")`：Flatten + Linear        |
# | `softmax` + `cross_entropy`       | `nn.CrossEntropyLoss`（直接吃 logits）            |
# | 手写的训练循环 + `sgd_`           | `Trainer` + `torch.optim.SGD`                     |
#
# 其中最值得细看的是损失函数：为什么模型里**没有** softmax 这一层。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.data.loader import make_loaders
from dlcamp.models import create_model
from dlcamp.train import EpochLog, PlotCurves, ProgressBar, TrainConfig, Trainer

QUICK = is_quick()
# Quick mode: 6,000 training and 2,000 test images, 2 epochs; full mode: all 70,000 images.
NUM_EPOCHS = 2 if QUICK else 10
torch.manual_seed(0)

loaders = make_loaders("fashion-mnist", batch_size=256, quick=QUICK)
X, y = next(iter(loaders.train))
print(X.shape, y.shape)  # (256, 1, 28, 28), (256,)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型
#
# dlcamp 的所有模型都从注册表（registry）里按名字创建，命令行、服务和课程用的是同一个。
# `"softmax"` 就是两层：`nn.Flatten()` 把 (B, 1, 28, 28) 展平成 (B, 784)，
# `nn.Linear(784, 10)` 给出 10 个类别的分数（logits）。
#
# 为了和上一讲一致，把权重改成 $N(0, 0.01^2)$、偏置改成 0（`nn.Linear` 自带的默认初始化也能训练）。

# %%
net = create_model("softmax")
print(net)
linear = net[1]
nn.init.normal_(linear.weight, std=0.01)  # (10, 784): nn.Linear stores W transposed
nn.init.zeros_(linear.bias)               # (10,)
logits = net(X)                           # (256, 10)
print(logits.shape)
assert logits.shape == (256, 10) and linear.weight.shape == (10, 784)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失函数：为什么直接用 logits
#
# 上一讲先算 $\hat{\mathbf{y}} = \mathrm{softmax}(\mathbf{o})$，再算 $-\log \hat{y}_y$。
# 把两步合起来写，softmax 的分母和对数可以化简：
#
# $$-\log \hat{y}_y = -o_y + \log \sum_k \exp(o_k)
#   = -(o_y - m) + \log \sum_k \exp(o_k - m), \quad m = \max_k o_k$$
#
# 这就是 log-softmax 加负对数似然（negative log-likelihood，NLL）。减去最大值 $m$ 后，
# 指数不会溢出；整个式子只对求和取一次对数，也就不会出现 $\log 0$。
# `nn.CrossEntropyLoss` 正是这样做的，所以它的输入是 **logits**，而不是概率——
# 模型最后一层是 `nn.Linear`，不加 softmax。
#
# 先看分两步算会出什么问题。分数大到 1000 时，`exp` 溢出成 `inf`，概率变成 `nan`；
# 即使用减去最大值的 softmax，很小的概率也会下溢（underflow）成 0，取对数得到 `inf`：

# %%
big = torch.tensor([[1000.0, 0.0, -1000.0], [10.0, 20.0, 30.0]])  # (2, 3) logits
labels = torch.tensor([2, 0])                                      # true classes
rows = torch.arange(2)

naive_probs = torch.exp(big) / torch.exp(big).sum(dim=1, keepdim=True)  # (2, 3)
naive_loss = -torch.log(naive_probs[rows, labels])                     # (2,)
stable_probs = torch.softmax(big, dim=1)                                # (2, 3), no overflow
two_step_loss = -torch.log(stable_probs[rows, labels])                  # (2,)
loss_fn = nn.CrossEntropyLoss(reduction="none")
fused_loss = loss_fn(big, labels)                                       # (2,)
print("naive softmax:   ", naive_probs[0], naive_loss)
print("softmax then log:", two_step_loss)
print("CrossEntropyLoss:", fused_loss)

# %% [markdown]
# `CrossEntropyLoss` 给出的是有限的正确值：第一个样本真实类别的分数比最大的低 2000，损失就是 2000；
# 第二个样本是 $-(10 - 30) + \log(1 + e^{-10} + e^{-20}) \approx 20$。
# 它等于先算 `log_softmax`、再取负的 NLL：

# %%
m = big.max(dim=1, keepdim=True).values                            # (2, 1)
log_probs = big - m - torch.log(torch.exp(big - m).sum(dim=1, keepdim=True))  # (2, 3)
assert torch.isnan(naive_probs[0]).any()   # exp(1000) = inf, inf / inf = nan
assert torch.isinf(two_step_loss[0])       # e^-2000 underflows to 0, -log 0 = inf
assert torch.isfinite(fused_loss).all()
assert torch.allclose(fused_loss, torch.tensor([2000.0, 20.0]), atol=1e-3)
assert torch.allclose(log_probs, torch.log_softmax(big, dim=1))
assert torch.allclose(fused_loss, nn.NLLLoss(reduction="none")(log_probs, labels))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 训练交给 `Trainer`。分类任务（`Classification`）默认就用交叉熵：它把 logits 交给
# `torch.nn.functional.cross_entropy`（`nn.CrossEntropyLoss` 的函数形式），并统计准确率。
# 优化器用 SGD，学习率 0.1，不加动量（momentum=0），与上一讲的 `sgd_` 相同。
#
# 回调（callback）负责训练之外的事：`ProgressBar` 显示每一轮的进度条，
# `PlotCurves` 在 Jupyter 里每轮结束时重画损失和准确率曲线（作为脚本运行时不画）。

# %%
config = TrainConfig(epochs=NUM_EPOCHS, lr=0.1, momentum=0.0, device="cpu")
trainer = Trainer(net, config, callbacks=[ProgressBar(), EpochLog(), PlotCurves()])
history = trainer.fit(loaders.train, loaders.test, eval_split="test")  # EpochLog: a line per epoch

# %% [markdown]
# 结果和上一讲手写的版本相当：同一个模型、同一个损失、同一种优化算法，只是每个部件都换成了现成的。
# 测试准确率同样会在相邻两轮之间跳动，原因也相同——固定的学习率 0.1 相对较大。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `create_model("softmax")` 就是 `nn.Flatten` + `nn.Linear`，输出 logits，不含 softmax；
# - `nn.CrossEntropyLoss` 吃 logits，把 log-softmax 和 NLL 合在一起算，
#   大分数也不会溢出，也不会得到 $\log 0$；
# - `Trainer` 加上回调，就能得到进度条和实时的学习曲线。
#
# 最后用断言检查本讲的结果：

# %%
final = history[-1]
print(f"test accuracy {final['test_acc']:.3f}")
assert final["train_loss"] < history[0]["train_loss"], history  # the loss fell
assert final["test_acc"] > (0.70 if QUICK else 0.80), final
assert len(history) == NUM_EPOCHS
print("lesson 1.07 done: nn.Linear + CrossEntropyLoss + Trainer learned Fashion-MNIST")
