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
#     title: 门控循环单元（GRU）
#     title_en: Gated recurrent units (GRU)
#     minutes:
#       quick: 0.3
#       full: 1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 门控循环单元（GRU）
#
# 第 3.03 和 3.05 讲看到，普通 RNN 沿时间反向传播时要连乘许多雅可比矩阵，梯度很容易消失：
# 几十步之前的字几乎影响不了现在的梯度。而且每一步都用新输入**整个**改写隐状态，
# 没法"先记住这个，后面再用"。
#
# **门控循环单元**（gated recurrent unit，GRU；Cho et al., 2014）加了两个**门**（gate）：
# 取值在 0 到 1 之间的向量，逐元素地决定信息的去留。
#
# - **重置门**（reset gate）$\mathbf{r}_t$：算候选状态时，用多少过去的隐状态；
# - **更新门**（update gate）$\mathbf{z}_t$：新的隐状态里，保留多少旧状态、采纳多少候选状态。

# %%
import inspect

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import lm_run, sample, scratch_matches_concise
from dlcamp.models import count_parameters, create_model
from dlcamp.models.rnn import RecurrentScratch, gru_cell

QUICK = is_quick()  # 快速模式：语料的前 2 万字、每个模型训练 34 步；完整模式：按配方训练 12 轮
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的公式
#
# 两个门都由当前输入和上一步的隐状态算出，用 sigmoid 函数 $\sigma$ 压到 $(0, 1)$ 之间：
#
# $$\mathbf{r}_t = \sigma(\mathbf{x}_t \mathbf{W}_{xr} + \mathbf{h}_{t-1} \mathbf{W}_{hr} + \mathbf{b}_r), \quad \mathbf{z}_t = \sigma(\mathbf{x}_t \mathbf{W}_{xz} + \mathbf{h}_{t-1} \mathbf{W}_{hz} + \mathbf{b}_z)$$
#
# **候选隐状态**（candidate hidden state）像普通 RNN 那样更新，只是旧状态先乘上重置门：
#
# $$\tilde{\mathbf{h}}_t = \tanh(\mathbf{x}_t \mathbf{W}_{xh} + (\mathbf{r}_t \odot \mathbf{h}_{t-1}) \mathbf{W}_{hh} + \mathbf{b}_h)$$
#
# 最后由更新门在旧状态和候选状态之间插值：
#
# $$\mathbf{h}_t = \mathbf{z}_t \odot \mathbf{h}_{t-1} + (1 - \mathbf{z}_t) \odot \tilde{\mathbf{h}}_t$$
#
# $\mathbf{r}_t \to 0$ 时候选状态只看当前输入（忘掉过去）；$\mathbf{r}_t \to 1$ 时就是普通 RNN。
# $\mathbf{z}_t \to 1$ 时这一步被跳过，旧状态原样传下去；$\mathbf{z}_t \to 0$ 时完全采纳候选状态。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## PyTorch（和 cuDNN）的写法
#
# PyTorch 的 `nn.GRU` 把重置门用在矩阵乘法**之后**：
#
# $$\tilde{\mathbf{h}}_t = \tanh(\mathbf{x}_t \mathbf{W}_{in}^\top + \mathbf{b}_{in} + \mathbf{r}_t \odot (\mathbf{h}_{t-1} \mathbf{W}_{hn}^\top + \mathbf{b}_{hn}))$$
#
# 好处是：一步里三组与 $\mathbf{h}_{t-1}$ 有关的乘积（给 $\mathbf{r}$、$\mathbf{z}$ 和候选状态）
# 可以合成**一次**矩阵乘法，不必等 $\mathbf{r}_t$ 算出来再做第二次。cuDNN 也这样算。
# dlcamp 的 `gru_cell` 照 PyTorch 的写法，所以它的权重能和 `nn.GRU` 互换：

# %%
print(inspect.getsource(gru_cell))

# %% [markdown]
# 三个门的权重竖着叠在一个矩阵里，顺序是 $\mathbf{r}, \mathbf{z}$, 候选状态（PyTorch 记作 n）：
# `weight_ih_l0` 是 $(3H, E)$，`weight_hh_l0` 是 $(3H, H)$。
# 输入部分 `gi` 照旧一次算完所有时间步；`gh` 是每一步唯一一次和 $\mathbf{h}_{t-1}$ 相乘的矩阵乘法。

# %%
E, H = 4, 5
gru = nn.GRU(E, H)
for name, param in gru.named_parameters():
    print(f"{name:12s} {tuple(param.shape)}")
assert gru.weight_ih_l0.shape == (3 * H, E) and gru.weight_hh_l0.shape == (3 * H, H)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 两种写法不一样，但只差在重置门
#
# 用 `nn.GRU` 的同一组权重，按书中的写法手算一步，和 `gru_cell` 比较（书中只有一个偏置
# $\mathbf{b}_h$，相当于 $\mathbf{b}_{in} + \mathbf{b}_{hn}$）：

# %%
def book_gru_step(x, h, layer):
    """One GRU step as in the book: the reset gate multiplies h before the matrix product."""
    w_ir, w_iz, w_in = layer.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = layer.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = layer.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = layer.bias_hh_l0.chunk(3)
    r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    candidate = torch.tanh(x @ w_in.T + (r * h) @ w_hn.T + b_in + b_hn)
    return z * h + (1 - z) * candidate


def pytorch_gru_step(x, h, layer):
    gi = x @ layer.weight_ih_l0.T + layer.bias_ih_l0
    return gru_cell(gi, h, layer.weight_hh_l0, layer.bias_hh_l0)


x, h = torch.randn(3, E), torch.randn(3, H)
with torch.no_grad():
    gap = (book_gru_step(x, h, gru) - pytorch_gru_step(x, h, gru)).abs().max().item()
    gru.bias_hh_l0[:H] = 20.0  # reset gate bias: r = 1, the past is used in full
    gap_r1 = (book_gru_step(x, h, gru) - pytorch_gru_step(x, h, gru)).abs().max().item()
    _, h_torch = gru(x[None], h[None])  # one time step of nn.GRU itself
print(f"largest difference: {gap:.3f}; with the reset gate forced to 1: {gap_r1:.1e}")
assert gap > 1e-3 and gap_r1 < 1e-5
assert torch.allclose(h_torch[0], pytorch_gru_step(x, h, gru), atol=1e-6)

# %% [markdown]
# 两种写法是两个略有不同的模型，表达能力相当，训练出的效果也差不多；
# 但权重不能在两者之间照搬。要和 `nn.GRU` 互换权重，就得用 PyTorch 的写法。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现 = 简洁实现
#
# `RecurrentScratch("gru", ...)` 沿时间循环调用 `gru_cell`，参数名和 `nn.GRU` 相同。
# 把 `gru-scratch` 的权重装进 `gru`，整个语言模型的输出一致：

# %%
V = 60
scratch = create_model("gru-scratch", vocab_size=V, num_hiddens=32, embed_size=16)
concise = create_model("gru", vocab_size=V, num_hiddens=32, embed_size=16)
assert isinstance(scratch.rnn, RecurrentScratch) and type(concise.rnn) is nn.GRU
gaps = scratch_matches_concise("gru", vocab_size=V, num_hiddens=32, embed_size=16)  # copies the weights, runs both
print("largest |concise - scratch| of the logits, final state and gradients:",
      {k: f"{v:.1e}" for k, v in gaps.items()})
assert max(gaps.values()) < 1e-5, gaps

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 更新门让信息（和梯度）穿过许多步
#
# 随机初始化的 RNN 和 GRU 读 35 步随机输入，看最后的隐状态对初始隐状态的梯度：
# 两者都几乎消失了。再把 GRU 更新门的偏置设成 8（$\sigma(8) \approx 0.9997$，几乎每一步都被跳过），
# 初始状态就能几乎原样传到第 35 步（相对变化很小），梯度也跟着传回来（恒等映射的梯度范数是 $\sqrt{H} = 4$）：

# %%
E, H, T = 8, 16, 35
x = torch.randn(T, 1, E)  # (T, B=1, E)
layers = {"rnn": nn.RNN(E, H), "gru": nn.GRU(E, H), "gru, z = 1": nn.GRU(E, H)}
with torch.no_grad():
    layers["gru, z = 1"].bias_hh_l0[H:2 * H] = 8.0  # update gate bias
grad_norm = {}
for name, layer in layers.items():
    h0 = torch.randn(1, 1, H, requires_grad=True)
    _, h_T = layer(x, h0)
    grad_norm[name] = torch.autograd.grad(h_T.sum(), h0)[0].norm().item()
    change = ((h_T - h0).norm() / h0.norm()).item()
    print(f"{name:<11} gradient norm {grad_norm[name]:9.2e}, h_35 differs from h_0 by {change:5.0%}")
assert grad_norm["gru, z = 1"] > 2 and grad_norm["rnn"] < 1e-3

# %% [markdown]
# 训练时更新门是学出来的：该记住的时候接近 1，该更新的时候接近 0。这条"捷径"让梯度不必
# 每一步都乘上 $\mathbf{W}_{hh}$，缓解了梯度消失。代价是参数多了：每个门都有自己的一组权重，
# 循环层的参数是普通 RNN 的 3 倍。

# %%
vocab_size = 2400  # about the size of tang300's vocabulary
for name in ("rnn", "gru"):
    model = create_model(name, vocab_size=vocab_size)
    print(f"{name}: recurrent layer {count_parameters(model.rnn):,} parameters, "
          f"whole model {count_parameters(model):,}")
assert count_parameters(create_model("gru").rnn) == 3 * count_parameters(create_model("rnn").rnn)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在《唐诗三百首》上训练 GRU，和 RNN 比一比
#
# 两个模型用同一个配方（`LM_RECIPE`：Adam、梯度裁剪、余弦学习率、dropout 0.3）、同样的批量和步数，
# 命令行是 `dlcamp train --model gru --dataset tang300`。快速模式各训练 34 步，完整模式各 12 轮：

# %%
runs = {}
for name in ("rnn", "gru"):
    trainer, loaders, ppl = lm_run(name, "tang300", quick=QUICK, curves=False)
    runs[name] = {"trainer": trainer, "ppl": ppl, "val": [r["val_ppl"] for r in trainer.history],
                  "train": [r["train_ppl"] for r in trainer.history]}
print(f"{'epoch':>5} {'rnn val':>8} {'gru val':>8} {'rnn train':>10} {'gru train':>10}")
for epoch in range(len(runs["gru"]["val"])):
    print(f"{epoch + 1:>5} " + " ".join(f"{runs[n][k][epoch]:>{w}.1f}" for k, w in
                                        (("val", 8), ("train", 10)) for n in ("rnn", "gru")))

# %% [markdown]
# 读表的时候注意两列困惑度的差别：训练困惑度是在见过的诗上，验证困惑度是在没见过的诗上。
# 快速模式只训练了 34 步，两者都刚学到字频的程度，差不多。
# 完整模式下（我们在 CPU 上跑的结果），GRU 的困惑度在头几轮下降得比 RNN 快，训练困惑度也一直更低；
# 可是这份语料只有两万多字，参数多两倍的 GRU 几轮之后就开始**过拟合**：验证困惑度回升，
# 最后反而不如 RNN。门控结构的优势在长序列、大语料上才显出来；在这里，它先显出来的是更强的拟合能力。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## GRU 写的诗

# %%
poem = sample(runs["gru"]["trainer"], loaders, "床前", poem=5, seed=0)
print(poem)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - GRU 用重置门决定候选状态用多少过去，用更新门在旧状态和候选状态之间插值；
# - 更新门接近 1 时旧状态和梯度几乎原样穿过许多步，缓解了梯度消失；
# - PyTorch 和 cuDNN 把重置门用在矩阵乘法之后，一步只需一次与隐状态相乘的矩阵乘法；
#   `gru_cell` 照此实现，权重和 `nn.GRU` 通用；书中的写法是另一个略有不同的模型；
# - 在很小的语料上，更强的模型更容易过拟合：比较模型时要看验证集，不能只看训练集。
#
# 自测：如果把更新门固定为 0、重置门固定为 1，GRU 变成了什么？
# 在大一百倍的 `quotes-en` 上重新比较 `rnn` 和 `gru`，你预计结果会怎样？

# %%
lines = poem.split("\n")
assert len(lines) == 2 and all(len(line) == 12 for line in lines), poem
for name, run in runs.items():
    assert run["val"][-1] < run["val"][0] < len(loaders.vocab), (name, run["val"])
if not QUICK:
    # verified on the full run: GRU learns faster at first and fits the training set better
    assert runs["gru"]["val"][2] < runs["rnn"]["val"][2], runs
    assert runs["gru"]["train"][-1] < runs["rnn"]["train"][-1], runs
print(f"lesson 3.06 done: validation perplexity rnn {runs['rnn']['ppl']:.1f}, "
      f"gru {runs['gru']['ppl']:.1f}; scratch GRU == nn.GRU")
