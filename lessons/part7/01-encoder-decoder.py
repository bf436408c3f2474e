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
#     title: 编码器-解码器架构（encoder-decoder）
#     title_en: The encoder-decoder architecture
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 编码器-解码器架构（encoder-decoder）
#
# 第三部分的语言模型读入一串词元，预测下一个词元。**机器翻译**（machine translation）不一样：
# 输入是一句英文，输出是一句中文，两句的长度不同，词元也不是一一对应的
# （"Open file" 是 2 个英文词，"打开文件" 是 4 个汉字）。
#
# 通用的做法是把模型拆成两半：
#
# - **编码器**（encoder）读完整个**源序列**（source sequence），把它变成某种**状态**（state）；
# - **解码器**（decoder）从这个状态出发，一个词元一个词元地写出**目标序列**（target sequence），
#   每写一个词元，都把它当作下一步的输入，直到写出表示句子结束的 `<eos>`。
#
# 本讲只讲这个"接口"：编码器交给解码器什么、解码器怎样一步一步地工作。
# 接下来的几讲都遵守同一个接口：GRU 序列到序列模型（7.02）、贪心搜索和束搜索（7.03）、
# 注意力（7.07）和 Transformer（7.10）。

# %%
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.models import create_model
from dlcamp.models.decoding import greedy_search
from dlcamp.models.seq2seq import Decoder, Encoder, EncoderDecoder

QUICK = is_quick()  # 本讲没有训练，快速模式和完整模式一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 接口：三个类
#
# `dlcamp.models.seq2seq` 定义了三个类。`Encoder` 只规定了 `forward(src, src_len)`：
# 源序列 `src` 的形状是 (B, S)（B 个句子，补齐到 S 个词元），`src_len` (B,) 是每句真实的长度
# （含句末的 `<eos>`）。它输出什么，由配套的解码器决定：

# %%
print(inspect.getsource(Encoder))
print(inspect.getsource(Decoder))

# %% [markdown]
# `Decoder` 有两个方法：`init_state` 把编码器的输出变成解码器的初始状态；
# `forward(tgt, state)` 读入一段目标词元 (B, t)，给出每个位置上"下一个词元"的**对数几率**（logits），
# 形状 (B, t, V)，V 是目标词表大小，同时返回读完这段之后的新状态。
#
# `EncoderDecoder` 把两者接起来：

# %%
print(inspect.getsource(EncoderDecoder))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 两种用法：训练时和生成时
#
# - **训练**时目标句子是已知的。`forward(src, src_len, tgt_in)` 一次把整句目标
#   `tgt_in = <bos> y1 ... yn` 交给解码器，让它在每个位置预测下一个词元 `y1 ... yn <eos>`。
#   解码器读到的永远是**正确的**前文，而不是它自己的猜测，这叫**强制教学**（teacher forcing），下一讲细讲。
# - **生成**（推理）时目标句子未知。先 `begin_decode` 编码一次，再反复调用 `decode`：
#   每次只喂入**新**的词元（第一次是 `<bos>`），拿到下一个词元的分布，选一个，再喂回去。
#
# 和书（d2l 10.6）相比有两点不同：
#
# 1. 书里的解码器 `forward(X, state)` 每次要拿到完整的前文；这里的 `decode` 是**增量的**
#    （incremental）：状态里记住了已经读过的东西，只需喂新词元。Transformer 的解码器（7.10）也是这样。
# 2. 状态是一个字典，里面**每个张量的第 0 维都是批量维**。束搜索（7.03）要复制、重排候选句子时，
#    只需对每个张量做 `index_select(0, ...)`，不必知道模型内部是什么结构。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个不用学习的玩具：把字母倒过来
#
# 为了只看接口，先写一个不含任何参数的编码器-解码器：它把源序列的字母倒序写出来。
# 编码器什么都不算，把源序列原样交出；解码器的状态记住源序列和"已经写了几个"，
# 每读入一个词元，就把下一个该写的字母的 logit 设成 10、其他设成 0，写完了就给 `<eos>`。
#
# 词表：0 是 `<pad>`（补齐），1 是 `<bos>`，2 是 `<eos>`，后面是 26 个小写字母。

# %%
SPECIALS = ["<pad>", "<bos>", "<eos>"]
VOCAB = SPECIALS + list("abcdefghijklmnopqrstuvwxyz")
PAD, BOS, EOS = 0, 1, 2


def encode_words(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Words -> src (B, S) padded with PAD, each ending with EOS, and src_len (B,)."""
    ids = [[VOCAB.index(ch) for ch in word] + [EOS] for word in words]
    src_len = torch.tensor([len(i) for i in ids])
    src = torch.full((len(ids), int(src_len.max())), PAD)
    for row, i in enumerate(ids):
        src[row, :len(i)] = torch.tensor(i)
    return src, src_len


def to_text(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


class CopyEncoder(Encoder):
    def forward(self, src, src_len):
        return src  # nothing to compute: the decoder reads the source itself


class ReverseDecoder(Decoder):
    """Writes the source letters last to first, then <eos>, whatever tokens it is fed."""

    def init_state(self, enc_outputs, src_len):
        written = torch.zeros_like(src_len)  # (B,) letters written so far
        return {"src": enc_outputs, "src_len": src_len, "written": written}

    def forward(self, tgt, state):
        B, t = tgt.shape
        logits = torch.zeros(B, t, len(VOCAB))
        written = state["written"].clone()
        for step in range(t):  # every fed token asks for the next output token
            letters = state["src_len"] - 1  # the source without its <eos>
            pos = (letters - 1 - written).clamp(min=0)  # the next letter from the end
            nxt = state["src"].gather(1, pos[:, None])[:, 0]  # (B,)
            nxt = torch.where(written < letters, nxt, torch.full_like(nxt, EOS))
            logits[torch.arange(B), step, nxt] = 10.0
            written += 1
        return logits, {**state, "written": written}


toy = EncoderDecoder(CopyEncoder(), ReverseDecoder())
src, src_len = encode_words(["encoder", "decoder", "gru"])
print("src:", src, "src_len:", src_len, sep="\n")

# %% [markdown]
# 用 7.03 要讲的**贪心搜索**（greedy search）生成：每一步取 logit 最大的词元，喂回去，直到 `<eos>`。
# `greedy_search` 只用到 `begin_decode` 和 `decode`，所以对这个玩具和真正的翻译模型都适用：

# %%
outputs = greedy_search(toy, src, src_len, bos=BOS, eos=EOS, max_len=20)
print([to_text(o) for o in outputs])
assert [to_text(o) for o in outputs] == ["redocne", "redoced", "urg"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 强制教学与逐步解码给出同样的 logits
#
# 接口的一个基本要求：把目标序列一次整个喂进 `forward`，和用 `decode` 一个词元一个词元地喂，
# 每个位置的 logits 必须相同，否则训练时学的和生成时用的就不是同一个模型。
# 先在玩具上验证，目标取它自己生成的结果：

# %%
def step_by_step(model: EncoderDecoder, src: torch.Tensor, src_len: torch.Tensor,
                 tgt_in: torch.Tensor) -> torch.Tensor:
    """Feed tgt_in (B, T) one token at a time through decode; logits (B, T, V)."""
    state = model.begin_decode(src, src_len)
    pieces = []
    for t in range(tgt_in.shape[1]):
        logits, state = model.decode(tgt_in[:, t:t + 1], state)
        pieces.append(logits)
    return torch.cat(pieces, dim=1)


tgt_in = torch.tensor([[BOS] + o[:3] for o in outputs])  # (3, 4): <bos> and 3 letters
assert torch.equal(toy(src, src_len, tgt_in), step_by_step(toy, src, src_len, tgt_in))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个真正的模型：GRU 编码器-解码器
#
# 注册名为 `seq2seq` 的模型是下一讲的主角：编码器是嵌入层加多层 GRU，
# 解码器也是 GRU，把编码器最后的隐状态当作**上下文**（context）拼到每一步的输入上。
# 它没有训练过，输出毫无意义，但形状和接口已经完全确定：

# %%
model = create_model("seq2seq", src_vocab_size=len(VOCAB), tgt_vocab_size=len(VOCAB),
                     src_pad=PAD, tgt_pad=PAD, embed_size=16, num_hiddens=32, num_layers=2,
                     dropout=0.0)
model.eval()
print(type(model.encoder).__name__, "+", type(model.decoder).__name__)
state = model.begin_decode(src, src_len)
for key, value in state.items():
    print(f"state[{key!r}]: {tuple(value.shape)}")
tgt_in = torch.randint(3, len(VOCAB), (3, 6))
tgt_in[:, 0] = BOS
with torch.no_grad():
    forced = model(src, src_len, tgt_in)
    stepped = step_by_step(model, src, src_len, tgt_in)
print("teacher-forced logits:", tuple(forced.shape),
      f"| largest gap to step-by-step: {(forced - stepped).abs().max():.1e}")

# %% [markdown]
# 状态里的 `hidden` 形状是 (B, 层数, 隐藏单元数)：注意批量维在最前面，而 `nn.GRU` 自己要的是
# (层数, B, 隐藏单元数)，解码器在调用 GRU 前后各转置一次。`context` 是编码器最后一层的最终隐状态，
# 生成的每一步都不变。两种喂法的差别只是浮点舍入误差。
#
# 还有一个细节：同一批句子长短不一，短句后面补了 `<pad>`。编码器用
# `pack_padded_sequence` 只让真实的词元流过 GRU，所以每句的"最终状态"就是读完它自己最后一个词元时的状态，
# 不受后面补了多少 `<pad>` 影响。验证一下：把 "gru" 单独编码，和在批量里（补到 8 个位置）编码，状态一样：

# %%
alone_src, alone_len = encode_words(["gru"])
with torch.no_grad():
    alone = model.begin_decode(alone_src, alone_len)["context"]
    in_batch = model.begin_decode(src, src_len)["context"][2:3]
print("padding columns around 'gru' in the batch:", src.shape[1] - int(src_len[2]))
assert torch.allclose(alone, in_batch, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 编码器-解码器把"读懂源序列"和"写出目标序列"分开：编码器产生状态，解码器从状态出发逐词元生成；
# - 训练时用强制教学一次算完整句的 logits；生成时 `begin_decode` 一次、`decode` 多次，每次只喂新词元；
# - 状态字典的每个张量都以批量维开头，搜索算法因此不必了解模型内部；
# - 两种用法必须给出同样的 logits，这是检验一个解码器写对了没有的好办法。
#
# 自测：如果解码器在强制教学时能"看到"当前位置之后的目标词元，训练损失会怎样？生成时又会怎样？
# 玩具解码器完全不看喂给它的词元，它还算一个"解码器"吗？

# %%
assert [to_text(o) for o in greedy_search(toy, *encode_words(["a"]), BOS, EOS, 5)] == ["a"]
assert forced.shape == (3, 6, len(VOCAB))
assert torch.allclose(forced, stepped, atol=1e-5)  # teacher forcing == incremental decoding
assert all(v.shape[0] == 3 for v in state.values())  # every state tensor is batch-first
print("lesson 7.01 done: the toy reverses words; seq2seq's teacher-forced logits equal "
      "step-by-step decoding")
