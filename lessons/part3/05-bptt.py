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
#     title: 通过时间反向传播（backpropagation through time）
#     title_en: Backpropagation through time
#     minutes:
#       quick: 0.4
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 通过时间反向传播（backpropagation through time）
#
# 循环神经网络（RNN）在每个时间步用**同一组**参数更新隐状态。把时间步一个个展开，
# 它就成了一个很深的前馈网络：深度等于序列长度，每一层共享同样的权重。
# 在这张展开的计算图上做反向传播，就叫**通过时间反向传播**（backpropagation through time，BPTT）。
#
# 本讲推导梯度的形式，用数值实验看它怎样随距离消失或爆炸，
# 然后介绍实际训练中的两个对策：截断的 BPTT 和梯度裁剪（gradient clipping）。

# %%
import inspect
import math

import matplotlib.pyplot as plt
import torch

from dlcamp.core import gradients
from dlcamp.core.gradients import clip_grad_norm
from dlcamp.core.utils import is_quick
from dlcamp.course.lm import lm_run, unigram_perplexity
from dlcamp.models import create_model
from dlcamp.models.rnn import RecurrentScratch, rnn_cell
from dlcamp.text import make_text_loaders
from dlcamp.train.task import LanguageModel, detach_state

QUICK = is_quick()  # 快速模式：唐诗只训练 2 轮；完整模式训练 6 轮（手写循环）和 20 轮（lm_run）
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 展开循环神经网络
#
# 把隐状态记作 $h_t$，输入记作 $x_t$，输出记作 $o_t$。书里用一个简化的模型说明问题：
#
# $$h_t = f(x_t, h_{t-1}, w_h), \quad o_t = g(h_t, w_o), \quad L = \frac{1}{T} \sum_{t=1}^{T} l(y_t, o_t)$$
#
# 所有时间步用的是同一个 $f$ 和同一组参数 $w_h$。`RecurrentScratch` 正是这样实现的：
# 先一次算出所有时间步的输入部分，再用 Python 循环一步步调用同一个 `rnn_cell`：

# %%
print(inspect.getsource(rnn_cell))
print(inspect.getsource(RecurrentScratch._run))

# %% [markdown]
# 自己写一遍这个循环，保留每一步的隐状态，结果和 `RecurrentScratch` 一模一样：

# %%
T, E, H = 50, 16, 64  # time steps, input size, hidden size
layer = RecurrentScratch("rnn", E, H)
x = torch.randn(T, 1, E)  # (T, B=1, E)


def unroll(layer: RecurrentScratch, x: torch.Tensor) -> list[torch.Tensor]:
    """h_0 (zeros, a leaf that wants a gradient) and every later state h_1 .. h_T, each (1, H)."""
    gi = x @ layer.weight_ih_l0.T + layer.bias_ih_l0  # (T, 1, H): the input part of every step
    states = [torch.zeros(1, layer.hidden_size, requires_grad=True)]
    for t in range(len(x)):
        states.append(rnn_cell(gi[t], states[-1], layer.weight_hh_l0, layer.bias_hh_l0))
    return states


states = unroll(layer, x)
outputs, h_last = layer(x)  # (T, 1, H), (1, 1, H)
assert torch.allclose(torch.cat(states[1:]), outputs[:, 0]) and torch.allclose(states[-1], h_last[0])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度是雅可比矩阵的连乘
#
# 按链式法则，损失对 $w_h$ 的梯度要经过每个 $h_t$：
#
# $$\frac{\partial L}{\partial w_h} = \frac{1}{T} \sum_{t=1}^{T} \frac{\partial l(y_t, o_t)}{\partial o_t}
# \frac{\partial g(h_t, w_o)}{\partial h_t} \frac{\partial h_t}{\partial w_h}$$
#
# 而 $h_t$ 既直接依赖 $w_h$，又通过 $h_{t-1}$ 间接依赖 $w_h$。把这个递推展开：
#
# $$\frac{\partial h_t}{\partial w_h} = \frac{\partial f(x_t, h_{t-1}, w_h)}{\partial w_h}
# + \sum_{i=1}^{t-1} \left( \prod_{j=i+1}^{t} \frac{\partial f(x_j, h_{j-1}, w_h)}{\partial h_{j-1}} \right)
# \frac{\partial f(x_i, h_{i-1}, w_h)}{\partial w_h}$$
#
# 离得越远的时间步，前面乘的雅可比矩阵（Jacobian）越多。对 `rnn_cell` 的
# $h_j = \tanh(W_{xh} x_j + W_{hh} h_{j-1} + b)$，每一个因子是
#
# $$\frac{\partial h_j}{\partial h_{j-1}} = \mathrm{diag}(1 - h_j^2)\, W_{hh}$$
#
# 所以 $\partial h_T / \partial h_t$ 是 $T - t$ 个这样的矩阵的乘积。在一个小例子上把这个乘积手工算出来，
# 和自动微分给出的雅可比矩阵比一比：

# %%
small = RecurrentScratch("rnn", 3, 4)
xs = torch.randn(6, 1, 3)
hs = unroll(small, xs)[1:]  # h_1 .. h_6, each (1, 4)
by_hand = torch.eye(4)
for h in hs[1:]:  # the factors for h_2 .. h_6
    by_hand = torch.diag(1 - h[0].detach() ** 2) @ small.weight_hh_l0.detach() @ by_hand


def last_from_first(h1: torch.Tensor) -> torch.Tensor:
    """h_6 as a function of h_1 (the inputs of steps 2..6 fixed)."""
    gi = xs @ small.weight_ih_l0.T + small.bias_ih_l0
    h = h1
    for t in range(1, 6):
        h = rnn_cell(gi[t], h, small.weight_hh_l0, small.bias_hh_l0)
    return h[0]


autograd_jacobian = torch.autograd.functional.jacobian(last_from_first, hs[0].detach())[:, 0]
print(by_hand)
assert torch.allclose(by_hand, autograd_jacobian, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 数值实验：梯度随距离消失或爆炸
#
# 一个矩阵乘很多次，结果的大小主要由它最大的特征值的模（谱半径，spectral radius）决定：
# 小于 1 时指数衰减，大于 1 时指数增长（tanh 的导数 $1 - h^2 \le 1$ 只会让它更小）。
# 取最后一步的损失 $L = \mathbf{v}^\top h_T$，看 $\|\partial L / \partial h_t\|$ 随"往回走的步数" $T - t$ 怎样变化。
# 隐状态权重 $W_{hh}$ 取 PyTorch 的默认初始化，或者取标准差为 $\mathrm{gain}/\sqrt{H}$ 的高斯随机矩阵：

# %%
v = torch.randn(H)
norms, radii = {}, {}
for label, gain in (("default init", None), ("gain 0.5", 0.5), ("gain 1", 1.0),
                    ("gain 2", 2.0), ("gain 3", 3.0)):
    torch.manual_seed(0)
    layer = RecurrentScratch("rnn", E, H)
    if gain is not None:
        with torch.no_grad():
            layer.weight_hh_l0.copy_(gain * torch.randn(H, H) / math.sqrt(H))
    states = unroll(layer, x)  # h_0 .. h_T
    loss = states[-1][0] @ v
    grads = torch.autograd.grad(loss, states)  # dL/dh_t for t = 0 .. T
    norms[label] = torch.stack([g.norm() for g in grads]).flip(0)  # index k: k steps back
    radii[label] = torch.linalg.eigvals(layer.weight_hh_l0.detach()).abs().max().item()
    print(f"{label:12s} spectral radius {radii[label]:.2f}; |dL/dh| 0, 10, ..., 50 steps back:",
          " ".join(f"{n:.0e}" for n in norms[label][::10].tolist()))

fig, ax = plt.subplots(figsize=(6, 3.5))
for label, norm in norms.items():
    ax.semilogy(norm, label=f"{label} (radius {radii[label]:.2f})")
ax.set(xlabel="steps back from the loss (T - t)", ylabel="gradient norm w.r.t. h_t")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# 谱半径小于 1（包括 PyTorch 的默认初始化）时，50 步以外的梯度比最后一步小十几个数量级：
# 梯度**消失**（vanishing），远处的输入几乎得不到任何学习信号。谱半径明显大于 1 时，梯度**爆炸**（exploding），
# 一次更新就可能把参数推到很远的地方。谱半径在 1 附近时衰减最慢，但很难一直保持在那里：
# 训练本身会改变 $W_{hh}$。后面的 GRU 和 LSTM 用门控让梯度可以不经过这样的连乘，缓解消失的问题；
# 爆炸则用下面的梯度裁剪来处理。

# %%
assert norms["default init"][50] < 1e-6 * norms["default init"][0]  # vanishing
assert norms["gain 0.5"][50] < 1e-6 * norms["gain 0.5"][0]
assert norms["gain 3"][50] > 1e3 * norms["gain 3"][0]  # exploding
assert radii["default init"] < 1 < radii["gain 2"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 截断的时间反向传播
#
# 唐诗训练集有两万多个字。如果把整个语料当作一条序列做**完整的** BPTT，计算图有两万多步：
# 内存要存下每一步的中间结果，而且要跑完全部语料才能更新一次参数，梯度还会像上面那样不稳定。书里讨论了三种做法：
#
# - 完整计算：不可行；
# - **按固定步数截断**（truncated BPTT）：每 $\tau$ 步切断一次，梯度最多往回传 $\tau$ 步，
#   这就是 `num_steps`（默认 35）；
# - **随机截断**（randomized truncation，Tallec 和 Ollivier 2017）：随机决定在哪里切断，
#   并给梯度加权，让它在期望上等于完整的梯度。书里的实验表明，它并不比固定截断更好：
#   随机性带来的方差抵消了无偏的好处，而且多数依赖本来就不长。
#
# dlcamp 用第二种。顺序分区时，`LanguageModel` 任务把上一个批量结束时的隐状态传给下一个批量，
# 但先用 `detach_state` 把它从计算图上**分离**（detach）：值保留，历史丢掉。

# %%
print(inspect.getsource(detach_state))
print(inspect.getsource(LanguageModel.step))

# %% [markdown]
# 用两个相邻的批量验证一下：第二个批量从第一个批量结束的隐状态出发。不分离时，
# 第二个批量的损失能把梯度一直传回第一个批量开始时的 $h_0$；分离之后，梯度在批量边界处停下：

# %%
data = make_text_loaders("tang300", quick=QUICK, random=False)  # sequential partitioning
(X1, _, _), (X2, Y2, fresh2) = list(data.train)[:2]
assert not bool(fresh2) and data.train.num_steps == 35
model = create_model("rnn", vocab_size=len(data.vocab))
for cut in (False, True):
    h0 = torch.zeros(1, X1.shape[0], model.num_hiddens, requires_grad=True)
    _, state = model(X1, h0)  # the first batch
    if cut:
        state = detach_state(state)
    logits, _ = model(X2, state)  # the second batch starts where the first one stopped
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y2.reshape(-1))
    loss.backward()
    print(f"detached={cut}: gradient reaching h_0:", None if h0.grad is None else
          f"norm {h0.grad.norm():.2e}")
    assert (h0.grad is None) == cut

# %% [markdown]
# 不分离时梯度确实传回了 $h_0$，但它已经走了 70 步，小到可以忽略：这正是上面看到的梯度消失。
# 截断只限制了**梯度**往回传的距离；隐状态的**值**仍然从一个批量带到下一个批量，
# 所以模型读第二个批量时仍然"记得"前面的内容，只是不能为了 35 步以外的预测去调整前面的计算。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度裁剪（gradient clipping）
#
# 对付梯度爆炸最简单的办法：如果所有参数的梯度拼成的向量 $\mathbf{g}$ 的范数超过阈值 $\theta$，
# 就把它缩小到 $\theta$：
#
# $$\mathbf{g} \leftarrow \min\left(1, \frac{\theta}{\|\mathbf{g}\|}\right) \mathbf{g}$$
#
# 方向不变，只是步子不会太大。`clip_grad_norm` 是从零实现的版本，返回裁剪前的范数（PyTorch 的参数得到一个
# 0 维张量，训练循环不必等 GPU 算完；要数值时用 `float`）。它先看梯度是 PyTorch 张量还是 NumPy 数组
# （从零写的引擎），PyTorch 的部分在 `_clip_torch` 里：

# %%
print(inspect.getsource(clip_grad_norm))
print(inspect.getsource(gradients._clip_torch))

# %% [markdown]
# 它和 PyTorch 的 `torch.nn.utils.clip_grad_norm_` 给出同样的结果。把同一组梯度复制两份，各自裁剪：

# %%
def model_with_grads(scale: float) -> torch.nn.Module:
    torch.manual_seed(1)
    net = create_model("rnn", vocab_size=50, num_hiddens=32, embed_size=8)
    for p in net.parameters():
        p.grad = scale * torch.randn_like(p)
    return net


for scale in (0.01, 1.0):
    ours, theirs = model_with_grads(scale), model_with_grads(scale)
    norm_ours = float(clip_grad_norm(ours, max_norm=1.0))
    norm_theirs = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm=1.0)
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters()]))
    print(f"norm before {norm_ours:8.3f} (torch: {norm_theirs:8.3f}), after {after:.3f}")
    assert math.isclose(norm_ours, float(norm_theirs), rel_tol=1e-5)
    assert all(torch.allclose(a.grad, b.grad) for a, b in
               zip(ours.parameters(), theirs.parameters(), strict=True))
    assert after <= 1.0 + 1e-5 and (scale > 0.1 or math.isclose(after, norm_ours, rel_tol=1e-5))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 有无裁剪：训练对比
#
# 在唐诗上训练一个最简单的 RNN 语言模型（`rnn`：隐状态 256 维），用书里的设置：
# 不带动量的随机梯度下降，学习率 1，裁剪阈值 1。为了看清每一步的梯度范数，自己写一个小训练循环，
# 做的事情和 `Trainer` 一样：`LanguageModel` 任务负责传递（并分离）隐状态，算出损失，反向传播，
# 裁剪，更新。不裁剪时，`clip_grad_norm` 的阈值取无穷大，只用来量一量范数。

# %%
EPOCHS = 2 if QUICK else 6
CLIP = 1.0


def grad_norm(model: torch.nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def train_rnn(clip: float) -> tuple[list[float], list[float], list[float]]:
    """Per step: the loss, the gradient norm before and after clipping (0: no clipping)."""
    torch.manual_seed(0)
    model = create_model("rnn", vocab_size=len(data.vocab))
    task = LanguageModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses, before, after = [], [], []
    for epoch in range(EPOCHS):
        data.train.set_epoch(epoch)
        for batch in data.train:
            loss, _ = task.step(model, batch)
            optimizer.zero_grad()
            loss.backward()
            before.append(float(clip_grad_norm(model, clip if clip else math.inf)))
            after.append(grad_norm(model))
            optimizer.step()
            losses.append(loss.item())
    return losses, before, after


runs = {clip: train_rnn(clip) for clip in (0.0, CLIP)}
fig, (ax_norm, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
for clip, (losses, before, _) in runs.items():
    label = f"clip at {clip:g}" if clip else "no clipping"
    ax_norm.semilogy(before, label=label)
    ax_loss.plot(losses, label=label)
ax_norm.axhline(CLIP, color="grey", linestyle="--", linewidth=1)
ax_norm.set(xlabel="step", ylabel="gradient norm before clipping")
ax_loss.set(xlabel="step", ylabel="training loss")
ax_loss.legend()
fig.tight_layout()
plt.show()
for clip, (losses, before, after) in runs.items():
    tail = sum(losses[-10:]) / 10
    print(f"clip={clip:g}: largest gradient norm {max(before):7.1f} (after clipping "
          f"{max(after):7.1f}); largest loss {max(losses):6.2f}; mean of the last 10 losses "
          f"{tail:.2f}")

# %% [markdown]
# 不裁剪时，梯度范数一旦冲到阈值的十几倍甚至更高，紧接着损失就跳到远高于起点（约 $\log V \approx 7.8$）的地方，
# 之后很久都回不来（具体在哪一步、跳多高，随随机种子而变）；裁剪时，每一步的实际更新都不超过阈值，损失平稳下降。

# %%
no_clip, with_clip = runs[0.0], runs[CLIP]
assert max(with_clip[2]) <= CLIP * (1 + 1e-4)  # clipped norms never exceed the threshold
assert max(no_clip[1]) > CLIP  # and the threshold was needed
assert sum(with_clip[0][-10:]) < sum(no_clip[0][-10:])  # clipping trains better here
assert sum(with_clip[0][-10:]) / 10 < with_clip[0][0]  # the loss went down

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用 dlcamp 训练：`grad_clip`
#
# 平时不用自己写循环：`lm_run`（命令行是 `dlcamp train --model rnn --dataset tang300 --grad-clip 1`）
# 在 `Trainer` 里每一步反向传播之后调用同一个 `clip_grad_norm`，`grad_clip=0` 表示不裁剪。
# 同样的设置各训练一次，比较验证集上的困惑度，再和上一讲的基线（加一平滑的一元语法，用同一份数据算）比一比：
# 快速模式只训练 2 轮，还追不上它；完整模式训练 20 轮，看看裁剪过的 RNN 能不能打败它。

# %%
settings = dict(optimizer="sgd", lr=1.0, momentum=0.0, schedule="constant", model_kwargs={},
                curves=False)
if not QUICK:
    settings["epochs"] = 20
val_ppl = {}
for clip in (0.0, CLIP):
    trainer, loaders, val_ppl[clip] = lm_run("rnn", "tang300", quick=QUICK, grad_clip=clip,
                                             **settings)
    print("  train loss per epoch:", [round(r["train_loss"], 2) for r in trainer.history])
baseline = unigram_perplexity(loaders.train.corpus, loaders.val.corpus, len(loaders.vocab))
print({f"grad_clip={clip:g}": f"{ppl:.4g}" for clip, ppl in val_ppl.items()},
      f"add-one unigram baseline: {baseline:.1f}")
assert val_ppl[CLIP] < val_ppl[0.0]
if not QUICK:
    assert val_ppl[CLIP] < baseline  # 20 epochs with clipping beat the unigram model

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - BPTT 就是在按时间展开的计算图上做反向传播；远处时间步的梯度要乘上一长串雅可比矩阵
#   $\mathrm{diag}(1 - h_j^2) W_{hh}$；
# - 谱半径小于 1 时梯度随距离指数消失，大于 1 时指数爆炸；
# - 实际训练按 `num_steps` 截断：隐状态的值传给下一个批量，但先 `detach`，梯度不跨越批量边界；
# - 梯度裁剪把全部梯度的范数限制在阈值以内，方向不变，让学习率为 1 的 SGD 也能稳定地训练 RNN。
#
# 自测：梯度裁剪能解决梯度消失吗？为什么？
#
# 最后用断言检查本讲的要点：

# %%
state = torch.randn(1, 2, 3, requires_grad=True) * 2
pair = (state, state + 1)
assert detach_state(state).grad_fn is None and torch.equal(detach_state(state), state)
assert all(s.grad_fn is None for s in detach_state(pair)) and detach_state(None) is None
w = torch.nn.Parameter(torch.ones(4))
w.grad = torch.full((4,), 3.0)  # norm 6
assert math.isclose(float(clip_grad_norm([w], 2.0)), 6.0, rel_tol=1e-6)
assert torch.allclose(w.grad, torch.full((4,), 1.0), atol=1e-5)  # scaled to norm 2
assert max(with_clip[2]) <= CLIP * (1 + 1e-4) and norms["gain 3"][-1] > norms["gain 3"][0]
print(f"lesson 3.05 done: gradients vanish and explode as shown; clipping kept the rnn's "
      f"validation perplexity at {val_ppl[CLIP]:.0f} (without: {val_ppl[0.0]:.3g})")
