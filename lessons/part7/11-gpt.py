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
#     title: 只有解码器的 Transformer：一个小 GPT
#     title_en: A small decoder-only (GPT-style) Transformer
#     minutes:
#       quick: 0.2
#       full: 10
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 只有解码器的 Transformer：一个小 GPT
#
# 上一讲的 Transformer 有编码器和解码器，适合"读完一句、再写另一句"的翻译。
# 如果任务只是续写一段文字，源句就不存在了：把解码器里"看编码器"的那一层注意力拿掉，
# 只留下带遮蔽的自注意力和前馈网络，就得到**只有解码器的 Transformer**（decoder-only Transformer）。
# OpenAI 的 GPT（generative pre-trained Transformer；Radford 等，2018）就是这样一个模型，
# 训练任务和第三部分的循环神经网络语言模型完全一样：读前面的词元，预测下一个。
#
# 本讲：因果遮蔽（causal mask）怎么让所有位置一次算完、又不偷看后文；GPT 块为什么把层规范化放在前面；
# 生成时"状态"是什么；最后在英文名言和**整部全唐诗**上，让 GPT 和第三部分的 LSTM
# 在**同样的训练时间**里比一比验证困惑度，并让两者各写几句。

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.course.gpt import equal_time, race_markdown
from dlcamp.course.lm import sample
from dlcamp.models import count_parameters, create_model
from dlcamp.models.attention import masked_softmax
from dlcamp.models.gpt import GPTBlock

QUICK = is_quick()  # 快速模式：语料只取开头两万个字符，每个模型只训练半秒（只够冒烟测试）
SECONDS = 0.5 if QUICK else 120.0  # training seconds per model and corpus
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 因果遮蔽：一次算完所有位置
#
# 循环神经网络按时间一步一步走，天然看不到未来。自注意力却让每个位置一次看到整段序列：
# 训练语言模型时，第 $i$ 个位置要预测第 $i+1$ 个词元，如果它能看见第 $i+1$ 个位置，
# 答案就直接抄到了。办法是把第 $i$ 个查询能看的键限制在 $1,\dots,i$：
# 注意力权重矩阵的上三角全是 0，这就是**因果遮蔽**（causal mask）。
#
# 用第 7.6 讲的遮蔽 softmax，给第 $i$ 个查询的有效长度 $i$（形状 (B, Q) 的 `valid_lens`）就能做到；
# PyTorch 的 `F.scaled_dot_product_attention(..., is_causal=True)` 用融合的内核算同一件事：

# %%
T, d = 6, 8
q, k, v = torch.randn(3, 1, T, d).unbind(0)  # each (B=1, T, d)
causal_lens = torch.arange(1, T + 1)[None]  # (1, T): query i sees keys 1..i
weights = masked_softmax(q @ k.transpose(1, 2) / d**0.5, causal_lens)  # (1, T, T)
by_hand = weights @ v
fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print(weights[0].numpy().round(2))
print("largest |masked softmax - fused kernel|:", f"{(by_hand - fused).abs().max():.1e}")
assert torch.allclose(by_hand, fused, atol=1e-6)
assert torch.equal(weights[0].triu(1), torch.zeros(T, T))  # nothing above the diagonal

# %%
show_heatmaps(weights[None], xlabel="keys (positions)", ylabel="queries (positions)",
              titles=["causal self-attention"])
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## GPT 块：先规范化，再做子层
#
# 上一讲的块是**后规范化**（post-norm）：$\mathrm{LayerNorm}(x + \mathrm{sublayer}(x))$。
# GPT-2（Radford 等，2019）改成**前规范化**（pre-norm）：$x + \mathrm{sublayer}(\mathrm{LayerNorm}(x))$，
# 最后一块之后再加一个层规范化。这样残差连接是一条从输入直通输出的"干道"，
# 梯度不经过任何规范化就能传回最前面；深的模型不需要学习率预热（warm-up）也训练得稳。
# 前馈网络的激活函数换成了 GELU。`dlcamp` 的 GPT 块：

# %%
print(inspect.getsource(GPTBlock.forward))

# %% [markdown]
# 整个模型：词元嵌入加上**可学习的位置嵌入**（learned positional embedding，GPT 的做法；
# 也可以换成上一讲的正弦位置编码），若干个 GPT 块，最后的层规范化和输出层。
# 输出层和输入嵌入**共享权重**（weight tying；Press 和 Wolf，2017）：同一个矩阵既把词元变成向量，
# 又给向量打分变回词元，参数少了 $V \times d$ 个。

# %%
V = 100
gpt = create_model("gpt", vocab_size=V)
lstm = create_model("lstm", vocab_size=V)
print(gpt)
print(f"gpt: {count_parameters(gpt):,} parameters;  lstm: {count_parameters(lstm):,} parameters")
assert gpt.output.weight is gpt.embedding.weight  # tied: one matrix, counted once

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 检查：改动后文，前面的输出不变
#
# 因果遮蔽是模型最重要的性质，也最容易写错。直接验证：把一段序列第 10 个位置以后的词元全换掉，
# 前 10 个位置的输出必须一个数都不变；第 10 个位置之后的输出当然会变。

# %%
gpt.eval()
tokens = torch.randint(V, (2, 20))
changed = tokens.clone()
changed[:, 10:] = torch.randint(V, (2, 10))
with torch.no_grad():
    before, after = gpt(tokens)[0], gpt(changed)[0]  # logits (2, 20, V)
print("largest change of the logits at positions 1-10: "
      f"{(before[:, :10] - after[:, :10]).abs().max():.1e}; at 11-20: "
      f"{(before[:, 10:] - after[:, 10:]).abs().max():.2f}")
assert torch.allclose(before[:, :10], after[:, :10], atol=1e-5)
assert not torch.allclose(before[:, 10:], after[:, 10:], atol=1e-3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 生成时的"状态"
#
# LSTM 生成下一个词元只需要上一步的隐状态和记忆元。GPT 没有隐状态：它的"状态"就是**到目前为止的上下文**，
# 最多 `max_len` 个词元（再早的词元滑出窗口）。每生成一个词元，就把它接到上下文后面，再算一遍。
# 所以 `dlcamp.text.generate` 可以一视同仁地调用 `model(tokens, state)`，LSTM 和 GPT 都行。
# 一个一个喂进去得到的 logits，和整段一次算出来的相同：

# %%
with torch.no_grad():
    full, context = gpt(tokens)  # eval mode: the context comes back as the state
    logits, state = gpt(tokens[:, :5])  # a prompt, then one token at a time
    steps = [logits]
    for t in range(5, 20):
        logits, state = gpt(tokens[:, t:t + 1], state)
        steps.append(logits)
print("state:", tuple(state.shape), "  largest |one by one - all at once|:",
      f"{(torch.cat(steps, 1) - full).abs().max():.1e}")
assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5) and torch.equal(state, tokens)

# %% [markdown]
# 这里每一步都把整段上下文重算一遍，生成 $n$ 个词元的代价随 $n^2$ 增长。
# 真正的大模型会把每层已经算过的键和值存起来（**键值缓存**，KV cache；上一讲的解码器就是这样做的），
# 每步只算新词元的那一行。我们的上下文只有几百个词元，重算也够快。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 同样的训练时间：GPT 对 LSTM（英文名言）
#
# 两个模型各按自己注册的配方训练（`dlcamp train --model gpt` / `--model lstm`）：
# LSTM 就是第三部分的那个，GPT 是上面打印的模型；每批的序列长度见表中的 window 一列。
# 比较的是**同样的训练秒数**（`TrainConfig.max_seconds`：学习率的余弦日程按时钟拉伸，评估不计时），
# 而不是同样的步数：在 2 个 CPU 核上，谁每秒处理的词元多，谁就能多学一些。
# 表里第一行是一元语法模型（unigram，只看字频），任何语言模型都要先胜过它。
# 完整模式每个模型训练两分钟；快速模式只有半秒，只走几步，困惑度还在词表大小附近，不说明任何问题。

# %%
quotes = equal_time("quotes-en", SECONDS, quick=QUICK)
print(race_markdown(quotes.rows))

# %% [markdown]
# 验证困惑度都是在整个验证集上、按各自的序列长度切块算的，用训练结束时的权重。
# 两者写的英文（温度 0.8，同一个随机种子，不挑选；快速模式下两个模型都还接近均匀分布，
# 同一串随机数会抽出几乎相同的字符）：

# %%
for name in ("gpt", "lstm"):
    trainer, loaders, _ = quotes.runs[name]
    print(f"{name}:", sample(trainer, loaders, "The ", length=120, seed=0), end="\n\n")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 整部全唐诗
#
# 第三部分的 `tang300` 只有两万多字，却有两千多个不同的字：模型学到的最好结果只比一元语法低 22%。
# `tang` 是 npm 包 `chinese-poetry` 收录的全部 57,607 首唐诗，用 OpenCC 转成简体，
# 训练集约三百万字、八千多个不同的字，数据多了一百多倍。同样让两个模型各训练同样的时间：

# %%
tang = equal_time("tang", SECONDS, quick=QUICK)
print(race_markdown(tang.rows))
unigram, tang_ppl = tang.rows[0]["val_ppl"], {r["model"]: r["val_ppl"] for r in tang.rows[1:]}
for name, ppl in tang_ppl.items():
    print(f"{name}: perplexity {ppl / unigram:.0%} of the unigram model's")

# %% [markdown]
# 词表有八千多个字时，GPT 先要学会字频（一元语法能做到的），再学怎样看上下文：
# 最初几百步，它的困惑度常常停在一元语法附近，像一段**平台**（plateau），之后才往下走。
# 两个 CPU 核上两分钟只够它走几百步，所以这场比赛 GPT 不一定赢——同样的时间里，
# 更快起步的模型占便宜；时间和数据越多，Transformer 越能显出长处（GPU 上它每秒处理的词元也多得多）。
#
# 五言绝句，每个模型两首（格式由 `generate_poem` 保证，字由模型抽样）：

# %%
for name in ("gpt", "lstm"):
    trainer, loaders, _ = tang.runs[name]
    for seed, prompt in enumerate(("春风", "明月")):
        print(f"{name}, seed {seed}:\n{sample(trainer, loaders, prompt, poem=5, seed=seed)}\n")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 只有解码器的 Transformer 去掉了交叉注意力，用因果遮蔽一次算完整段序列的"下一个词元"预测；
# - 因果遮蔽就是"第 $i$ 个查询的有效长度为 $i$"的遮蔽 softmax，改动后文不影响前面的输出；
# - GPT 块前规范化、GELU、可学习的位置嵌入，输出层和输入嵌入共享权重；
# - 生成时 GPT 的状态就是上下文窗口；没有键值缓存时每步重算整个窗口；
# - 同样的训练时间、同样的语料，比较的是"每秒学到多少"：数据越多，模型大小和速度越要紧。
#
# 自测：把 GPT 的窗口从 64 加到 256，训练一步的计算量大约怎么变？
# 为什么在 `tang300` 上加大模型几乎没用，在 `tang` 上却可能有用？

# %%
for race in (quotes, tang):
    for row in race.rows[1:]:  # the same clock for both; trained and measured
        assert row["train_s"] >= SECONDS and row["steps"] >= 1, (race.corpus, row)
        assert row["val_ppl"] < 2 * row["vocab"], (race.corpus, row)  # did not diverge
if not QUICK:  # two minutes each: both beat the unigram model on quotes-en, and on tang
    # at least the LSTM does (GPT may still be on its plateau after a few hundred steps)
    assert all(row["val_ppl"] < quotes.rows[0]["val_ppl"] for row in quotes.rows[1:]), quotes.rows
    assert tang_ppl["lstm"] < unigram and tang_ppl["gpt"] < tang.rows[0]["vocab"] / 4, tang.rows
print(f"lesson 7.11 done: equal time {SECONDS:g} s; validation perplexity quotes-en "
      + ", ".join(f"{r['model']} {r['val_ppl']:.2f}" for r in quotes.rows)
      + "; tang " + ", ".join(f"{r['model']} {r['val_ppl']:.1f}" for r in tang.rows))
