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
#     title: 模型选择、欠拟合和过拟合（underfitting and overfitting）
#     title_en: Model selection, underfitting and overfitting
#     minutes:
#       quick: 0.2
#       full: 0.3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 模型选择、欠拟合和过拟合
#
# 训练的目标不是把训练集背下来，而是在**没见过的数据**上也预测得好。
# 模型在训练集上的误差叫**训练误差**（training error），在新数据上的期望误差叫
# **泛化误差**（generalization error），我们用一个独立的测试集来估计它。
#
# - 模型太简单，连训练集都拟合不好：**欠拟合**（underfitting）；
# - 模型太灵活而数据太少，训练误差很小、测试误差却大：**过拟合**（overfitting）。
#
# 本讲用多项式回归把这两种情况都"造"出来：数据的真实规律已知，我们只改变模型的阶数和训练样本数。

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import minibatches, polynomial_features
from dlcamp.train import TrainConfig, Trainer
from dlcamp.train.plot import curves_figure
from dlcamp.train.task import Regression

QUICK = is_quick()
NUM_EPOCHS = 200 if QUICK else 400
BATCH_SIZE = 10

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 生成数据
#
# 真实规律是一个三阶多项式加上标准差 0.1 的噪声：
#
# $$y = 5 + 1.2x - 3.4\frac{x^2}{2!} + 5.6\frac{x^3}{3!} + \epsilon,\quad \epsilon \sim \mathcal{N}(0, 0.1^2).$$
#
# 特征是 $x^i/i!$，$i = 0, 1, \dots, 19$。除以 $i!$ 是为了让高次项不至于大得离谱
# （$3^{19} \approx 10^9$），否则梯度会爆炸。第 0 列全是 1，充当偏置，所以下面的
# `nn.Linear` 不再需要 `bias`。训练集、测试集各 100 个样本。

# %%
MAX_DEGREE, N_TRAIN, N_TEST = 20, 100, 100
true_w = torch.tensor([5.0, 1.2, -3.4, 5.6])  # the first 4 weights; the other 16 are 0

gen = torch.Generator().manual_seed(0)
x = torch.randn(N_TRAIN + N_TEST, generator=gen)            # (200,)
features = polynomial_features(x, MAX_DEGREE)               # (200, 20)
labels = features[:, :4] @ true_w                           # (200,)
labels = (labels + 0.1 * torch.randn(len(x), generator=gen)).reshape(-1, 1)  # (200, 1)
print(features[:2, :5])
print(labels[:2])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练函数
#
# 模型就是一个没有偏置的 `nn.Linear(k, 1)`：用前 $k$ 列特征，就是拟合一个 $k-1$ 阶多项式。
# 数据很小，直接切成小批量放进列表交给 `Trainer`，任务是 `Regression`（均方误差）。
# 优化器是普通 SGD：学习率 0.01，批量 10。
#
# 为了公平，每种情况都走同样多的**更新步数**：训练样本少时一轮的批次少，就多训练几轮。

# %%
def fit_polynomial(num_features: int, num_train: int) -> tuple[nn.Linear, list[dict]]:
    """Fit y on the first `num_features` features of the first `num_train` examples."""
    torch.manual_seed(0)
    net = nn.Linear(num_features, 1, bias=False)  # column 0 is the bias
    X_train = features[:num_train, :num_features]            # (num_train, k)
    X_test = features[N_TRAIN:, :num_features]               # (100, k)
    train = list(minibatches(X_train, labels[:num_train], BATCH_SIZE))
    test = list(minibatches(X_test, labels[N_TRAIN:], BATCH_SIZE, shuffle=False))
    epochs = NUM_EPOCHS * (N_TRAIN // num_train)  # the same number of SGD steps in every case
    config = TrainConfig(epochs=epochs, lr=0.01, momentum=0.0, device="cpu")
    history = Trainer(net, config, task=Regression()).fit(train, test, eval_split="test")
    return net, history


def show(history: list[dict], title: str) -> None:
    fig = curves_figure(history, title, fig=plt.figure(figsize=(9, 3.4)))
    for ax in fig.axes:
        ax.set_yscale("log")  # the losses span several orders of magnitude
    plt.show()
    last = history[-1]
    print(f"{title}: train loss {last['train_loss']:.4f}, test loss {last['test_loss']:.4f}")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 正好：三阶多项式
#
# 用前 4 列特征，模型的形式和真实规律一致。训练损失和测试损失都应降到噪声水平
# （均方误差约 $0.1^2 = 0.01$），学到的权重接近 $[5, 1.2, -3.4, 5.6]$。

# %%
net, history_right = fit_polynomial(4, N_TRAIN)
show(history_right, "degree 3 (right)")
w_right = net.weight.detach().reshape(-1)  # (4,)
print("learned weights:", w_right)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 欠拟合：线性模型
#
# 只用前 2 列（常数和 $x$），模型是一条直线，无论怎么训练都画不出三次曲线。
# 训练损失降到某个高位就停住了，测试损失同样高——这是模型能力不足，不是训练不够。

# %%
_, history_under = fit_polynomial(2, N_TRAIN)
show(history_under, "degree 1 (underfitting)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 过拟合：19 阶多项式、只有 10 个训练样本
#
# 用全部 20 列特征，却只给 10 个训练样本：参数比样本还多，模型可以把训练点（连同噪声）
# 拟合得很好，但在多出来的高次项上学到的权重是噪声"教"的，测试损失明显高于训练损失。

# %%
net_over, history_over = fit_polynomial(MAX_DEGREE, 10)
show(history_over, "degree 19, 10 examples (overfitting)")
print("first learned weights:", net_over.weight.detach().reshape(-1)[:6])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 训练误差小不等于泛化好，要用模型训练时没见过的数据来评估；
# - 模型太简单会欠拟合（训练、测试误差都高）；模型太复杂、数据太少会过拟合（训练误差低、测试误差高）；
# - 选模型（这里是选多项式阶数）时看的是验证/测试误差。
#
# 想一想：给过拟合那一例更多训练样本（例如 100 个），测试损失会怎样变化？

# %%
final_right, final_under, final_over = history_right[-1], history_under[-1], history_over[-1]
assert (w_right - true_w).abs().max() < 0.2, w_right
assert final_right["test_loss"] < 0.05, final_right
assert final_under["test_loss"] > 20 * final_right["test_loss"], (final_under, final_right)
assert final_under["train_loss"] > 20 * final_right["train_loss"]
assert final_over["test_loss"] > 5 * final_over["train_loss"], final_over
assert final_over["test_loss"] > 5 * final_right["test_loss"]
print("lesson 1.10 done: right fit, underfitting and overfitting all shown")
