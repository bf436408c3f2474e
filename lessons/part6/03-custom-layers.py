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
#     title: 自定义层（custom layer）
#     title_en: Custom layers
#     minutes:
#       quick: 0.1
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 自定义层（custom layer）
#
# PyTorch 自带的层很多，但研究和工程里总会遇到它没有的：一种新的规范化、一个特殊的注意力、
# 论文里的某个小技巧。写一个层和写一个块（第 6.01 讲）是同一件事——继承 `nn.Module`。
# 本讲写三个层，并且每一个都和 PyTorch 的对应实现逐项比对：
#
# 1. 没有参数的层：把每个样本的特征减去它们的均值（中心化，centering）；
# 2. 有参数的层：手写的全连接层，与 `nn.Linear` 比较输出、梯度和初始化；
# 3. 两者结合：手写的层规范化（layer normalization），与 `nn.LayerNorm` 比较；
#
# 最后用手写的层和 PyTorch 的层各搭一个模型，从相同的初值出发训练，两者应当一步不差。

# %%
import math

import torch
from torch import nn

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 快速模式：最后的对比训练只走几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 没有参数的层
#
# 中心化层只做一件事：每个样本的特征减去这个样本所有特征的平均值，输出的每一行均值为 0。
# 它没有要学的东西，所以连 `__init__` 都不用写（继承 `nn.Module` 的就够了），只写 `forward`。

# %%
class CenterFeatures(nn.Module):
    """x (..., features) -> x minus its mean over the last dimension; no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=-1, keepdim=True)


center = CenterFeatures()
x = torch.tensor([[1.0, 2.0, 3.0, 6.0], [-1.0, 0.0, 1.0, 0.0]])
print(center(x))
assert torch.equal(center(x), torch.tensor([[-2.0, -1.0, 0.0, 3.0], [-1.0, 0.0, 1.0, 0.0]]))
assert len(list(center.parameters())) == 0

# %% [markdown]
# 它可以和任何层组合。放在一个随机初始化的全连接层后面，每一行的均值在浮点误差以内为 0：

# %%
net = nn.Sequential(nn.Linear(8, 128), CenterFeatures())
row_means = net(torch.rand(4, 8)).mean(dim=1)
print("row means:", row_means)
assert row_means.abs().max() < 1e-6

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 有参数的层：手写全连接层
#
# 要学的量用 `nn.Parameter` 包起来赋给属性，模块就会登记它们（第 6.01 讲）。PyTorch 自己的层有一个惯例，
# 我们也照做：`__init__` 只分配形状（`torch.empty`），数值由单独的 `reset_parameters` 填写——
# 这样随时可以重新初始化，延后初始化（第 6.05 讲）和 `meta` 设备也依赖这种写法。
#
# 权重按 `nn.Linear` 的方式存成 `(out_features, in_features)`：每一行是一个输出单元的全部输入权重，
# 计算时用 $y = xW^\top + b$。参数名也取 `weight` 和 `bias`，于是两者的 `state_dict` 可以互换。
# 初值照搬 `nn.Linear` 的默认值：权重和偏置都取自 $U(-1/\sqrt{n_{in}},\, 1/\sqrt{n_{in}})$。
# `extra_repr` 决定打印模型时这一层的括号里显示什么。

# %%
class HandLinear(nn.Module):
    """y = x @ weight.T + bias; x (..., in_features) -> y (..., out_features).

    weight (out_features, in_features) and bias (out_features,) start uniform in
    +-1/sqrt(in_features), like nn.Linear's default.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


hand = HandLinear(5, 3)
print(hand, [(n, tuple(p.shape)) for n, p in hand.named_parameters()])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 与 `nn.Linear` 逐项比对
#
# 把 `nn.Linear` 的参数原样装进手写层，对同一批输入比较三样东西：输出、参数的梯度、输入的梯度。
# 两边做的是同样的矩阵乘法，只是调用的底层函数可能不同（`nn.Linear` 用一次融合的 `addmm`），
# 所以用很小的容差比较。

# %%
ref = nn.Linear(5, 3)
hand.load_state_dict(ref.state_dict())  # same names and shapes: the weights fit as they are
inputs = torch.randn(16, 5, requires_grad=True)
inputs_ref = inputs.detach().clone().requires_grad_(True)
out_hand, out_ref = hand(inputs), ref(inputs_ref)
(out_hand ** 2).sum().backward()
(out_ref ** 2).sum().backward()
diffs = {
    "output": (out_hand - out_ref).abs().max().item(),
    "weight grad": (hand.weight.grad - ref.weight.grad).abs().max().item(),
    "bias grad": (hand.bias.grad - ref.bias.grad).abs().max().item(),
    "input grad": (inputs.grad - inputs_ref.grad).abs().max().item(),
}
print({k: f"{v:.1e}" for k, v in diffs.items()})
assert all(d < 1e-5 for d in diffs.values())

# %% [markdown]
# 初始化也一样：`nn.Linear` 的默认初始化写作 `kaiming_uniform_(weight, a=sqrt(5))`，
# 化简后正是 $U(-1/\sqrt{n_{in}},\, 1/\sqrt{n_{in}})$；先权重后偏置，取随机数的顺序也相同。
# 所以用同一个随机种子，两边建出来的层连初值都一样。

# %%
torch.manual_seed(42)
fresh_ref = nn.Linear(64, 32)
torch.manual_seed(42)
fresh_hand = HandLinear(64, 32)
print("same initial weights:", torch.allclose(fresh_hand.weight, fresh_ref.weight),
      "| bias:", torch.allclose(fresh_hand.bias, fresh_ref.bias))
assert torch.allclose(fresh_hand.weight, fresh_ref.weight)
assert torch.allclose(fresh_hand.bias, fresh_ref.bias)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 两者结合：手写层规范化
#
# 中心化再往前走一步：除以每个样本特征的标准差，再乘一个可学的缩放 $\gamma$、加一个可学的偏移 $\beta$，
# 就是**层规范化**（layer normalization；Ba 等，2016）：
#
# $$\mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,$$
#
# 其中 $\mu$、$\sigma^2$ 是这一个样本所有特征的均值和（有偏的）方差。它和批量规范化（第 2.10 讲）
# 的区别是沿特征而不是沿批量求统计量，所以不需要滑动平均，训练和推理时算法相同——Transformer 用的就是它。
# 按照惯例，$\gamma$ 从 1、$\beta$ 从 0 开始，这时它就是"中心化后再除以标准差"。

# %%
class HandLayerNorm(nn.Module):
    """x (..., features) normalised over the last dimension, then scaled and shifted.

    Learnable weight (gamma, starts at 1) and bias (beta, starts at 0), each (features,);
    `eps` keeps the division finite for constant rows.
    """

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.center = CenterFeatures()  # the parameter-free layer above, reused
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = self.center(x)
        variance = centered.pow(2).mean(dim=-1, keepdim=True)  # biased, as LayerNorm uses
        return self.weight * centered / torch.sqrt(variance + self.eps) + self.bias


ln_ref = nn.LayerNorm(8)
with torch.no_grad():  # give the reference some non-trivial gamma and beta first
    ln_ref.weight.uniform_(0.5, 1.5)
    ln_ref.bias.uniform_(-1, 1)
ln_hand = HandLayerNorm(8)
ln_hand.load_state_dict(ln_ref.state_dict())
z = torch.randn(32, 8) * 3 + 5  # (32, 8), far from zero mean and unit variance
ln_diff = (ln_hand(z) - ln_ref(z)).abs().max().item()
print(f"max |hand - nn.LayerNorm| = {ln_diff:.1e}")
assert ln_diff < 1e-5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用手写的层搭模型，并且训练
#
# 两个模型结构相同：一个全用手写的层，一个全用 PyTorch 的层。把后者的参数复制给前者，
# 用同样的数据、同样的 SGD 各训练若干步。每一步两边的输出、梯度只差浮点舍入，
# 所以训练完的参数也应当几乎相同——这比"看起来能训练"严格得多。

# %%
def build(linear: type, norm: type) -> nn.Sequential:
    return nn.Sequential(linear(10, 32), norm(32), nn.ReLU(), linear(32, 1))


torch.manual_seed(0)
ours, theirs = build(HandLinear, HandLayerNorm), build(nn.Linear, nn.LayerNorm)
print(ours)
ours.load_state_dict(theirs.state_dict())
features = torch.randn(256, 10)
targets = torch.sin(features[:, :1]) + 0.1 * features[:, 1:2]  # (256, 1), a smooth target
n_steps = 30 if QUICK else 500
losses = {}
for name, model in (("hand-written", ours), ("torch.nn", theirs)):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for _ in range(n_steps):
        loss = nn.functional.mse_loss(model(features), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    losses[name] = history
    print(f"{name:13s} loss {history[0]:.4f} -> {history[-1]:.4f} after {n_steps} steps")
weight_gap = max((a - b).abs().max().item()
                 for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True))
print(f"largest difference between the trained parameters: {weight_gap:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 自定义层就是 `nn.Module`：没有参数的层只写 `forward`；有参数的层用 `nn.Parameter` 登记，
#   按惯例在 `reset_parameters` 里初始化；
# - 参数名和形状与 PyTorch 的层一致时，`state_dict` 可以互换，方便逐项比对；
# - 比对要看输出、参数梯度和输入梯度，最好再从相同初值训练几步，比较训练后的参数。
#
# 自测：把 `HandLinear` 的权重改存成 `(in_features, out_features)`，`forward` 和
# 装入 `nn.Linear` 的参数时各要改什么？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert len(list(CenterFeatures().parameters())) == 0 and row_means.abs().max() < 1e-6
assert all(d < 1e-5 for d in diffs.values()), "HandLinear == nn.Linear (output and gradients)"
assert ln_diff < 1e-5, "HandLayerNorm == nn.LayerNorm"
assert losses["hand-written"][-1] < 0.7 * losses["hand-written"][0], "the model must learn"
assert weight_gap < 1e-4, "trained from the same start, both models end at the same weights"
print("lesson 6.03 done: custom layers with and without parameters match torch.nn")
