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
#     title: 实战：表格数据回归与 K 折交叉验证
#     title_en: "Practice: tabular regression and K-fold cross-validation"
#     minutes:
#       quick: 0.25
#       full: 0.6
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 实战：表格数据回归与 K 折交叉验证
#
# 前面的数据都是图像；现实中大量任务的数据是一张表（tabular data）：每行一个样本，每列一个特征。
# 这一讲走完一个完整的小项目：看数据 → 预处理 → 线性基线 → 小 MLP →
# 用 K 折交叉验证（K-fold cross-validation）挑超参数 → 在全部训练数据上重训 → 写出提交文件。
#
# 数据是 scikit-learn 安装包里自带的糖尿病数据集（diabetes）：442 名病人，10 个基线指标
# （年龄、性别、BMI、血压和 6 项血液检查），目标是一年后的病情进展量。它随 wheel 一起安装，
# 不需要联网。

# %%
import csv
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.basics import minibatches
from dlcamp.data.tabular import k_fold_indices, standardize
from dlcamp.train import TrainConfig, Trainer
from dlcamp.train.task import Regression

QUICK = is_quick()
NUM_EPOCHS = 60 if QUICK else 300
K = 5
torch.set_num_threads(1)  # 10-feature matrices: extra threads only add waiting and contention
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 先看数据
#
# `scaled=False` 取原始单位的特征（scikit-learn 默认给的是已经缩放过的版本，我们要自己做）。
# 各列的量纲差别很大：年龄几十，胆固醇 `s1` 上百，`s5` 只有个位数。

# %%
raw = load_diabetes(scaled=False)
features = np.asarray(raw.data, dtype=np.float32)  # (442, 10)
target = np.asarray(raw.target, dtype=np.float32)  # (442,)
names = list(raw.feature_names)
print(features.shape, target.shape)
print("column    mean      std      min      max")
for name, col in zip([*names, "target"], np.column_stack([features, target]).T, strict=True):
    print(f"{name:>6} {col.mean():8.2f} {col.std():8.2f} {col.min():8.2f} {col.max():8.2f}")
print("first rows:\n", np.round(features[:3], 2))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 留出测试集
#
# 一开始就随机留出固定的 20% 作为测试集（test split），直到最后才碰它；
# 剩下的 80% 才用来做交叉验证和选超参数。这就像比赛里看不到答案的那部分数据。

# %%
X_all = torch.from_numpy(features)  # (442, 10)
y_all = torch.from_numpy(target)  # (442,)
perm = torch.randperm(len(X_all), generator=torch.Generator().manual_seed(42))  # (442,)
n_test = len(X_all) // 5
test_idx, train_idx = perm[:n_test], perm[n_test:]  # (88,), (354,)
X_train, y_train = X_all[train_idx], y_all[train_idx]  # (354, 10), (354,)
X_test, y_test = X_all[test_idx], y_all[test_idx]  # (88, 10), (88,)
print(f"train {len(X_train)}, test {len(X_test)}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 预处理与评价指标
#
# - **标准化**（standardisation）：每个特征减均值、除以标准差，让各列处在相近的尺度上，
#   梯度下降才不会被某一列牵着走。均值和标准差**只能用训练部分**计算，再原样用到验证和测试数据上，
#   否则验证分数就偷看了答案。`dlcamp.data.tabular.standardize(train, *others)` 就这么做。
# - **对数目标**：进展量从 25 到 346。我们更关心相对误差（relative error）：
#   把 30 错成 60 和把 300 错成 330 不该同样严重。于是在 $\log y$ 上训练，并用对数均方根误差
#   （log-RMSE）评价：
#   $$\sqrt{\frac{1}{n}\sum_i \big(\log \max(\hat y_i, 1) - \log y_i\big)^2}.$$
#   预测先截断到不小于 1，免得取对数出问题；log-RMSE 为 0.1 大约相当于 10% 的相对误差。

# %%
def log_rmse(pred: torch.Tensor, y: torch.Tensor) -> float:
    """RMSE between log(clip(pred, 1)) and log(y): an error relative to the size of y."""
    diff = torch.log(pred.clamp_min(1.0)) - torch.log(y)  # (n,)
    return math.sqrt(float((diff**2).mean()))


mean_pred = torch.full_like(y_test, float(y_train.mean()))  # (88,) predict the train mean
baseline = log_rmse(mean_pred, y_test)
print(f"predict-the-mean log-RMSE on test: {baseline:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型与一次训练
#
# 两个候选：线性回归（`nn.Linear(10, 1)`）和一个隐藏层的小 MLP。
# 模型输出的是 $\log y$，预测时再取 $\exp$。`Trainer` 配上 `Regression` 任务（均方误差），
# 优化器用 Adam（`TrainConfig(optimizer="adam")`），`weight_decay` 是 L2 正则。
# 数据很小，整个训练集就放在一个 `(X, y)` 批次列表里，几百轮也只要一两秒。

# %%
def make_model(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    if hidden == 0:
        return nn.Linear(10, 1)  # (B, 10) -> (B, 1)
    return nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))


def fit(setting: dict, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Train on (X standardised, raw y); the model learns log(y)."""
    net = make_model(setting["hidden"])
    batches = list(minibatches(X, torch.log(y), batch_size=64, seed=0))  # [((B, 10), (B,)), ...]
    config = TrainConfig(epochs=NUM_EPOCHS, optimizer="adam", lr=setting["lr"],
                         weight_decay=setting["weight_decay"], device="cpu")
    Trainer(net, config, task=Regression()).fit(batches)
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, X: torch.Tensor) -> torch.Tensor:
    return torch.exp(net(X).squeeze(1))  # (n, 1) -> (n,) back from log space


first_train, first_valid = k_fold_indices(len(X_train), K)[0]
Xa, Xb = standardize(X_train[first_train], X_train[first_valid])  # (283, 10), (71, 10)
net = fit({"hidden": 0, "lr": 0.05, "weight_decay": 0.0}, Xa, y_train[first_train])
print("linear, fold 1: train", round(log_rmse(predict(net, Xa), y_train[first_train]), 3),
      "valid", round(log_rmse(predict(net, Xb), y_train[first_valid]), 3))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## K 折交叉验证
#
# 只留一份验证集，样本又少，分数会随“哪些人碰巧进了验证集”大幅波动。
# K 折交叉验证把训练数据均分成 $K$ 份，轮流拿其中一份做验证、其余 $K-1$ 份训练，
# 每个样本恰好验证一次，最后取 $K$ 个验证分数的平均。
# 注意标准化要在**每一折内部**重新计算：这一折的验证数据不能参与统计。

# %%
def cross_validate(setting: dict, verbose: bool = True) -> tuple[float, float]:
    train_scores, valid_scores = [], []
    for i, (tr, va) in enumerate(k_fold_indices(len(X_train), K, seed=0)):
        Xa, Xb = standardize(X_train[tr], X_train[va])  # train-fold statistics only
        net = fit(setting, Xa, y_train[tr])
        train_scores.append(log_rmse(predict(net, Xa), y_train[tr]))
        valid_scores.append(log_rmse(predict(net, Xb), y_train[va]))
        if verbose:
            print(f"  fold {i + 1}: train {train_scores[-1]:.3f}  valid {valid_scores[-1]:.3f}")
    return float(np.mean(train_scores)), float(np.mean(valid_scores))


settings = {
    "linear": {"hidden": 0, "lr": 0.05, "weight_decay": 0.0},
    "mlp-32": {"hidden": 32, "lr": 0.01, "weight_decay": 0.0},
    "mlp-32-wd": {"hidden": 32, "lr": 0.01, "weight_decay": 0.05},
}
if not QUICK:
    settings["mlp-128-wd"] = {"hidden": 128, "lr": 0.005, "weight_decay": 0.05}
results = {}
for name, setting in settings.items():
    print(name)
    results[name] = cross_validate(setting)
    print(f"  mean : train {results[name][0]:.3f}  valid {results[name][1]:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 按交叉验证的平均分选设置
#
# 选验证平均 log-RMSE 最小的设置。训练误差远小于验证误差说明过拟合（overfitting），
# 这时加大 `weight_decay` 或缩小模型往往有帮助；两者都高则是欠拟合。
# 这份数据里特征和目标的关系接近线性，线性模型和小 MLP 差距不大并不奇怪。

# %%
best = min(results, key=lambda name: results[name][1])
print(f"{'setting':>11}  train  valid")
for name, (tr_score, va_score) in results.items():
    print(f"{name:>11}  {tr_score:.3f}  {va_score:.3f}" + ("  <- best" if name == best else ""))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在全部训练数据上重训，写提交文件
#
# 超参数定下后，用全部 80% 训练数据（和它的统计量）重新训练一次，再在留出的测试集上算一次分数。
# 比赛里的测试集没有答案，只能提交预测；这里仿照提交格式写一个 `submission.csv`（id, prediction），
# 放在临时目录里，不弄脏课程目录。

# %%
Xtr, Xte = standardize(X_train, X_test)  # (354, 10), (88, 10)
final_net = fit(settings[best], Xtr, y_train)
test_pred = predict(final_net, Xte)  # (88,)
test_score = log_rmse(test_pred, y_test)
print(f"{best}: test log-RMSE {test_score:.3f}  (predict-the-mean {baseline:.3f})")

out_dir = Path(tempfile.mkdtemp(prefix="dlcamp-tabular-"))
submission = out_dir / "submission.csv"
with submission.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "prediction"])
    writer.writerows(zip(test_idx.tolist(), [f"{p:.2f}" for p in test_pred.tolist()], strict=True))
print(submission)
print("".join(submission.read_text().splitlines(keepends=True)[:6]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 表格数据的预处理（标准化、目标取对数）里要学的统计量只来自训练部分；
# - 关心相对误差时，在 $\log y$ 上训练，用 log-RMSE 评价；
# - K 折交叉验证用全部训练数据给出更稳的验证分数，按它的平均值选超参数；
# - 选定后在全部训练数据上重训，测试集只用一次。
#
# 自测：把 `K` 改成 10，各设置的平均分和选择会变吗？把标准化改成用全部数据的统计量，
# 交叉验证分数会不会变得“更好看”，为什么这不可信？

# %%
rows = list(csv.reader(submission.open()))
assert rows[0] == ["id", "prediction"] and len(rows) == len(X_test) + 1
assert all(math.isfinite(float(p)) for _, p in rows[1:])
assert sorted(int(i) for i, _ in rows[1:]) == sorted(test_idx.tolist())
assert test_score < 0.85 * baseline, (test_score, baseline)
assert results[best][1] < 0.85 * baseline, results
print("lesson 1.14 done: the tabular model beat predicting the mean")
