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
#     title: 注意力评分函数（scoring function）
#     title_en: Attention scoring functions
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 注意力评分函数
#
# 上一讲的高斯核把查询和键的距离变成权重：$\alpha(q, k_i) = \mathrm{softmax}_i(a(q, k_i))$，
# 其中 $a(q, k) = -\tfrac12 (q-k)^2$。这个 $a$ 叫**注意力评分函数**（attention scoring function）：
# 先给每个键打分，softmax 把分数变成权重，再对值加权平均。
#
# 查询和键变成向量之后，常用两种评分函数：**加性注意力**（additive attention）和
# **缩放点积注意力**（scaled dot-product attention）。在此之前先解决一个实际问题：
# 批量里的序列长短不一，填充（padding）出来的键不应该分到任何权重——这就是**遮蔽 softmax**（masked softmax）。

# %%
import inspect
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.models.attention import AdditiveAttention, DotProductAttention, masked_softmax

QUICK = is_quick()  # 本讲只有小张量，快速模式和完整模式一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 遮蔽 softmax
#
# 分数 `scores` 的形状是 (批量, 查询数, 键数)。`valid_lens` 说明每个查询能看前几个键：
# 形状 (B,) 表示一个样本里所有查询都一样（比如源句的真实长度），(B, Q) 表示每个查询各不相同
# （比如解码器只能看已经生成的位置）。超出有效长度的键，权重必须恰好是 0。

# %%
print(inspect.getsource(masked_softmax))

# %%
scores = torch.rand(2, 2, 4)
print(masked_softmax(scores, torch.tensor([2, 3])))
print(masked_softmax(scores, torch.tensor([[1, 3], [2, 4]])))
assert torch.equal(masked_softmax(scores, torch.tensor([2, 3]))[0, :, 2:], torch.zeros(2, 2))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 没有一个有效键的行：应该全是 0
#
# 如果某个查询的有效长度是 0（比如一个只有填充的样本），它没有任何可以看的东西。
# 书里的做法是把无效位置的分数填成 $-10^6$ 再做 softmax。有效键存在时这没问题：
# $e^{-10^6}$ 就是 0。但一整行都被遮住时，这一行的分数**全都**是 $-10^6$，
# softmax 只看分数之间的差，于是得到**均匀**的一行：每个填充位置分到 $1/K$。

# %%
def book_masked_softmax(scores: torch.Tensor, valid_lens: torch.Tensor) -> torch.Tensor:
    """The book's version (d2l 11.3): masked scores replaced by -1e6, then a plain softmax."""
    keep = torch.arange(scores.shape[-1]) < valid_lens[:, None, None]
    return torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1)


lens = torch.tensor([3, 0])  # the second example is nothing but padding
book, ours = book_masked_softmax(scores, lens), masked_softmax(scores, lens)
print("book, the empty example:\n", book[1])
print("ours, the empty example:\n", ours[1])
assert torch.allclose(book[1], torch.full((2, 4), 0.25))  # uniform over padding
assert torch.equal(ours[1], torch.zeros(2, 4))

# %% [markdown]
# 均匀的一行为什么不对？注意力的输出是权重乘值：均匀权重等于把**填充位置的值**平均一下交给下一层。
# 这些值是填充符号的嵌入经过网络算出来的，毫无意义；反向传播时，梯度还会流到它们身上，
# 训练它们去迎合一个本不该存在的输出。权重全为 0 时，输出是零向量，填充得不到梯度：

# %%
values = torch.randn(2, 4, 3, requires_grad=True)
for name, weights in (("book", book), ("ours", ours)):
    values.grad = None
    torch.bmm(weights, values).sum().backward()
    print(f"{name}: gradient reaching the padded example's values: "
          f"{values.grad[1].abs().sum().item():.2f}")
assert values.grad[1].abs().sum() == 0

# %% [markdown]
# 还有一个实际问题：半精度（float16）能表示的最大数约为 65504，$-10^6$ 根本放不进去。
# 我们的版本用的是该数据类型能表示的最小有限数，任何精度都能用，梯度也处处有限：

# %%
half_scores = scores.half()
try:
    book_masked_softmax(half_scores, lens)
except RuntimeError as e:
    print("book's version in float16:", e)
half = masked_softmax(half_scores, lens)
print("ours in float16, first example:\n", half[0])
assert half.dtype == torch.float16 and torch.equal(half[1], torch.zeros_like(half[1]))

x = scores.clone().requires_grad_()
masked_softmax(x, lens).pow(2).sum().backward()
assert torch.isfinite(x.grad).all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 加性注意力
#
# 查询 $\mathbf{q} \in \mathbb{R}^{q}$ 和键 $\mathbf{k} \in \mathbb{R}^{k}$ 长度不同时，
# 把两者各自投影到 $h$ 维、相加、过 $\tanh$，再用一个向量 $\mathbf{w}_v$ 得到一个分数：
#
# $$a(\mathbf{q}, \mathbf{k}) = \mathbf{w}_v^\top \tanh(\mathbf{W}_q \mathbf{q} + \mathbf{W}_k \mathbf{k})$$
#
# 相当于一个只有一个隐藏层的 MLP，可学习参数是 $\mathbf{W}_q$、$\mathbf{W}_k$ 和 $\mathbf{w}_v$。
# 代码里查询和键借助广播两两相加：(B, Q, 1, h) + (B, 1, K, h) → (B, Q, K, h)。

# %%
print(inspect.getsource(AdditiveAttention.forward))

# %%
queries = torch.normal(0, 1, (2, 1, 20))  # 2 examples, 1 query each, 20 features
keys = torch.ones(2, 10, 2)  # 10 identical keys of 2 features
values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
valid_lens = torch.tensor([2, 6])
additive = AdditiveAttention(key_size=2, query_size=20, num_hiddens=8, dropout=0.1).eval()
out = additive(queries, keys, values, valid_lens)
print("output", tuple(out.shape), "\n", out.detach())
# identical keys get identical scores: uniform weights over the valid ones
expected = torch.stack([values[0, :2].mean(0), values[1, :6].mean(0)])[:, None]
assert out.shape == (2, 1, 4) and torch.allclose(out, expected)

# %%
fig = show_heatmaps(additive.attention_weights.detach().reshape(1, 1, 2, 10), xlabel="keys",
                    ylabel="queries")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 缩放点积注意力
#
# 查询和键长度相同（都是 $d$）时，直接用内积打分更省事，也能用一次矩阵乘法算完：
#
# $$a(\mathbf{q}, \mathbf{k}) = \frac{\mathbf{q}^\top \mathbf{k}}{\sqrt{d}}, \qquad
# \mathrm{softmax}\!\left(\frac{\mathbf{Q}\mathbf{K}^\top}{\sqrt{d}}\right)\mathbf{V}$$
#
# 为什么除以 $\sqrt{d}$？若 $\mathbf{q}$、$\mathbf{k}$ 的各分量独立、均值 0、方差 1，
# 内积是 $d$ 个乘积之和，方差为 $d$。$d$ 越大分数越分散，softmax 越接近"只选一个"，梯度几乎为 0。
# 除以 $\sqrt{d}$ 把方差拉回 1，不管 $d$ 多大，分数的尺度都一样。

# %%
n_pairs = 2000 if QUICK else 20000
for d in (4, 64, 512):
    q, k = torch.randn(n_pairs, d), torch.randn(n_pairs, d)
    dots = (q * k).sum(dim=1)
    print(f"d = {d:3d}: std of q.k = {dots.std():6.2f} (sqrt(d) = {math.sqrt(d):5.2f}), "
          f"after scaling {(dots / math.sqrt(d)).std():.2f}")
q, k = torch.randn(1, 100, 512), torch.randn(1, 10, 512)  # 100 queries, 10 keys
raw = torch.softmax(q @ k.transpose(1, 2), dim=-1).max(dim=-1).values.mean()
scaled = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(512), dim=-1).max(dim=-1).values.mean()
print(f"d = 512, 10 keys: each query's largest weight, on average: unscaled {raw:.3f}, "
      f"scaled {scaled:.3f}")
assert raw > 0.9 > 0.6 > scaled  # unscaled: one key takes nearly everything

# %%
print(inspect.getsource(DotProductAttention.forward))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 PyTorch 的 `F.scaled_dot_product_attention` 一致
#
# PyTorch 自带缩放点积注意力，在 GPU 上会选用 FlashAttention 一类的快速实现。
# 它的 `attn_mask` 是布尔张量，`True` 表示"可以看"；把 `valid_lens` 变成这样的遮罩，
# 两者结果应该一样——包括没有有效键的那一行：这个版本的 PyTorch 也给出 0。

# %%
B, Q, K, d, dv = 3, 4, 6, 8, 5
q, k, v = torch.randn(B, Q, d), torch.randn(B, K, d), torch.randn(B, K, dv)
dot = DotProductAttention(dropout=0.0).eval()
for lens in (torch.tensor([6, 2, 0]), torch.tensor([[1, 2, 3, 4], [6, 6, 5, 0], [2, 2, 2, 2]])):
    ours = dot(q, k, v, lens)
    per_query = lens[:, None] if lens.ndim == 1 else lens  # (B, 1) or (B, Q)
    mask = torch.arange(K) < per_query[..., None]  # (B, 1 or Q, K): True = may attend
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    gap = (ours - theirs).abs().max().item()
    print(f"valid_lens {tuple(lens.shape)}: largest difference {gap:.1e}")
    assert gap < 1e-5

# %%
fig = show_heatmaps(dot.attention_weights[None], xlabel="keys", ylabel="queries",
                    titles=["example 1", "example 2", "example 3"])
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 评分函数给每个键打分，遮蔽 softmax 把分数变成只落在有效键上的权重；
# - 一个键都不能看的查询应该得到全 0 的权重，而不是均匀分布：否则会把填充的值平均进输出；
# - 加性注意力可以处理长度不同的查询和键，有可学习参数；
# - 缩放点积注意力没有参数，一次矩阵乘法算完；除以 $\sqrt{d}$ 让分数的方差不随维度增长。
#
# 自测：如果查询和键的分量方差不是 1 而是 $\sigma^2$，点积的方差是多少？应该除以什么？

# %%
assert torch.equal(masked_softmax(scores, torch.tensor([0, 0])), torch.zeros_like(scores))
assert torch.allclose(dot.attention_weights.sum(-1)[:2], torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]]))
print("lesson 7.06 done: masked rows are zero, additive and dot-product attention checked, "
      "DotProductAttention == F.scaled_dot_product_attention")
