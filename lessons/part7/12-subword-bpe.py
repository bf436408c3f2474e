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
#     title: 子词与字节对编码（subword, BPE）
#     title_en: Subwords and byte-pair encoding
#     minutes:
#       quick: 0.1
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 子词与字节对编码（subword, BPE）
#
# 翻译模型的输出层要给词表里的每个词元打分。词元该切多大？
#
# - 按**词**（word）切：法语的 "fichier"、"fichiers"、"Fichier" 是三个互不相干的词元，词表很大，
#   而且总有训练时没见过的词，只能记成 `<unk>`，这叫**未登录词**（out-of-vocabulary，OOV）问题；
# - 按**字符**（character）切：没有未登录词，可序列变得很长，模型要自己从字母拼出词义；
# - 按**子词**（subword）切：常见的词整个做一个词元，少见的词拆成几个常见的片段
#   （"ré" + "initialiser"）。词表大小可以事先定好，几乎没有未登录词。
#
# **字节对编码**（byte-pair encoding，BPE）是最常用的子词算法（Sennrich 等，2016）。
# 本讲从零写出 BPE，检查它和 Hugging Face 的 `tokenizers` 库得到完全相同的结果，
# 最后看看我们的英法翻译实际用的法语编解码器（codec）。

# %%
import collections
import time

from dlcamp.core.utils import is_quick
from dlcamp.course.subword import (
    apply_bpe,
    learn_bpe,
    pair_counts,
    tokenize,
    tokenizers_bpe,
    word_counts,
)
from dlcamp.text.codecs import build_codec, codec_from_dict, word_tokens
from dlcamp.text.translation import load_pairs

QUICK = is_quick()  # 快速模式：从零的 BPE 只在几百个法语句子上学习

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 词表有多大，未登录词有多少
#
# 数据是 `translation-fr`：Debian 软件包里界面文字的英法对照（见 `dlcamp.text.translation`）。
# 用训练集的法语句子建一个按词的词表，再数一数验证集里有多少词没见过：

# %%
fr_train = [p.tgt for p in load_pairs("translation-fr", "train")]
fr_val = [p.tgt for p in load_pairs("translation-fr", "val")]
train_words = collections.Counter(w for s in fr_train for w in word_tokens(s))
val_words = [w for s in fr_val for w in word_tokens(s)]
oov = sum(w not in train_words for w in val_words) / len(val_words)
print(f"{len(fr_train):,} training sentences, {len(train_words):,} distinct (lowercased) words")
print(f"{oov:.1%} of the {len(val_words):,} val words never occur in training")
assert len(train_words) > 10_000 and oov > 0.01

# %% [markdown]
# 近两万个不同的词，验证集里仍有约百分之二的词是训练时没见过的，而且多半是最有信息量的那些
# （专有名词、术语、少见的变位）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 算法：反复合并最常见的相邻符号对
#
# BPE 的输入是一张**词频表**：先把文本切成词（这里和 `tokenizers` 的 `Whitespace`
# 预切分器一样，连续的字母数字算一个词，连续的标点算一个词），数出每个词出现几次。
#
# 1. 每个词先拆成单个字符；词表 = 特殊词元 `[UNK]` + 所有出现过的字符（按码位排序）；
# 2. 统计所有相邻**符号对**（symbol pair）的次数，每个词按它的词频加权；
# 3. 把次数最多的一对合并成一个新符号，加入词表，记下这条**合并规则**（merge）；
#    回到第 2 步，直到词表达到指定大小。次数相同时，取（左编号，右编号）最小的那一对。
#
# 在一个玩具语料上走几步：

# %%
toy = ["low lower lowest newer newest wider widest",
       "the newest fast faster fastest tall taller tallest"] * 3 + ["slow slower snow"]
counts = word_counts(toy)
print(dict(counts))
start = {tuple(w): n for w, n in counts.items()}
top = pair_counts(start).most_common(4)
print("most frequent pairs at the start:", top)
log = []
toy_bpe = learn_bpe(counts, vocab_size=40, log=log)
for k, (pair, n) in enumerate(log[:8], 1):
    print(f"merge {k}: {pair[0]!r} + {pair[1]!r} -> {pair[0] + pair[1]!r}  ({n} times)")
print(len(toy_bpe.merges), "merges; vocabulary:", list(toy_bpe.vocab)[-12:], "...")
assert log[0] == (("s", "t"), 27) and log[1] == (("e", "st"), 18) and len(toy_bpe.vocab) == 40

# %% [markdown]
# 第一条规则是 "s"+"t"，27 次：lowest、widest、fast、faster、tallest 各 3 次，newest 6 次，
# 而 fastest 里 "st" 出现了两次（fa**st**e**st**），算 2 × 3 = 6 次。一个符号对在一个词里出现几次就算几次。
# 合并之后 "e"+"st" 成了最常见的一对，于是有了 "est"；往后常见的词尾、词根（"er"、"low"）
# 一个个长出来，词表到 40 个就停下。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用学到的规则切新词
#
# 切一个新词：先拆成字符（没见过的字符记成 `[UNK]`），然后在词里找**最早学到**的那条规则能合并的符号对，
# 合并它（从左到右，所有出现处），重复到没有规则可用。规则的顺序就是它们的优先级。

# %%
for word in ["lowering", "tallest", "newly", "slowest", "fastidious"]:
    print(f"{word:12s} -> {apply_bpe(word, toy_bpe)}")
assert apply_bpe("tallest", toy_bpe) == ["tallest"]
assert apply_bpe("newly", toy_bpe)[-1] == "[UNK]"  # "y" never occurs in the toy corpus

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 `tokenizers` 对比
#
# `tokenizers_bpe` 用同样的设置训练库里的 BPE（`models.BPE` + `BpeTrainer`，`Whitespace` 预切分）。
# 合并规则、词表编号、新词的切法都应该一模一样：

# %%
lib_bpe, lib_tokenizer = tokenizers_bpe(toy, vocab_size=40)
print("library merges:", lib_bpe.merges[:6])
held_out = ["lowering", "tallest", "newly", "slowest", "fastidious", "snowier"]
for word in held_out:
    assert apply_bpe(word, toy_bpe) == lib_tokenizer.encode(word).tokens, word
assert toy_bpe.merges == lib_bpe.merges and toy_bpe.vocab == lib_bpe.vocab

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在真实的法语句子上
#
# 同样的比较放到法语界面文字上。从零的实现每合并一次都把所有符号对重新数一遍，
# 库用 Rust 增量更新计数，快得多；但结果必须相同：

# %%
n_sentences, vocab_size = (200, 250) if QUICK else (2000, 800)
sample = fr_train[:n_sentences]
t0 = time.perf_counter()
ours = learn_bpe(word_counts(sample), vocab_size)
t1 = time.perf_counter()
theirs, fr_tokenizer = tokenizers_bpe(sample, vocab_size)
t2 = time.perf_counter()
print(f"{n_sentences} sentences, {len(ours.merges)} merges: from scratch {t1 - t0:.2f} s, "
      f"tokenizers {t2 - t1:.3f} s")
longest = sorted(ours.vocab, key=len)[-8:]
print("longest learnt subwords:", longest)
checked = fr_val[:200]
same = sum(tokenize(s, ours) == fr_tokenizer.encode(s).tokens for s in checked)
print(f"same pieces for {same} of {len(checked)} val sentences; e.g. {tokenize(fr_val[0], ours)}")
assert ours.merges == theirs.merges and ours.vocab == theirs.vocab and same == len(checked)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 翻译用的法语编解码器
#
# 翻译模型的法语一侧用 `tokenizers` 的 BPE（词表 4000），再加两处改动：
#
# - 空格不丢：**Metaspace** 预切分把空格变成下一个词开头的 "▁"，解码时再换回空格，所以解码得到的句子和原句
#   一字不差（句首的词前面没有空格，也就没有 "▁"；上面的 `Whitespace` 切法丢掉了空格，只能用来比较算法）；
# - 特殊词元编号固定：0 `<unk>`、1 `<pad>`、2 `<bos>`、3 `<eos>`，然后是占位符 `<ph1>` … `<ph9>`
#   （界面文字里的 `%s`、`{0}` 等，清洗时换成了占位符），它们永远是一个完整的词元。
#
# `dlcamp.text.codecs.build_codec("bpe", 训练句子)` 就是 `make_translation_loaders("translation-fr")` 里建的那个：

# %%
codec = build_codec("bpe", fr_train[:5000] if QUICK else fr_train)
print(codec, "ids 0-5:", codec.vocab.to_tokens([0, 1, 2, 3, 4, 5]))
for sentence in [fr_val[1], fr_val[2], "Impossible d'ouvrir le fichier <ph1>"]:
    ids = codec.encode(sentence)
    print(codec.tokens(sentence))
    assert codec.decode([codec.bos, *ids, codec.eos, codec.pad]) == sentence
pieces = sum(len(codec.encode(s)) for s in fr_val)
words = sum(len(s.split()) for s in fr_val)
chars = sum(len(s) for s in fr_val)
print(f"val: {words:,} words -> {pieces:,} BPE pieces ({pieces / words:.2f} per word), "
      f"{chars:,} characters")
again = codec_from_dict(codec.to_dict())  # what a checkpoint stores: the tokenizer as JSON
assert again.encode(fr_val[0]) == codec.encode(fr_val[0])

# %% [markdown]
# 每个法语词平均切成一到两个片段：序列比按字符短得多，词表却只有四千。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 子词介于字符和词之间：常见词是一个词元，罕见词拆成常见片段，几乎没有未登录词；
# - BPE 从字符出发，反复合并按词频加权后最常见的相邻符号对；新词按规则的先后顺序合并；
# - 我们的实现和 `tokenizers` 给出相同的合并规则、词表和切分结果（包括并列时的取舍）；
# - 翻译用的法语编解码器是 4000 个词元的 BPE，用 "▁" 记住空格，解码与原句逐字相同。
#
# 自测：如果训练语料里 "ab" 和 "a"+"b" 次数一样多，规则顺序会怎样影响新词 "aab" 的切法？
# 中文为什么用字作词元就够了，还需要 BPE 吗？
#
# 最后用断言检查本讲的要点：

# %%
tiny = learn_bpe({"aaab": 2, "ab": 3}, vocab_size=100)
assert tiny.merges == [("a", "b"), ("a", "a"), ("aa", "ab")]
assert apply_bpe("aaaab", tiny) == ["aa", "a", "ab"]  # a+b first, then a+a from the left
assert codec.decode(codec.encode(fr_val[3])) == fr_val[3]
assert codec.tokens("<ph1> fichiers")[0] == "<ph1>"
print("lesson 7.12 done: BPE written out, equal to tokenizers, and the French codec")
