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
#     title: 评价翻译：BLEU
#     title_en: Evaluating translations - BLEU
#     minutes:
#       quick: 0.1
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 评价翻译：BLEU
#
# 分类器对就是对、错就是错，准确率一目了然。翻译没有唯一的正确答案："Open file" 可以是"打开文件"，
# 也可以是"打开档案"。请人逐句打分又贵又慢，所以需要一个自动的指标。
#
# 最常用的是 **BLEU**（bilingual evaluation understudy；Papineni 等，2002）：
# 数一数机器译文里有多少个 1 个词元、2 个词元、……、4 个词元的片段（**n 元语法**，n-gram）
# 也出现在人工的**参考译文**（reference translation）里，再惩罚过短的译文。
#
# 本讲从零写出 BLEU（`dlcamp.course.bleu`），一步一步和 `sacrebleu`（机器翻译论文报告 BLEU 的标准工具）对照，
# 然后看书里的句子级公式差在哪里，最后给上一讲训练的翻译模型打分。

# %%
import inspect
import math

import sacrebleu

from dlcamp.core.utils import is_quick
from dlcamp.course.bleu import (
    bleu,
    book_sentence_bleu,
    brevity_penalty,
    clipped_matches,
    corpus_stats,
    ngrams,
    sacrebleu_inputs,
    score_stats,
    sentence_stats,
    zh_chars,
)
from dlcamp.course.translate import bleu_tokens, translate_all, translation_run

QUICK = is_quick()  # 快速模式：翻译模型只训练几十步（译文很差，但 BLEU 的算法一样）

# %% [markdown] slideshow={"slide_type": "slide"}
# ## n 元语法的精度和"截断"
#
# 设候选译文（candidate）有 $c$ 个词元。它的 $n$ 元语法**精度**（precision）$p_n$
# 是它的 n 元语法里有多少个也出现在参考译文中，除以它的 n 元语法总数。
#
# 直接这样数有个漏洞：候选译文把"的"重复七遍，每一个"的"都能在参考译文里找到，精度就是 100%。
# 所以要**截断**（clipping）：同一个 n 元语法最多只算它在参考译文里出现的次数。
# 这叫**修正的 n 元语法精度**（modified n-gram precision）。

# %%
reference = zh_chars("打开当前的文件的副本")
candidate = zh_chars("的的的的的的的")
print("1-grams of the reference:", dict(ngrams(reference, 1)))
matched, total = clipped_matches(candidate, [reference], 1)
print(f"clipped unigram precision of {''.join(candidate)!r}: {matched}/{total}")
assert (matched, total) == (2, 7)  # "的" occurs twice in the reference
print(inspect.getsource(clipped_matches))

# %% [markdown]
# 有多个参考译文时，一个 n 元语法最多算它在**某一个**参考译文里出现的最多次数（`most |= ...`
# 是按元素取最大值）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 简短惩罚和几何平均
#
# 只看精度，只译出一两个最有把握的字就能得高分。BLEU 用**简短惩罚**（brevity penalty）对付它：
# 候选译文总长 $c$ 小于参考译文总长 $r$ 时乘上 $e^{1 - r/c}$，否则乘 1。
# 有多个参考译文时，$r$ 取长度最接近候选译文的那个（一样近时取短的）。
#
# $$\text{BLEU} = \text{BP} \cdot \exp\Big(\sum_{n=1}^{N} \tfrac{1}{N} \log p_n\Big), \qquad
#   \text{BP} = \min\big(1, e^{1 - r/c}\big),\quad N = 4.$$
#
# 指数里是四个精度的**几何平均**（geometric mean）：任何一个 $p_n$ 为 0，BLEU 就是 0。
# 手算一个例子：候选 "a b c x d"，参考 "a b c d e f"。

# %%
cand, ref = "a b c x d".split(), "a b c d e f".split()
for n in range(1, 5):
    print(n, "-grams: matched/total =", clipped_matches(cand, [ref], n))
by_hand = brevity_penalty(5, 6) * math.exp(sum(math.log(p) for p in (4 / 5, 2 / 4, 1 / 3)) / 3)
ours = bleu([cand], [[ref]], max_n=3, smooth="none")
bleu3 = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", max_ngram_order=3)
theirs = bleu3.corpus_score(["a b c x d"], [["a b c d e f"]])
print(f"BLEU-3 by hand {by_hand:.6f}  ours {ours:.6f}  sacrebleu {theirs.score:.4f} (x100)")
assert abs(ours - by_hand) < 1e-12 and abs(100 * ours - theirs.score) < 1e-6

# %% [markdown]
# `sacrebleu` 报告的是 0 到 100 的分数，我们的是 0 到 1。
# 用到 4 元语法时这个例子没有一个 4 元语法对上，不平滑的 BLEU-4 就是 0：

# %%
print("BLEU-4, no smoothing:", bleu([cand], [[ref]], smooth="none"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 平滑
#
# 整个测试集上 4 元语法总能对上一些，零精度很少见；单个短句就常常是 0 了。
# **平滑**（smoothing）给零计数一个小的代替值。`sacrebleu` 默认的 "exp"（mteval-v13a.pl 的做法）
# 把第 $k$ 个出现零匹配的阶的精度设为 $1/(2^k \cdot \text{总数})$；"floor" 把零匹配数换成 0.1。
# 另外两条规则和 `sacrebleu` 一致：**一个 n 元语法都没对上**时不管怎样平滑都是 0；
# 候选译文都短于 n 个词元（没有 n 元语法）时也是 0，除非只对出现了的阶取平均（`effective_order`）。

# %%
for smooth in ("none", "floor", "exp"):
    ours = bleu([cand], [[ref]], smooth=smooth)
    theirs = sacrebleu.corpus_bleu(["a b c x d"], [["a b c d e f"]], tokenize="none",
                                   smooth_method=smooth).score
    print(f"{smooth:5s}  ours {100 * ours:8.4f}   sacrebleu {theirs:8.4f}")
    assert abs(100 * ours - theirs) < 1e-6

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 语料级 BLEU 不是句子 BLEU 的平均
#
# 论文里报告的是**语料级**（corpus-level）BLEU：先把所有句子的匹配数、n 元语法总数、长度各自加起来，
# 最后算一次。`corpus_stats` 返回的就是这些加总的**充分统计量**（sufficient statistics）：

# %%
cands = [zh_chars("打开文件"), zh_chars("保存")]
refs = [[zh_chars("打开文件")], [zh_chars("另存为")]]
stats = corpus_stats(cands, refs)
print(stats)
corpus = score_stats(stats, smooth="none")
sentences = [score_stats(sentence_stats(c, r), smooth="none").score
             for c, r in zip(cands, refs, strict=True)]
print(f"corpus BLEU {corpus.score:.4f}; sentence BLEUs {sentences}, "
      f"their mean {sum(sentences) / 2:.4f}")
assert corpus.score > 0 and sentences == [1.0, 0.0]

# %% [markdown]
# 第二句一个字都没对上，它的句子 BLEU 是 0；可在语料里它只是让总的精度和简短惩罚变差了一些。
# 平均句子 BLEU 会让短句和长句一样重，语料级 BLEU 则按词元计数，两者一般不同。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 与 sacrebleu 逐一对照
#
# 在几组手写句子上（多个参考译文、长度不一、完全不匹配），三种平滑方式下都和 `sacrebleu` 相等。
# 对照时两边用**同样的词元**：`sacrebleu_inputs` 把词元用空格连起来，
# `tokenize="none"` 让 sacrebleu 只按空格切分。（`tests/test_bleu.py` 还用随机生成的句子对照了几百次。）

# %%
hand = [
    (["the cat sat on mat".split()], [["the cat sat on the mat".split(),
                                       "a cat sat on the mat".split()]]),
    ([["the"] * 7], [[["the", "cat", "is", "on", "the", "mat"]]]),
    ([["x", "y", "z", "w"]], [[["a", "b", "c", "d"]]]),  # nothing matches
    ([zh_chars("请选择一个文件"), zh_chars("无法打开")],
     [[zh_chars("请选择文件"), zh_chars("选择一个文件")], [zh_chars("不能打开"), zh_chars("无法打开")]]),
]
for candidates, references in hand:
    hyps, streams = sacrebleu_inputs(candidates, references)
    for smooth in ("none", "floor", "exp"):
        ours = bleu(candidates, references, smooth=smooth)
        theirs = sacrebleu.corpus_bleu(hyps, streams, tokenize="none", smooth_method=smooth).score
        assert abs(100 * ours - theirs) < 1e-6, (hyps, smooth, ours, theirs)
    print(f"{hyps[0]!r:22s} BLEU (exp smoothing) = {100 * ours:6.2f}, sacrebleu {theirs:6.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 中文：一个字一个词元
#
# 中文没有空格，评价中文译文时通常把每个汉字当作一个词元。`sacrebleu` 的 `tokenize="zh"`
# 正是把每个汉字和中文标点切开（其余部分用它的 13a 规则切分）。对纯中文的句子，
# 我们的 `zh_chars` 和它完全一致；句子里夹着英文单词时，`zh_chars` 会把单词拆成字母，两者就不同了：

# %%
zh_hyps, zh_refs = ["打开文件。", "无法读取文件：权限不足"], ["打开这个文件。", "无法读取该文件：没有权限"]
ours = bleu([zh_chars(h) for h in zh_hyps], [[zh_chars(r)] for r in zh_refs])
theirs = sacrebleu.corpus_bleu(zh_hyps, [zh_refs], tokenize="zh").score
print(f"pure Chinese: ours {100 * ours:.4f}, sacrebleu zh {theirs:.4f}")
assert abs(100 * ours - theirs) < 1e-6
mixed_hyp, mixed_ref = ["用 GIMP 打开"], ["用 GIMP 打开图像"]
ours_mixed = bleu([zh_chars(mixed_hyp[0])], [[zh_chars(mixed_ref[0])]])
theirs_mixed = sacrebleu.corpus_bleu(mixed_hyp, [mixed_ref], tokenize="zh").score
print(f"with a Latin word: ours {100 * ours_mixed:.2f} (G, I, M, P are 4 tokens), "
      f"sacrebleu zh {theirs_mixed:.2f} (GIMP is 1 token)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书里的句子 BLEU
#
# 书（d2l 10.7 节）用的是另一个公式，只评价一句话、只有一个参考译文：
#
# $$\exp\Big(\min\big(0, 1 - \tfrac{\text{len}_\text{label}}{\text{len}_\text{pred}}\big)\Big)
#   \prod_{n=1}^{k} p_n^{1/2^n}$$
#
# 简短惩罚相同，差别在后半部分：
#
# 1. 权重是 $1/2, 1/4, 1/8, 1/16$，加起来不到 1，所以不是几何平均：$p_n < 1$ 时分数比标准 BLEU 高；
#    越长的 n 元语法权重越**小**，$p_n^{1/2^n}$ 更接近 1（书里说这样是"给长 n 元语法更大的权重"，
#    是因为同样的 $p_n$ 下长 n 元语法把分数拉低得少）；
# 2. 只循环到 $\min(k, \text{len}_\text{pred})$：一个词元的译文只看 1 元语法；
# 3. 没有平滑，没有多个参考译文，也不能把整个测试集合起来算。
#
# 同样的例子，三个公式对比：

# %%
examples = [("a b c x d", "a b c d e f"), ("a b c d", "a b c d"), ("a", "a"), ("a b", "a b c")]
print(f"{'candidate':12s} {'reference':12s} {'book k=2':>9s} {'BLEU-2':>7s} {'book k=4':>9s} "
      f"{'BLEU-4 exp':>10s}")
for c, r in examples:
    c_tok, r_tok = c.split(), r.split()
    print(f"{c:12s} {r:12s} {book_sentence_bleu(c_tok, r_tok, 2):9.4f} "
          f"{bleu([c_tok], [[r_tok]], max_n=2, smooth='none'):7.4f} "
          f"{book_sentence_bleu(c_tok, r_tok, 4):9.4f} {bleu([c_tok], [[r_tok]]):10.4f}")
book2 = book_sentence_bleu(cand, ref, 2)
assert book2 == math.exp(1 - 6 / 5) * (4 / 5) ** 0.5 * (2 / 4) ** 0.25
assert book2 > bleu([cand], [[ref]], max_n=2, smooth="none")  # weights sum to 3/4, not 1
assert book_sentence_bleu(["a"], ["a"]) == 1.0 and bleu([["a"]], [[["a"]]]) == 0.0

# %% [markdown]
# 最后一行最能说明问题：只有一个词元的完美匹配，书里的公式给 1（它跳过了 2 到 4 元语法），
# 标准的语料 BLEU-4 给 0（没有 4 元语法）。所以不同来源的 BLEU 只有在公式、平滑和切分方式都相同时才能比较；
# `sacrebleu` 打印的**签名**（signature）就是为此而设的：

# %%
zh_metric = sacrebleu.metrics.BLEU(tokenize="zh")
print(zh_metric.corpus_score(zh_hyps, [zh_refs]), "|", zh_metric.get_signature())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 给翻译模型打分
#
# 训练一个 GRU 序列到序列模型（7.02），用贪心搜索翻译验证集前面的句子，
# 再用我们的 BLEU 和 `sacrebleu` 各算一次。两边用同样的词元：目标词表的切分（一个汉字一个词元，
# 占位符 `<ph1>` 这样的记号算一个词元）。

# %%
run = translation_run("seq2seq", "translation-zh", quick=QUICK, seconds=None if QUICK else 150,
                      curves=not QUICK)
test_pairs = run.loaders.test_pairs[:200]  # the test split, in its fixed (hashed) order
hyps = translate_all(run.translator, test_pairs)
codec = run.loaders.tgt_codec
hyp_tokens = [bleu_tokens(codec, h) for h in hyps]
ref_tokens = [[bleu_tokens(codec, p.tgt)] for p in test_pairs]
for pair, hyp in list(zip(test_pairs, hyps, strict=True))[:6]:  # the first ones, not picked
    print(f"EN  {pair.src}\nREF {pair.tgt}\nOUT {hyp}\n")

# %%
model_stats = corpus_stats(hyp_tokens, ref_tokens)
ours = score_stats(model_stats)
hyp_strings, streams = sacrebleu_inputs(hyp_tokens, ref_tokens)
theirs = sacrebleu.corpus_bleu(hyp_strings, streams, tokenize="none")
print(f"ours:      BLEU {100 * ours.score:.4f}  precisions "
      f"{'/'.join(f'{100 * p:.1f}' for p in ours.precisions)}  BP {ours.brevity_penalty:.3f}")
print(f"sacrebleu: {theirs}")
print(f"sacrebleu with its own Chinese tokenizer on the raw strings: "
      f"{sacrebleu.corpus_bleu(hyps, [[p.tgt for p in test_pairs]], tokenize='zh').score:.4f}")
sentence_mean = sum(bleu([h], [r]) for h, r in zip(hyp_tokens, ref_tokens, strict=True))
print(f"mean of the sentence BLEUs (exp smoothing): {100 * sentence_mean / len(hyps):.4f}")

# %% [markdown]
# 两者逐位相同。用 sacrebleu 自己的中文切分，结果不同：它把 `<ph1>` 切成 `<`、`ph1`、`>` 三个词元，
# 英文字母串也整个算一个词元。分数本身很低：快速模式只训练几十步，模型只学会了最常见的字；
# 完整模式在 2 个 CPU 核上训练两分半钟，也只走了几百步，译文常常是常见词的重复（看 ratio：译文比参考长）。
# 没有注意力的 seq2seq 要把整句压进一个向量，在这么短的训练里学不到多少；
# 7.07 的注意力和 7.10 的 Transformer 会好得多（`dlcamp evaluate` 报告它们在测试集上的 BLEU）。
# 句子 BLEU 的平均和语料 BLEU 又不相同：报告时要说清楚是哪一个。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - BLEU = 简短惩罚 × 1 到 4 元语法修正精度的几何平均；截断让重复的词元占不到便宜；
# - 语料级 BLEU 先把所有句子的计数加起来再算，不是句子 BLEU 的平均；
# - 平滑、切分方式、n 的上限都会改变分数，比较 BLEU 前要确认它们相同（sacrebleu 的签名）；
# - 书里的句子公式权重为 $1/2^n$、只有一个参考译文，和论文里报告的 BLEU 不是一回事；
# - 中文按字切分；我们从零写的 BLEU 和 sacrebleu 在同样的词元上完全一致。
#
# 自测：把候选译文换成参考译文本身，BLEU 是多少？如果参考译文有两个，一个 3 个字、一个 9 个字，
# 候选译文 6 个字，简短惩罚用哪个长度？BLEU 高就一定翻译得好吗？

# %%
assert abs(100 * ours.score - theirs.score) < 1e-6  # from scratch == sacrebleu on the model
assert list(model_stats.matches) == list(theirs.counts)
assert list(model_stats.totals) == list(theirs.totals)
assert bleu([r[0] for r in ref_tokens], ref_tokens) == 1.0  # the references themselves score 1
assert ours.stats.hyp_len == sum(len(h) for h in hyp_tokens)
print(f"lesson 7.04 done: BLEU of seq2seq on {len(hyps)} test sentences = "
      f"{100 * ours.score:.2f} (ours) == {theirs.score:.2f} (sacrebleu)")
