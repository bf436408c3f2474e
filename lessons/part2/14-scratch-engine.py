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
#     title: 从零实现一个深度学习引擎（autograd engine from scratch）
#     title_en: A deep-learning engine from scratch
#     minutes:
#       quick: 0.2
#       full: 1.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 从零实现一个深度学习引擎（autograd engine from scratch）
#
# 一路走来，PyTorch 替我们做了最难的部分：写完前向计算，调用一次 `backward()`，梯度就全有了；
# 写一行 `nn.Conv2d`，卷积就算好了。这一讲打开这个黑箱。
#
# dlcamp 里有一个只用 NumPy 写成的小引擎 `dlcamp.engine`，一千来行，一个下午就能读完，
# 却足以在 Fashion-MNIST 上训练 MLP 和带批量规范化的 LeNet：
#
# | 文件 | 内容 |
# |---|---|
# | `tensor.py` | 张量 `Tensor`、反向模式自动微分、交叉熵 |
# | `conv.py` | 用 im2col 实现的卷积和汇聚 |
# | `nn.py` | 和 `torch.nn` 同名同形的层，以及 `mlp`、`lenet_modern` 等网络 |
# | `optim.py` | SGD 和 Adam |
# | `models.py` | 按名字构建这些网络（`create_scratch_model`） |
#
# 训练循环不在引擎里：`dlcamp/train/engine.py` 的 `ScratchTrainer` 把引擎接到课程的训练循环（`Trainer`）上。
#
# 我们按搭积木的顺序读它：计算图 → 反向传播 → 一个层 → 训练，每一步都和 PyTorch 对一次答案，
# 最后比一比两者的速度。

# %%
import inspect

import numpy as np
import torch
import torch.nn.functional as F

from dlcamp import engine
from dlcamp.core.utils import is_quick
from dlcamp.data.loader import make_loaders
from dlcamp.engine import Tensor, cross_entropy, optim, unbroadcast
from dlcamp.engine import nn as snn
from dlcamp.engine.conv import windows
from dlcamp.models import create_model
from dlcamp.train.callbacks import EpochLog
from dlcamp.train.engine import ScratchTrainer, to_numpy
from dlcamp.train.trainer import TrainConfig, Trainer

QUICK = is_quick()  # 快速模式：6000 张训练图片，MLP 训练 2 轮，LeNet 只训练 80 步
torch.manual_seed(0)
rng = np.random.default_rng(0)
errors: dict[str, float] = {}  # largest |ours - PyTorch| of every comparison in this lesson


def max_error(ours: np.ndarray, theirs: torch.Tensor) -> float:
    return float(np.abs(ours - theirs.detach().numpy()).max())


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 计算图（computational graph）
#
# `engine.Tensor` 包着一个 NumPy 数组 `.data`，外加几个字段：`requires_grad`（要不要求梯度）、
# `.grad`（梯度存在哪里）、`.op`（产生它的运算）、`._parents`（运算的输入）和 `._backward`（反向规则）。
#
# 每个运算做两件事：用 NumPy 算出结果（前向），再通过 `Tensor.make` 把输入和一个小函数——
# 反向规则——挂在结果上。只有某个输入需要梯度时才挂，所以常数之间的运算不会留下任何记录：

# %%
print(inspect.getsource(Tensor.make))

# %% [markdown]
# 算一个小表达式 $y = \sum_i (a_i b_i + a_i)^2$，分成几步写，每一步都是图里的一个节点。
# 我们自己创建的 `a`、`b` 没有 `.op`，是图的**叶子**（leaf）。注意 `a` 被用了两次：

# %%
a = Tensor([1.0, 2.0, 3.0], requires_grad=True)  # leaves: tensors we made ourselves
b = Tensor([4.0, -1.0, 0.5], requires_grad=True)
c = a * b
d = c + a
e = d * d
y = e.sum()
names = {id(a): "a", id(b): "b", id(c): "c", id(d): "d", id(e): "e", id(y): "y"}


def show_graph(node: Tensor, depth: int = 0) -> None:
    """Print a node, then (indented) the nodes it was computed from."""
    print("  " * depth + f"{names[id(node)]} = {node.op or 'leaf'}   shape {node.shape}")
    for parent in node._parents:
        show_graph(parent, depth + 1)


show_graph(y)
print(y)

# %% [markdown]
# 打印出来像一棵树，`d` 和 `a` 出现了好几次；但它们各自只是**一个**节点：
# 计算图是一张有向无环图（DAG），一个节点可以被多个运算用到。
#
# 反向传播要按一定的顺序处理节点：轮到某个节点时，所有用到它的节点都必须处理完，它收到的梯度才完整。
# `topological_order()` 用深度优先搜索给出**拓扑排序**（topological order）：每个节点都排在它的输入之后。
# 反向传播就是把这个顺序倒过来走一遍。

# %%
order = y.topological_order()
print(" -> ".join(names[id(node)] for node in order))
position = {id(node): i for i, node in enumerate(order)}
assert len(order) == 6 and names[id(order[-1])] == "y"  # every node once, the output last
assert all(position[id(p)] < position[id(node)] for node in order for p in node._parents)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 反向传播（backpropagation）：一个节点一个节点地用链式法则
#
# 记 $\bar{z} = \partial L / \partial z$ 为损失 $L$ 对节点 $z$ 的梯度。对一个运算 $z = f(x, w)$，
# 链式法则（chain rule）给出 $\bar{x} = \bar{z} \, \frac{\partial z}{\partial x}$ 和 $\bar{w} = \bar{z} \, \frac{\partial z}{\partial w}$。
#
# 所以每个运算只需要知道**自己的**局部导数。`backward()` 从 $\bar{y} = 1$ 出发，按拓扑排序倒着走，
# 让每个节点把梯度交给它的输入；一个张量被用了几次，就收到几份梯度，`accumulate` 把它们加起来。
# 逐元素乘法 $z = x \odot w$ 的规则是 $\bar{x} = \bar{z} \odot w$、$\bar{w} = \bar{z} \odot x$，写成代码：

# %%
print(inspect.getsource(Tensor.__mul__))

# %% [markdown]
# `backward()` 本身只是按顺序调用这些规则。它还会在用完后释放图（和 PyTorch 一样），
# 中间结果占的内存就能回收：

# %%
print(inspect.getsource(Tensor.backward))
print(inspect.getsource(Tensor.accumulate))

# %% [markdown]
# 手算一遍上面的 $y$：求和把 $\bar{y} = 1$ 交给每个元素，$\bar{e} = 1$；
# `e = d * d` 的两个输入都是 `d`，两份梯度 $\bar{e} \odot d$ 相加得 $\bar{d} = 2d$；
# 加法把梯度原样交给两个输入：$\bar{c} = \bar{d}$，`a` 先收到一份 $\bar{d}$；
# 乘法 $c = a \odot b$ 再给 `a` 一份 $\bar{c} \odot b$，给 `b` 一份 $\bar{c} \odot a$。合起来：
# $\bar{a} = 2d \odot (b + 1)$，$\bar{b} = 2d \odot a$。

# %%
y.backward()
print("a.grad:", a.grad, "  b.grad:", b.grad)
d_bar = 2 * d.data
assert np.allclose(a.grad, d_bar * (b.data + 1)) and np.allclose(b.grad, d_bar * a.data)
assert y._parents == () and d._parents == ()  # the graph is gone after backward()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 广播的反向：`unbroadcast`
#
# 在 `x @ W + b` 里，形状为 (2,) 的偏置 `b` 被加到 (4, 2) 的每一行上。
# 广播（broadcasting）相当于把 `b` 复制了 4 份，每一份都影响损失，
# 所以 `b` 的梯度是这 4 份梯度的**和**：形状为 (4, 2) 的梯度要沿着被复制的轴求和，变回 (2,)。
# 新加在前面的轴要求和，原来长度为 1、被拉长的轴也要求和。这就是 `unbroadcast`：

# %%
print(inspect.getsource(unbroadcast))

# %% [markdown]
# 形状 (3, 1) 的张量广播到 (2, 3, 4) 时，每个元素被用了 $2 \times 4 = 8$ 次。
# `accumulate` 对每份梯度都调用 `unbroadcast`，所以**所有**逐元素运算都自动支持广播，不必各写一遍：

# %%
print(unbroadcast(np.ones((2, 3, 4)), (3, 1)))
assert np.array_equal(unbroadcast(np.ones((2, 3, 4)), (3, 1)), np.full((3, 1), 8.0))
assert np.array_equal(unbroadcast(np.ones((4, 2)), (2,)), np.full(2, 4.0))

# %% [markdown]
# 矩阵乘法 $C = AB$ 的规则是 $\bar{A} = \bar{C} B^\top$、$\bar{B} = A^\top \bar{C}$。
# 核对一下形状：$A$ 是 $n \times k$、$B$ 是 $k \times m$ 时，$\bar{C}$ 是 $n \times m$，
# $\bar{C} B^\top$ 正好是 $n \times k$。批量矩阵乘法里被广播的批量轴，同样交给 `unbroadcast`：

# %%
print(inspect.getsource(Tensor.__matmul__))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 PyTorch 对答案
#
# 写一个 Python 函数，分别喂给两个引擎：它用到的 `@`、`+`、`tanh()`、`exp()`、`sum()`、`mean()`
# 在两边同名，所以代码一个字都不用改。训练时用 float32 就够了，检查梯度时最好用双精度（float64）：
# 引擎让 float64 的数组保持 float64，两边的梯度应该只差 $10^{-16}$ 量级的舍入误差：

# %%
def f(x, W, b):
    h = (x @ W + b).tanh()  # (4, 2): b (2,) is broadcast over the 4 rows
    return (h * h).sum(1).mean() + (x * x).exp().mean() / (b * b + 1).sum()


shapes = {"x": (4, 3), "W": (3, 2), "b": (2,)}
arrays = {k: rng.normal(size=shape) for k, shape in shapes.items()}  # float64
ours = {k: Tensor(v, requires_grad=True) for k, v in arrays.items()}  # float64 stays float64
theirs = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
loss_ours, loss_theirs = f(**ours), f(**theirs)
loss_ours.backward()
loss_theirs.backward()
print(f"loss: ours {loss_ours.item():.15f} ({loss_ours.dtype}), torch {loss_theirs.item():.15f}")
for k in arrays:
    err = errors[f"f: d/d{k}"] = max_error(ours[k].grad, theirs[k].grad)
    print(f"d loss / d {k}: shape {ours[k].grad.shape}, max |ours - torch| = {err:.1e}")
    assert np.allclose(ours[k].grad, theirs[k].grad.numpy(), rtol=1e-12, atol=1e-14)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个层：`Linear`
#
# `engine.nn` 的层和 `torch.nn` 长得一样。`Module` 通过自己的属性找到参数
# （`Parameter` 就是一个总要梯度的 `Tensor`），参数名也和 PyTorch 一致（`weight`、`bias`；
# `Sequential` 里是 `1.weight` 这样的名字），所以权重可以在两个引擎之间直接搬运。
#
# `Linear` 的前向是 $\mathbf{y} = \mathbf{x} W^\top + \mathbf{b}$，按 PyTorch 的方式初始化。
# 它没有写反向：梯度由 `@`、`.T` 和 `+` 的反向规则自动拼出来。

# %%
print(inspect.getsource(snn.Linear))

# %% [markdown]
# 把同样的权重复制给 `torch.nn.Linear`，喂同样的输入（float32），输出和三个梯度都应该一致。
# 损失随便取一个：$\sum \mathbf{r} \odot \mathbf{y}$，$\mathbf{r}$ 是随机数。

# %%
snn.manual_seed(0)  # the generator of scratch's initial weights
lin, torch_lin = snn.Linear(5, 3), torch.nn.Linear(5, 3)
with torch.no_grad():
    torch_lin.weight.copy_(torch.from_numpy(lin.weight.data))
    torch_lin.bias.copy_(torch.from_numpy(lin.bias.data))
x_np = rng.normal(size=(8, 5)).astype(np.float32)  # (B, in_features)
r_np = rng.normal(size=(8, 3)).astype(np.float32)  # (B, out_features)
x_ours, x_theirs = Tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
y_ours, y_theirs = lin(x_ours), torch_lin(x_theirs)
(y_ours * r_np).sum().backward()
(y_theirs * torch.from_numpy(r_np)).sum().backward()
pairs = {"output": (y_ours.data, y_theirs), "x.grad": (x_ours.grad, x_theirs.grad),
         "weight.grad": (lin.weight.grad, torch_lin.weight.grad),
         "bias.grad": (lin.bias.grad, torch_lin.bias.grad)}
for name, (o, t) in pairs.items():
    err = errors[f"Linear {name}"] = max_error(o, t)
    print(f"Linear {name:12s} shape {o.shape}, max |ours - torch| = {err:.1e}")
    assert np.allclose(o, t.detach().numpy(), atol=1e-5)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 卷积：im2col
#
# 照定义写卷积，是对批量、输出通道、输出的行、列的四重 Python 循环，慢得没法训练。
# **im2col**（image to columns）换个思路：把输入里每个 $k_h \times k_w$ 的窗口（连同全部输入通道）
# 拉成矩阵 `cols` 的一行，卷积就成了**一次**矩阵乘法 `cols @ W.reshape(O, -1).T`，交给高度优化的 BLAS 库。
#
# 第一步是找出所有窗口。`windows` 用 NumPy 的 `as_strided` 只改**步长**（strides：沿每个轴走一步要跨过多少字节），
# 得到形状为 (N, C, OH, OW, kH, kW) 的**视图**（view），一个像素都不复制：

# %%
print(inspect.getsource(windows))

# %% [markdown]
# 在一张 4×4 的小图上试试：2×2 窗口、步幅 1，共 3×3 个窗口。float32 的图一行 16 字节、一列 4 字节；
# 走到右边的下一个窗口和在窗口里往右走一格，都是跨 4 字节：

# %%
img = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # (N, C, H, W)
win = windows(img, 2, 2, stride=1)  # (1, 1, 3, 3, 2, 2): a 3x3 grid of 2x2 windows
print(img[0, 0])
print("image strides", img.strides, " windows", win.shape, "strides", win.strides)
for i, j in ((0, 0), (0, 1), (1, 0)):
    print(f"window ({i}, {j}):", win[0, 0, i, j].tolist())
assert np.shares_memory(win, img)  # a view: nothing was copied
assert np.array_equal(win[0, 0, 1, 2], img[0, 0, 1:3, 2:4])

# %% [markdown]
# `conv2d` 把这个视图排成 `cols`（这一步才真正复制），做一次矩阵乘法。
# 反向时，`g2.T @ cols` 是权重的梯度，`g2 @ w2` 是 `cols` 的梯度；`col2im` 再把 `cols` 的每一行加回它来自的窗口——
# 窗口互相重叠，一个像素会从好几行收到梯度：

# %%
print(inspect.getsource(engine.conv2d))

# %% [markdown]
# 和 `F.conv2d` 比一比，故意用步幅 2、填充 1（窗口重叠，也要填充）：

# %%
conv_arrays = [rng.normal(size=shape).astype(np.float32)
               for shape in ((2, 3, 7, 7), (4, 3, 3, 3), (4,))]  # x, weight, bias
conv_ours = [Tensor(v, requires_grad=True) for v in conv_arrays]
conv_theirs = [torch.tensor(v, requires_grad=True) for v in conv_arrays]
out_ours = engine.conv2d(*conv_ours, stride=2, padding=1)
out_theirs = F.conv2d(*conv_theirs, stride=2, padding=1)
r_np = rng.normal(size=out_ours.shape).astype(np.float32)
(out_ours * r_np).sum().backward()
(out_theirs * torch.from_numpy(r_np)).sum().backward()
print("output shape", out_ours.shape)
errors["conv2d output"] = max_error(out_ours.data, out_theirs)
assert np.allclose(out_ours.data, out_theirs.detach().numpy(), atol=1e-4)
for name, o, t in zip(("x", "weight", "bias"), conv_ours, conv_theirs, strict=True):
    err = errors[f"conv2d {name}.grad"] = max_error(o.grad, t.grad)
    print(f"conv2d {name}.grad: max |ours - torch| = {err:.1e}")
    assert np.allclose(o.grad, t.grad.numpy(), atol=1e-4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失：交叉熵（cross-entropy）
#
# 分类网络给出每一类的分数 $\mathbf{o}$（logits），交叉熵损失是 $\ell = -\log \mathrm{softmax}(\mathbf{o})_y$。
# 它可以用 `log_softmax`、取下标、求平均三个节点拼出来，但它的梯度有一个极简单的形式：
#
# $\frac{\partial \ell}{\partial \mathbf{o}} = \mathrm{softmax}(\mathbf{o}) - \mathbf{e}_y$
#
# $\mathbf{e}_y$ 是标签 $y$ 的独热（one-hot）向量：预测的概率减去"正确答案"。
# 所以 `cross_entropy` 把整个损失融合成**一个**节点：前向先减去每行的最大值，防止 `exp` 溢出；
# 反向直接写出上面的公式，对批量求平均所以再除以批量大小 $B$。又快又准：

# %%
print(inspect.getsource(cross_entropy))

# %%
logits_np = 3 * rng.normal(size=(6, 10)).astype(np.float32)  # (B, classes)
labels = rng.integers(0, 10, size=6)  # (B,)
logits = Tensor(logits_np, requires_grad=True)
loss = cross_entropy(logits, labels)
loss.backward()
probs = np.exp(logits_np - logits_np.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)  # softmax
one_hot = np.eye(10, dtype=np.float32)[labels]
assert np.allclose(logits.grad, (probs - one_hot) / 6, atol=1e-6)  # the formula above

torch_logits = torch.tensor(logits_np, requires_grad=True)
torch_loss = F.cross_entropy(torch_logits, torch.from_numpy(labels))
torch_loss.backward()
errors["cross_entropy grad"] = max_error(logits.grad, torch_logits.grad)
print(f"loss: ours {loss.item():.6f}, torch {torch_loss.item():.6f}; "
      f"max |grad difference| {errors['cross_entropy grad']:.1e}")
assert abs(loss.item() - torch_loss.item()) < 1e-5
assert np.allclose(logits.grad, torch_logits.grad.numpy(), atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 优化器：SGD
#
# `optim.SGD` 和 `torch.optim.SGD` 用同样的更新规则。带动量（momentum）$\mu$ 时，
# 速度 $\mathbf{v}$ 累积过去的梯度 $\mathbf{g}$：$\mathbf{v} \leftarrow \mu \mathbf{v} + \mathbf{g}$，
# $\mathbf{w} \leftarrow \mathbf{w} - \eta \mathbf{v}$。
# Nesterov 动量把最后一步换成 $\mathbf{w} \leftarrow \mathbf{w} - \eta (\mathbf{g} + \mu \mathbf{v})$，相当于先往前看一步。
# 更新直接改写 `p.data`，不进计算图：

# %%
print(inspect.getsource(optim.SGD))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 手写一个训练步
#
# 数据用课程的加载器：每个批量是标准化过的 PyTorch 张量，`to_numpy` 不复制地把它看成 NumPy 数组。
# 一个训练步只有五行：前向、损失、清零梯度、反向、更新。在同一个批量上重复几步，损失应该一路下降。
# `mlp()` 的参数名和 PyTorch 版的 MLP 一模一样：

# %%
BATCH = 256
loaders = make_loaders("fashion-mnist", BATCH, "cpu", quick=QUICK, seed=0)
print(f"{len(loaders.train_set):,} training images, {len(loaders.test_set):,} test images")
xb, yb = next(iter(loaders.train))  # torch tensors: (256, 1, 28, 28) float32 and (256,) int64
x, y = Tensor(to_numpy(xb)), to_numpy(yb)

snn.manual_seed(0)  # the initial weights
model = snn.mlp()  # Flatten, Linear(784, 256), ReLU, Linear(256, 10)
print([name for name, _ in model.named_parameters()])
assert [n for n, _ in model.named_parameters()] == list(create_model("mlp").state_dict())

optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
losses = []
for _ in range(5):
    loss = cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print("loss on this batch:", "  ".join(f"{v:.3f}" for v in losses))
assert losses[-1] < losses[0]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练循环：`ScratchTrainer`
#
# 把这五行放进循环，再加上轮数、学习率调度、日志、检查点……这些都和引擎无关。
# `ScratchTrainer` 继承课程一直在用的 `Trainer`：循环（学习率调度、统计、回调）只在 `Trainer` 里写一次，
# 它只换掉碰到引擎的几样：搭建（设备、优化器）、一个批量的训练步和评估步、保存状态。
# 它的 `train_step` 正是上面那五行，外加这个批量的统计：

# %%
print(inspect.getsource(ScratchTrainer.train_step))

# %% [markdown]
# 训练 MLP：Nesterov 动量 0.9、学习率 0.1、单周期（one-cycle）调度（学习率先升后降）。
# 快速模式在 6000 张图片上训练 2 轮，完整模式在 6 万张图片上训练 10 轮：

# %%
RECIPE = dict(lr=0.1, momentum=0.9, nesterov=True, schedule="onecycle", device="cpu", seed=0)
snn.manual_seed(0)
mlp_trainer = ScratchTrainer(snn.mlp(), TrainConfig(epochs=2 if QUICK else 10, **RECIPE),
                             callbacks=[EpochLog()])
mlp_trainer.fit(loaders.train, loaders.test, eval_split="test")  # test_loss, test_acc
mlp_acc = mlp_trainer.history[-1]["test_acc"]
print(f"scratch MLP: test accuracy {mlp_acc:.3f}, {mlp_trainer.train_seconds:.1f} s of training")

# %% [markdown]
# 参数名相同，所以训练好的权重能原样装进 `dlcamp.models` 里的 PyTorch MLP，
# PyTorch 算出的预测和我们的引擎一样：

# %%
torch_mlp = create_model("mlp")
weights = mlp_trainer.model.state_dict()  # {"1.weight": array, ...}
torch_mlp.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
xt, _ = next(iter(loaders.test))  # (1024, 1, 28, 28)
with torch.no_grad():
    torch_out = torch_mlp(xt)
with engine.no_grad():
    scratch_out = mlp_trainer.model(Tensor(to_numpy(xt)))
errors["trained MLP logits"] = max_error(scratch_out.data, torch_out)
print(f"{len(xt)} test images: max |logit difference| {errors['trained MLP logits']:.1e}, "
      f"same predictions: {np.array_equal(scratch_out.argmax(1), torch_out.argmax(1).numpy())}")
assert np.allclose(scratch_out.data, torch_out.numpy(), atol=1e-4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 卷积网络：`lenet_modern`
#
# 同一个循环也能训练卷积网络。`lenet_modern` 是 LeNet 的现代版：卷积后接批量规范化、ReLU 和最大汇聚。
# `engine.nn.BatchNorm` 只用普通的张量运算（均值、减法、乘方）写成，梯度全部交给自动微分——
# 这正是有了自动微分的好处：新层只写前向。
#
# 卷积网络在我们的引擎上慢得多（后面会看到为什么），所以快速模式只训练 80 步（批量 64），完整模式训练 3 轮：

# %%
snn.manual_seed(0)
cnn = snn.lenet_modern()
print(" -> ".join(type(layer).__name__ for layer in cnn.layers))
cnn_loaders = make_loaders("fashion-mnist", 64, "cpu", quick=QUICK, seed=0) if QUICK else loaders
cnn_cfg = TrainConfig(epochs=1 if QUICK else 3, max_steps=80 if QUICK else 0, **RECIPE)
cnn_trainer = ScratchTrainer(cnn, cnn_cfg, callbacks=[EpochLog()])
cnn_trainer.fit(cnn_loaders.train, cnn_loaders.test, eval_split="test")
cnn_acc = cnn_trainer.history[-1]["test_acc"]
print(f"scratch LeNet: test accuracy {cnn_acc:.3f}, {cnn_trainer.train_seconds:.1f} s of training")

# %% [markdown]
# 命令行也能用这个引擎：`dlcamp train --engine numpy --model mlp`（或 `--model lenet-modern`）
# 按模型注册的配方训练，写出和 PyTorch 引擎一样的运行目录（指标、曲线、检查点）。
# 检查点里的权重用 PyTorch 的名字保存，所以 `dlcamp evaluate` 能在 PyTorch 里重建这个网络来检验它。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 速度：和 PyTorch 比一比
#
# 同样的 MLP、同样的数据和设置，两个引擎各训练 2 轮，取第 2 轮（已经热身）每秒训练的图片数；
# LeNet 则各训练同样的步数（批量 256）。只计训练，不计评估。计时受机器忙闲和线程数影响，看个大概：

# %%
def images_per_second(trainer: Trainer) -> float:
    trainer.fit(loaders.train)  # no test set: only training is timed
    return trainer.history[-1]["examples_per_s"]  # the last epoch


STEPS = 10 if QUICK else 50
speed = {}
for name, scratch_model, settings in (("mlp", snn.mlp, dict(epochs=2)),
                                      ("lenet-modern", snn.lenet_modern,
                                       dict(epochs=1, max_steps=STEPS))):
    cfg = TrainConfig(**settings, **RECIPE)
    speed[name] = (images_per_second(ScratchTrainer(scratch_model(), cfg)),
                   images_per_second(Trainer(create_model(name), cfg)))
print(f"{'model':<13} {'scratch':>14} {'PyTorch':>14}   PyTorch / scratch")
for name, (ours_speed, torch_speed) in speed.items():
    print(f"{name:<13} {ours_speed:>9,.0f} im/s {torch_speed:>9,.0f} im/s   "
          f"{torch_speed / ours_speed:.1f}x")

# %% [markdown]
# MLP 的差距不大（`bench/scratch.py` 在 2 核 CPU 上交替计时：每轮用时约为 PyTorch 的 1.3 倍），
# 卷积网络却差得多（约 3 到 4 倍）。为什么？
#
# - MLP 的时间几乎都花在矩阵乘法上：每层前向一次、反向两次。两个引擎都把它交给优化过的 BLAS 库
#   （NumPy 用 OpenBLAS，PyTorch 用 MKL），而我们的引擎按**整个数组**运算，
#   每个批量只多几十次 Python 函数调用，这点开销摊到上亿次乘加上可以忽略。
# - 卷积网络不一样：im2col 要把每个像素复制 $k_h k_w$ 次（5×5 的核就是 25 倍的内存读写），
#   反向时 `col2im` 还要再加回去；批量规范化、ReLU、汇聚这些逐元素运算在 NumPy 里是单线程的，
#   每一步还产生新的临时数组。PyTorch 在 CPU 上用 oneDNN 的卷积核，直接在原图上计算，
#   逐元素运算也用多线程并尽量合并。
#
# 多线程时还有一个坑：NumPy（OpenBLAS）和 PyTorch 各有自己的线程池。加载器每个批量仍要做几次小的
# PyTorch 运算，之后 PyTorch 空闲的 OpenMP 线程会先"原地空转"（spin）一会儿，正好占着 NumPy 的 BLAS
# 接下来要用的核。在 2 核的机器上实测，MLP 一轮因此从 1.0 秒变成 3.6 秒。所以 `ScratchTrainer`
# 的速度计划让 PyTorch 只用一个线程（`Trainer` 训练和评估时按计划设置线程数），把核留给 NumPy：

# %%
print(inspect.getsource(ScratchTrainer.plan))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 每个运算在前向时记下输入和反向规则，结果连成计算图；`backward()` 按拓扑排序倒着走，
#   一个节点一个节点地用链式法则，同一个张量收到的多份梯度相加；
# - 广播的反向是求和（`unbroadcast`）；矩阵乘法的反向还是矩阵乘法；
# - 层只写前向，梯度由自动微分拼出；im2col 把卷积变成一次矩阵乘法；
# - 交叉熵融合成一个节点，梯度是 $\mathrm{softmax}(\mathbf{o}) - \mathbf{e}_y$；
# - 一千来行 NumPy 就能训练真实的网络，MLP 的速度和 PyTorch 相当，卷积则慢得多。
#
# 自测：给 `Tensor` 加一个 `abs()` 运算，它的反向规则是什么？在 0 处怎么办？
# 写完后像本讲一样，用 PyTorch 的梯度检验它。
#
# 最后检查本讲的结论：

# %%
print({k: f"{v:.1e}" for k, v in errors.items()})
assert len(errors) == 13 and max(errors.values()) < 1e-4, errors  # every check matched PyTorch
if QUICK:
    assert mlp_acc > 0.75 and cnn_acc > 0.7, (mlp_acc, cnn_acc)  # seconds: far above chance (0.1)
else:
    assert mlp_acc >= 0.85 and cnn_acc >= 0.85, (mlp_acc, cnn_acc)
print(f"lesson 2.14 done: scratch MLP {mlp_acc:.3f}, scratch LeNet {cnn_acc:.3f}, "
      "gradients equal PyTorch's")
