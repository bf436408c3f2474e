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
#     title: 深度循环神经网络（deep RNN）
#     title_en: Deep recurrent neural networks
#     minutes:
#       quick: 0.3
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 深度循环神经网络（deep RNN）
#
# 到目前为止，我们的循环网络在每个时间步只有一个隐藏层：输入 $\mathbf{X}_t$ 经过一层就到了输出。
# 多层感知机和卷积网络靠堆叠层数获得更强的表达能力，循环网络也可以：
# 把若干个循环层叠起来，就是**深度循环神经网络**（deep recurrent neural network）。
#
# 本讲：堆叠的方法和公式、参数量随深度的变化、两层 LSTM 的从零实现与 `nn.LSTM` 的比较、
# 层与层之间的 dropout，最后在同样的预算下比较一层和两层的 LSTM。

# %%
import inspect
import warnings

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import compare_lms, sample, scratch_matches_concise
from dlcamp.models import count_parameters, create_model
from dlcamp.models.rnn import RecurrentScratch

QUICK = is_quick()  # 快速模式：语料只取开头一段，每个模型只训练几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一层的输出序列是下一层的输入序列
#
# 共 $L$ 层。第 $l$ 层在时间步 $t$ 的隐状态 $\mathbf{H}_t^{(l)}$ 取决于两样东西：
# 同一时间步**下一层**的隐状态（第 1 层用输入，记 $\mathbf{H}_t^{(0)} = \mathbf{X}_t$），
# 和同一层**上一时间步**的隐状态：
#
# $$\mathbf{H}_t^{(l)} = \phi_l(\mathbf{H}_t^{(l-1)} \mathbf{W}_{xh}^{(l)} + \mathbf{H}_{t-1}^{(l)} \mathbf{W}_{hh}^{(l)} + \mathbf{b}_h^{(l)})$$
#
# 只有最顶层接输出层：
#
# $$\mathbf{O}_t = \mathbf{H}_t^{(L)} \mathbf{W}_{hq} + \mathbf{b}_q$$
#
# 每层有自己的参数和自己的状态；换成 LSTM 或 GRU，就把 $\phi_l$ 换成它们的一步计算，
# 每层 LSTM 也有自己的记忆元。于是 `nn.LSTM(num_layers=L)` 的状态形状是 $(L, n, h)$，
# 每层一片。从零实现的 `RecurrentScratch.forward` 就是外层对层、内层对时间步的两重循环：

# %%
print(inspect.getsource(RecurrentScratch.forward))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 两层 = 两个一层接起来
#
# 验证一下：取一个两层的 `nn.LSTM`，把它第 0 层的参数（`*_l0`）放进一个一层的 LSTM，
# 第 1 层的参数（`*_l1`）放进另一个一层的 LSTM。第一个读输入序列，
# 它的**整个输出序列**再交给第二个，结果应该和两层的 LSTM 完全相同：

# %%
d, h, n, T = 5, 8, 3, 7  # input size, hidden size, batch size, time steps
deep = nn.LSTM(d, h, num_layers=2)
print([name for name, _ in deep.named_parameters()])
X = torch.randn(T, n, d)  # (T, n, d)
out, (H_n, C_n) = deep(X)  # (T, n, h), (2, n, h) twice


def single_layer(source: nn.LSTM, layer: int, input_size: int) -> nn.LSTM:
    """A one-layer LSTM holding layer `layer` of `source`."""
    one = nn.LSTM(input_size, source.hidden_size)
    suffix = f"_l{layer}"
    one.load_state_dict({name.replace(suffix, "_l0"): value
                         for name, value in source.state_dict().items() if name.endswith(suffix)})
    return one


bottom, top = single_layer(deep, 0, d), single_layer(deep, 1, h)
out_bottom, (H_bottom, C_bottom) = bottom(X)  # the whole output sequence (T, n, h) ...
out_top, (H_top, C_top) = top(out_bottom)     # ... is the input sequence of the next layer
assert torch.allclose(out_top, out, atol=1e-6)
assert torch.allclose(torch.cat([H_bottom, H_top]), H_n, atol=1e-6)
assert torch.allclose(torch.cat([C_bottom, C_top]), C_n, atol=1e-6)
print("output", tuple(out.shape), "final H", tuple(H_n.shape), "final C", tuple(C_n.shape))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数量随深度增长
#
# 第 1 层的输入是 $d$ 维，往上各层的输入都是 $h$ 维。一层 LSTM 有 $4h(\text{输入维数} + h + 2)$ 个参数，
# 所以 $L$ 层共有 $4h(d + h + 2) + (L - 1) \cdot 4h(2h + 2)$ 个。
# 取注册模型的尺寸（嵌入 64 维、隐藏 256 维），每多一层就多出约 52 万个参数，
# 比第一层（输入只有 64 维）还多：

# %%
E, HID = 64, 256
for L in (1, 2, 3, 4):
    count = count_parameters(nn.LSTM(E, HID, num_layers=L))
    assert count == 4 * HID * (E + HID + 2) + (L - 1) * 4 * HID * (2 * HID + 2)
    print(f"{L} layer(s): {count:>9,} parameters in the recurrent layers")
V = 100
print(f"deep-lstm language model (vocabulary {V}): {count_parameters(create_model('deep-lstm', vocab_size=V)):,}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现和 `nn.LSTM` 一样
#
# `deep-lstm` 和 `deep-lstm-scratch` 都是两层 LSTM 语言模型，参数名相同（`weight_ih_l1` 等是第二层的）。
# 复制权重后比较输出、最终状态和梯度：

# %%
concise = create_model("deep-lstm", vocab_size=V)
scratch = create_model("deep-lstm-scratch", vocab_size=V)
gaps = scratch_matches_concise("deep-lstm", vocab_size=V)  # copies the weights, runs both
print("largest |concise - scratch| of the logits, final state and gradients:",
      {k: f"{v:.1e}" for k, v in gaps.items()})
assert max(gaps.values()) < 1e-5, gaps

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 层与层之间的 dropout
#
# `nn.LSTM(..., dropout=p)` 只在**相邻两层之间**对输出序列做 dropout：最后一层的输出不做，
# 从一个时间步到下一个时间步的状态也不做（那会损害记忆）。所以只有一层时这个参数没有作用，PyTorch 会警告：

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    nn.LSTM(E, HID, num_layers=1, dropout=0.5)
print(caught[0].message)
assert len(caught) == 1

# %% [markdown]
# 取极端的 $p = 1$ 看得最清楚：训练模式下，第 1 层的输出全部被丢弃，第 2 层看到的输入全是 0。
# 可第 1 层自己的状态一点不受影响（状态在时间方向上的传递没有 dropout），
# 最后的输出也不是 0（顶层的输出没有 dropout）：

# %%
cut = nn.LSTM(d, h, num_layers=2, dropout=1.0)
cut.load_state_dict(deep.state_dict())
out_cut, (H_cut, _) = cut.train()(X)
assert torch.allclose(H_cut[0], H_bottom[0], atol=1e-6)    # layer 1: untouched
assert torch.allclose(out_cut, top(torch.zeros(T, n, h))[0], atol=1e-6)  # layer 2 saw zeros
assert out_cut.abs().sum() > 0
out_eval, _ = cut.eval()(X)  # evaluation: no dropout, the normal two-layer LSTM
assert torch.allclose(out_eval, out, atol=1e-6)
print("p = 1 in training: layer 2 sees only zeros; in evaluation: the normal output")

# %% [markdown]
# 注册的语言模型（`RNNLM`）的 `dropout` 参数既传给循环层（层间），也用在嵌入之后和输出层之前，
# 这是 Zaremba 等人（2014）给 LSTM 语言模型加正则化的做法；配方 `LM_RECIPE` 取 0.3。
# 从零实现的 `RecurrentScratch` 同样只在层间做 dropout，评估模式下两者仍然一致：

# %%
concise_d = create_model("deep-lstm", vocab_size=V, dropout=0.3)
scratch_d = create_model("deep-lstm-scratch", vocab_size=V, dropout=0.3)
scratch_d.load_state_dict(concise_d.state_dict())
tokens = torch.randint(V, (4, 12))  # (B, T)
with torch.no_grad():
    same_eval = torch.allclose(concise_d.eval()(tokens)[0], scratch_d.eval()(tokens)[0], atol=1e-5)
    train_a, train_b = concise_d.train()(tokens)[0], concise_d(tokens)[0]
print("evaluation: scratch == concise:", same_eval,
      "| training: two passes differ:", not torch.allclose(train_a, train_b))
assert same_eval and not torch.allclose(train_a, train_b)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一层还是两层：同样的预算
#
# 在 `quotes-en`（约两百万个英文字符）上用同一个配方训练 `lstm`（一层）和 `deep-lstm`（两层），
# 隐藏单元都是 256。完整模式每个模型训练同样的 **60 秒**（学习率按时间走完余弦）；
# 快速模式每个模型 60 步，只用语料开头。

# %%
budget = dict(epochs=4, max_steps=60) if QUICK else dict(epochs=10_000, max_seconds=60)
print(f"same budget ({'60 steps' if QUICK else '60 s'}) on quotes-en:")
runs = compare_lms(["lstm", "deep-lstm"], "quotes-en", quick=QUICK, **budget)

# %% [markdown]
# 两层 LSTM 循环层的参数是一层的 2.6 倍（第二层的输入是 256 维，而不是 64 维），
# 每步的计算量也差不多是这个倍数，所以同样的时间里走的步数少得多；层数多的网络也往往起步更慢。
# 深度的好处要在数据多、训练久（书中的例子在 GPU 上训练）时才显出来；在笔记本的 CPU 上、
# 只有一两分钟时，一层往往就够了。两层 LSTM 写的一段英文：

# %%
deep_trainer, deep_loaders, _ = runs["deep-lstm"]
text = sample(deep_trainer, deep_loaders, "The ", length=120)
print(text)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 深度循环网络把循环层叠起来：第 $l$ 层的输出序列是第 $l+1$ 层的输入序列，每层有自己的参数和状态；
# - `nn.LSTM(num_layers=L)` 的状态形状是 $(L, n, h)$；第一层以上每层的参数量是 $4h(2h+2)$；
# - `dropout` 只作用在层与层之间，不作用在时间方向上，也不作用在最后一层的输出上；
# - 层数是超参数：更深的网络每步更慢、起步更慢，预算有限时不一定更好。
#
# 自测：把隐藏单元从 256 减到 128、层数从 1 加到 4，参数量怎么变？每步的计算量呢？

# %%
for name, (trainer, loaders, ppl) in runs.items():
    assert ppl < len(loaders.vocab) / 3, (name, ppl)  # far better than guessing uniformly
    if QUICK:  # four short epochs: validation perplexity fell
        assert trainer.history[-1]["val_ppl"] < trainer.history[0]["val_ppl"], name
assert runs["deep-lstm"][0].model.rnn.num_layers == 2 and text.startswith("The ")
print(f"lesson 3.08 done: deep-lstm == deep-lstm-scratch; perplexity lstm {runs['lstm'][2]:.2f}, "
      f"deep-lstm {runs['deep-lstm'][2]:.2f}")
