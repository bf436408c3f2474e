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
#     title: 多头注意力（multi-head attention）
#     title_en: Multi-head attention
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 多头注意力
#
# 一次注意力汇聚只给出一组权重：每个查询对所有键"只有一种看法"。但一个词往往同时和好几处有关系，
# 比如主语、宾语、前一个词。**多头注意力**（multi-head attention；Vaswani 等，2017）让同一层里
# 有 $h$ 个注意力**头**（head）并排工作：每个头先把查询、键、值投影到自己的低维子空间，
# 在那里做缩放点积注意力；$h$ 个输出拼接起来，再经过一个线性层。
#
# 本讲：公式和实现、形状、"拆头"技巧为什么等于 $h$ 个独立的头、和 `nn.MultiheadAttention` 逐位比较，
# 最后训练一个小例子，看不同的头学会关注不同的位置。

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.models import count_parameters
from dlcamp.models.attention import DotProductAttention, MultiHeadAttention, copy_to_torch_mha

QUICK = is_quick()  # 最后的小训练在快速模式下也能收敛，两种模式一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 公式
#
# 设查询 $\mathbf{q} \in \mathbb{R}^{d_q}$、键 $\mathbf{k} \in \mathbb{R}^{d_k}$、值 $\mathbf{v} \in \mathbb{R}^{d_v}$。第 $i$ 个头：
#
# $$\mathbf{h}_i = f\!\left(\mathbf{W}_i^{(q)} \mathbf{q},\ \mathbf{W}_i^{(k)} \mathbf{k},\ \mathbf{W}_i^{(v)} \mathbf{v}\right) \in \mathbb{R}^{p_v},$$
#
# 其中 $f$ 是注意力汇聚（这里用缩放点积），$\mathbf{W}_i^{(q)} \in \mathbb{R}^{p_q \times d_q}$ 等是这个头自己的投影。
# 输出是 $\mathbf{W}_o [\mathbf{h}_1; \dots; \mathbf{h}_h]$，$\mathbf{W}_o \in \mathbb{R}^{p_o \times h p_v}$。
#
# 通常取 $p_q = p_k = p_v = p_o / h$（`num_hiddens / num_heads`）：$h$ 个头的总计算量和一个全宽的头差不多，
# 参数也一样多——四个 `num_hiddens × num_hiddens` 的矩阵，和头数无关。

# %%
print(inspect.getsource(MultiHeadAttention.forward))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 形状
#
# 和书里一样：`num_hiddens = 100`，5 个头，批量 2，每个样本 4 个查询、6 个键值对，
# 两个样本的有效键分别是前 3 个和前 2 个。输出和查询同形状；权重多了一个"头"的维度。

# %%
num_hiddens, num_heads = 100, 5
mha = MultiHeadAttention(num_hiddens, num_heads, dropout=0.0).eval()
B, Q, K = 2, 4, 6
X = torch.randn(B, Q, num_hiddens)  # queries
Y = torch.randn(B, K, num_hiddens)  # keys and values
valid_lens = torch.tensor([3, 2])
out = mha(X, Y, Y, valid_lens)
print("output", tuple(out.shape), "| weights", tuple(mha.attention_weights.shape))
assert out.shape == (B, Q, num_hiddens) and mha.attention_weights.shape == (B, num_heads, Q, K)
for heads in (1, 5, 20):  # the parameter count does not depend on the number of heads
    print(f"{heads:2d} heads: {count_parameters(MultiHeadAttention(num_hiddens, heads)):,} parameters")
assert count_parameters(mha) == 4 * num_hiddens**2

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 拆头：一次矩阵乘法算完所有的头
#
# 不必真的建 $h$ 组小线性层。`W_q` 是一个 `num_hiddens × num_hiddens` 的大矩阵，它输出的第 $i$ 段
# （$p = 100/5 = 20$ 个分量）就是第 $i$ 个头的 $\mathbf{W}_i^{(q)}\mathbf{q}$。`split_heads` 把这 $h$ 段
# 变形（reshape）、转置，挪到批量维上，于是一次 `bmm` 就把所有头的注意力都算了；`merge_heads` 再拼回去。

# %%
print(inspect.getsource(MultiHeadAttention.split_heads))
print(inspect.getsource(MultiHeadAttention.merge_heads))

# %% [markdown]
# 用最笨的办法验证：一个头一个头地切出自己的那几行权重，单独做注意力，拼接后乘 $\mathbf{W}_o$，
# 结果应该和上面一样。

# %%
p = num_hiddens // num_heads
attend = DotProductAttention()
heads = []
for i in range(num_heads):
    rows = slice(i * p, (i + 1) * p)  # head i's rows of each projection
    q_i = X @ mha.W_q.weight[rows].T  # (B, Q, p)
    k_i = Y @ mha.W_k.weight[rows].T
    v_i = Y @ mha.W_v.weight[rows].T
    heads.append(attend(q_i, k_i, v_i, valid_lens))
    assert torch.allclose(attend.attention_weights, mha.attention_weights[:, i], atol=1e-6)
by_hand = torch.cat(heads, dim=-1) @ mha.W_o.weight.T
gap_heads = (by_hand - out).abs().max().item()
print(f"head by head vs split_heads: largest difference {gap_heads:.1e}")
assert gap_heads < 1e-5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 `nn.MultiheadAttention` 一致
#
# PyTorch 把 $\mathbf{W}_q, \mathbf{W}_k, \mathbf{W}_v$ 上下叠成一个 `in_proj_weight`（300 × 100），
# $\mathbf{W}_o$ 叫 `out_proj`，默认还带偏置。`copy_to_torch_mha` 把我们的权重抄过去（偏置置 0）。
# 遮罩的约定相反：`key_padding_mask` 里 `True` 表示**不能**看。
# `average_attn_weights=False` 让它返回每个头的权重，而不是各头的平均。

# %%
print(inspect.getsource(copy_to_torch_mha))

# %%
torch_mha = copy_to_torch_mha(mha).eval()
padding = torch.arange(K) >= valid_lens[:, None]  # (B, K): True = padding, ignore
with torch.no_grad():
    theirs, their_weights = torch_mha(X, Y, Y, key_padding_mask=padding,
                                      average_attn_weights=False)
gap_out = (theirs - out).abs().max().item()
gap_w = (their_weights - mha.attention_weights).abs().max().item()
print(f"nn.MultiheadAttention vs ours: output {gap_out:.1e}, weights {gap_w:.1e}")
print("torch's parameters:", [(n, tuple(t.shape)) for n, t in torch_mha.named_parameters()])
assert gap_out < 1e-5 and gap_w < 1e-6

# %% [markdown]
# 没有遮罩、不要权重时，PyTorch 在推理模式下会走一条融合的快速路径（fast path），结果也应该一样；
# 其余情况下它调用 `F.multi_head_attention_forward`，一步步做的正是上面这些事。

# %%
with torch.no_grad():
    fast, _ = torch_mha(X, X, X, need_weights=False)  # self-attention, eligible for the fast path
    ours_self = mha(X, X, X)
gap_self = (fast - ours_self).abs().max().item()
print(f"self-attention without a mask: largest difference {gap_self:.1e}")
assert gap_self < 1e-5 and hasattr(F, "multi_head_attention_forward")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 不同的头学会看不同的地方
#
# 随机初始化的头没有什么可看的。造一个小任务：随机的 12 个词（词表 16），
# 在每个位置同时预测**前一个词**和**后面第二个词**（首尾相接，循环取）。
# 模型只有词嵌入加位置嵌入、一层 2 个头的多头注意力和一个输出层：
# 一个头要盯着 $i-1$，另一个头要盯着 $i+2$，两件事才能同时做好。

# %%
V, T, D, OFFSETS = 16, 12, 32, (-1, 2)


class TwoLookups(nn.Module):
    """Token + position embeddings, one multi-head self-attention, a linear read-out of the
    tokens at positions i + offset for each offset: logits (B, T, len(OFFSETS), V)."""

    def __init__(self, num_heads: int = 2) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(T, D)
        self.mha = MultiHeadAttention(D, num_heads)
        self.out = nn.Linear(D, len(OFFSETS) * V)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok(tokens) + self.pos.weight  # (B, T, D)
        return self.out(self.mha(h, h, h)).reshape(*tokens.shape, len(OFFSETS), V)


def make_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(V, (n, T), generator=gen)
    targets = torch.stack([tokens.roll(-k, dims=1) for k in OFFSETS], dim=-1)  # (n, T, 2)
    return tokens, targets


torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
toy = TwoLookups()
opt = torch.optim.Adam(toy.parameters(), lr=0.01)
for step in range(1, 301):
    tokens, targets = make_batch(64, gen)
    loss = F.cross_entropy(toy(tokens).reshape(-1, V), targets.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if loss.item() < 0.05 or step == 300:  # learned: stop before the gradients shrink to nothing
        break
tokens, targets = make_batch(512, gen)
with torch.no_grad():
    accuracy = (toy(tokens).argmax(-1) == targets).float().mean().item()
weights = toy.mha.attention_weights.mean(dim=0)  # (heads, T, T), averaged over the batch
print(f"stopped after {step} steps, loss {loss.item():.3f}, held-out accuracy {accuracy:.3f}")

# %%
positions = torch.arange(T)
share = torch.stack([torch.stack([weights[h][positions, (positions + k) % T].mean() for k in OFFSETS])
                     for h in range(2)])  # (heads, offsets): weight on position i + k
for h in range(2):
    print(f"head {h + 1}: weight on i-1 {share[h, 0]:.2f}, on i+2 {share[h, 1]:.2f}")
fig = show_heatmaps(weights[None], xlabel="key position", ylabel="query position",
                    titles=["head 1", "head 2"])
plt.show()

# %% [markdown]
# 两张图各是一条错开的对角线：一个头看前一个位置，另一个头看后面第二个位置。
# 没有人告诉它们该怎么分工，梯度下降自己找到了这种分工。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 多头注意力 = $h$ 个在各自子空间里的注意力汇聚，拼接后再做一次线性变换；
# - 实现上把一个大投影矩阵的输出切成 $h$ 段、挪到批量维上，一次矩阵乘法算完所有头；
# - 参数量 $4d^2$ 与头数无关（不计偏置），和 `nn.MultiheadAttention` 的结果完全一致；
# - 不同的头可以学会关注不同的关系。
#
# 自测：`num_hiddens = 100` 时能用 3 个头吗？`MultiHeadAttention(100, 3)` 会怎样？
# 头数越多，每个头的维度越小，太小会有什么问题？

# %%
try:
    MultiHeadAttention(100, 3)
except ValueError as e:
    print("ValueError:", e)
assert accuracy > 0.95
best = share.argmax(dim=1)  # the offset each head watches
assert share.max(dim=1).values.min() > 0.8 and best[0] != best[1], share
print(f"lesson 7.08 done: ours == nn.MultiheadAttention ({gap_out:.0e}); "
      f"the two heads watch offsets {OFFSETS[int(best[0])]} and {OFFSETS[int(best[1])]}")
