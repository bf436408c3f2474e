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
#     title: 从零实现 Transformer
#     title_en: The Transformer from scratch
#     minutes:
#       quick: 0.2
#       full: 5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 从零实现 Transformer
#
# 前几讲的零件——多头注意力、自注意力、位置编码——在这里拼成一个完整的翻译模型：
# **Transformer**（Vaswani 等，2017，《Attention Is All You Need》）。它彻底去掉了循环层：
# 编码器和解码器都由若干个相同的**块**（block）叠成，每一块只有注意力和逐位置的前馈网络，
# 序列的所有位置可以同时计算。
#
# - 编码器块：多头**自注意力**，然后**逐位置前馈网络**（position-wise feed-forward network）；
# - 解码器块：带遮蔽的多头自注意力，然后**编码器-解码器注意力**（encoder-decoder attention，
#   查询来自解码器，键和值是编码器的输出），最后逐位置前馈网络；
# - 每个子层外面都套着**残差连接**（residual connection）和**层规范化**（layer normalization）。
#
# 本讲：逐个写出这些零件，用复制过去的权重和 `torch.nn.Transformer` 对照到小数点后五位，
# 比一比两者的速度；然后在英译中的数据上训练、翻译几句测试句，并画出注意力的热图。

# %%
import inspect

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.course.gpt import TorchTransformer, train_speed, translation_batch
from dlcamp.course.translate import translate_all, translation_run
from dlcamp.models import count_parameters, create_model
from dlcamp.models.decoding import greedy_search
from dlcamp.models.transformer import (
    AddNorm,
    PositionWiseFFN,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)

QUICK = is_quick()  # 快速模式：小模型、前 2,000 对句子、几十步训练
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 逐位置前馈网络
#
# 自注意力在位置之间交换信息；交换完以后，每个位置再各自过一个两层的多层感知机：
# $\mathrm{FFN}(\mathbf{x}) = \max(0, \mathbf{x}\mathbf{W}_1 + \mathbf{b}_1)\mathbf{W}_2 + \mathbf{b}_2$。
# 所有位置共用同一组参数，"逐位置"就是这个意思：输入 (批量, 时间步, $d$)，输出形状不变，
# 第 $i$ 个位置的输出只取决于第 $i$ 个位置的输入。

# %%
print(inspect.getsource(PositionWiseFFN))
ffn = PositionWiseFFN(num_hiddens=4, ffn_num_hiddens=8)
X = torch.randn(2, 3, 4)  # (batch, steps, d)
print(ffn(X).shape)
assert torch.allclose(ffn(X)[:, 1], ffn(X[:, 1]))  # position 1 alone gives the same output

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 残差连接和层规范化
#
# **批量规范化**（batch normalization）在一个特征上，跨批量里的样本求均值和方差；
# **层规范化**在一个样本里，跨它的所有特征求。句子长短不一、批量里样本不多，层规范化更合适：
# 每个词元的向量各自规范化成均值 0、方差 1，和批里别的句子无关。

# %%
ln, bn = nn.LayerNorm(2), nn.BatchNorm1d(2)
X = torch.tensor([[1.0, 2.0], [2.0, 3.0]])
print("layer norm:", ln(X), "batch norm:", bn(X), sep="\n")
assert torch.allclose(ln(X), torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]), atol=1e-3)

# %% [markdown]
# 论文把两者合成一步：子层的输出 $f(\mathbf{x})$ 先做 dropout，加上子层的输入，再做层规范化，
# 即 $\mathrm{LayerNorm}(\mathbf{x} + f(\mathbf{x}))$。规范化在残差相加之后，所以叫**后规范化**（post-norm），
# 也是 `torch.nn.Transformer` 的默认做法。下一讲的 GPT 会换成前规范化。

# %%
print(inspect.getsource(AddNorm))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 编码器块
#
# 自注意力的查询、键、值都是同一个输入 `x`；`valid_lens` 是每个源句的真实长度，填充出来的位置
# 不分到权重。块的输入和输出形状相同，所以 $N$ 个块可以直接叠起来。
# 词元先经过嵌入，乘以 $\sqrt{d}$，再加上正弦位置编码（第 7.9 讲）。

# %%
print(inspect.getsource(TransformerEncoderBlock.forward))
blk = TransformerEncoderBlock(num_hiddens=24, ffn_num_hiddens=48, num_heads=8).eval()
X = torch.randn(2, 100, 24)
print(blk(X, torch.tensor([3, 2])).shape)
assert blk(X, torch.tensor([3, 2])).shape == X.shape

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 解码器块
#
# 训练时，整句目标序列（前面加上 `<bos>`）一次送进解码器（强制教学，teacher forcing）：
# 第 $i$ 个位置的自注意力只能看前 $i$ 个位置（`positions + 1` 就是每个查询的有效长度），
# 否则它能直接看到要预测的答案。预测时词元一个一个生成，每个块把它见过的输入存起来（`past`），
# 新词元的查询看的就是这些过去的键和值。第二个注意力层的查询来自解码器，键和值是编码器的输出。

# %%
print(inspect.getsource(TransformerDecoderBlock.forward))

# %% [markdown]
# 两种算法必须给出相同的结果：一次算完整句，和一个词元一个词元地解码，logits 应当只差舍入误差。
# 用一个随机初始化的小 Transformer 检查（`begin_decode` 编码源句一次，`decode` 每次只喂新词元）：

# %%
tiny = create_model("transformer", src_vocab_size=30, tgt_vocab_size=40, num_hiddens=32,
                    ffn_num_hiddens=64, num_heads=4, num_blks=2).eval()
src, src_len, tgt_in, _, _ = translation_batch(3, 7, 6, 30, 40)
with torch.no_grad():
    all_at_once = tiny(src, src_len, tgt_in)  # (3, 6, 40)
    state = tiny.begin_decode(src, src_len)
    one_by_one = []
    for t in range(tgt_in.shape[1]):
        logits, state = tiny.decode(tgt_in[:, t:t + 1], state)
        one_by_one.append(logits)
step_gap = (torch.cat(one_by_one, 1) - all_at_once).abs().max().item()
print(f"largest |step by step - all at once|: {step_gap:.1e}")
assert step_gap < 1e-5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 `torch.nn.Transformer` 对照
#
# `torch.nn.Transformer` 实现的是同一篇论文（`batch_first=True`、`norm_first=False` 就是后规范化）。
# 把我们每个块的权重复制进它的编码器层和解码器层（`copy_to_torch`；PyTorch 把 $\mathbf{W}_q, \mathbf{W}_k, \mathbf{W}_v$
# 叠成一个 `in_proj_weight`），嵌入层和输出层仍用我们的，就得到 `TorchTransformer`。
# 关掉 dropout（评估模式），同一批带填充的句子应当算出同样的 logits：

# %%
ours = create_model("transformer", src_vocab_size=6000, tgt_vocab_size=2200).eval()
theirs = TorchTransformer(ours).eval()
print(theirs.stacks.encoder.layers[0])
batch = translation_batch(64, 20, 38, 6000, 2200)  # padded like a translation-zh batch
with torch.no_grad():
    gap = (ours(*batch[:3]) - theirs(*batch[:3])).abs().max().item()
print(f"largest |ours - torch.nn.Transformer| over {batch[2].numel():,} target positions: "
      f"{gap:.1e}")
print(f"parameters: ours {count_parameters(ours):,}, torch {count_parameters(theirs):,}")
assert gap < 1e-4

# %% [markdown]
# 参数个数不同，是因为 PyTorch 的注意力层带偏置（复制时置为 0），我们的（和书里一样）没有。
# 两者速度如何？在同一批句子上轮流做训练步（前向、按真实词元平均的交叉熵、反向），
# 数每秒处理的目标词元（快速模式只用 16 对句子、计时一次，数字很粗）：

# %%
timed = translation_batch(16, 20, 38, 6000, 2200) if QUICK else batch
rates = train_speed({"ours": ours, "torch.nn.Transformer": theirs}, timed,
                    steps=2 if QUICK else 10, repeats=1 if QUICK else 3, warmup=1)
for name, rate in rates.items():
    print(f"{name:21s} {rate:>9,.0f} target tokens/s")

# %% [markdown]
# 两者做的矩阵乘法一样多，差别在周边：PyTorch 的注意力层每次要把填充遮蔽和因果遮蔽合并成一个张量，
# 它的前馈网络在两层之间多一个 dropout；推理时它有一条融合的"快速路径"，训练时用不上。
# 谁快多少因机器而异，`bench/gpt_vs_lstm.py` 在本机上的结果见 `docs/benchmarks.md`。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练一个英译中的 Transformer
#
# 用注册的配方（`dlcamp train --model transformer --dataset translation-zh` 的默认设置，下面打印）
# 训练：英文按词切分，中文按字，损失按真实目标词元平均（第 7.2 讲）。
# 书里在英法数据上用宽 256、2 个块、4 个头。
# 快速模式用更小的模型只训练几十步，译文多半是空的或胡言乱语；完整模式训练三分钟。

# %%
QUICK_SIZES = {"num_hiddens": 64, "ffn_num_hiddens": 128, "num_heads": 4, "num_blks": 2,
               "dropout": 0.1}
run = (translation_run("transformer", quick=True, model_kwargs=QUICK_SIZES, max_steps=30) if QUICK
       else translation_run("transformer", seconds=180))
model, loaders = run.model.eval(), run.loaders
blk = model.encoder.blks[0]
print(f"width {blk.attention.num_hiddens}, {len(model.encoder.blks)} blocks, "
      f"{blk.attention.num_heads} heads, FFN {blk.ffn.dense1.out_features}; "
      f"{count_parameters(model):,} parameters;", run.trainer.config)
history = [round(r["val_ppl"], 1) for r in run.trainer.history]
print("validation perplexity per target token, by epoch:", history[-10:])

# %% [markdown]
# 测试集最前面的几句（按固定顺序，不挑选），贪心搜索：

# %%
pairs = loaders.test_pairs[:6]
hyps = translate_all(run.translator, pairs)
for pair, hyp in zip(pairs, hyps, strict=True):
    print(f"{pair.src}\n  reference: {pair.tgt}\n  ours:      {hyp}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 注意力的热图
#
# 取第一句测试句，把模型自己的译文（加上 `<bos>`）用强制教学再送一遍，记下每一层、每个头的权重。
# 先看编码器的自注意力：每一行是一个源词元（查询），它在各个源词元（键）上的权重。

# %%
pair, tgt_codec = pairs[0], loaders.tgt_codec
src_ids = [*loaders.src_codec.encode(pair.src), loaders.src_codec.eos]
src, src_len = torch.tensor([src_ids]), torch.tensor([len(src_ids)])
out_ids = greedy_search(model, src, src_len, tgt_codec.bos, tgt_codec.eos, max_len=40)[0]
tgt_ids = [tgt_codec.bos, *out_ids]  # the output (no <eos>) after <bos>
with torch.no_grad():
    model(src, src_len, torch.tensor([tgt_ids]))
enc_weights = torch.stack([w[0] for w in model.encoder.attention_weights])  # (blocks, heads, S, S)
cross_weights = torch.stack([w[0] for w in model.attention_weights])  # (blocks, heads, T, S)
src_tokens = loaders.src_codec.vocab.to_tokens(src_ids)
out_tokens = tgt_codec.vocab.to_tokens([*out_ids, tgt_codec.eos])  # what each query predicts
heads = enc_weights.shape[1]
titles = [f"block {b + 1}, head {h + 1}" for b in range(len(enc_weights)) for h in range(heads)]
show_heatmaps(enc_weights, xlabel="keys (source)", ylabel="queries (source)", titles=titles,
              xticklabels=src_tokens, yticklabels=src_tokens)
plt.show()

# %% [markdown]
# 再看解码器的编码器-解码器注意力：每一行是一个预测位置（查询），它在源句各词元上的权重。
# 训练得好的模型里，一些头会把译出的字对准它所翻译的英文词。

# %%
show_heatmaps(cross_weights, xlabel="keys (source)", ylabel="queries (output)", titles=titles,
              xticklabels=src_tokens, yticklabels=out_tokens)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - Transformer 的编码器块是自注意力加逐位置前馈网络，解码器块多一层看编码器输出的注意力；
# - 每个子层都是后规范化的残差连接：$\mathrm{LayerNorm}(\mathbf{x} + f(\mathbf{x}))$；
# - 训练时解码器用因果遮蔽一次算完整句，预测时一个词元一个词元地算，两者结果相同；
# - 我们的实现和 `torch.nn.Transformer` 在相同权重下输出相同；矩阵乘法一样多，速度差在周边的实现。
#
# 自测：如果把解码器自注意力的 `positions + 1` 换成整句的长度，训练损失和测试时的翻译会怎样？
# 编码器的自注意力为什么不需要这种遮蔽？

# %%
assert gap < 1e-4 and all(rate > 0 for rate in rates.values())
assert run.trainer.history[-1]["val_ppl"] < len(loaders.tgt_codec)  # better than uniform
if not QUICK:  # three minutes: far better than guessing among the characters
    assert run.trainer.history[-1]["val_ppl"] < len(loaders.tgt_codec) / 10
assert enc_weights.shape[-1] == len(src_ids) and cross_weights.shape[-2:] == (len(tgt_ids),
                                                                               len(src_ids))
assert torch.allclose(enc_weights.sum(-1), torch.ones(()), atol=1e-5)  # rows are distributions
print(f"lesson 7.10 done: ours == torch.nn.Transformer ({gap:.1e}); validation perplexity "
      f"{run.trainer.history[-1]['val_ppl']:.1f} after {run.trainer.train_seconds:.1f} s")
