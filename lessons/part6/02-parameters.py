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
#     title: 参数管理（parameter）：访问、初始化与共享
#     title_en: Parameter management - access, initialisation, sharing
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 参数管理（parameter）：访问、初始化与共享
#
# 训练的结果就是一组参数。训练完以后我们要把它们取出来看、存下来、拿去别处用；训练之前要给它们
# 一个合适的初值；有时还想让模型的两个部分用**同一组**参数。本讲把这三件事逐一做一遍：
#
# - 访问：按层、按名字、整个 `state_dict`；
# - 初始化：`torch.nn.init` 里的内置方案，它们的方差是怎么定的，以及自己写一个初始化方法；
# - 共享（tied）参数：两处用的是同一个张量时，梯度怎样合在一起。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 快速模式：检查初始化统计量的矩阵小一些
torch.manual_seed(0)

net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
X = torch.rand(3, 4)  # (batch=3, features=4)
print(net(X).shape)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 访问参数
#
# `nn.Sequential` 可以像列表一样按下标取出某一层；每一层的 `state_dict()` 是"名字 → 张量"的有序字典。
# 参数的类型是 `nn.Parameter`：它是张量的一个子类，唯一的区别是默认 `requires_grad=True`，
# 而且赋给模块属性时会被登记为参数（第 6.01 讲）。反向传播之前 `.grad` 是 `None`，之后形状与参数相同。

# %%
last = net[2]
print(last.state_dict())
print(type(last.bias).__name__, last.bias.requires_grad, last.bias.grad)
net(X).sum().backward()
print("after backward:", last.weight.grad.shape, "==", last.weight.shape)
assert isinstance(last.weight, nn.Parameter) and isinstance(last.weight, torch.Tensor)
assert last.weight.grad.shape == last.weight.shape

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 按名字访问整个模型
#
# `named_parameters()` 递归地列出所有参数，名字是从根到参数的路径，用点连接（`"2.weight"`）。
# 嵌套的块名字更长，`get_parameter` / `get_submodule` 可以按路径直接取。
#
# `state_dict()` 比 `parameters()` 多一样东西：**缓冲区**（buffer）。例如批量规范化的滑动均值和方差
# 不是训练出来的，但保存模型时必须带上，否则换个地方加载后预测就不一样了。

# %%
def block() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))


deep = nn.Sequential(block(), nn.Sequential(block(), block()), nn.Linear(4, 1))
for name, p in list(deep.named_parameters())[:4]:
    print(f"{name:14s} {tuple(p.shape)}")
print("...")
print(deep.get_parameter("1.1.3.weight").shape, type(deep.get_submodule("1.1.1")).__name__)
param_names = {name for name, _ in deep.named_parameters()}
state_names = set(deep.state_dict())
print("in the state dict but not parameters:", sorted(state_names - param_names)[:3], "...")
assert param_names < state_names
assert all("running_" in n or "num_batches" in n for n in state_names - param_names)

n_params = sum(p.numel() for p in deep.parameters())
print(f"{n_params} numbers to train in {len(param_names)} tensors")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 内置的初始化方案
#
# `torch.nn.init` 里的函数都以下划线结尾，表示**原地**修改传入的张量。常用的有：
#
# | 函数 | 分布 | 方差怎么定 |
# |---|---|---|
# | `normal_(w, std=σ)`、`uniform_(w, a, b)` | 正态 / 均匀 | 自己指定 |
# | `zeros_`、`ones_`、`constant_` | 常数 | — |
# | `xavier_uniform_` / `xavier_normal_`（Glorot 与 Bengio，2010） | 均匀 / 正态 | $\sigma^2 = 2/(n_{in}+n_{out})$ |
# | `kaiming_uniform_` / `kaiming_normal_`（何恺明等，2015） | 均匀 / 正态 | $\sigma^2 = 2/n_{in}$（ReLU 时） |
#
# Xavier 让前向和反向传播时每层输出的方差都大致不变（第 1.13 讲）；Kaiming 额外考虑了 ReLU 把一半输入置零。
# `nn.Linear` 自己的默认初始化是 $U(-1/\sqrt{n_{in}},\, 1/\sqrt{n_{in}})$，方差 $1/(3 n_{in})$。
# 下面在一个大矩阵上量一量，经验标准差应当与公式给出的相符。

# %%
n_out, n_in = (256, 512) if QUICK else (1024, 2048)
w = torch.empty(n_out, n_in)  # a Linear layer's weight is (out_features, in_features)
schemes = {
    "xavier_uniform_": (nn.init.xavier_uniform_, (2 / (n_in + n_out)) ** 0.5),
    "xavier_normal_": (nn.init.xavier_normal_, (2 / (n_in + n_out)) ** 0.5),
    "kaiming_normal_(relu)": (lambda t: nn.init.kaiming_normal_(t, nonlinearity="relu"),
                              (2 / n_in) ** 0.5),
    "nn.Linear default": (lambda t: t.copy_(nn.Linear(n_in, n_out).weight.detach()),
                          (1 / (3 * n_in)) ** 0.5),
}
measured = {}
for name, (init, expected) in schemes.items():
    init(w)
    measured[name] = (w.std().item(), expected)
    print(f"{name:22s} std {w.std().item():.5f}, formula {expected:.5f}")
assert all(abs(got / want - 1) < 0.05 for got, want in measured.values())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 给不同的层不同的初始化
#
# `module.apply(fn)` 把 `fn` 递归地用在每个子模块（包括自己）上，`fn` 里按类型判断该怎么初始化。
# 也可以只对某一层调用：下面第一层用 Xavier，最后一层的权重全部置零、偏置设成 0.5——
# 这样新模型对任何输入一开始都输出 0.5。

# %%
def init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


net.apply(init_linear)
nn.init.zeros_(net[2].weight)
nn.init.constant_(net[2].bias, 0.5)
print(net(X).flatten())
assert torch.equal(net(X), torch.full((3, 1), 0.5))
assert torch.equal(net[0].bias, torch.zeros(8))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 自己写一个初始化方法
#
# 内置方案不够用时，自己写一个函数就行，规矩和 `nn.init` 一样：原地修改，并且放在 `torch.no_grad()` 里——
# 参数是要求梯度的叶子张量，直接原地修改会被自动微分拒绝（下面先看这个报错）。
#
# 作为例子，写一个**稀疏初始化**（sparse initialization）：每个输出单元只和 `k` 个随机挑选的输入相连，
# 这 `k` 个权重取自 $N(0, 1/k)$，其余为零。这样无论输入有多宽，每个单元输出的方差都大致相同。
# （Martens 在 2010 年用类似的方案训练深层网络；`nn.init.sparse_` 是另一种做法：按比例把每列的一部分置零。）

# %%
try:
    net[0].weight.mul_(2)  # an in-place change that autograd would have to track
except RuntimeError as e:
    leaf_error = str(e)
    print("RuntimeError:", leaf_error)


def sparse_fan_in_(weight: torch.Tensor, k: int) -> torch.Tensor:
    """In place: each row of `weight` (out, in) gets k non-zero entries drawn from N(0, 1/k).

    Raises ValueError when k is not between 1 and the number of inputs.
    """
    n_out, n_in = weight.shape
    if not 1 <= k <= n_in:
        raise ValueError(f"k must be between 1 and {n_in} (the inputs per unit), got {k}")
    with torch.no_grad():
        nn.init.normal_(weight, std=k ** -0.5)
        keep = torch.rand(n_out, n_in).argsort(dim=1) < k  # k random True per row
        weight.mul_(keep)
    return weight


wide = nn.Linear(1000, 64)
sparse_fan_in_(wide.weight, k=10)
print("non-zeros per row:", (wide.weight != 0).sum(dim=1)[:8].tolist(), "...")
out_std = wide(torch.randn(256, 1000)).std().item()  # about 1, whatever the width
print(f"output std with unit-variance inputs: {out_std:.2f}")
assert ((wide.weight != 0).sum(dim=1) == 10).all()
assert 0.8 < out_std < 1.25

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 共享参数（tied parameters）
#
# 把**同一个**层对象放到模型的两个位置，这两处就共用一组参数：改一处，另一处跟着变。
# 模型里仍只有一份参数，`parameters()` 只列一次，`state_dict()` 则两个名字都列出（指向同一块内存）。
#
# 这样的例子很常见：循环神经网络在每个时间步用同一组权重（第三部分）；
# 许多语言模型让输入的词嵌入和输出层共用一个矩阵（weight tying，Press 与 Wolf，2017），参数少了，效果还常常更好。

# %%
shared = nn.Linear(8, 8)
tied = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                     nn.Linear(8, 1))
print("same object:", tied[2].weight is tied[4].weight)
print("parameter tensors:", len(list(tied.parameters())), "| state dict keys:", len(tied.state_dict()))
before = tied[4].weight[0, 0].item()
with torch.no_grad():
    tied[2].weight[0, 0] = 100.0  # change it through one position ...
print(f"seen at the other position: {before:.4f} -> {tied[4].weight[0, 0].item()}")
assert tied[4].weight[0, 0] == 100.0
with torch.no_grad():
    tied[2].weight[0, 0] = before  # put it back
assert len(list(tied.parameters())) == 6 and len(tied.state_dict()) == 8

# %% [markdown]
# 一个常见的意外：`[nn.Linear(8, 8)] * 3` 不是三个层，而是**同一个**层的三个引用。
# 用列表推导式才能得到三个独立的层。

# %%
oops = nn.Sequential(*[nn.Linear(8, 8)] * 3)
meant = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
print("[layer] * 3:", sum(p.numel() for p in oops.parameters()), "parameters;",
      "list comprehension:", sum(p.numel() for p in meant.parameters()))
assert sum(p.numel() for p in meant.parameters()) == 3 * sum(p.numel() for p in oops.parameters())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 共享参数的梯度：各处之和
#
# 共享的权重 $W$ 在前向传播里用了两次，损失 $L$ 就经过两条路依赖于它。按链式法则，
# $\partial L/\partial W$ 是两条路各自贡献之和。PyTorch 正是这样做的：反向传播时每一处用到 $W$ 的地方
# 都把自己那份梯度**加**到同一个 `.grad` 上。
#
# 验证：造一个"不共享"的副本，两个位置各有一份数值相同、但彼此独立的权重，
# 那么共享模型的梯度应当等于副本里两份梯度的和。

# %%
untied = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8),
                       nn.ReLU(), nn.Linear(8, 1))
untied.load_state_dict(tied.state_dict())  # positions 2 and 4 get equal but separate copies
assert untied[2].weight is not untied[4].weight
inputs = torch.randn(16, 4)
assert torch.allclose(tied(inputs), untied(inputs))  # the same function

for model in (tied, untied):
    model.zero_grad()
    model(inputs).pow(2).mean().backward()
grad_sum = untied[2].weight.grad + untied[4].weight.grad
print(f"norm of the gradient at position 2: {untied[2].weight.grad.norm():.5f}, "
      f"at position 4: {untied[4].weight.grad.norm():.5f}")
print(f"their sum: {grad_sum.norm():.5f}; the tied weight's gradient: "
      f"{tied[2].weight.grad.norm():.5f}")
assert torch.allclose(tied[2].weight.grad, grad_sum, atol=1e-7)
assert not torch.allclose(tied[2].weight.grad, untied[2].weight.grad)  # not just one of them

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 参数是 `nn.Parameter`，按层（`net[2].weight`）、按路径名（`get_parameter("1.1.3.weight")`）
#   或整体（`named_parameters()`、`state_dict()`）访问；`state_dict` 还带着缓冲区；
# - `nn.init` 的函数原地初始化；Xavier 和 Kaiming 按输入、输出的个数定方差，量出来与公式相符；
# - 自己的初始化方法放在 `torch.no_grad()` 里原地修改；
# - 同一个层对象放在两处就是共享参数，梯度是各处梯度之和；`[layer] * n` 会意外地共享。
#
# 自测：共享参数的模型用带动量的 SGD 训练，动量缓冲区有几份？为什么？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert param_names < state_names  # the state dict = parameters + buffers
assert all(abs(got / want - 1) < 0.05 for got, want in measured.values())
assert "leaf Variable that requires grad" in leaf_error
assert torch.allclose(tied[2].weight.grad, grad_sum, atol=1e-7)  # shared: gradients add up
assert tied[2].weight.data_ptr() == tied.state_dict()["4.weight"].data_ptr()
print("lesson 6.02 done: parameters accessed by name, initialised by formula, shared with "
      "summed gradients")
