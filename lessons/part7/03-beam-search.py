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
#     title: 贪心搜索与束搜索（beam search）
#     title_en: Greedy search and beam search
#     minutes:
#       quick: 0.1
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 贪心搜索与束搜索（beam search）
#
# 训练好的编码器-解码器给出的是每一步"下一个词元"的概率分布。要得到一句译文，还得决定每一步选哪个词元。
# 我们想要的是整句概率最大的输出：
#
# $$P(y_1, \ldots, y_L, \texttt{<eos>} \mid \mathbf{x}) = \prod_{t=1}^{L+1} P(y_t \mid y_1, \ldots, y_{t-1}, \mathbf{x}).$$
#
# 词表有 $|\mathcal{Y}|$ 个词元、输出最长 $L$ 个词元时，所有可能的句子有 $|\mathcal{Y}|^L$ 个：
# 中文字表两千多个字、长 20 个字，就是 $2000^{20} \approx 10^{66}$ 句，不可能一一比较。
# 本讲比较三种**搜索**（search）策略：穷举搜索、贪心搜索和束搜索，以及束搜索里的长度归一化。

# %%
import inspect
import itertools
import math

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.translate import sequence_log_probs, translation_run
from dlcamp.models.decoding import beam_search, greedy_search, length_normalised

QUICK = is_quick()  # 快速模式：翻译模型只训练几十步，只翻译几句
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个用概率表做的玩具模型
#
# 为了能算清楚每一个数，先用一张手写的概率表代替神经网络：词表只有 `<eos>`、A、B、C，
# 表里写着每个**前缀**（已经输出的词元）之后下一个词元的概率，表里没有的前缀用一个默认分布。
# 搜索算法只用到模型的 `begin_decode` 和 `decode` 两个方法（7.01），所以这张表只要提供这两个方法：
# 状态里记住前缀，每喂进一个词元就把它接到前缀后面，再查表。

# %%
TOKENS = ["<pad>", "<bos>", "<eos>", "A", "B", "C"]
BOS, EOS = 1, 2
MAX_PREFIX = 8


class TableModel(nn.Module):
    """Next-token probabilities looked up by prefix: table["AC"] = [P(<eos>), P(A), P(B), P(C)]."""

    def __init__(self, table: dict[str, list[float]], default: list[float]) -> None:
        super().__init__()
        self.table, self.default = table, default

    def begin_decode(self, src: torch.Tensor, src_len: torch.Tensor) -> dict[str, torch.Tensor]:
        B = src.shape[0]
        return {"prefix": torch.zeros(B, MAX_PREFIX, dtype=torch.long),  # (B, MAX_PREFIX)
                "length": torch.zeros(B, dtype=torch.long)}              # (B,)

    def decode(self, tgt: torch.Tensor, state: dict[str, torch.Tensor]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        prefix, length = state["prefix"].clone(), state["length"].clone()
        logits = torch.full((*tgt.shape, len(TOKENS)), -30.0)  # <pad>, <bos>: never
        for b, t in itertools.product(range(tgt.shape[0]), range(tgt.shape[1])):
            if tgt[b, t] != BOS:
                prefix[b, length[b]] = tgt[b, t]
                length[b] += 1
            key = "".join(TOKENS[i] for i in prefix[b, :length[b]].tolist())
            logits[b, t, 2:] = torch.tensor(self.table.get(key, self.default)).log()
        return logits, {"prefix": prefix, "length": length}


def show(tokens: list[int]) -> str:
    return " ".join(TOKENS[i] for i in tokens) + " <eos>"


#              P(<eos>)  P(A)  P(B)  P(C)
table = {"":   [0.05,    0.50, 0.40, 0.05],
         "A":  [0.25,    0.05, 0.30, 0.40],
         "AC": [0.45,    0.20, 0.20, 0.15],
         "B":  [0.80,    0.10, 0.05, 0.05]}
toy = TableModel(table, default=[0.70, 0.10, 0.10, 0.10])
src, src_len = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long)  # unused


def prob(model: TableModel, tokens: list[int]) -> float:
    """P(tokens, <eos>) under the model, by teacher forcing."""
    return math.exp(sequence_log_probs(model, src, src_len, [tokens], BOS, EOS)[0])


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 贪心搜索
#
# **贪心搜索**（greedy search）每一步都选当前概率最大的词元：第一步 A（0.5），
# A 之后 C（0.4），AC 之后 `<eos>`（0.45）。它很快，一步只要看一次分布，但每一步的最优凑不成整句的最优：

# %%
greedy = greedy_search(toy, src, src_len, BOS, EOS, max_len=5)[0]
print(f"greedy: {show(greedy)}  P = {prob(toy, greedy):.4f}  (0.5 x 0.4 x 0.45)")
print(f"other:  {show([4])}        P = {prob(toy, [4]):.4f}  (0.4 x 0.8)")
assert greedy == [3, 5] and abs(prob(toy, greedy) - 0.5 * 0.4 * 0.45) < 1e-6

# %% [markdown]
# 第一步选 B 虽然眼前的概率小一点（0.4 < 0.5），B 之后却几乎肯定是 `<eos>`，整句概率 0.32，比贪心的 0.09 大三倍多。
#
# ## 穷举搜索
#
# **穷举搜索**（exhaustive search）把所有句子都算一遍，一定能找到最优，但代价随长度指数增长。
# 玩具词表只有 3 个字母，长度不超过 4 的句子只有 $1 + 3 + 9 + 27 + 81 = 121$ 个，还算得过来：

# %%
def exhaustive(model: TableModel, max_len: int, alpha: float) -> tuple[list[int], float]:
    """The output with the best length-normalised score among all of at most max_len tokens."""
    outputs = [list(tokens) for length in range(max_len + 1)
               for tokens in itertools.product([3, 4, 5], repeat=length)]
    n = len(outputs)
    log_ps = sequence_log_probs(model, src.expand(n, 1), src_len.expand(n), outputs, BOS, EOS)
    scores = [length_normalised(lp, len(o) + 1, alpha) for o, lp in zip(outputs, log_ps,
                                                                         strict=True)]
    best = max(range(n), key=scores.__getitem__)
    return outputs[best], scores[best]


best, best_score = exhaustive(toy, 4, alpha=0.0)
print(f"exhaustive: {show(best)}  log P = {best_score:.4f}  P = {math.exp(best_score):.4f}")
assert best == [4]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 束搜索
#
# **束搜索**（beam search）在两者之间：每一步保留概率（累计对数概率）最大的 $k$ 个前缀，
# $k$ 叫**束宽**（beam size）。下一步把这 $k$ 个前缀各接上每一个词元，从 $k|\mathcal{Y}|$ 个候选里再挑 $k$ 个。
# 接上 `<eos>` 的候选就是一句完整的输出，放到"已完成"里。$k=1$ 就是贪心搜索，$k$ 无穷大就是穷举。
#
# `dlcamp.models.decoding.beam_search` 的做法：

# %%
print(inspect.getsource(beam_search).split('"""')[1])

# %% [markdown]
# 束宽 2 时：第一步留下 A（0.5）和 B（0.4）；第二步的候选里 B `<eos>`（0.32）排第一，完成；
# AC（0.2）和 AB（0.15）留下；第三步 AB `<eos>`（0.105）和 AC `<eos>`（0.09）完成。
# 已完成的句子够 2 个，停止，按分数排序：

# %%
for k in (1, 2):
    found = beam_search(toy, src, src_len, BOS, EOS, beam_size=k, max_len=5)
    print(f"beam size {k}:", ", ".join(f"{show(t)} (score {s:.3f})" for t, s in found))
beam2 = beam_search(toy, src, src_len, BOS, EOS, beam_size=2, max_len=5)
assert beam2[0][0] == [4]  # beam search finds what greedy search missed
assert beam_search(toy, src, src_len, BOS, EOS, beam_size=1, max_len=5)[0][0] == greedy

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 长度归一化
#
# 每多一个词元，整句概率就要再乘一个小于 1 的数，所以按概率比，短句天然占便宜，
# 最极端的是第一步就输出 `<eos>` 的空译文。束搜索的分数因此用**长度归一化**（length normalisation）
# 的对数概率（d2l 式 10.8.4；$L$ 计入 `<eos>`，书里取 $\alpha = 0.75$）：
#
# $$\frac{1}{L^\alpha} \log P(y_1, \ldots, y_L \mid \mathbf{x}).$$

# %%
print(inspect.getsource(length_normalised))

# %% [markdown]
# 第二张表：第一步就结束的概率是 0.3；另一条路 A B C `<eos>` 每一步都很确定，最后一步却只有 0.4，整句约 0.25。
# 只看概率（$\alpha = 0$），空译文胜出；$\alpha = 0.75$ 时，长的那句胜出。穷举搜索在两种打分下都同意束搜索的结果：

# %%
long_table = {"":    [0.30, 0.68, 0.01, 0.01],
              "A":   [1e-4, 0.01, 0.9699, 0.02],
              "AB":  [1e-4, 0.01, 0.02, 0.9699],
              "ABC": [0.40, 0.20, 0.20, 0.20]}
toy2 = TableModel(long_table, default=[0.01, 0.33, 0.33, 0.34])
winners = {}
for alpha in (0.0, 0.75):
    found = beam_search(toy2, src, src_len, BOS, EOS, beam_size=2, max_len=6, alpha=alpha)
    winners[alpha] = found[0][0]
    print(f"alpha {alpha}: " + ", ".join(f"{show(t)} (score {s:.3f})" for t, s in found))
    assert found[0][0] == exhaustive(toy2, 4, alpha)[0]
assert winners[0.0] == [] and winners[0.75] == [3, 4, 5]

# %% [markdown]
# 注意束搜索不保证找到最优：它可能在早期就把最终最好的前缀丢掉了。
# 束宽越大越不容易错过，代价是每一步要算 $k$ 倍的解码器。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在翻译模型上比较
#
# 训练一个 GRU 序列到序列模型（7.02；快速模式只训练几十步），然后用贪心搜索和束宽 4 的束搜索翻译测试集的前几句，
# 比较两者找到的句子在模型下的概率（都用长度归一化的分数比较）。

# %%
run = translation_run("seq2seq", "translation-zh", quick=QUICK, seconds=None if QUICK else 150,
                      curves=not QUICK)
tgt = run.loaders.tgt_codec
pairs = run.loaders.test_pairs[:6 if QUICK else 20]  # the first ones in the split's fixed order
src_b, len_b, _ = run.translator.encode([p.src for p in pairs])
greedy_out = greedy_search(run.model, src_b, len_b, tgt.bos, tgt.eos, max_len=40)
beam1_out, beam4_out, beam4_scores = [], [], []
for i in range(len(pairs)):
    one_src, one_len = src_b[i:i + 1, :int(len_b[i])], len_b[i:i + 1]
    beam1_out.append(beam_search(run.model, one_src, one_len, tgt.bos, tgt.eos, 1, 40)[0][0])
    tokens, score = beam_search(run.model, one_src, one_len, tgt.bos, tgt.eos, 4, 40)[0]
    beam4_out.append(tokens)
    beam4_scores.append(score)
greedy_scores = [length_normalised(lp, len(o) + 1, 0.75) for o, lp in zip(
    greedy_out, sequence_log_probs(run.model, src_b, len_b, greedy_out, tgt.bos, tgt.eos),
    strict=True)]
for p, g, b, gs, bs in list(zip(pairs, greedy_out, beam4_out, greedy_scores, beam4_scores,
                                strict=True))[:5]:
    print(f"EN     {p.src}\nREF    {p.tgt}\ngreedy {tgt.decode(g)}  ({gs:.3f})\n"
          f"beam 4 {tgt.decode(b)}  ({bs:.3f})\n")
better = sum(bs >= gs - 1e-5 for gs, bs in zip(greedy_scores, beam4_scores, strict=True))
print(f"beam 4 scores at least as well as greedy on {better} of {len(pairs)} sentences")

# %% [markdown]
# 束搜索几乎总能找到分数不低于贪心的句子（偶尔会更低：它按累计概率剪枝，而最后按归一化分数排序）。
# 分数更高不等于翻译更好：模型本身不准时，更会"搜索"只是更忠实于模型的错误。下一讲用 BLEU 衡量译文的好坏。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 穷举搜索找得到最优，但代价是 $|\mathcal{Y}|^L$；贪心搜索每步取最大，快，但会错过整句的最优；
# - 束搜索每步保留 $k$ 个最好的前缀，$k = 1$ 就是贪心搜索；
# - 整句概率偏爱短句，所以用 $\log P / L^\alpha$ 打分（长度归一化）；
# - 搜索的计算量：贪心每步一次解码器，束搜索每步 $k$ 倍（这里逐句做束搜索，贪心则整批一起做）。
#
# 自测：束宽为 $k$、词表大小为 $|\mathcal{Y}|$、输出长 $L$ 时，束搜索要比较多少个候选？
# 把玩具第一张表里 P(B) 改成 0.2，贪心搜索和束搜索的结果会变吗？

# %%
assert beam1_out == greedy_out  # beam size 1 is greedy search, sentence by sentence
assert better >= len(pairs) // 2  # beam search usually finds higher-scoring outputs
assert all(len(o) <= 40 for o in beam4_out)
print(f"lesson 7.03 done: greedy {show(greedy)} (P 0.09) vs beam {show(beam2[0][0])} (P 0.32); "
      f"beam >= greedy on {better}/{len(pairs)} translations")
