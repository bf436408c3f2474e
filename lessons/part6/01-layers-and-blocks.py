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
#     title: 层和块（layer 与 block）：怎样搭建模型
#     title_en: Layers and blocks - building models
#     minutes:
#       quick: 0.1
#       full: 0.3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 层和块（layer 与 block）：怎样搭建模型
#
# 前面几部分一直在"用"模型：`nn.Sequential` 一行搭好，`create_model("resnet18")` 拿来就训练。
# 第六部分回过头来看模型本身是怎样的一段程序：参数在哪里、怎样保存、怎样写自己的层，以及它跑得快慢的原因。
#
# 第一个概念是**块**（block）。一个全连接层是一个块；"卷积 + 批量规范化 + ReLU"这样几层的组合是一个块；
# 一个残差单元、整个 ResNet 也都是块。块可以套块，大模型就是一棵由块组成的树。
# 在 PyTorch 里，块就是 `nn.Module` 的子类：它登记自己的参数和子块，并用 `forward` 说明输入怎样变成输出。
#
# 本讲：`nn.Sequential`；自己写一个 `nn.Module`；参数为什么会被"自动"找到、什么时候找不到；
# 亲手写一个和 `nn.Sequential` 结果完全相同的顺序容器；在 `forward` 里用 Python 的循环和判断；
# 把各种块嵌套起来一起训练。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 快速模式：最后的小训练只走几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 最简单的块：`nn.Sequential`
#
# `nn.Sequential` 按给出的顺序把输入依次交给每个子块，前一个的输出就是后一个的输入。
# 下面是一个有一个隐藏层的多层感知机：20 个输入特征，64 个隐藏单元，10 个输出。

# %%
seq = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
X = torch.randn(2, 20)  # (batch=2, features=20)
print(seq)
print("output shape:", tuple(seq(X).shape))  # (2, 10)
assert seq(X).shape == (2, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 自己写一个块
#
# 写一个块只需要两件事：
#
# 1. `__init__`：先调用 `super().__init__()`，再把要用的层作为属性（attribute）存起来；
# 2. `forward(x)`：用这些层算出输出。
#
# 反向传播不用写：`forward` 里用到的都是 PyTorch 的张量运算，自动微分（autograd）会记下计算过程。
# 使用时写 `net(x)` 而不是 `net.forward(x)`：`__call__` 除了调用 `forward`，还会运行挂在模块上的钩子（hook）。

# %%
class TwoLayerNet(nn.Module):
    """x (B, n_in) -> ReLU(hidden layer) -> (B, n_out)."""

    def __init__(self, n_in: int = 20, n_hidden: int = 64, n_out: int = 10) -> None:
        super().__init__()  # sets up the registries for parameters, buffers and sub-modules
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


net = TwoLayerNet()
print(net)
print([(name, tuple(p.shape)) for name, p in net.named_parameters()])
assert net(X).shape == (2, 10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数是怎样被"自动"找到的
#
# 我们从没告诉 `net` 它有哪些参数，`named_parameters()` 却全都列出来了。秘密在 `nn.Module.__setattr__`：
# 给模块赋值时，如果值是 `nn.Parameter` 就记进参数表，如果是 `nn.Module` 就记进子模块表。
# `parameters()`、`to(device)`、`state_dict()`、`train()`/`eval()` 都是沿着这两张表递归地走。
#
# 反过来说，**藏在普通 Python 列表或字典里的层，模块是看不见的**：
# 它们的参数不会出现在 `parameters()` 里，优化器也就不会更新它们——训练时不报错，只是"学不动"。
# 要存一组层，用 `nn.ModuleList` 或 `nn.ModuleDict`。

# %%
class HiddenInAList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(20, 64), nn.Linear(64, 10)]  # a plain list: NOT registered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](torch.relu(self.layers[0](x)))


class InAModuleList(HiddenInAList):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(self.layers)  # the same two layers, now registered


torch.manual_seed(1)
broken = HiddenInAList()
torch.manual_seed(1)
fixed = InAModuleList()  # the same random draws: the same weights
print("plain list :", len(list(broken.parameters())), "parameters")
print("ModuleList :", len(list(fixed.parameters())), "parameters")
try:
    torch.optim.SGD(broken.parameters(), lr=0.1)
except ValueError as e:
    empty_error = str(e)
    print("ValueError:", empty_error)
assert len(list(broken.parameters())) == 0 and len(list(fixed.parameters())) == 4
assert torch.equal(broken(X), fixed(X))  # same computation: only the bookkeeping differs

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 亲手写一个顺序容器
#
# `nn.Sequential` 并没有什么魔法。下面的 `Chain` 做的是同一件事：
# 用 `add_module(name, block)` 以 `"0"`、`"1"`、`"2"` 为名登记每个子块（`nn.Sequential` 也是这样命名的），
# `forward` 按登记的顺序依次调用它们（`self.children()` 按插入顺序返回子模块）。
#
# 既然名字相同，`Chain` 的 `state_dict` 和 `nn.Sequential` 的键就一模一样，
# 可以把 `seq` 的参数原样装进来，两者的输出应当逐位相等。

# %%
class Chain(nn.Module):
    """A hand-written nn.Sequential: applies its blocks in the order given."""

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__()
        for index, block in enumerate(blocks):
            self.add_module(str(index), block)  # registered under "0", "1", ... like Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():  # insertion order
            x = block(x)
        return x


chain = Chain(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
print(list(chain.state_dict()) == list(seq.state_dict()), list(chain.state_dict()))
chain.load_state_dict(seq.state_dict())  # the same keys, so seq's weights fit as they are
batch = torch.randn(8, 20)
print("max |chain - seq|:", (chain(batch) - seq(batch)).abs().max().item())
assert torch.equal(chain(batch), seq(batch))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## `forward` 里可以写任何 Python
#
# `nn.Sequential` 只能一条路走到底。自己写 `forward` 时，循环、条件判断、提前返回都可以用：
# PyTorch 是"边执行边记录"的（define-by-run），每次前向传播实际走了哪条路，自动微分就沿哪条路求导。
#
# 下面是一个**提前退出**（early exit）的分类器：几个阶段（stage）依次加工特征，每个阶段之后都用
# 同一个分类头（head）给出预测；推理时（`eval()` 模式），只要这一批里每个样本的最大概率都超过阈值，
# 就不再算后面的阶段——简单的输入少花计算。训练时（`train()` 模式）总是走完所有阶段。
# 顺便用到了另外两种状态：
#
# - 同一个 `head` 在一次前向传播里被用了好几次：参数只有一份，下一讲会看到它的梯度怎样累加；
# - 阈值用 `register_buffer` 登记为**缓冲区**（buffer）：它随模型保存、随 `.to(device)` 移动，但不是参数，
#   不会被训练。批量规范化的滑动平均值也是这样存的。

# %%
class EarlyExit(nn.Module):
    """Stages of width `width`; logits (B, n_classes) from the first stage confident enough.

    In eval mode it stops after the first stage whose softmax top probability is at least
    `threshold` for every example of the batch; in train mode all stages run.
    `stages_run` records how many stages the last call used.
    """

    def __init__(self, width: int, n_classes: int, n_stages: int = 4,
                 threshold: float = 0.9) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(n_stages))
        self.head = nn.Linear(width, n_classes)  # one head, used after every stage
        self.register_buffer("threshold", torch.tensor(threshold))  # saved, moved, not trained
        self.stages_run = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for count, stage in enumerate(self.stages, start=1):
            x = stage(x)
            logits = self.head(x)
            self.stages_run = count
            confident = logits.softmax(dim=-1).amax(dim=-1).min() >= self.threshold
            if not self.training and confident:  # ordinary Python control flow
                break
        return logits


exiting = EarlyExit(width=16, n_classes=3).eval()
runs = {}
for scale in (0.01, 1.0, 100.0):  # larger inputs give larger logits, so more confident ones
    exiting(torch.randn(4, 16) * scale)
    runs[scale] = exiting.stages_run
print("stages run for input scale 0.01, 1, 100:", runs)
print("buffers:", dict(exiting.named_buffers()))
print("'threshold' is a parameter:", any(n == "threshold" for n, _ in exiting.named_parameters()),
      "| in the state dict:", "threshold" in exiting.state_dict())
assert runs[0.01] == 4 and runs[100.0] == 1  # the amount of work depended on the data
assert "threshold" in exiting.state_dict()
assert all(n != "threshold" for n, _ in exiting.named_parameters())

# %% [markdown]
# 自动微分只认这一次真正执行过的计算：提前退出时，没有运行的阶段在计算图里根本不存在，
# 它们的参数拿不到梯度（`.grad` 仍是 `None`），而运行过的阶段和分类头都有梯度。

# %%
exiting.zero_grad(set_to_none=True)
exiting(torch.randn(4, 16) * 100.0).sum().backward()
used = exiting.stages_run
has_grad = [stage[0].weight.grad is not None for stage in exiting.stages]
print(f"stages run: {used}; stage has a gradient: {has_grad}")
assert has_grad == [i < used for i in range(len(exiting.stages))]
assert exiting.head.weight.grad is not None

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 块套块，然后照常训练
#
# 自己写的块和 PyTorch 自带的层可以任意组合：下面把 `TwoLayerNet`、`Chain` 和 `EarlyExit` 放进一个
# `nn.Sequential`。`named_modules()` 沿着整棵树列出每个块和它的路径名；
# `train()`/`eval()` 同样递归地传给每一层（dropout、批量规范化、我们的 `EarlyExit` 都看这个开关）。

# %%
model = nn.Sequential(
    TwoLayerNet(n_in=20, n_hidden=32, n_out=16),
    Chain(nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 16)),
    EarlyExit(width=16, n_classes=3),
)
for name, module in model.named_modules():
    if name.count(".") <= 1:  # the first two levels of the tree
        print(f"{name or '(root)':12s} {type(module).__name__}")
model.eval()
assert all(not m.training for m in model.modules())
model.train()
assert all(m.training for m in model.modules())

# %% [markdown]
# 嵌套的模型和别的模型一样训练：`model.parameters()` 把整棵树的参数交给优化器。
# 这里用一个人造的三分类任务（类别由一个随机线性映射决定）；快速模式只训练几十步。

# %%
n_steps = 25 if QUICK else 400
features = torch.randn(256, 20)  # (256, 20)
labels = (features @ torch.randn(20, 3)).argmax(dim=1)  # (256,) classes 0..2
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for _ in range(n_steps):
    loss = nn.functional.cross_entropy(model(features), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
model.eval()
accuracy = (model(features).argmax(dim=1) == labels).float().mean().item()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after {n_steps} steps; "
      f"training accuracy {accuracy:.1%}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 块就是 `nn.Module`：`__init__` 登记参数和子块，`forward` 描述计算，反向传播由自动微分负责；
# - 参数靠属性赋值登记；放在普通列表、字典里的层看不见，要用 `nn.ModuleList`/`nn.ModuleDict`；
# - `nn.Sequential` 只是"按顺序调用已登记的子块"，几行就能写出来，参数名也一样；
# - `forward` 里可以有任意 Python 控制流，自动微分只沿实际执行的路径求导；
# - 缓冲区随模型保存和移动，但不参与训练。
#
# 自测：把 `EarlyExit` 里的 `nn.ModuleList` 换成普通列表，`model.parameters()` 会少哪些参数？
# 训练时会报错吗？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert torch.equal(chain(batch), seq(batch)), "hand-written chain == nn.Sequential"
assert "empty parameter list" in empty_error  # a plain list hides the layers from the optimizer
assert runs[0.01] > runs[100.0]  # data-dependent control flow ran a different number of stages
assert losses[-1] < 0.8 * losses[0], "the nested model must learn"
assert sum(p.numel() for p in model.parameters()) == sum(
    p.numel() for m in model for p in m.parameters())  # the tree's parameters, each once
print("lesson 6.01 done: blocks are nn.Modules; registered parts are found, trained and saved")
