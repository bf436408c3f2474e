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
#     title: 序列到序列学习（seq2seq）
#     title_en: Sequence-to-sequence learning (seq2seq)
#     minutes:
#       quick: 0.1
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 序列到序列学习（seq2seq）
#
# 这一讲用两个 GRU 搭一个能翻译的编码器-解码器（Sutskever 等，2014；Cho 等，2014），
# 这种做法叫**序列到序列学习**（sequence to sequence learning，seq2seq）。
#
# 书里用的是从一个网站下载的英法句对。我们翻译的是每台 Linux 机器上已经有的东西：
# 软件界面的**消息目录**（message catalog，`.mo` 文件）。GIMP、VLC、LibreOffice、git 等软件把每条英文界面文字
# 和它的中文翻译一起放在里面，合起来有几万对（`dlcamp data info translation-zh` 看来源和数量）。
#
# 本讲：句对怎样变成小批量（`<bos>`、`<eos>`、`<pad>`），编码器和解码器，**强制教学**（teacher forcing），
# 只在真实词元上计算的损失（以及书中代码的一个缺陷），最后训练并翻译几句。

# %%
import math

import torch
import torch.nn.functional as F

from dlcamp.core.utils import is_quick
from dlcamp.course.translate import translation_run
from dlcamp.models import count_parameters, create_model
from dlcamp.text.translation import make_translation_loaders
from dlcamp.train.task import masked_cross_entropy

QUICK = is_quick()  # 快速模式：前 2000 个训练句对、小模型、几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 句对和词元
#
# 英文一侧按词切分（小写，标点单独成词），出现不到两次的词记作 `<unk>`；中文一侧一个字一个词元。
# 格式占位符（如 `%s`、`{0}`）在清洗时换成了 `<ph1>`、`<ph2>` 这样的记号，两边相同，各算一个词元。

# %%
loaders = make_translation_loaders("translation-zh", batch_size=4, quick=QUICK)
src_codec, tgt_codec = loaders.src_codec, loaders.tgt_codec
print(loaders.describe)
for pair in loaders.test_pairs[:4]:
    print(f"{pair.src!r:45s} -> {pair.tgt!r}  ({pair.source})")
print("special ids: pad", tgt_codec.pad, "bos", tgt_codec.bos, "eos", tgt_codec.eos,
      "unk", tgt_codec.unk)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个小批量
#
# 每个小批量是 5 个张量。源句子末尾加上 `<eos>`，告诉编码器句子到此为止；
# 目标句子做成错开一位的两份：解码器读入 `tgt_in = <bos> y1 … yn`，要预测的是 `tgt_out = y1 … yn <eos>`。
# 一批里的句子长短不一，短的用 `<pad>` 补齐到这批里最长的那句，`src_len` 和 `tgt_len` 记下真实长度。

# %%
src, src_len, tgt_in, tgt_out, tgt_len = next(iter(loaders.eval))
print("src", tuple(src.shape), "src_len", src_len.tolist())
print("tgt_in", tuple(tgt_in.shape), "tgt_len", tgt_len.tolist())
tokens = tgt_codec.vocab.idx_to_token
for row in range(2):
    print("tgt_in :", " ".join(tokens[i] for i in tgt_in[row].tolist()))
    print("tgt_out:", " ".join(tokens[i] for i in tgt_out[row].tolist()))
assert torch.equal(tgt_in[:, 1:], tgt_out[:, :-1].where(tgt_out[:, :-1] != tgt_codec.eos,
                                                        tgt_codec.pad))
assert (tgt_out[torch.arange(len(tgt_len)), tgt_len - 1] == tgt_codec.eos).all()

# %% [markdown]
# `<eos>` 有两个用处：训练时模型学会在句子该结束的地方输出它；生成时一旦输出 `<eos>` 就停下。
# 没有它，模型就不知道什么时候该闭嘴。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 编码器和解码器
#
# `seq2seq` 模型（`dlcamp.models.seq2seq`）：
#
# - 编码器：嵌入层 + 多层 GRU，读完源句子；最后一个真实词元之后各层的隐状态交给解码器；
# - 解码器：GRU 的初始隐状态就是编码器的最终隐状态；编码器最上层的最终隐状态还作为**上下文变量**
#   （context variable）$\mathbf{c}$，拼接到解码器每一步的输入（词元的嵌入）上；
#   一个全连接层把解码器的输出变成目标词表上的 logits。
#
# 整句源语言的意思都要挤进一个固定长度的向量 $\mathbf{c}$：这是这个模型的瓶颈，也是第 7.07 讲注意力要解决的问题。

# %%
model = create_model("seq2seq", src_vocab_size=len(src_codec), tgt_vocab_size=len(tgt_codec),
                     src_pad=src_codec.pad, tgt_pad=tgt_codec.pad, embed_size=64, num_hiddens=128,
                     num_layers=2, dropout=0.0)
print(model)
print(f"{count_parameters(model):,} parameters")
with torch.no_grad():
    logits = model(src, src_len, tgt_in)  # teacher forcing: (B, T, V)
print("logits", tuple(logits.shape))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 强制教学
#
# 训练时解码器每一步读入的是**正确的**上一个词元（来自 `tgt_in`），而不是它自己刚预测的词元，
# 所以整句可以一次算完。这叫**强制教学**。好处是训练快、稳定；
# 代价是训练和生成有差别：生成时模型读的是自己的输出，一步错了，后面读到的前文就和训练时见过的不一样了
# （这叫**暴露偏差**，exposure bias）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 遮蔽补齐位置的损失
#
# 每个位置的损失是交叉熵；补齐的位置（`<pad>`）不是真的词元，不能算进去。
# 我们的损失（`dlcamp.train.task.masked_cross_entropy`，训练任务 `Seq2Seq` 用的就是它）
# 把真实位置的交叉熵加起来，再除以**真实词元的个数**：
#
# $$\ell = \frac{1}{\sum_i n_i} \sum_{i=1}^{B} \sum_{t=1}^{n_i} -\log P(y_{i,t} \mid y_{i,<t}, \mathbf{x}_i),$$
#
# $n_i$ 是第 $i$ 句的 `tgt_len`（含 `<eos>`）。先用 Python 的循环"手数"一遍，确认它就是这个公式：

# %%
total, count = masked_cross_entropy(logits, tgt_out, tgt_len)
ours = float(total / count)
hand_sum, hand_count = 0.0, 0
for i in range(len(tgt_len)):
    for t in range(int(tgt_len[i])):  # only the real positions of sentence i
        row = logits[i, t].double()
        hand_sum += float(torch.logsumexp(row, 0) - row[tgt_out[i, t]])  # -log softmax
        hand_count += 1
print(f"ours {ours:.6f} over {int(count)} tokens; by hand {hand_sum / hand_count:.6f} over "
      f"{hand_count} tokens; log(V) = {math.log(len(tgt_codec)):.4f}")
assert int(count) == hand_count == int(tgt_len.sum())
assert abs(ours - hand_sum / hand_count) < 1e-5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中代码的缺陷：损失随补齐长度变化
#
# 书里的 `MaskedSoftmaxCELoss`（中文第二版和英文 0.17 版的 9.7 节）先把补齐位置的损失置零，
# 然后**对每一行的全部 $T$ 个位置取平均**，包括置零的那些：
#
# $$\ell_i^\text{book} = \frac{1}{T} \sum_{t=1}^{n_i} -\log P(y_{i,t} \mid \cdot).$$
#
# $T$ 是这一批里最长句子的长度，和第 $i$ 句自己无关。于是同一句话，和长句分在一批时损失变小、梯度变小；
# 和短句分在一批时损失变大。把同一批数据多补 10 列 `<pad>`，模型的预测一个都没变：

# %%
def book_loss(logits: torch.Tensor, tgt_out: torch.Tensor, tgt_len: torch.Tensor) -> torch.Tensor:
    """d2l's masked loss: zero the padding, then average each row over all T positions (B,)."""
    nll = F.cross_entropy(logits.transpose(1, 2), tgt_out, reduction="none")  # (B, T)
    real = torch.arange(tgt_out.shape[1])[None, :] < tgt_len[:, None]
    return (nll * real).mean(dim=1)


def pad_more(x: torch.Tensor, columns: int, value: int) -> torch.Tensor:
    return torch.cat([x, torch.full((x.shape[0], columns), value)], dim=1)


extra = 10
tgt_in_long = pad_more(tgt_in, extra, tgt_codec.pad)
tgt_out_long = pad_more(tgt_out, extra, tgt_codec.pad)
with torch.no_grad():
    logits_long = model(src, src_len, tgt_in_long)  # the first T positions are unchanged
    short_ours = masked_cross_entropy(logits, tgt_out, tgt_len)
    long_ours = masked_cross_entropy(logits_long, tgt_out_long, tgt_len)
    short_book, long_book = book_loss(logits, tgt_out, tgt_len), book_loss(logits_long,
                                                                          tgt_out_long, tgt_len)
T = tgt_out.shape[1]
print(f"T = {T} -> {T + extra}")
print(f"ours: {float(short_ours[0] / short_ours[1]):.5f} -> {float(long_ours[0] / long_ours[1]):.5f}")
print(f"book, per sentence: {short_book.numpy().round(4)} -> {long_book.numpy().round(4)}")
assert torch.allclose(logits_long[:, :T], logits, atol=1e-5)
assert abs(float(short_ours[0] / short_ours[1]) - float(long_ours[0] / long_ours[1])) < 1e-5
assert torch.allclose(long_book, short_book * T / (T + extra), atol=1e-6)

# %% [markdown]
# 我们的损失纹丝不动；书里的每句损失都乘上了 $T/(T+10)$。书的训练循环对 `l.sum()` 求梯度，
# 又用 `l.sum() / 词元数` 报告损失，所以报告出来的数也比真正的每词元损失小 $T$ 倍（书里 $T = 10$，
# 训练结束时显示的损失只有 0.02 左右）。英文新版（d2l 1.0，10.7 节）的 `Seq2Seq.loss` 已改为按真实词元平均，
# 和这里的做法一致。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 用 `seq2seq` 的注册配方（Adam、学习率 0.005、梯度裁剪到 1、余弦学习率）训练。
# 快速模式：一层 GRU、隐藏单元 128，在前 2000 个句对上（句子截短到 16 个词元）训练 32 步；完整模式：配方的模型（两层，隐藏单元 256），
# 在全部训练句对上训练两分半钟。开始时模型对每个字的猜测近乎均匀，每词元损失约为 $\log V$。

# %%
run = translation_run("seq2seq", "translation-zh", quick=QUICK, seconds=None if QUICK else 150,
                      curves=not QUICK)
history = [(round(r["train_loss"], 3), round(r["val_loss"], 3)) for r in run.trainer.history]
print("(train loss, validation loss) per epoch:", history)
uniform = math.log(len(run.loaders.tgt_codec))
print(f"untrained: {ours:.3f} on a validation batch (log V = {uniform:.3f}); "
      f"trained: {history[-1][1]:.3f} on the validation split")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 翻译几句
#
# 用贪心搜索（下一讲细讲）翻译测试集的前几句（按固定顺序取，没有挑选）和几句自己写的英文。
# 快速模式的模型只学会了最常见的字；完整模式两分半钟也只走几百步，能译出一些常见的词，
# 离可用还很远。7.04 用 BLEU 给它打分，后面的注意力（7.07）和 Transformer（7.10）会好得多。

# %%
sentences = [p.src for p in run.loaders.test_pairs[:6]] + ["Open file", "Save the image as PNG"]
for sentence, out in zip(sentences, run.translator.translate(sentences), strict=True):
    print(f"{sentence!r:50s} -> {out['translation']!r}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 源句子末尾加 `<eos>`；目标句子错开一位：读 `<bos> y1 … yn`，预测 `y1 … yn <eos>`；短句用 `<pad>` 补齐；
# - 编码器的最终隐状态既是解码器的初始状态，又作为上下文拼到每一步的输入上；
# - 强制教学让整句一次算完，但训练和生成之间有差别；
# - 损失只在真实词元上算，按真实词元的个数平均；书中代码按补齐后的长度平均，损失会随补齐长度变化。
#
# 自测：如果忘了遮蔽，把 `<pad>` 位置也算进损失，模型会学到什么？
# 一批里句子长度差别越大，书中的损失和真实的每词元损失差得越多还是越少？

# %%
last = run.trainer.history[-1]
assert ours > uniform - 0.5  # the untrained model guesses nearly uniformly: loss about log V
assert last["val_loss"] < ours - 1.0  # training lowered the per-token loss by over 1 nat
assert abs(ours - hand_sum / hand_count) < 1e-5  # our loss is the mean over real tokens
print(f"lesson 7.02 done: per-token loss == hand count; validation loss {last['val_loss']:.3f} "
      f"(log V = {uniform:.3f}) after {run.trainer.global_step} steps")
