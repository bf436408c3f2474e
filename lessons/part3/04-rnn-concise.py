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
#     title: 循环神经网络的简洁实现（RNN concise）
#     title_en: Recurrent neural networks, the concise way
#     minutes:
#       quick: 0.4
#       full: 2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 循环神经网络的简洁实现（RNN concise）
#
# 上一讲从零写了循环层：输入部分一次算完，隐状态部分在 Python 里逐步循环。
# PyTorch 的 `torch.nn.RNN` 做的是同一件事，只是沿时间的循环写在 C++ 里（在 GPU 上交给 cuDNN）。
# 本讲：`nn.RNN` 的参数和形状；把从零实现的权重装进它，输出完全相同；
# 同样的批量训练两者，比一比速度；最后在英文名言语料上训练，生成英文。

# %%
import time

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import (
    lm_run,
    sample,
    scratch_matches_concise,
    tokens_per_second,
    unigram_perplexity,
)
from dlcamp.models import create_model
from dlcamp.models.rnn import RecurrentScratch

QUICK = is_quick()  # 快速模式：语料的前 2 万字、训练 34 步；完整模式：按配方训练
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## `nn.RNN` 的参数
#
# `nn.RNN(input_size, hidden_size)` 的四个参数和上一讲的 `RecurrentScratch` 同名同形：
# `weight_ih_l0` 是 $(H, E)$，`weight_hh_l0` 是 $(H, H)$，两个偏置都是 $(H,)$，
# 名字末尾的 `l0` 表示第 0 层（多层时还有 `l1`、`l2`……）。计算的是
#
# $$\mathbf{h}_t = \tanh(\mathbf{x}_t \mathbf{W}_{ih}^\top + \mathbf{b}_{ih} + \mathbf{h}_{t-1} \mathbf{W}_{hh}^\top + \mathbf{b}_{hh})$$

# %%
E, H = 4, 5
rnn = nn.RNN(E, H)
for name, param in rnn.named_parameters():
    print(f"{name:12s} {tuple(param.shape)}")
assert dict(rnn.named_parameters()).keys() == \
    dict(RecurrentScratch("rnn", E, H).named_parameters()).keys()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 形状：时间在前
#
# 默认（`batch_first=False`）输入的形状是 $(T, B, E)$：第一维是时间。这样第 $t$ 步的整批数据
# `X[t]` 在内存中是连续的一块。输出有两个：每个时间步的隐状态 $(T, B, H)$，
# 和最后一步的隐状态 $(\text{层数}, B, H)$。后者正是前者的最后一行：

# %%
T, B = 6, 3
X = torch.randn(T, B, E)  # (T, B, E)
outputs, h_n = rnn(X)  # no state given: zeros
print(outputs.shape, h_n.shape)
assert outputs.shape == (T, B, H) and h_n.shape == (1, B, H)
assert torch.equal(outputs[-1], h_n[0])
h1 = torch.tanh(X[0] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)  # h_0 = 0
assert torch.allclose(outputs[0], h1, atol=1e-6)

# %% [markdown]
# `RNNLM` 的输入是 $(B, T)$ 的词元编号（和数据迭代器一致）。它在嵌入**之前**把编号转置成 $(T, B)$，
# 嵌入后得到 $(T, B, E)$ 交给循环层，最后再转置回 $(B, T, V)$ 的 logits。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 同样的权重，同样的输出
#
# `create_model("rnn")` 和 `create_model("rnn-scratch")` 只有循环层不同，参数名完全一样，
# 所以可以互相加载 `state_dict`。把从零实现的模型的权重装进简洁实现，输出的 logits 和隐状态一致
# （只差浮点运算顺序带来的舍入误差）：

# %%
V = 50
scratch = create_model("rnn-scratch", vocab_size=V, num_hiddens=32, embed_size=16)
concise = create_model("rnn", vocab_size=V, num_hiddens=32, embed_size=16)
print(list(scratch.state_dict()))
gaps = scratch_matches_concise("rnn", vocab_size=V, num_hiddens=32, embed_size=16)  # copies the weights, runs both
print("largest |concise - scratch| of the logits, final state and gradients:",
      {k: f"{v:.1e}" for k, v in gaps.items()})
assert max(gaps.values()) < 1e-5, gaps

# %% [markdown]
# 还有一个巧合：两者初始化参数的方式（均匀分布 $U(-1/\sqrt{H}, 1/\sqrt{H})$）和顺序都一样，
# 所以用同一个随机种子创建，连初始权重都相同：

# %%
torch.manual_seed(0)
scratch = create_model("rnn-scratch", vocab_size=V)
torch.manual_seed(0)
concise = create_model("rnn", vocab_size=V)
same_init = all(torch.equal(a, b) for a, b in zip(scratch.state_dict().values(),
                                                  concise.state_dict().values(), strict=True))
print("same initial weights:", same_init)
assert same_init

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 同样的批量，训练两次
#
# 于是用同样的配方和种子训练两者：它们看到同样的批量、从同样的权重出发，
# 验证困惑度应当几乎一样（只差舍入误差）。表中还有训练最后一轮每秒处理的词元数：

# %%
runs = {}
for name in ("rnn-scratch", "rnn"):
    trainer, loaders, ppl = lm_run(name, "tang300", quick=QUICK, curves=False)
    runs[name] = {"trainer": trainer, "ppl": ppl, "tokens_per_s": tokens_per_second(trainer),
                  "history": [record["val_ppl"] for record in trainer.history]}
print(f"{'model':<12} {'val ppl':>8} {'tokens/s':>10}")
for name, run in runs.items():
    print(f"{name:<12} {run['ppl']:>8.1f} {run['tokens_per_s']:>10,.0f}")

# %% [markdown]
# 这两个速度各自只量了一轮（十几步），又是先后量的：机器上还有别的程序在跑时，
# 它们可能差得很多，甚至颠倒过来。要比较速度，得控制条件。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 计时：同样的批量，轮流跑
#
# 两个模型用相同的权重、在同样的几个批量上做前向和反向传播；两者轮流各跑几轮，
# 每个取最快的一轮（受干扰最小的一轮）。先比整个语言模型，再单独比循环层：

# %%
device = trainer.device


def ms_per_step(step, steps: int) -> float:
    """Mean milliseconds of `step()` over `steps` calls."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # GPU work is asynchronous: wait for it before reading the clock
    return (time.perf_counter() - start) / steps * 1000


def race(steps_by_name: dict, steps: int = 5, rounds: int = 4) -> dict[str, float]:
    """The best of `rounds` rounds for each entry, the entries taking turns."""
    best = {name: float("inf") for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            best[name] = min(best[name], ms_per_step(step, steps))
    return best


V = len(loaders.vocab)
models = {"rnn-scratch": create_model("rnn-scratch", vocab_size=V).to(device)}
models["rnn"] = create_model("rnn", vocab_size=V).to(device)
models["rnn"].load_state_dict(models["rnn-scratch"].state_dict())
X, Y, _ = next(iter(loaders.train))  # (B, T), (B, T): one batch of the recipe
X, Y = X.to(device), Y.to(device)


def lm_step(model: nn.Module):
    def step():
        logits, _ = model(X)  # (B, T, V)
        F.cross_entropy(logits.reshape(-1, V), Y.reshape(-1)).backward()
    return step


def layer_step(layer: nn.Module, x: torch.Tensor):
    return lambda: layer(x)[0].sum().backward()


steps, rounds = (3, 3) if QUICK else (5, 8)
ms_lm = race({name: lm_step(model) for name, model in models.items()}, steps, rounds)
x = torch.randn(35, 32, 64, device=device)  # (T, B, E): what the embedding hands on
ms_layer = race({name: layer_step(model.rnn, x) for name, model in models.items()},
                steps, rounds)
tokens = X.numel()
print(f"{'':<16} {'scratch':>16} {'nn.RNN':>16} {'ratio':>6}   (tokens/s)")
for what, ms in (("language model", ms_lm), ("recurrent layer", ms_layer)):
    fast = {name: tokens / value * 1000 for name, value in ms.items()}
    print(f"{what:<16} {fast['rnn-scratch']:>16,.0f} {fast['rnn']:>16,.0f} "
          f"{ms['rnn-scratch'] / ms['rnn']:>6.2f}")
speedup = ms_layer["rnn-scratch"] / ms_layer["rnn"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 为什么 `nn.RNN` 更快，又为什么只快这么一点
#
# 从零实现的每个时间步都要在 Python 里执行好几个小运算（矩阵乘法、加法、$\tanh$），
# 每个运算都要经过 Python 解释器和 PyTorch 的调度，还要为反向传播记录计算图；35 步就是上百次这样的开销。
# `nn.RNN` 把整个循环放在一次 C++ 调用里，在 GPU 上由 cuDNN 把每一步的运算融合成少数几个内核（kernel）。
#
# 在单线程的 CPU 上，一步的矩阵乘法本身就要花不少时间，Python 的开销只占一小部分，所以差距不大；
# 在 GPU 上矩阵乘法快得多，启动内核和 Python 的开销成了大头，差距通常大得多。
# 整个语言模型的差距比单独的循环层还小，因为大部分计算在输出层：每个词元要经过循环层
# $E \times H + H \times H$ 次乘加，却要经过输出层 $H \times V$ 次乘加，而输出层两边完全一样：

# %%
E, H = 64, 256
print(f"multiply-adds per token: recurrent layer {E * H + H * H:,}, output layer {H * V:,}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 写诗
#
# 训练好的简洁实现同样可以写五言绝句（和从零实现的权重轨迹几乎一样，所以诗也多半一样）：

# %%
print(sample(runs["rnn"]["trainer"], loaders, "床前", poem=5, seed=0))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 英文：名言语料
#
# 换一份语料：Debian 的 fortunes 里的英文名言（`quotes-en`），按字符建模，词表只有一百个左右的字符，
# 训练集却有两百万个字符，是《唐诗三百首》的一百倍。快速模式仍然只用前 2 万个字符、训练 34 步；
# 完整模式只训练 1000 步（按配方跑完 12 轮要一个小时左右）：

# %%
en_trainer, en_loaders, en_ppl = lm_run("rnn", "quotes-en", quick=QUICK, curves=False,
                                        **({} if QUICK else {"max_steps": 1000}))
en_unigram = unigram_perplexity(en_loaders.train.corpus, en_loaders.val.corpus,
                                len(en_loaders.vocab))
print(f"{len(en_loaders.vocab)} characters; validation perplexity {en_ppl:.2f} "
      f"(unigram {en_unigram:.2f})")
for seed in range(3):
    print(repr(sample(en_trainer, en_loaders, "The ", length=80, seed=seed)))

# %% [markdown]
# 字符级模型先学会的是拼写和空格：常见的短词、单词的长度、标点后面跟空格。训练得越久，词和词的搭配才越像样。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `nn.RNN` 的参数名（`weight_ih_l0` 等）和形状与从零实现相同，两者可以互相加载权重，输出一致；
# - 默认的数据布局是 $(T, B, E)$，时间在前；输出包括每一步的隐状态和最后的隐状态；
# - 同样的计算，把沿时间的循环从 Python 移到 C++/cuDNN，就省掉了大量的解释和调度开销。
#
# 自测：`nn.RNN(64, 256, num_layers=2)` 有哪些参数？各是什么形状？
# 如果把 `batch_first=True` 传给 `nn.RNN`，`RNNLM.forward` 要怎么改？

# %%
rel_gap = abs(runs["rnn"]["ppl"] - runs["rnn-scratch"]["ppl"]) / runs["rnn"]["ppl"]
assert rel_gap < 0.02, runs  # same weights, same batches: the same training
for run in runs.values():
    assert run["history"][-1] < run["history"][0] < len(loaders.vocab), run["history"]
assert en_ppl < en_unigram < len(en_loaders.vocab), (en_ppl, en_unigram)
print(f"lesson 3.04 done: rnn and rnn-scratch reach perplexity {runs['rnn']['ppl']:.1f} and "
      f"{runs['rnn-scratch']['ppl']:.1f}; the nn.RNN layer runs {speedup:.2f}x as fast")
