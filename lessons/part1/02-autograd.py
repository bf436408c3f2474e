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
#     title: 自动微分（automatic differentiation）
#     title_en: Automatic differentiation
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 自动微分（automatic differentiation）
#
# 训练神经网络就是反复做一件事：算出损失对每个参数的导数，再沿着让损失变小的方向挪动参数。
# 手工推导导数既慢又容易出错。PyTorch 在我们做前向计算时记下每一步运算，
# 之后调用 `backward()` 就能沿着记录倒着走一遍，用链式法则（chain rule）求出全部梯度（gradient）。
# 这就是**自动微分**，更准确地说是反向模式（reverse mode）的自动微分，
# 也叫反向传播（backpropagation）。
#
# 本讲的内容：第一个例子、梯度累加与清零、非标量输出的反向传播、分离计算、
# 穿过 Python 控制流求梯度、计算图，以及用有限差分验证梯度。

# %%
import torch

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # quick mode only runs fewer random trials of the control-flow check
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第一个例子
#
# 取函数 $y = 2\,\mathbf{x}^\top\mathbf{x}$，它是一个标量。
# 对向量 $\mathbf{x}$ 求导得 $\nabla_{\mathbf{x}} y = 4\mathbf{x}$。
#
# 先用 `requires_grad_()` 告诉 PyTorch："这个张量的梯度我以后要用"。
# 于是之后涉及 `x` 的运算都会被记录下来，梯度算好后存放在 `x.grad` 里（一开始是 `None`）。

# %%
x = torch.arange(4.0)  # (4,)
x.requires_grad_()
print(x.grad)  # nothing computed yet

y = 2 * torch.dot(x, x)  # a scalar: 2 * x·x
print(y)
y.backward()  # fill x.grad with dy/dx
print(x.grad)
assert torch.equal(x.grad, 4 * x)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度会累加，要记得清零
#
# `backward()` 不会覆盖 `x.grad`，而是把新梯度**加**到原有的值上。
# 这样设计是为了方便把几次小批量的梯度攒在一起（梯度累积，gradient accumulation）；
# 但平时每算一次新梯度之前，都要先清零，否则结果就错了。

# %%
x.sum().backward()  # d(sum x)/dx is all ones ...
print(x.grad)  # ... but it was added to the old 4 * x
assert torch.equal(x.grad, 4 * x.detach() + 1)

x.grad.zero_()  # reset in place, then compute again
x.sum().backward()
print(x.grad)
assert torch.equal(x.grad, torch.ones(4))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 非标量输出的反向传播
#
# 如果输出 `y` 是向量，它对 `x` 的导数是一个矩阵——雅可比矩阵（Jacobian）。
# 深度学习里几乎总是要一个标量损失的梯度，所以 `backward()` 要求输出是标量；
# 对向量输出，要么先 `sum()` 成标量，要么传入一个与 `y` 同形状的向量 `v`，
# 这时得到的是 $\mathbf{v}^\top J$（向量-雅可比积，vector-Jacobian product）。
# `sum()` 相当于取 `v` 全为 1。

# %%
x.grad.zero_()
y = x * x  # (4,), elementwise square
y.sum().backward()
print(x.grad)
assert torch.equal(x.grad, 2 * x)

x.grad.zero_()
y = x * x
y.backward(gradient=torch.ones_like(y))  # the same as y.sum().backward()
assert torch.equal(x.grad, 2 * x)

x.grad.zero_()
y = x * x
weights = torch.tensor([1.0, 0.0, 2.0, -1.0])  # (4,), any vector v
y.backward(gradient=weights)  # v^T J, and J = diag(2x) here
print(x.grad)
assert torch.equal(x.grad, weights * 2 * x)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 分离计算（detach）
#
# 有时我们想把某个中间结果当作**常数**，不让梯度从它那里流回去。
# `y.detach()` 返回一个值与 `y` 相同、但不在计算图里的新张量 `u`。
# 令 `z = u * x`，则 $\partial z / \partial x = u$，而不是把 `u = x * x` 也求导后的 $3x^2$。
# 原来的 `y` 仍然连在图上，可以单独对它求导。

# %%
x.grad.zero_()
y = x * x
u = y.detach()  # same values, no history
z = u * x
z.sum().backward()
print(x.grad, u)
assert torch.equal(x.grad, u)
assert not u.requires_grad

x.grad.zero_()
y.sum().backward()  # y still knows how it was computed
assert torch.equal(x.grad, 2 * x)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 计算图（computational graph）
#
# PyTorch 把运算记录成一张**计算图**：每个由运算得到的张量都有一个 `grad_fn`，
# 指向产生它的那一步运算的反向函数；`grad_fn.next_functions` 又指向它的输入。
# `backward()` 就是从输出出发，沿着这条链倒着走，把每一步的局部导数乘起来（链式法则）。
# 我们自己创建的 `x` 是图的叶子（leaf）：它没有 `grad_fn`，梯度最终累加到它的 `.grad` 上。

# %%
w = torch.tensor(3.0, requires_grad=True)
s = (w * w + 1).exp()  # exp(w^2 + 1)


def show_graph(fn, depth: int = 0) -> None:
    """Print the backward functions from the output down to the leaves."""
    if fn is None:
        return
    print("  " * depth + type(fn).__name__)
    for child, _ in fn.next_functions:
        show_graph(child, depth + 1)


show_graph(s.grad_fn)
print("leaf:", w.is_leaf, w.grad_fn, "| output:", s.is_leaf)
assert type(s.grad_fn).__name__ == "ExpBackward0"
assert w.is_leaf and w.grad_fn is None

# %% [markdown]
# 叶子节点 `w` 在图里表现为 `AccumulateGrad`：它的任务就是把流到这里的梯度加到 `w.grad` 上——
# 这也正是上面"梯度会累加"的来源。按链式法则，$ds/dw = e^{w^2+1}\cdot 2w$：

# %%
s.backward()
assert torch.allclose(w.grad, s.detach() * 2 * w.detach())
print(w.grad)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 穿过 Python 控制流求梯度
#
# 计算图是在运行时一步步记录下来的（动态图，dynamic graph），所以函数里可以有
# `while`、`if`、函数调用等任意 Python 代码：实际走过哪条路，就对哪条路求导。
#
# 下面的函数把输入不断翻倍，直到范数（norm）超过 1000，再根据符号决定乘不乘 100。
# 不管走了哪条分支，结果都是 $d = k \cdot a$，其中 $k$ 是某个由 `a` 决定的常数，
# 所以梯度正好是 $k = d / a$。

# %%
def grow(a: torch.Tensor) -> torch.Tensor:
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c


trials = 3 if QUICK else 20
for _ in range(trials):
    a = torch.randn((), requires_grad=True)  # a random scalar
    d = grow(a)
    d.backward()
    assert torch.allclose(a.grad, d.detach() / a.detach())
print("last trial:", a.item(), d.item(), a.grad.item())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用有限差分检查梯度
#
# 怎样确认自动微分算得对？最直接的办法是用导数的定义近似它。
# 中心差分（central finite difference）
# $$f'(x) \approx \frac{f(x+h) - f(x-h)}{2h}$$
# 的误差是 $O(h^2)$，比单边差分准确得多。用双精度（float64）和较小的 $h$，
# 它与自动微分的结果应当在很小的误差内一致。自己实现新运算时，这是最常用的检查手段。

# %%
def f(t: torch.Tensor) -> torch.Tensor:
    return torch.sin(t) * t**2 + torch.exp(-t)


points = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)  # (9,)
h = 1e-6
numeric = (f(points + h) - f(points - h)) / (2 * h)  # (9,)

t = points.clone().requires_grad_()
f(t).sum().backward()  # each f(t_i) depends only on t_i, so t.grad[i] = f'(t_i)
print(torch.stack([numeric, t.grad]).T)
assert torch.allclose(t.grad, numeric, rtol=1e-6, atol=1e-8)

exact = torch.cos(points) * points**2 + 2 * points * torch.sin(points) - torch.exp(-points)
assert torch.allclose(t.grad, exact)  # the derivative worked out by hand agrees too

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `requires_grad_()` 让 PyTorch 记录运算，`backward()` 沿计算图反向求出梯度，存到 `.grad`；
# - 梯度是累加的，每次求新梯度前用 `grad.zero_()` 清零；
# - 非标量输出需要 `sum()` 或传入向量 `gradient`，得到向量-雅可比积；
# - `detach()` 把中间结果当常数，梯度不再从它流回；
# - 动态计算图允许 Python 控制流；中心差分可以用来检验梯度。
#
# 最后用断言检查本讲的要点都成立：

# %%
p = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
loss = (p**3).sum()
loss.backward()
assert torch.allclose(p.grad, 3 * p.detach() ** 2)       # d(p^3)/dp = 3p^2
loss = (p**3).sum()
loss.backward()
assert torch.allclose(p.grad, 6 * p.detach() ** 2)       # accumulated twice
p.grad.zero_()
assert torch.count_nonzero(p.grad) == 0                  # zeroed
q = (p * 2).detach()
(q * p).sum().backward()
assert torch.equal(p.grad, q)                            # detached factor acts as a constant
p.grad.zero_()
(p * p).backward(gradient=torch.tensor([1.0, 0.0, 0.0]))
assert torch.equal(p.grad, torch.tensor([2.0, 0.0, 0.0]))  # vector-Jacobian product
print("lesson 1.02 done: autograd behaves as described")
