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
#     title: Bahdanau 注意力
#     title_en: Bahdanau attention
#     minutes:
#       quick: 0.1
#       full: 6
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Bahdanau 注意力
#
# 第 7.02 讲的序列到序列（sequence to sequence，seq2seq）模型里，编码器把整个英文句子压成一个向量
# ——最后一步的隐状态——解码器每一步都拿着这同一个**上下文变量**（context variable）。
# 句子越长，一个向量越装不下；而且翻译第 3 个字时真正需要的，往往只是源句里的一两个词。
#
# Bahdanau、Cho 和 Bengio（2015）的办法：编码器每个位置的输出都留着，解码器每一步用自己当前的状态
# 当**查询**，对所有位置做一次注意力汇聚，得到这一步专用的上下文。本讲把这个模型和普通的 seq2seq
# 放在同样的英译中数据上训练，并画出它翻译一句话时"看"源句的哪里。

# %%
import inspect
import math

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import show_heatmaps
from dlcamp.course.translate import translate_all, translation_run
from dlcamp.models import count_parameters, create_model
from dlcamp.models.decoding import greedy_search
from dlcamp.models.seq2seq import AttentionDecoder

QUICK = is_quick()  # 快速模式：2,000 对句子、单层小模型、各训练 16 步，只检查流程；完整模式各 150 秒
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型
#
# 编码器不变：一个多层 GRU，输出每个源位置 $t$ 的顶层隐状态 $\mathbf{h}_t$。解码器在第 $t'$ 步，
# 用上一步的顶层隐状态 $\mathbf{s}_{t'-1}$ 当查询，$\mathbf{h}_1, \dots, \mathbf{h}_T$ 既当键又当值，
# 用上一讲的**加性注意力**打分（查询和键都是 GRU 的隐状态，维度相同，加性注意力也照样适用）：
#
# $$\mathbf{c}_{t'} = \sum_{t=1}^{T} \alpha(\mathbf{s}_{t'-1}, \mathbf{h}_t)\, \mathbf{h}_t .$$
#
# $\mathbf{c}_{t'}$ 和当前输入词元的嵌入拼接起来，送进解码器的 GRU。源句的填充位置被遮蔽 softmax 挡住，
# 分不到权重。因为每一步的查询取决于上一步的输出，解码器只能在 Python 里逐步循环：

# %%
print(inspect.getsource(AttentionDecoder.forward))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 形状
#
# 一个很小的模型、4 个长短不一的源句（有效长度 7、5、3、2）和 5 步目标输入：
# 输出是每一步对目标词表的打分；`attention_weights` 记下了每一步对 7 个源位置的权重。

# %%
tiny = create_model("bahdanau", src_vocab_size=10, tgt_vocab_size=12, src_pad=1, tgt_pad=1,
                    embed_size=8, num_hiddens=16, num_layers=2, dropout=0.0).eval()
src_len = torch.tensor([7, 5, 3, 2])
src = torch.randint(4, 10, (4, 7)).masked_fill(torch.arange(7) >= src_len[:, None], 1)
tgt_in = torch.randint(4, 12, (4, 5))
with torch.no_grad():
    logits = tiny(src, src_len, tgt_in)
weights = tiny.attention_weights
print("logits", tuple(logits.shape), "| attention weights", tuple(weights.shape))
assert logits.shape == (4, 5, 12) and weights.shape == (4, 5, 7)
assert torch.allclose(weights.sum(-1), torch.ones(4, 5))  # every step spreads weight 1 ...
assert weights[3, :, 2:].abs().max() == 0  # ... over the real source tokens only

# %% [markdown]
# 翻译时一步一步地喂目标词元（`begin_decode` 编码一次，`decode` 每次只喂新的词元），
# 结果必须和一次性喂完整个目标（训练时的**强制教学**，teacher forcing）完全一样：

# %%
with torch.no_grad():
    state = tiny.begin_decode(src, src_len)
    steps = []
    for i in range(tgt_in.shape[1]):
        step_logits, state = tiny.decode(tgt_in[:, i:i + 1], state)
        steps.append(step_logits)
gap = (torch.cat(steps, dim=1) - logits).abs().max().item()
print(f"one token at a time vs teacher forcing: largest difference {gap:.1e}")
assert gap < 1e-5
for name in ("seq2seq", "bahdanau"):
    print(f"{name:9s} {count_parameters(create_model(name, src_vocab_size=5000, tgt_vocab_size=3000)):>10,} "
          "parameters (default sizes, vocabularies 5,000 and 3,000)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在英译中数据上训练
#
# 数据是 Linux 软件界面的英文原文和简体中文译文（`translation-zh`，见第 7.02 讲）。
# 两个模型用同一个配方（Adam、梯度裁剪、按真实词元平均的交叉熵），
# 看验证集上的损失（loss）、困惑度（perplexity）和逐词元准确率（强制教学下预测下一个字的准确率）。
# 完整模式用注册的默认大小（嵌入 128、隐藏 256、两层 GRU），各训练 **150 秒**（和第 7.02 讲一样）：
# 注意力让每一步更贵，同样的时间里 Bahdanau 走的步数更少，比的是同样的计算预算。
# 快速模式换成单层的小模型，各训练 16 步，只检查流程。

# %%
BUDGET = dict(max_steps=16) if QUICK else dict(seconds=150)  # the same budget for both models
MAX_LEN = 16 if QUICK else 48  # longest translation: an untrained model may never say <eos>
runs = {}
for name in ("seq2seq", "bahdanau"):
    torch.manual_seed(0)
    runs[name] = translation_run(name, "translation-zh", quick=QUICK, curves=not QUICK,
                                 **BUDGET)
loaders = runs["bahdanau"].loaders
print(loaders.describe)
for name, run in runs.items():
    last = run.trainer.history[-1]
    print(f"{name:9s} {run.trainer.global_step} steps, {run.trainer.train_seconds:6.1f} s: "
          f"val loss {last['val_loss']:.3f}, ppl {last['val_ppl']:7.1f}, "
          f"token accuracy {last['val_acc']:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 翻译几句测试集里的话
#
# 用贪心搜索（greedy search）翻译测试集的前 6 句（快速模式 3 句；按固定顺序取，不是挑出来的）。
# 快速模式下模型几乎什么都没学到，译文没有意义；完整模式下能看出两个模型的差别。

# %%
examples = loaders.test_pairs[:3 if QUICK else 6]
outputs = {name: translate_all(run.translator, examples, max_len=MAX_LEN)
           for name, run in runs.items()}
for i, pair in enumerate(examples):
    print(f"EN  {pair.src}\nREF {pair.tgt}")
    for name in runs:
        print(f"{name[:3].upper()} {outputs[name][i]}")
    print()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 注意力热图
#
# 取测试集中第一句 3 到 8 个英文词的句子，用 Bahdanau 模型翻译，再把"<bos> + 译文"整段喂回解码器，
# 读出每一步的注意力权重：第 $i$ 行是生成第 $i$ 个字（最后一行是 `<eos>`）时对每个源词元的权重。
# 训练得好的模型，权重集中在少数几个源词上，大致沿对角线走，又会按两种语言的语序跳来跳去；
# 快速模式只训练了 16 步，权重还几乎是均匀的。

# %%
pair = next(p for p in loaders.test_pairs if 3 <= len(p.src.split()) <= 8)
src_codec, tgt_codec = loaders.src_codec, loaders.tgt_codec
model = runs["bahdanau"].model.eval()
device = next(model.parameters()).device
src_ids = [*src_codec.encode(pair.src), src_codec.eos]
src_t, len_t = torch.tensor([src_ids], device=device), torch.tensor([len(src_ids)], device=device)
out_ids = greedy_search(model, src_t, len_t, tgt_codec.bos, tgt_codec.eos, MAX_LEN)[0]
with torch.no_grad():
    model.decode(torch.tensor([[tgt_codec.bos, *out_ids]], device=device),
                 model.begin_decode(src_t, len_t))
attention = model.attention_weights[0].cpu()  # (len(out_ids) + 1, len(src_ids))
src_tokens = src_codec.vocab.to_tokens(src_ids)
tgt_tokens = [*tgt_codec.vocab.to_tokens(out_ids), "<eos>"]
print(f"EN  {pair.src}\nREF {pair.tgt}\nOUT {tgt_codec.decode(out_ids)}")
fig = show_heatmaps(attention[None, None], xlabel="source tokens", ylabel="generated tokens",
                    xticklabels=src_tokens, yticklabels=tgt_tokens)
plt.show()
peak = attention.max(dim=1).values.mean().item()
print(f"each step's largest weight, on average: {peak:.2f} "
      f"(spread evenly over {len(src_tokens)} source tokens it would be {1 / len(src_tokens):.2f})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - Bahdanau 注意力让解码器每一步用自己的状态去查询编码器所有位置的输出，得到这一步专用的上下文；
# - 查询是解码器上一步的隐状态，键和值都是编码器的输出，评分用加性注意力，填充位置被遮蔽；
# - 代价是解码器只能逐步循环，每一步都要和整个源句算一次注意力；
# - 注意力权重可以画出来，看模型翻译每个字时"在看"源句的哪里。
#
# 自测：把查询从 $\mathbf{s}_{t'-1}$ 换成当前步的输出 $\mathbf{s}_{t'}$（Luong 等，2015 的做法），
# 解码器的计算顺序要怎么改？

# %%
final = {name: run.trainer.history[-1] for name, run in runs.items()}
uniform = math.log(len(tgt_codec))  # the loss of guessing every character with equal odds
assert all(r["val_loss"] < uniform for r in final.values()), (final, uniform)
assert attention.shape == (len(tgt_tokens), len(src_tokens))
assert torch.allclose(attention.sum(-1), torch.ones(len(tgt_tokens)), atol=1e-5)
if not QUICK:  # 150 s each: far better than guessing (perplexity under a tenth of the vocabulary)
    assert all(r["val_loss"] < uniform - math.log(10) for r in final.values()), (final, uniform)
print("lesson 7.07 done: val loss " + ", ".join(f"{n} {r['val_loss']:.3f}" for n, r in final.items()))
