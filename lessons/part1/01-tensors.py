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
#     title: 张量（tensor）
#     title_en: Tensors
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 张量（tensor）
#
# 深度学习里的数据——图片、文本、模型参数——都存放在**张量**里。张量就是一个 n 维数组：
# 0 维是标量（scalar），1 维是向量（vector），2 维是矩阵（matrix），更高维的就直接叫张量。
# PyTorch 的 `torch.Tensor` 和 NumPy 的 `ndarray` 很像，但多了两项本领：可以放到 GPU 上计算，
# 并且支持自动求导（automatic differentiation，下一讲的主题）。
#
# 本讲的内容：创建、运算、广播、索引与切片、内存、与 NumPy 互相转换。

# %%
import numpy as np
import torch

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 本讲很快，快速模式与完整模式做的事情一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 创建张量
#
# `arange` 生成连续整数，`shape` 是形状（shape），`numel()` 是元素总数。
# `reshape` 改变形状而不改变元素；写成 `-1` 的那一维由其余维度自动推出。

# %%
x = torch.arange(12)
print(x, x.shape, x.numel())
X = x.reshape(3, -1)  # (3, 4)
print(X)
assert X.shape == (3, 4)

# %% [markdown]
# 全 0、全 1、随机数（标准正态分布），以及从 Python 列表直接创建：

# %%
zeros = torch.zeros(2, 3, 4)
ones = torch.ones(2, 3, 4)
noise = torch.randn(3, 4)
Y = torch.tensor([[2.0, 1, 4, 3], [1, 2, 3, 4], [4, 3, 2, 1]])
print(zeros.shape, ones.sum().item(), noise.dtype, Y.dtype)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 运算
#
# 相同形状的张量之间，`+ - * / **` 都是**按元素**（elementwise）运算。
# `torch.cat` 沿某个轴把张量连结（concatenate）起来；`==` 得到布尔张量。

# %%
Xf = X.float()
print(Xf + Y, Xf * Y, torch.exp(Y), sep="\n")
print(torch.cat((Xf, Y), dim=0).shape, torch.cat((Xf, Y), dim=1).shape)
print(Xf == Y)
print("sum of all elements:", Xf.sum())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 广播机制（broadcasting）
#
# 形状不同的两个张量也能按元素运算：先把长度为 1 的维度"复制"扩展，使两者形状相同，再计算。
# 实际上并不真的复制数据。规则：从最后一维往前比较，每一维要么相等，要么其中一个是 1。

# %%
a = torch.arange(3).reshape(3, 1)  # (3, 1)
b = torch.arange(2).reshape(1, 2)  # (1, 2)
print(a + b)  # (3, 2)
assert (a + b).shape == (3, 2)
assert torch.equal(a + b, a.expand(3, 2) + b.expand(3, 2))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 索引与切片（indexing and slicing）
#
# 和 Python 列表一样，下标从 0 开始，`-1` 是最后一个元素，`1:3` 取第 1、2 个。
# 也可以通过索引写入元素。

# %%
print(X[-1], X[1:3])
X[1, 2] = 9
X[0:2, :] = 12
print(X)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 节省内存
#
# `Y = Y + X` 会分配新内存，让 `Y` 指向新结果；用 `Y[:] = ...` 或 `Y += X` 则是**原地**（in-place）
# 更新，不分配新内存。参数很大、每步都要更新时，这很重要。

# %%
before = id(Y)
Y = Y + Xf
print("new object after Y = Y + X:", id(Y) != before)
before = id(Y)
Y += Xf
print("same object after Y += X:", id(Y) == before)
assert id(Y) == before

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 与 NumPy 互相转换
#
# `tensor.numpy()` 和 `torch.from_numpy()` 在 CPU 上**共享内存**：改一个，另一个也变。
# 要独立的副本就用 `torch.tensor(array)` 或 `.clone()`。大小为 1 的张量用 `.item()` 变成 Python 数。

# %%
A = Xf.numpy()
B = torch.from_numpy(A)
B[0, 0] = -1.0
print(type(A), type(B), A[0, 0])
assert A[0, 0] == -1.0  # shared memory
C = torch.tensor(A)
C[0, 0] = 5.0
assert A[0, 0] == -1.0  # an independent copy
print(torch.tensor([3.5]).item(), float(torch.tensor([3.5])), int(torch.tensor([3.5])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 张量是 n 维数组，`shape`/`reshape`/`numel` 描述和改变它的形状；
# - 按元素运算、连结、广播让我们不写循环就能处理整批数据；
# - 原地更新节省内存；与 NumPy 在 CPU 上共享内存。
#
# 最后用断言检查本讲的要点都成立：

# %%
M = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
assert M.sum(dim=0).shape == (3, 4) and M.sum(dim=(0, 2)).shape == (3,)
assert torch.allclose(M.mean(), M.sum() / M.numel())
row = torch.ones(4)                  # (4,) broadcasts against (2, 3, 4)
assert (M + row).shape == M.shape
assert np.allclose((M * 2).numpy(), M.numpy() * 2)
print("lesson 1.01 done: tensors behave as described")
