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
#     title: 语言模型和数据集（language models and the dataset）
#     title_en: Language models and the dataset
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 语言模型和数据集（language models and the dataset）
#
# 上一讲把文本变成了一串词元 $x_1, x_2, \ldots, x_T$。**语言模型**（language model）的任务是给这样一串词元
# 估计概率 $P(x_1, \ldots, x_T)$。有了它，就能判断"床前明月光"比"光月明前床"更像一句诗，
# 也能一个词元一个词元地**生成**文本。
#
# 本讲的内容：用计数估计 n 元语法（n-gram）、齐普夫定律（Zipf's law）、计数方法为什么行不通、
# 衡量语言模型的指标困惑度（perplexity），以及训练时怎样从长长的语料里切出小批量。

# %%
import collections
import inspect
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import unigram_perplexity
from dlcamp.text import (
    SeqDataLoader,
    corpus_text,
    make_text_loaders,
    perplexity,
    seq_data_iter_random,
    seq_data_iter_sequential,
    tokenize,
)

QUICK = is_quick()  # 快速模式：英文名言只数前 10 万个词；唐诗部分两种模式完全一样

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用链式法则拆开
#
# 按概率的链式法则（chain rule），一串词元的联合概率可以拆成一个个"已知前文，下一个是谁"的条件概率：
#
# $$P(x_1, x_2, \ldots, x_T) = \prod_{t=1}^{T} P(x_t \mid x_1, \ldots, x_{t-1})$$
#
# 例如 $P(\text{床前明月}) = P(\text{床})\,P(\text{前} \mid \text{床})\,P(\text{明} \mid \text{床前})\,
# P(\text{月} \mid \text{床前明})$。所以语言模型只要学会一件事：**根据前文预测下一个词元**。
# 生成文本时，就从这个条件分布里抽一个词元，接到前文后面，再预测下一个。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 马尔可夫假设与 n 元语法
#
# 前文越长，条件概率越难估计。**马尔可夫假设**（Markov assumption）只看最近的 $n-1$ 个词元：
#
# $$P(x_t \mid x_1, \ldots, x_{t-1}) \approx P(x_t \mid x_{t-n+1}, \ldots, x_{t-1})$$
#
# $n = 1, 2, 3$ 分别叫一元、二元、三元语法（unigram、bigram、trigram）。最简单的估计方法是在语料里**数数**：
#
# $$\hat{P}(x_t \mid x_{t-1}) = \frac{n(x_{t-1}, x_t)}{n(x_{t-1})}$$
#
# 其中 $n(\cdot)$ 是某个（或某对）词元在语料里出现的次数。下面数唐诗（按字）和英文名言（按小写的词）
# 里的一元、二元、三元语法。n 元组只在一条记录内部数，不跨越两首诗。

# %%
def count_ngrams(lines: list[list[str]], n: int) -> collections.Counter:
    """How often each run of n consecutive tokens occurs, within each line."""
    counter = collections.Counter()
    for tokens in lines:
        counter.update(zip(*(tokens[i:] for i in range(n)), strict=False))
    return counter


tang_lines = tokenize(corpus_text("tang300", "train"), "char")  # one list per poem
en_lines = tokenize(corpus_text("quotes-en", "train"), "word", lower=True)
if QUICK:  # keep the first 100,000 words
    ends = np.cumsum([len(line) for line in en_lines])
    en_lines = en_lines[:int(np.searchsorted(ends, 100_000)) + 1]
tang = {n: count_ngrams(tang_lines, n) for n in (1, 2, 3)}
en = {n: count_ngrams(en_lines, n) for n in (1, 2, 3)}
for n in (1, 2, 3):
    print(f"{n}-gram  Tang:", ["".join(g) for g, _ in tang[n].most_common(6)])
    print(f"{n}-gram  English:", [" ".join(g) for g, _ in en[n].most_common(4)])

# %% [markdown]
# 唐诗里最常见的一元语法是逗号和句号，二元语法常常是"逗号 + 下一句的第一个字"，
# 三元语法里出现了"万里""天涯""青山""春风"这些诗里常见的意象。英文则是 the、of、to 这类虚词。
# 用计数估计一个条件概率，比如"明"字后面跟"月"的概率：

# %%
p_moon = tang[2][("明", "月")] / tang[1][("明",)]
print(f"n(明月) = {tang[2][('明', '月')]}, n(明) = {tang[1][('明',)]}, P(月 | 明) = {p_moon:.2f}")
after_ming = {g[1]: c for g, c in tang[2].items() if g[0] == "明"}
print("after 明:", sorted(after_ming.items(), key=lambda kv: -kv[1])[:6])
assert 0 < p_moon < 1 and tang[2][("明", "月")] == after_ming["月"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 齐普夫定律（Zipf's law）
#
# 把词元按出现次数从多到少排序，第 $i$ 名的次数 $n_i$ 大致服从
#
# $$\log n_i = -\alpha \log i + c$$
#
# 也就是在双对数坐标里是一条直线，斜率是 $-\alpha$。书里在英文小说上观察到，
# 单词近似服从这个规律，二元、三元语法也一样，只是斜率更平。在我们的语料上画一画：

# %%
def ranked(counter: collections.Counter) -> np.ndarray:
    """Frequencies, largest first."""
    return np.array(sorted(counter.values(), reverse=True), dtype=float)


def zipf_slope(counter: collections.Counter, lo: int = 10, hi: int = 1000) -> float:
    """Slope of log frequency against log rank, fitted over ranks lo..hi."""
    freqs = ranked(counter)[lo - 1:hi]
    ranks = np.arange(lo, lo + len(freqs))
    return float(np.polyfit(np.log(ranks), np.log(freqs), 1)[0])


fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
slopes = {}
for ax, (title, counts) in zip(axes, (("Tang poems, characters", tang),
                                      ("English quotes, words", en)), strict=True):
    for n, counter in counts.items():
        slopes[title, n] = zipf_slope(counter)
        freqs = ranked(counter)
        ax.loglog(np.arange(1, len(freqs) + 1), freqs,
                  label=f"{n}-gram (slope {slopes[title, n]:.2f})")
    ax.set(title=title, xlabel="rank")
    ax.legend()
axes[0].set_ylabel("frequency")
fig.tight_layout()
plt.show()
for (title, n), slope in slopes.items():
    print(f"{title:24s} {n}-gram: slope {slope:.2f} over ranks 10-1000")

# %% [markdown]
# 斜率都是负的，而且一元 > 二元 > 三元（按绝对值）：n 越大，分布越"平"、越长尾。
# 拿中文的字和英文的词比：英文词的一元语法斜率接近经典的 $-1$，唐诗的字更平一些。
# 这和两种词元的性质有关：常用汉字只有几千个，一个字可以出现在许多不同的词里；
# 英文的词却几乎无穷无尽，新的词（以及粘着标点的写法）不断出现。同样长度的文本里数一数不同词元的种数：

# %%
n_tang = sum(tang[1].values())
first_words = [w for line in en_lines for w in line][:n_tang]
print(f"in the first {n_tang:,} tokens: {len(tang[1]):,} distinct Tang characters, "
      f"{len(set(first_words)):,} distinct English words")
assert all(slope < 0 for slope in slopes.values())
for title in ("Tang poems, characters", "English quotes, words"):
    assert slopes[title, 1] < slopes[title, 2] < slopes[title, 3]
assert len(set(first_words)) > len(tang[1])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 计数方法的困境：稀疏
#
# 长尾意味着绝大多数 n 元组只出现过一两次。更糟的是，验证集里的 n 元组很多在训练集里**从没出现过**，
# 计数给它们的概率是 0。n 越大，这个问题越严重：

# %%
val_lines = tokenize(corpus_text("tang300", "val"), "char")
unseen = {}
for n in (1, 2, 3):
    once = sum(1 for c in tang[n].values() if c == 1) / len(tang[n])
    val_counts = count_ngrams(val_lines, n)
    unseen[n] = sum(c for g, c in val_counts.items() if g not in tang[n]) / sum(val_counts.values())
    print(f"{n}-gram: {len(tang[n]):6,d} distinct in train, {once:.0%} of them seen once; "
          f"{unseen[n]:.0%} of the val {n}-grams never seen in train")
assert unseen[1] < unseen[2] < unseen[3]

# %% [markdown]
# 唐诗验证集里的三元组绝大多数在训练集里没见过。
# 常见的补救办法是**平滑**（smoothing），比如给每个计数都加 1（拉普拉斯平滑，Laplace smoothing），
# 但它只是把一点概率平均撒给所有没见过的组合，并不知道哪些组合更合理。
# 计数方法的根本问题是：它把"明月"和"明日"看成毫不相干的两件事，不能从相似的字那里借用统计信息，
# 还要把所有 n 元组都存下来。下面几讲的**神经网络语言模型**用向量表示词元、用隐状态概括前文，
# 正是为了解决这些问题。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 困惑度（perplexity）
#
# 怎样比较两个语言模型？好的模型给真实出现的下一个词元更高的概率。在一段 $n$ 个词元的文本上，
# 取每个词元的负对数似然（negative log-likelihood）的平均值，也就是交叉熵损失：
#
# $$\frac{1}{n} \sum_{t=1}^{n} -\log P(x_t \mid x_{t-1}, \ldots, x_1)$$
#
# 它的指数就是**困惑度**：
#
# $$\mathrm{PPL} = \exp\left(-\frac{1}{n} \sum_{t=1}^{n} \log P(x_t \mid x_{t-1}, \ldots, x_1)\right)$$
#
# 困惑度可以理解为"模型平均在多少个词元之间犹豫"：完美的模型每次都给正确答案概率 1，困惑度是 1；
# 在 $V$ 个词元里均匀地猜，困惑度是 $V$。`perplexity` 就是这个指数：

# %%
print(inspect.getsource(perplexity))
uniform_nll = -math.log(1 / 10)  # every token gets probability 1/10
print(perplexity(uniform_nll), perplexity(0.0))
assert math.isclose(perplexity(uniform_nll), 10) and perplexity(0.0) == 1.0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 基线：加一平滑的一元语法
#
# 最简单的语言模型完全不看前文，只按每个字在训练集里的频率猜：
#
# $$\hat{P}(x) = \frac{n(x) + 1}{N + V}$$
#
# 其中 $N$ 是训练集的词元数，$V$ 是词表大小；加 1 保证验证集里的 `<unk>`（训练集里从没出现）
# 也有一点概率。数据用 `make_text_loaders` 给出的编号：词表只从训练集建立，
# 换行符 `\n` 也是词元，和后面训练循环神经网络时完全一样。这个困惑度就是循环神经网络必须打败的**基线**，
# 后面的课用 `dlcamp.course.lm.unigram_perplexity` 算它，和这里的三行代码一样：

# %%
data = make_text_loaders("tang300")  # full corpus: the data the RNN lessons train on
train_ids, val_ids = data.train.corpus, data.val.corpus  # (N,), (M,)
V = len(data.vocab)
counts = torch.bincount(train_ids, minlength=V).double() + 1  # add-one
unigram_nll = -torch.log(counts / counts.sum())[val_ids].mean().item()
unigram_ppl = perplexity(unigram_nll)
print(f"vocabulary {V:,}; train {len(train_ids):,} tokens; val {len(val_ids):,} tokens")
print(f"uniform guess: perplexity {V:,}")
print(f"add-one unigram on tang300 val: perplexity {unigram_ppl:.1f}")
assert 1 < unigram_ppl < V
assert math.isclose(unigram_perplexity(train_ids, val_ids, V), unigram_ppl)  # the package's

# %% [markdown]
# 同样加一平滑的二元语法呢？按理说看了前一个字，应该猜得更准：

# %%
pair_ids = train_ids[:-1] * V + train_ids[1:]  # (N-1,) one id per bigram
pair_counts = torch.bincount(pair_ids, minlength=V * V).double().reshape(V, V) + 1
bigram_p = pair_counts / pair_counts.sum(dim=1, keepdim=True)  # row x: P(. | x)
bigram_nll = -torch.log(bigram_p[val_ids[:-1], val_ids[1:]]).mean().item()
print(f"add-one bigram on tang300 val: perplexity {perplexity(bigram_nll):.1f}")

# %% [markdown]
# 反而更差！每个字后面有 $V$ 种可能的下一个字，而训练集只有两万多个字：
# 加一平滑把大部分概率撒给了从没见过的组合。这又一次说明计数方法在小语料上走不通。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 切出小批量：随机采样
#
# 训练时模型每次读入一批长度为 `num_steps` 的子序列 $X$，目标 $Y$ 是 $X$ 往后挪一个位置：
# 每个位置都要预测下一个词元。一个语料怎样切成这样的小批量？书里给了两种方法，
# 用 0 到 34 这 35 个数当作"语料"、批量大小 2、子序列长度 5 来演示。
#
# **随机采样**（random sampling）：先从 $[0, 5)$ 里随机选一个起点偏移，把语料切成互不重叠的长度为 5 的子序列，
# 再打乱顺序分批。相邻的两个批量在原语料里并不相邻。

# %%
corpus = torch.arange(35)
gen = torch.Generator().manual_seed(0)
random_batches = list(seq_data_iter_random(corpus, batch_size=2, num_steps=5, generator=gen))
for X, Y in random_batches:
    print("X:", X.tolist(), "  Y:", Y.tolist())
starts = torch.cat([X[:, 0] for X, _ in random_batches])
assert all(torch.equal(Y, X + 1) for X, Y in random_batches)  # Y is X shifted by one
assert len(set(starts.tolist())) == len(starts)  # no subsequence twice
assert len(set((starts % 5).tolist())) == 1  # one offset, then steps of num_steps

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 切出小批量：顺序分区
#
# **顺序分区**（sequential partitioning）：把语料切成 `batch_size` 条连续的长行，每次从每一行读下一段。
# 于是第 $i+1$ 个批量的第 $j$ 行，正好接在第 $i$ 个批量的第 $j$ 行后面：

# %%
gen = torch.Generator().manual_seed(0)
seq_batches = list(seq_data_iter_sequential(corpus, batch_size=2, num_steps=5, generator=gen))
for X, Y in seq_batches:
    print("X:", X.tolist(), "  Y:", Y.tolist())
for (X0, _), (X1, _) in itertools.pairwise(seq_batches):
    assert torch.equal(X1[:, 0], X0[:, -1] + 1)  # each row continues where it stopped
assert all(torch.equal(Y, X + 1) for X, Y in seq_batches)

# %% [markdown]
# 两者的区别对循环神经网络很重要：顺序分区时，上一个批量结束时的隐状态正好可以作为下一个批量的起点；
# 随机采样时则必须从零开始。`SeqDataLoader` 把这个信息放在第三个返回值 `fresh` 里：
# 随机采样时每个批量都是 `True`，顺序分区时只有每轮（epoch）的第一个批量是 `True`。
# 每一轮的起点偏移（和随机采样的顺序）由 `seed` 和轮次决定，`set_epoch` 换一轮：

# %%
for random in (True, False):
    loader = SeqDataLoader(corpus, batch_size=2, num_steps=5, random=random, seed=0)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = list(loader)
        print(f"random={random!s:5s} epoch {epoch}: first X {batches[0][0].tolist()}, "
              f"fresh {[bool(f) for _, _, f in batches]}")
        fresh = [bool(f) for _, _, f in batches]
        assert fresh == ([True] * len(batches) if random else [True] + [False] * (len(batches) - 1))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 真实语料上的小批量
#
# `make_text_loaders` 把这些步骤连起来：读语料、建词表、编码，再交给 `SeqDataLoader`。
# 书里的设置是批量大小 32、子序列长度 35。看看唐诗训练集的第一个批量里的一行：

# %%
data = make_text_loaders("tang300", batch_size=32, num_steps=35, random=False)
X, Y, fresh = next(iter(data.train))
print(X.shape, Y.shape, bool(fresh), f"{len(data.train)} batches per epoch")
print("X[0]:", "".join(data.vocab.to_tokens(X[0])).replace("\n", "⏎"))
print("Y[0]:", "".join(data.vocab.to_tokens(Y[0])).replace("\n", "⏎"))
assert X.shape == Y.shape == (32, 35) and torch.equal(Y[:, :-1], X[:, 1:])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 语言模型用链式法则把序列的概率拆成"根据前文预测下一个词元"；n 元语法只看前 $n-1$ 个词元，用计数估计；
# - 词元频率服从齐普夫定律，长尾让 n 元语法的计数非常稀疏，n 越大越严重；
# - 困惑度是平均负对数似然的指数，越小越好；唐诗上加一平滑的一元语法困惑度是后面模型的基线；
# - 小批量可以随机采样（每批的隐状态从零开始），也可以顺序分区（隐状态可以接着用）。
#
# 自测：如果模型对每个字都给出验证集上"该字出现的频率"作为概率，它的困惑度会比加一平滑的一元语法更低吗？
#
# 最后用断言检查本讲的要点：

# %%
assert sum(tang[1].values()) == sum(len(line) for line in tang_lines)
assert sum(tang[2].values()) == sum(len(line) - 1 for line in tang_lines)
assert math.isclose(perplexity(math.log(7.0)), 7.0)  # even odds over 7 tokens
assert 1 < unigram_ppl < V and slopes["Tang poems, characters", 1] < 0
for X, Y, _ in data.train:
    assert torch.equal(Y[:, :-1], X[:, 1:])
print(f"lesson 3.02 done: add-one unigram perplexity on tang300 val = {unigram_ppl:.1f} "
      f"(uniform: {V})")
