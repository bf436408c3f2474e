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
#     title: 长短期记忆网络（LSTM）
#     title_en: Long short-term memory (LSTM)
#     minutes:
#       quick: 0.3
#       full: 2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 长短期记忆网络（LSTM）
#
# 普通循环神经网络每走一步，隐状态都要乘一次 $\mathbf{W}_{hh}$、再过一次 $\tanh$。
# 反向传播时梯度沿时间倒着走，每一步也要乘上这些因子：几十步之后，梯度要么消失，要么爆炸。
# 梯度裁剪能对付爆炸，对付消失却需要改造网络本身。
#
# **长短期记忆网络**（long short-term memory，LSTM；Hochreiter 和 Schmidhuber，1997）是最早、
# 也最成功的办法之一。它在隐状态之外加了一个**记忆元**（memory cell）$\mathbf{C}_t$：
# 记忆元从一步到下一步只做"按比例保留，再加上新内容"，不经过矩阵乘法和 $\tanh$，
# 于是信息和梯度都能沿着它走很远。三个**门**（gate）决定写入多少、保留多少、读出多少。
#
# 本讲：门和记忆元的公式、`lstm_cell` 的代码、PyTorch 的门顺序、从零实现和 `nn.LSTM` 的比较，
# 最后在唐诗和英文名言上训练 LSTM，并和普通 RNN 比一比。

# %%
import inspect
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import compare_lms, lm_run, sample, scratch_matches_concise
from dlcamp.models import count_parameters, create_model
from dlcamp.models.rnn import lstm_cell, rnn_cell

QUICK = is_quick()  # 快速模式：语料只取开头一段，每个模型只训练几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 三个门和一个候选记忆元
#
# 设时间步 $t$ 的小批量输入为 $\mathbf{X}_t$（$n$ 个样本，每个 $d$ 维），上一步的隐状态为 $\mathbf{H}_{t-1}$（$h$ 维）。
# 三个门都由这两者经过一个全连接层和 sigmoid 函数 $\sigma$ 算出，取值在 0 到 1 之间：
#
# $$\mathbf{I}_t = \sigma(\mathbf{X}_t \mathbf{W}_{xi} + \mathbf{H}_{t-1} \mathbf{W}_{hi} + \mathbf{b}_i)$$
#
# $$\mathbf{F}_t = \sigma(\mathbf{X}_t \mathbf{W}_{xf} + \mathbf{H}_{t-1} \mathbf{W}_{hf} + \mathbf{b}_f)$$
#
# $$\mathbf{O}_t = \sigma(\mathbf{X}_t \mathbf{W}_{xo} + \mathbf{H}_{t-1} \mathbf{W}_{ho} + \mathbf{b}_o)$$
#
# 它们分别是**输入门**（input gate）、**遗忘门**（forget gate）和**输出门**（output gate）。
# 要写进记忆的内容叫**候选记忆元**（candidate memory cell），它用 $\tanh$，取值在 $-1$ 到 1 之间：
#
# $$\tilde{\mathbf{C}}_t = \tanh(\mathbf{X}_t \mathbf{W}_{xc} + \mathbf{H}_{t-1} \mathbf{W}_{hc} + \mathbf{b}_c)$$

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 记忆元和隐状态
#
# 遗忘门决定旧记忆保留多少，输入门决定候选内容写入多少（$\odot$ 是按元素相乘）：
#
# $$\mathbf{C}_t = \mathbf{F}_t \odot \mathbf{C}_{t-1} + \mathbf{I}_t \odot \tilde{\mathbf{C}}_t$$
#
# 输出门决定把多少记忆"读出来"，成为这一步的隐状态，交给输出层和下一步：
#
# $$\mathbf{H}_t = \mathbf{O}_t \odot \tanh(\mathbf{C}_t)$$
#
# 关键在第一个式子：若 $\mathbf{F}_t \approx 1$、$\mathbf{I}_t \approx 0$，记忆元原样传到下一步，
# 沿这条路径 $\partial \mathbf{C}_t / \partial \mathbf{C}_{t-1} = \mathbf{F}_t$，梯度只是乘上遗忘门，
# 而不是普通 RNN 里的 $\mathbf{W}_{hh}$ 和 $\tanh$ 的导数。
# `lstm_cell` 就是这两页公式，一步的计算：

# %%
print(inspect.getsource(lstm_cell))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## PyTorch 的门顺序：i, f, g, o
#
# 书里每个门有自己的 $\mathbf{W}_{x\cdot}$、$\mathbf{W}_{h\cdot}$ 和 $\mathbf{b}_\cdot$。PyTorch 把四块叠成一个矩阵：
# `weight_ih_l0` 的形状是 $(4h, d)$，从上到下依次是输入门、遗忘门、候选记忆元（PyTorch 叫它 g）、输出门；
# `weight_hh_l0` 是 $(4h, h)$。PyTorch 还有两个偏置 `bias_ih_l0` 和 `bias_hh_l0`，相加才是书里的 $\mathbf{b}$
# （多一个偏置不改变模型能表示的函数，只是为了和 cuDNN 一致）。注意 PyTorch 存的是 $\mathbf{W}^\top$：
# 它算 $\mathbf{X}\mathbf{W}^\top$。下面按书里的公式手算 `nn.LSTM` 的一步，看顺序对不对：

# %%
d, h, n = 3, 2, 4  # input size, hidden size, batch size
layer = nn.LSTM(d, h)
X = torch.randn(1, n, d)  # (T=1, n, d)
H0, C0 = torch.randn(1, n, h), torch.randn(1, n, h)  # (layers, n, h)
_, (H1, C1) = layer(X, (H0, C0))

W_x = dict(zip("ifgo", layer.weight_ih_l0.chunk(4), strict=True))  # each (h, d)
W_h = dict(zip("ifgo", layer.weight_hh_l0.chunk(4), strict=True))  # each (h, h)
b = dict(zip("ifgo", (layer.bias_ih_l0 + layer.bias_hh_l0).chunk(4), strict=True))  # each (h,)


def pre(gate: str) -> torch.Tensor:
    return X[0] @ W_x[gate].T + H0[0] @ W_h[gate].T + b[gate]  # (n, h)


I, F, O = torch.sigmoid(pre("i")), torch.sigmoid(pre("f")), torch.sigmoid(pre("o"))
C_tilde = torch.tanh(pre("g"))
C = F * C0[0] + I * C_tilde
H = O * torch.tanh(C)
print("by hand:", H, "nn.LSTM:", H1[0], sep="\n")
assert torch.allclose(H, H1[0], atol=1e-6) and torch.allclose(C, C1[0], atol=1e-6)

gi = X[0] @ layer.weight_ih_l0.T + layer.bias_ih_l0  # (n, 4h): the input part of all gates
H_cell, C_cell = lstm_cell(gi, (H0[0], C0[0]), layer.weight_hh_l0, layer.bias_hh_l0)
assert torch.allclose(H_cell, H1[0], atol=1e-6) and torch.allclose(C_cell, C1[0], atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 记忆元能把信息保存很久
#
# 用一个隐藏单元、手工设定的权重做个实验：第 1 步输入一个信号 $x=1$，之后 99 步输入都是 0。
#
# - LSTM：输入门只在 $x=1$ 时打开（预激活 $10x-5$），遗忘门一直开着（预激活 8，$\sigma(8)\approx 0.9997$），
#   候选内容是 $\tanh(10x)$；
# - 普通 RNN：$h_t = \tanh(2x_t + h_{t-1})$，循环权重恰好为 1，已经是对它最有利的设定。
#
# 两者都没有别的循环权重。看第 1 步存下的东西，到第 100 步还剩多少，梯度又还剩多少：

# %%
T = 100
x = torch.zeros(T)
x[0] = 1.0  # a signal at the first step, then silence
x.requires_grad_()  # so that autograd records both loops
zero_w, zero_b = torch.zeros(4, 1), torch.zeros(4)  # LSTM: no hidden-to-hidden weights


def lstm_gates(xt: torch.Tensor) -> torch.Tensor:
    """Pre-activations (1, 4) in PyTorch's order: input, forget, candidate, output."""
    return torch.stack([10 * xt - 5, 8 + 0 * xt, 10 * xt, 5 + 0 * xt])[None]


h_l, c_l = torch.zeros(1, 1), torch.zeros(1, 1)
h_r = torch.zeros(1, 1)
lstm_memory, rnn_memory = [], []
for t in range(T):
    h_l, c_l = lstm_cell(lstm_gates(x[t]), (h_l, c_l), zero_w, zero_b)
    h_r = rnn_cell(2 * x[t].reshape(1, 1), h_r, torch.ones(1, 1), torch.zeros(1))
    if t == 0:
        c_first, h_first = c_l, h_r  # what was stored at step 1
    lstm_memory.append(c_l.item())
    rnn_memory.append(h_r.item())
lstm_grad = torch.autograd.grad(c_l.sum(), c_first)[0].item()  # d c_100 / d c_1
rnn_grad = torch.autograd.grad(h_r.sum(), h_first)[0].item()   # d h_100 / d h_1
print(f"LSTM memory cell: c_1 = {lstm_memory[0]:.3f}, c_100 = {lstm_memory[-1]:.3f}, "
      f"d c_100 / d c_1 = {lstm_grad:.3f}")
print(f"plain RNN state:  h_1 = {rnn_memory[0]:.3f}, h_100 = {rnn_memory[-1]:.3f}, "
      f"d h_100 / d h_1 = {rnn_grad:.5f}")
assert lstm_memory[-1] > 0.9 * lstm_memory[0] and lstm_grad > 0.9  # product of forget gates
assert rnn_memory[-1] < 0.3 * rnn_memory[0] and rnn_grad < 0.01    # tanh squashes every step

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, T + 1), lstm_memory, label="LSTM memory cell $c_t$")
ax.plot(range(1, T + 1), rnn_memory, label="plain RNN state $h_t$")
ax.set_xlabel("time step")
ax.set_ylabel("stored value")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# RNN 的状态每一步都要再过一次 $\tanh$，即使循环权重为 1 也在不停缩小，梯度则是一百个小于 1 的导数相乘；
# LSTM 的记忆元只乘遗忘门，梯度正好是 $\prod_t F_t \approx 0.9997^{99}$。
# 训练时门的值是学出来的：网络自己决定什么时候记、什么时候忘。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数量：四倍的循环层
#
# 每个门和候选记忆元都有一套和普通 RNN 一样大的参数，所以 LSTM 循环层的参数是 RNN 的 4 倍：
# $4(dh + h^2 + 2h)$（两个偏置按 PyTorch 的算法计入）。嵌入层和输出层不变。

# %%
V, E, HID = 100, 64, 256  # vocabulary, embedding and hidden sizes (the registered defaults)
rnn_lm, lstm_lm = create_model("rnn", vocab_size=V), create_model("lstm", vocab_size=V)
for name, model in (("rnn", rnn_lm), ("lstm", lstm_lm)):
    print(f"{name:5s} recurrent layer {count_parameters(model.rnn):>8,}   "
          f"whole model {count_parameters(model):>8,}")
assert count_parameters(rnn_lm.rnn) == HID * (E + HID + 2)
assert count_parameters(lstm_lm.rnn) == 4 * count_parameters(rnn_lm.rnn)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现和 `nn.LSTM` 完全一样
#
# `lstm-scratch` 用 `RecurrentScratch` 按时间步循环调用 `lstm_cell`，参数名和 `nn.LSTM` 相同，
# 所以两者可以互相加载权重。把 `lstm` 的权重复制过去，输出、最终状态和梯度都应该一样：

# %%
concise = create_model("lstm", vocab_size=V)
scratch = create_model("lstm-scratch", vocab_size=V)
print([name for name, _ in scratch.rnn.named_parameters()])
gaps = scratch_matches_concise("lstm", vocab_size=V)  # copies the weights, runs both
print("largest |concise - scratch| of the logits, final state and gradients:",
      {k: f"{v:.1e}" for k, v in gaps.items()})
assert max(gaps.values()) < 1e-5, gaps

# %% [markdown]
# 一样的数学，速度却差很多：`nn.LSTM` 在 C++ 里循环（GPU 上是 cuDNN），从零实现在 Python 里循环。
# 在一个 32×35 的小批量上各做几次前向加反向传播：

# %%
batch = torch.randint(V, (32, 35))


def train_speed(model: nn.Module, repeats: int = 3) -> float:
    """Tokens per second of forward + backward passes on `batch`."""
    start = time.perf_counter()
    for _ in range(repeats):
        model(batch)[0].square().mean().backward()
    return repeats * batch.numel() / (time.perf_counter() - start)


speeds = {name: train_speed(model) for name, model in (("lstm", concise), ("lstm-scratch", scratch))}
for name, speed in speeds.items():
    print(f"{name:13s} {speed:>9,.0f} tokens/s")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在唐诗上训练
#
# 用注册的配方（`LM_RECIPE`：Adam、学习率 0.005、梯度裁剪到范数 1、批量 32、时间步 35、余弦学习率、dropout 0.3）
# 在 `tang300` 上训练 `lstm`。书里在《时间机器》上也是批量 32、时间步 35、裁剪到 1。
# 唐诗三百首只有两万多字，却有两千多个不同的字，验证困惑度（perplexity）降不到很低；
# 作为参照，均匀地乱猜的困惑度等于词表大小。

# %%
tang_trainer, tang_loaders, tang_ppl = lm_run("lstm", "tang300", quick=QUICK)
tang_history = [round(record["val_ppl"], 1) for record in tang_trainer.history]
print("validation perplexity by epoch:", tang_history, f"(vocabulary: {len(tang_loaders.vocab)})")

# %% [markdown]
# 用五言的格式生成两首（每行 5 个字，标点由格式决定；下面是模型实际生成的，每次运行可能不同）：

# %%
for seed, prompt in enumerate(("春风", "明月")):
    print(sample(tang_trainer, tang_loaders, prompt, poem=5, seed=seed), end="\n\n")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和普通 RNN 比一比：英文名言
#
# 唐诗太少，模型主要在背字频。`quotes-en` 有约两百万个字符、一百来个不同字符，数据充足，更适合比较模型。
# 完整的一轮要好几分钟，所以两个模型都只训练同样的**步数**（完整模式 1000 步，约看一百万个字符；
# 快速模式 60 步，只用语料开头），配方相同，学习率在这些步数里按余弦降到 0。

# %%
STEPS = 60 if QUICK else 1000
print(f"after {STEPS} steps of batch 32 x 35 on quotes-en:")
quotes = compare_lms(["rnn", "lstm"], "quotes-en", quick=QUICK, epochs=4 if QUICK else 1,
                     max_steps=STEPS)

# %% [markdown]
# 同样的步数，LSTM 的困惑度更低（快速模式步数太少，两者还没拉开差距，甚至可能是 RNN 领先：
# LSTM 的参数多，起步慢一些）。代价是每一步的计算量约为 RNN 的 4 倍，CPU 上每秒处理的字符少得多；
# 如果给两者同样的**时间**，RNN 能多走不少步，差距会缩小。用 LSTM 写一段英文：

# %%
lstm_trainer, lstm_loaders, _ = quotes["lstm"]
english = sample(lstm_trainer, lstm_loaders, "The ", length=120)
print(english)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - LSTM 在隐状态之外有一个记忆元；遗忘门、输入门、输出门（取值 0 到 1）决定保留、写入和读出多少；
# - 记忆元沿时间只做按元素的乘法和加法，梯度沿这条路径乘的是遗忘门，所以不容易消失；
# - PyTorch 把四块参数叠在一起，顺序是 i、f、g（候选记忆元）、o，还有两个偏置；
# - LSTM 每步的计算量和循环层参数都是 RNN 的 4 倍，同样的步数学得更好。
#
# 自测：如果把遗忘门的偏置初始化成一个较大的正数（如 1），刚开始训练时会发生什么？
# 把 $\mathbf{O}_t$ 固定为 1、$\mathbf{F}_t$ 固定为 0，LSTM 还剩下什么？

# %%
assert tang_trainer.history[-1]["val_ppl"] < tang_trainer.history[0]["val_ppl"]  # it learned
assert tang_ppl < len(tang_loaders.vocab) / 2  # far better than guessing uniformly
assert all(ppl < len(loaders.vocab) / 3 for _, loaders, ppl in quotes.values())
assert english.startswith("The ") and len(english) == 124
if not QUICK:  # 1000 steps each: the LSTM wins on plentiful data
    assert quotes["lstm"][2] < quotes["rnn"][2], {k: v[2] for k, v in quotes.items()}
print(f"lesson 3.07 done: lstm == lstm-scratch; quotes-en perplexity after {STEPS} steps: "
      f"lstm {quotes['lstm'][2]:.2f}, rnn {quotes['rnn'][2]:.2f}")
