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
#     title: 循环神经网络的从零开始实现（RNN from scratch）
#     title_en: Recurrent neural networks from scratch
#     minutes:
#       quick: 0.2
#       full: 1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 循环神经网络的从零开始实现（RNN from scratch）
#
# 上一讲的 $n$ 元语法只看前面 $n-1$ 个字：想看得更远，要统计的组合就呈指数增长。
# **循环神经网络**（recurrent neural network，RNN）换一种思路：用一个固定长度的向量——
# **隐状态**（hidden state）$\mathbf{h}_t$——概括到目前为止读过的所有内容，每读一个新的字就更新一次：
#
# $$\mathbf{h}_t = \tanh(\mathbf{x}_t \mathbf{W}_{xh} + \mathbf{h}_{t-1} \mathbf{W}_{hh} + \mathbf{b}_h)$$
#
# 再从隐状态预测下一个字：$\mathbf{o}_t = \mathbf{h}_t \mathbf{W}_{hq} + \mathbf{b}_q$，
# 经 softmax 得到词表上的概率分布。参数 $\mathbf{W}_{xh}, \mathbf{W}_{hh}, \mathbf{b}_h$
# 在所有时间步上**共享**，所以模型大小不随序列长度增长。
#
# 本讲：输入的表示（独热编码与嵌入）、从零实现的循环层、初始状态与形状、梯度裁剪，
# 最后在《唐诗三百首》上训练一个字符级语言模型，让它写一首五言绝句。

# %%
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.gradients import clip_grad_norm
from dlcamp.core.utils import is_quick
from dlcamp.course.lm import lm_run, sample, unigram_perplexity
from dlcamp.models import create_model
from dlcamp.models.rnn import LM_RECIPE, RNNLM, RecurrentScratch, rnn_cell
from dlcamp.text import make_text_loaders, perplexity

QUICK = is_quick()  # 快速模式：语料的前 2 万字，训练 2 轮（34 步）
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一步循环：手算一遍
#
# 设批量大小为 $B$、输入维度为 $E$、隐状态维度为 $H$：$\mathbf{x}_t$ 的形状是 $(B, E)$，
# $\mathbf{h}_{t-1}$ 是 $(B, H)$，$\mathbf{W}_{xh}$ 是 $(E, H)$，$\mathbf{W}_{hh}$ 是 $(H, H)$。
# 两个矩阵乘法加起来，也等于先把 $\mathbf{x}_t$ 和 $\mathbf{h}_{t-1}$ 按列连结、
# 再乘以把 $\mathbf{W}_{xh}$ 和 $\mathbf{W}_{hh}$ 按行连结的矩阵：

# %%
B, E, H = 3, 4, 5
x_t, h_prev = torch.randn(B, E), torch.randn(B, H)
W_xh, W_hh, b_h = torch.randn(E, H), torch.randn(H, H), torch.randn(H)
h_t = torch.tanh(x_t @ W_xh + h_prev @ W_hh + b_h)  # (B, H)
h_cat = torch.tanh(torch.cat((x_t, h_prev), dim=1) @ torch.cat((W_xh, W_hh), dim=0) + b_h)
print(h_t.shape)
assert torch.allclose(h_t, h_cat, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 输入：独热向量乘矩阵 = 取矩阵的一行
#
# 词元是整数编号。书中把编号 $i$ 变成长度为词表大小 $V$ 的**独热向量**（one-hot vector）：
# 第 $i$ 个分量为 1，其余为 0。独热向量乘以一个 $(V, E)$ 的矩阵，结果正好是矩阵的第 $i$ 行：

# %%
V = 10
W_emb = torch.randn(V, E)
ids = torch.tensor([[3, 1, 4], [1, 5, 9]])  # (B=2, T=3) token ids
one_hot = F.one_hot(ids, V).float()  # (2, 3, V): mostly zeros
embedding = nn.Embedding(V, E)
embedding.weight.data.copy_(W_emb)
print(one_hot[0, 0])
assert torch.equal(one_hot @ W_emb, W_emb[ids])  # a matrix product that only picks rows
assert torch.equal(embedding(ids), W_emb[ids])  # nn.Embedding: the same lookup, learnable

# %% [markdown]
# 所以 `RNNLM` 直接用**嵌入层**（`nn.Embedding`）：计算结果相同，却不必构造
# $(T, B, V)$ 的独热张量。《唐诗三百首》的词表有两千多个字，一批 $32 \times 35$ 个字的独热张量
# 就有两百多万个数，几乎全是 0，和它做矩阵乘法也几乎全在乘 0。
# 嵌入向量的维度 $E$（这里是 64）也不必等于 $V$：每个字由一个可学习的稠密向量表示。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现：一个时间步
#
# `rnn_cell` 只做一步更新。它的参数名和形状照搬 PyTorch：权重存成 $(H, E)$ 和 $(H, H)$，
# 计算时乘转置，即 `weight_ih` $= \mathbf{W}_{xh}^\top$，`weight_hh` $= \mathbf{W}_{hh}^\top$；
# 偏置也有两个（`bias_ih` 和 `bias_hh`），二者之和就是公式里的 $\mathbf{b}_h$。
# 参数 `gi` 是输入那一半 $\mathbf{x}_t \mathbf{W}_{xh} + \mathbf{b}_{ih}$，已经提前算好：

# %%
print(inspect.getsource(rnn_cell))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现：沿时间循环
#
# `RecurrentScratch` 把 `rnn_cell` 用在整个序列上，输入的形状是 $(T, B, E)$（时间在前，和 `torch.nn.RNN` 一样）。
# 两个要点：
#
# - 输入那一半不依赖隐状态，所以 `forward` 用**一次**矩阵乘法算出所有时间步的 `gi`，形状 $(T, B, H)$；
# - 只有依赖 $\mathbf{h}_{t-1}$ 的那一半必须一步接一步地算：`_run` 里是一个 Python 的 `for` 循环。
#
# 同一个类还能做 GRU、LSTM、多层和双向（后面几讲会用到），这里只看单层 RNN 走的路径：

# %%
print(inspect.getsource(RecurrentScratch._run))
print(inspect.getsource(RecurrentScratch.forward))

# %% [markdown]
# 参数名和 `torch.nn.RNN` 的完全相同，所以两者可以互相加载权重（下一讲）：

# %%
layer = RecurrentScratch("rnn", input_size=E, hidden_size=H)
for name, param in layer.named_parameters():
    print(f"{name:12s} {tuple(param.shape)}")
assert [name for name, _ in layer.named_parameters()] == \
    [name for name, _ in nn.RNN(E, H).named_parameters()]

# %% [markdown]
# 用本讲开头的公式手写一遍循环，结果和 `RecurrentScratch` 一致：

# %%
T = 6
X = torch.randn(T, B, E)  # (T, B, E)
outputs, h_last = layer(X)  # (T, B, H), (1, B, H)
h = torch.zeros(B, H)
W_xh, W_hh = layer.weight_ih_l0.T, layer.weight_hh_l0.T
b_h = layer.bias_ih_l0 + layer.bias_hh_l0
for t in range(T):
    h = torch.tanh(X[t] @ W_xh + h @ W_hh + b_h)
    assert torch.allclose(outputs[t], h, atol=1e-6)
assert torch.allclose(h_last[0], h, atol=1e-6)
print(outputs.shape, h_last.shape)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 初始状态与形状
#
# 读第一个字之前没有"过去"：`begin_state` 返回全零的初始隐状态，形状是
# （层数 × 方向数, $B$, $H$）。不传状态时，`forward` 自己调用它。
#
# 整个语言模型 `RNNLM`：词元 $(B, T)$ → 嵌入 $(T, B, E)$ → 循环层 $(T, B, H)$ → 全连接层 → logits $(B, T, V)$。
# 它还返回最后的隐状态：下一批数据接着这一批读（顺序分区）时，就从这里继续。

# %%
vocab_size = 30
model = create_model("rnn-scratch", vocab_size=vocab_size, num_hiddens=16, embed_size=8)
assert isinstance(model, RNNLM) and isinstance(model.rnn, RecurrentScratch)
print(model)
state = model.begin_state(batch_size=2)
tokens = torch.randint(vocab_size, (2, 7))  # (B, T)
logits, state = model(tokens, state)
print("begin_state", tuple(model.begin_state(2).shape), "-> logits", tuple(logits.shape),
      "state", tuple(state.shape))
assert logits.shape == (2, 7, vocab_size) and state.shape == (1, 2, 16)
# reading the 7 tokens in two pieces, passing the state along, gives the same logits
first, s = model(tokens[:, :3])
second, _ = model(tokens[:, 3:], s)
assert torch.allclose(torch.cat((first, second), dim=1), logits, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 为什么要梯度裁剪
#
# 反向传播沿时间倒着走（BPTT）：损失对 $\mathbf{h}_0$ 的梯度要连乘 $T$ 个雅可比矩阵
# $\mathrm{diag}(1 - \mathbf{h}_t^2)\, \mathbf{W}_{hh}^\top$。忽略 $\tanh$，
# 若 $\mathbf{W}_{hh}$ 把向量放大 $s$ 倍，梯度就放大约 $s^T$ 倍：$s < 1$ 时**消失**，$s > 1$ 时**爆炸**。
# 下面取 $\mathbf{W}_{hh} = s\mathbf{Q}$（$\mathbf{Q}$ 是正交矩阵，不改变长度），
# 看 $\mathbf{h}_T$ 之和对 $\mathbf{h}_0$ 的梯度范数：

# %%
Q, _ = torch.linalg.qr(torch.randn(64, 64))
steps = (1, 5, 10, 20, 35)
print("s    " + "".join(f"T={t:<8}" for t in steps))
grad_norms = {}
for s in (0.8, 1.0, 1.2):
    h0 = torch.randn(1, 64, requires_grad=True)
    h, norms = h0, []
    for t in range(1, max(steps) + 1):
        h = h @ (s * Q)  # linear recurrence: the Jacobian product is (sQ)^T
        if t in steps:
            norms.append(torch.autograd.grad(h.sum(), h0, retain_graph=True)[0].norm().item())
    grad_norms[s] = norms
    print(f"{s:<5}" + "".join(f"{n:<10.3g}" for n in norms))
assert grad_norms[1.2][-1] > 100 * grad_norms[1.2][0] and grad_norms[0.8][-1] < 0.01 * grad_norms[0.8][0]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 梯度裁剪
#
# 消失的梯度要靠更好的结构来解决（GRU 和 LSTM，后面几讲）；爆炸的梯度有个简单的办法：
# 把**所有**参数的梯度看成一个长向量 $\mathbf{g}$，范数超过阈值 $\theta$ 时按比例缩小
#
# $$\mathbf{g} \leftarrow \min\left(1, \frac{\theta}{\|\mathbf{g}\|}\right) \mathbf{g}$$
#
# 方向不变，只是一步不会迈得太远（第 3.05 讲细说沿时间反向传播和裁剪）。`dlcamp.core.gradients.clip_grad_norm` 从零实现了它，
# 和 PyTorch 的 `clip_grad_norm_` 相同（`Trainer` 和从零写的 NumPy 引擎用的也是它）；训练配方里 `grad_clip=1.0`，和书中一样在范数 1 处裁剪。

# %%
params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))]
params[0].grad, params[1].grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
norm_before = float(clip_grad_norm(params, max_norm=1.0))  # a 0-d tensor, as torch returns
norm_after = torch.cat([p.grad for p in params]).norm().item()
print(f"global norm {norm_before:.1f} -> {norm_after:.3f}; first gradient now {params[0].grad}")
assert norm_before == 5.0 and abs(norm_after - 1.0) < 1e-5
assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.0, 0.0]), atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练前：困惑度约等于词表大小
#
# 训练数据和上一讲相同：《唐诗三百首》按字切分，每首诗一行（换行符也是一个词元），
# 批量 32、每段 35 个字，顺序分区（下一批的每一行接着上一批读，隐状态带过去、但切断梯度）。
# 还没训练的模型对每个字的预测几乎是均匀的，困惑度接近词表大小 $V$：

# %%
data = make_text_loaders("tang300", batch_size=32, num_steps=35, quick=QUICK)
V = len(data.vocab)
torch.manual_seed(0)
untrained = create_model("rnn-scratch", vocab_size=V)
with torch.no_grad():
    X, Y, _ = next(iter(data.val))  # (B, T), (B, T)
    logits, _ = untrained(X)
    ppl_untrained = perplexity(F.cross_entropy(logits.reshape(-1, V), Y.reshape(-1)).item())
ppl_unigram = unigram_perplexity(data.train.corpus, data.val.corpus, V)
print(f"vocabulary {V} characters; untrained model: perplexity {ppl_untrained:.0f}; "
      f"unigram model (lesson 3.02): {ppl_unigram:.0f}")
assert 0.5 * V < ppl_untrained < 2 * V

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# `lm_run` 用 `rnn-scratch` 注册的配方训练（Adam、梯度裁剪、余弦学习率，循环层前后各加 0.3 的 dropout），
# 相当于命令行的 `dlcamp train --model rnn-scratch --dataset tang300`（那样还会把检查点存进 `runs/`）。
# 快速模式只训练 34 步，几秒钟；完整模式按配方训练 12 轮：

# %%
print(LM_RECIPE)
trainer, loaders, val_ppl = lm_run("rnn-scratch", "tang300", quick=QUICK)
history = [round(record["val_ppl"], 1) for record in trainer.history]
print("validation perplexity per epoch:", history)

# %% [markdown]
# 困惑度从两千多降到了几百。但和只数字频的一元语法比一比：快速模式下两者差不多，
# 模型刚学会"哪些字常见"；完整模式训练 12 轮后才明显低于一元语法。
# 这份语料只有两万多字，却有两千多个不同的字，大多数字只出现过几次，字与字的搭配很难学充分。

# %%
print(f"untrained {ppl_untrained:.0f} -> trained {val_ppl:.1f}; unigram {ppl_unigram:.1f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 写一首五言绝句
#
# `sample(..., poem=5)` 先把提示"床前"读进模型，再逐字采样（温度 0.8）：
# 字的位置上不许出现标点和换行，每五个字后交替加"，"和"。"，所以格式总是对的。
# 内容是否通顺，就看模型学到了多少。命令行的写法是 `dlcamp generate RUN --prompt 床前`
# （RUN 是 `dlcamp train` 生成的 `runs/` 下的目录）。

# %%
poem = sample(trainer, loaders, "床前", poem=5, seed=0)
print(poem)

# %% [markdown]
# 不限格式时，模型自己决定在哪里换行、断句：

# %%
print(sample(trainer, loaders, "春风", length=40, seed=1))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 循环神经网络用隐状态 $\mathbf{h}_t$ 概括读过的内容，每一步用同一组参数更新它；
# - 独热向量乘矩阵就是取矩阵的一行，嵌入层直接取行，省去庞大而稀疏的独热张量；
# - 输入部分可以一次算完所有时间步，只有隐状态部分必须逐步循环；
# - 沿时间反向传播要连乘许多雅可比矩阵，梯度可能消失或爆炸；梯度裁剪防止爆炸；
# - 语言模型用困惑度衡量：未训练时约等于词表大小，要和一元语法这样的简单基线比。
#
# 自测：把 `num_steps` 从 35 改成 5，模型还能学到跨越一句诗的联系吗？
# 顺序分区时隐状态会带到下一批，那梯度呢？

# %%
lines = poem.split("\n")
assert len(lines) == 2 and poem.startswith("床前"), poem
for line in lines:
    assert len(line) == 12 and line[5] == "，" and line[11] == "。", line
assert val_ppl < history[0] or len(history) == 1
assert val_ppl < 0.5 * ppl_untrained, (val_ppl, ppl_untrained)
if not QUICK:
    assert val_ppl < ppl_unigram, (val_ppl, ppl_unigram)
print(f"lesson 3.03 done: rnn-scratch on tang300, validation perplexity {val_ppl:.1f} "
      f"(untrained {ppl_untrained:.0f}, unigram {ppl_unigram:.0f})")
