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
#     title: 多层感知机的简洁实现
#     title_en: Multilayer perceptron, concise
#     minutes:
#       quick: 0.1
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 多层感知机的简洁实现
#
# 上一讲亲手写的 MLP，用 `torch.nn` 只要几行：`nn.Flatten` 展平图像，`nn.Linear` 是全连接层
# （fully connected layer），`nn.ReLU` 是激活函数，`nn.Sequential` 把它们按顺序串起来。
# dlcamp 的模型注册表（model registry）里已经有这个模型：`create_model("mlp")`。
# 这一讲先搭一遍，确认它和注册表里的完全一样，再交给 `Trainer` 训练。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.data.loader import make_loaders
from dlcamp.models import count_parameters, create_model
from dlcamp.train import EpochLog, PlotCurves, ProgressBar, TrainConfig, Trainer

QUICK = is_quick()
NUM_EPOCHS = 3 if QUICK else 10
torch.manual_seed(0)
loaders = make_loaders("fashion-mnist", batch_size=256, quick=QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型
#
# 同样是 784 → 256 → 10。`nn.Linear` 自带权重和偏置，并用适合 ReLU 网络的方式随机初始化，
# 不用我们再手写初始化。参数个数：$784 \times 256 + 256 + 256 \times 10 + 10 = 203{,}530$。

# %%
by_hand = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
net = create_model("mlp", hidden=[256])
print(net)
assert [type(m) for m in by_hand] == [type(m) for m in net]
assert count_parameters(net) == count_parameters(by_hand) == 784 * 256 + 256 + 256 * 10 + 10
X, y = next(iter(loaders.test))
print(X.shape, "->", net(X).shape)  # (B, 1, 28, 28) -> (B, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 设置与从零实现相同：小批量随机梯度下降，学习率 0.1，批量 256，10 轮。
# `Trainer` 负责循环、进度条和学习曲线（在 Jupyter 里实时刷新）。

# %%
config = TrainConfig(epochs=NUM_EPOCHS, lr=0.1, momentum=0.0, device="cpu")
callbacks = [ProgressBar(), EpochLog(), PlotCurves(title="MLP, concise")]
history = Trainer(net, config, callbacks=callbacks).fit(loaders.train, loaders.test,
                                                        eval_split="test")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `nn.Sequential` + `nn.Linear` + `nn.ReLU` 几行就写出 MLP；层自带参数和初始化；
# - 同一个 `Trainer` 训练所有分类模型：换模型不换循环。
#
# 《动手学深度学习》的简洁实现在相同设置下报告的测试准确率约为 0.84（与从零实现一致）。

# %%
final = history[-1]
print(f"test accuracy {final['test_acc']:.3f}")
assert final["train_loss"] < history[0]["train_loss"]
assert final["test_acc"] > (0.72 if QUICK else 0.84), final
print("lesson 1.09 done: the concise MLP learned Fashion-MNIST")
