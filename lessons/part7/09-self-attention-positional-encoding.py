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
#     title: 自注意力与位置编码（positional encoding）
#     title_en: Self-attention and positional encoding
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 自注意力与位置编码
#
# 前几讲里，查询来自解码器，键和值来自编码器。如果查询、键、值**都是同一个序列**，
# 每个词元（token）都去看同一序列里的所有词元，就得到**自注意力**（self-attention），
# 也叫内部注意力（intra-attention）。它和 CNN、RNN 一样能把一个序列变成另一个同样长的序列，
# 但代价和性质大不相同。
#
# 本讲：自注意力的形状；和 CNN、RNN 比较计算量、顺序操作和最长路径；
# 自注意力"看不见"顺序——于是需要**位置编码**（positional encoding）；
# 正弦位置编码的图像，以及它最重要的性质：位置 $i+k$ 的编码是位置 $i$ 编码的线性函数。

# %%
import inspect
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.models.attention import MultiHeadAttention, PositionalEncoding, sinusoids

QUICK = is_quick()  # 本讲只有小张量，快速模式和完整模式一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 自注意力
#
# 给定输入 $\mathbf{x}_1, \dots, \mathbf{x}_n$（每个 $d$ 维），自注意力的第 $i$ 个输出是
# $\mathbf{y}_i = f(\mathbf{x}_i, (\mathbf{x}_1, \mathbf{x}_1), \dots, (\mathbf{x}_n, \mathbf{x}_n))$：
# $\mathbf{x}_i$ 当查询，所有 $\mathbf{x}_j$ 既当键又当值。用上一讲的多头注意力，只要把同一个张量传三次：

# %%
num_hiddens, num_heads = 100, 5
attention = MultiHeadAttention(num_hiddens, num_heads).eval()
B, n = 2, 4
X = torch.randn(B, n, num_hiddens)
valid_lens = torch.tensor([3, 2])
Y = attention(X, X, X, valid_lens)
print("input", tuple(X.shape), "-> output", tuple(Y.shape))
assert Y.shape == X.shape

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 CNN、RNN 比较
#
# 把长度为 $n$、每个词元 $d$ 维的序列变成同样形状的序列，三种做法（表取自 d2l 11.6.2；
# Vaswani 等 2017 的表 1 与之相同，只是卷积的最长路径按空洞卷积写成 $O(\log_k n)$）：
#
# | 层 | 计算复杂度 | 顺序操作 | 最长路径长度 |
# |---|---|---|---|
# | 卷积（核大小 $k$） | $O(knd^2)$ | $O(1)$ | $O(n/k)$ |
# | 循环神经网络 | $O(nd^2)$ | $O(n)$ | $O(n)$ |
# | 自注意力 | $O(n^2d)$ | $O(1)$ | $O(1)$ |
#
# **顺序操作**（sequential operations）是必须一个接一个做、无法并行的步数：RNN 的第 $t$ 步要等第 $t-1$ 步。
# **最长路径**是任意两个位置之间信息要经过的层数或步数，路径越短，远距离的依赖越容易学。
# 自注意力两项都是常数，代价是计算量随 $n$ **平方**增长。用具体的数算一算（只数乘法的主项）：

# %%
def multiplications(n: int, d: int, k: int = 3) -> dict[str, int]:
    """Leading-order multiply counts of one layer (the complexity column of the table)."""
    return {"CNN": k * n * d * d, "RNN": n * d * d, "self-attention": n * n * d}


for n_tokens in (50, 512, 4096):
    counts = multiplications(n_tokens, d=512)
    print(f"n = {n_tokens:4d}, d = 512: " + ", ".join(f"{k} {v / 1e6:8.1f} M" for k, v in counts.items()))
assert multiplications(50, 512)["self-attention"] < multiplications(50, 512)["RNN"]  # n < d
assert multiplications(4096, 512)["self-attention"] > multiplications(4096, 512)["CNN"]

# %% [markdown]
# $n < d$ 时自注意力最便宜；序列很长时平方项占上风（这就是长文本模型要想各种办法的原因）。
# 最长路径也可以直接用自动求导"看"出来：输出的第 0 个位置依赖输入的哪些位置？

# %%
n_seq, d_small = 16, 8
x = torch.randn(1, n_seq, d_small, requires_grad=True)


def reach(out: torch.Tensor) -> int:
    """How many input positions the output at position 0 depends on (nonzero gradient)."""
    (grad,) = torch.autograd.grad(out[0, 0].sum(), x, retain_graph=True)
    return int((grad[0].abs().sum(dim=1) > 0).sum())


conv = nn.Conv1d(d_small, d_small, kernel_size=3, padding=1)
h = x.transpose(1, 2)
conv_reach = []
for _ in range(3):  # stack 1, 2, 3 convolutions
    h = conv(h)
    conv_reach.append(reach(h.transpose(1, 2)))
attn_reach = reach(MultiHeadAttention(d_small, 2)(x, x, x))
rnn_out, _ = nn.RNN(d_small, d_small, batch_first=True)(x)
(rnn_grad,) = torch.autograd.grad(rnn_out[0, -1].sum(), x)  # the last step sees every input...
print(f"output 0 depends on {conv_reach} inputs after 1, 2, 3 convolutions (kernel 3); "
      f"on {attn_reach} after one self-attention")
print(f"RNN: the last output depends on {int((rnn_grad[0].abs().sum(1) > 0).sum())} inputs, "
      f"but the first input reaches it only through {n_seq - 1} sequential steps")
assert conv_reach == [2, 3, 4] and attn_reach == n_seq

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 自注意力看不见顺序
#
# 自注意力里没有任何东西依赖位置：把输入的词元打乱，输出只是按同样的方式打乱。
# 这叫**置换等变**（permutation equivariance）。"狗咬人"和"人咬狗"对它来说是同一组词元。

# %%
perm = torch.randperm(n)
X1 = torch.randn(1, n, num_hiddens)
with torch.no_grad():
    gap_perm = (attention(X1[:, perm], X1[:, perm], X1[:, perm]) - attention(X1, X1, X1)[:, perm])
print(f"permuted input vs permuted output: largest difference {gap_perm.abs().max():.1e}")
assert gap_perm.abs().max() < 1e-5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 正弦位置编码
#
# 解决办法是把位置信息加到输入上：$\mathbf{X} + \mathbf{P}$，$\mathbf{P} \in \mathbb{R}^{n \times d}$ 的第 $i$ 行编码位置 $i$。
# 位置编码可以学出来，也可以固定。Transformer 用的是固定的正弦和余弦：
#
# $$p_{i, 2j} = \sin\!\left(\frac{i}{10000^{2j/d}}\right), \qquad p_{i, 2j+1} = \cos\!\left(\frac{i}{10000^{2j/d}}\right).$$
#
# 每对列 $(2j, 2j+1)$ 是一个频率为 $\omega_j = 10000^{-2j/d}$ 的"时钟"，$j$ 越大转得越慢。

# %%
print(inspect.getsource(sinusoids))
print(inspect.getsource(PositionalEncoding.forward))

# %%
encoding_dim, num_steps = 32, 60
pos_encoding = PositionalEncoding(encoding_dim, dropout=0.0).eval()
with torch.no_grad():
    P = pos_encoding(torch.zeros(1, num_steps, encoding_dim))[0]  # adding to zeros gives P itself
fig, ax = plt.subplots(figsize=(6, 2.5))
for col in range(6, 10):
    ax.plot(torch.arange(num_steps), P[:, col], label=f"column {col}")
ax.set_xlabel("row (position)")
ax.legend()
plt.show()
assert torch.equal(P, sinusoids(1000, encoding_dim)[:num_steps])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 像二进制计数，但是连续的
#
# 写出 0 到 7 的二进制：最低位每一行都变，次低位两行一变，最高位四行一变。
# 位置编码也是这样：前面的列频率高、变得快，后面的列频率低、变得慢，只不过取值是连续的浮点数。

# %%
for i in range(8):
    print(f"{i} in binary: {i:03b}")
fig = show_heatmaps(P[None, None], xlabel="column (encoding dimension)", ylabel="row (position)",
                    cmap="Blues")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 相对位置：$\mathbf{p}_{i+k}$ 是 $\mathbf{p}_i$ 的线性函数
#
# 固定偏移 $k$，对每个频率 $\omega_j$，由和角公式：
#
# $$\begin{bmatrix} \cos(\omega_j k) & \sin(\omega_j k) \\ -\sin(\omega_j k) & \cos(\omega_j k) \end{bmatrix}
# \begin{bmatrix} p_{i, 2j} \\ p_{i, 2j+1} \end{bmatrix} =
# \begin{bmatrix} \sin(\omega_j (i+k)) \\ \cos(\omega_j (i+k)) \end{bmatrix} =
# \begin{bmatrix} p_{i+k, 2j} \\ p_{i+k, 2j+1} \end{bmatrix}.$$
#
# 把 $d/2$ 个这样的 2×2 旋转矩阵放在对角线上，得到一个**只和 $k$ 有关、和 $i$ 无关**的矩阵 $\mathbf{M}_k$，
# $\mathbf{p}_{i+k} = \mathbf{M}_k \mathbf{p}_i$ 对所有位置成立。模型因此容易学会"往前看 $k$ 个位置"这样的相对关系。
# 数值验证：

# %%
def shift_matrix(k: int, d: int) -> torch.Tensor:
    """The block-diagonal rotation M_k (d, d) with p_{i+k} = M_k p_i for the sinusoids."""
    omega = torch.pow(10000.0, -torch.arange(0, d, 2, dtype=torch.float64) / d)
    m = torch.zeros(d, d, dtype=torch.float64)
    for j, w in enumerate(omega.tolist()):
        c, s = math.cos(w * k), math.sin(w * k)
        m[2 * j: 2 * j + 2, 2 * j: 2 * j + 2] = torch.tensor([[c, s], [-s, c]])
    return m


table = sinusoids(1000, encoding_dim).double()  # (1000, 32)
shift_gaps = {}
for k in (1, 5, 50):
    M = shift_matrix(k, encoding_dim)
    shift_gaps[k] = (table[:-k] @ M.T - table[k:]).abs().max().item()  # every position at once
    print(f"k = {k:2d}: max |M_k p_i - p_(i+k)| over all i = {shift_gaps[k]:.1e}")
assert max(shift_gaps.values()) < 1e-4  # float32 table: rounding only

# %% [markdown]
# 反过来，不知道公式也能发现这件事：用最小二乘法拟合一个线性映射 $\mathbf{p}_i \mapsto \mathbf{p}_{i+5}$，残差几乎为 0。
# 另外，两个位置编码的内积 $\mathbf{p}_i^\top \mathbf{p}_{i+k} = \sum_j \cos(\omega_j k)$ 也只和距离 $k$ 有关：

# %%
fit = torch.linalg.lstsq(table[:-5], table[5:]).solution  # (32, 32): p_(i+5) ~ p_i @ fit
residual = (table[:-5] @ fit - table[5:]).abs().max().item()
print(f"least-squares linear map p_i -> p_(i+5): largest residual {residual:.1e}")
dots = (table[:-7] * table[7:]).sum(dim=1)  # p_i . p_(i+7) for every i
print(f"p_i . p_(i+7) for i = 0, 100, 900: {dots[0]:.4f}, {dots[100]:.4f}, {dots[900]:.4f}")
assert residual < 1e-4 and (dots.max() - dots.min()) < 1e-4

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 加上位置编码，顺序就有了意义
#
# 把位置编码加到输入上，再打乱词元：输出不再只是被打乱而已。

# %%
big_encoding = PositionalEncoding(num_hiddens, dropout=0.0).eval()
with torch.no_grad():
    Z, Z_perm = big_encoding(X1), big_encoding(X1[:, perm])
    gap_pos = (attention(Z_perm, Z_perm, Z_perm) - attention(Z, Z, Z)[:, perm]).abs().max()
print(f"with positional encoding: largest difference {gap_pos:.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 自注意力的查询、键、值来自同一个序列；顺序操作和最长路径都是 $O(1)$，计算量是 $O(n^2 d)$；
# - 自注意力对词元的顺序是置换等变的，需要位置编码告诉它谁在前谁在后；
# - 正弦位置编码的每对列是一个不同频率的时钟，像连续的二进制计数；
# - 对任意偏移 $k$，$\mathbf{p}_{i+k} = \mathbf{M}_k \mathbf{p}_i$，$\mathbf{M}_k$ 与位置 $i$ 无关。
#
# 自测：为什么用 $\sin$ 和 $\cos$ 成对出现，而不是只用 $\sin$？（提示：只有 $\sin$ 时，
# 从 $\sin(\omega i)$ 能线性地得到 $\sin(\omega(i+k))$ 吗？）

# %%
assert perm.tolist() != list(range(n)) and gap_pos > 1e-2  # order now matters
print(f"lesson 7.09 done: p_(i+k) = M_k p_i to {max(shift_gaps.values()):.0e}; self-attention "
      f"reaches all {n_seq} positions in one layer")
