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
#     title: 线性回归的简洁实现
#     title_en: Linear regression, concisely
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 线性回归的简洁实现
#
# 上一讲我们亲手写了模型、损失和 SGD。这些部件在每个深度学习项目里都一样，
# 所以 PyTorch 早已提供现成的版本：
#
# | 上一讲（手写）           | 本讲（PyTorch）              |
# |--------------------------|------------------------------|
# | `X @ w + b`              | `nn.Linear`                  |
# | `squared_loss`           | `nn.MSELoss`                 |
# | `sgd_`                   | `torch.optim.SGD`            |
#
# 最后再把整个训练循环交给 dlcamp 的通用训练器（trainer）`Trainer`，
# 并确认它做的事和我们手写的循环完全一样。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import minibatches, synthetic_linear
from dlcamp.train import Regression, TrainConfig, Trainer

QUICK = is_quick()
# Quick mode: 5x fewer examples but 5x more epochs, so the number of SGD steps stays the same.
NUM_EXAMPLES = 200 if QUICK else 1000
NUM_EPOCHS = 15 if QUICK else 3

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 数据
#
# 和上一讲相同的合成数据：真实参数 $\mathbf{w} = [2, -3.4]^\top$、$b = 4.2$，噪声标准差 0.01。
#
# 这一次我们把数据**只打乱一次**，切成一个批次列表 `batches`，每一轮都按同样的顺序使用它。
# 这样后面手写循环和 `Trainer` 看到的批次完全相同，结果可以逐位比较。

# %%
true_w = torch.tensor([2.0, -3.4])
true_b = 4.2
features, labels = synthetic_linear(true_w, true_b, n=NUM_EXAMPLES)  # (n, 2), (n, 1)
batches = list(minibatches(features, labels, batch_size=10))
print(len(batches), "batches of", batches[0][0].shape, batches[0][1].shape)  # (10, 2), (10, 1)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 定义模型
#
# `nn.Linear(2, 1)` 是一个全连接层（fully connected layer）：两个输入、一个输出，
# 内部保存权重 `weight`（形状 (1, 2)）和偏置 `bias`（形状 (1,)），
# 计算 $\mathbf{X}\mathbf{W}^\top + b$。
#
# PyTorch 对它有自己的默认初始化；为了和上一讲一致，
# 我们用 `nn.init.normal_` 和 `nn.init.zeros_` 原地改写参数：
# 权重取自 $N(0, 0.01^2)$，偏置为 0。名字末尾的下划线表示"原地修改"。

# %%
def make_model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    model = nn.Linear(2, 1)
    nn.init.normal_(model.weight, mean=0.0, std=0.01)  # (1, 2)
    nn.init.zeros_(model.bias)                         # (1,)
    return model


net = make_model()
print(net, net.weight.data, net.bias.data)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失函数与优化器
#
# `nn.MSELoss` 计算均方误差（mean squared error）：默认对一批取**平均**，而且没有 $\frac{1}{2}$。
# 所以同样的学习率下，它的梯度是上一讲平方损失（先求和、再在 `sgd_` 里除以批量大小）的两倍，
# 收敛得也稍快一些。
#
# `torch.optim.SGD` 接管参数更新：`zero_grad()` 清零梯度，`step()` 沿负梯度走一步。
# 它需要知道要更新哪些参数（`net.parameters()`）以及学习率。

# %%
loss_fn = nn.MSELoss()
optimizer = torch.optim.SGD(net.parameters(), lr=0.03)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 循环的结构和上一讲一模一样，只是每一步都换成了现成的部件：
# 前向计算 `net(X)`，损失 `loss_fn`，`zero_grad()` → `backward()` → `step()`。

# %%
losses = []
with torch.no_grad():
    losses.append(loss_fn(net(features), labels).item())  # before training
for epoch in range(NUM_EPOCHS):
    for X_batch, y_batch in batches:
        loss = loss_fn(net(X_batch), y_batch)  # scalar: the batch mean
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        losses.append(loss_fn(net(features), labels).item())
    print(f"epoch {epoch + 1}, loss {losses[-1]:.6f}")

# %% [markdown]
# 学到的参数与真实参数的误差：

# %%
w_error = true_w - net.weight.detach().reshape(true_w.shape)
b_error = true_b - net.bias.item()
print("w error:", w_error, "b error:", round(b_error, 4))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 交给通用训练器 `Trainer`
#
# 后面的课会训练各种模型：分类、回归、语言模型。训练循环本身每次都一样，
# 不同的只是"损失怎么算、指标是什么"——这部分由任务（task）负责，这里是 `Regression()`（均方误差）。
# `Trainer` 负责其余的事：把批次搬到设备上、清零梯度、反向传播、更新参数、记录每轮的指标。
#
# 我们从**同样的初始参数**出发，用同样的批次、学习率和轮数（不加动量 momentum）训练一个新模型。

# %%
net2 = make_model()
config = TrainConfig(epochs=NUM_EPOCHS, lr=0.03, momentum=0.0, device="cpu")
trainer = Trainer(net2, config, task=Regression())
history = trainer.fit(batches)
for record in history:
    print(f"epoch {record['epoch']}, train loss {record['train_loss']:.6f}")

# %% [markdown]
# `history` 里的训练损失是一轮中各批次损失的平均（边训练边记录），
# 所以与上面在全部数据上算的损失略有不同。
# 但参数本身应当和手写循环的结果一致——`Trainer` 做的就是那几行代码：

# %%
for name, p1, p2 in zip(("weight", "bias"), net.parameters(), net2.parameters(), strict=True):
    print(f"{name}: hand-written loop {p1.data.reshape(-1)}, Trainer {p2.data.reshape(-1)}")
w2_error = true_w - net2.weight.detach().reshape(true_w.shape)
b2_error = true_b - net2.bias.item()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `nn.Linear`、`nn.MSELoss`、`torch.optim.SGD` 替代了上一讲手写的模型、损失和更新；
# - `nn.MSELoss` 默认取平均且没有 $\frac{1}{2}$，换损失时要留意学习率的含义；
# - `Trainer` 把训练循环写一次、到处复用；任务对象决定损失和指标。
#
# 最后用断言检查本讲的结果：

# %%
assert w_error.abs().max() < 0.05 and abs(b_error) < 0.05, (w_error, b_error)
assert w2_error.abs().max() < 0.05 and abs(b2_error) < 0.05, (w2_error, b2_error)
assert losses[-1] < losses[0] / 100, losses
assert history[-1]["train_loss"] < history[0]["train_loss"]
for p1, p2 in zip(net.parameters(), net2.parameters(), strict=True):
    assert torch.allclose(p1, p2, atol=1e-5), (p1, p2)  # the Trainer runs the same loop
print("lesson 1.04 done: nn.Linear + SGD and the Trainer both recovered w and b")
