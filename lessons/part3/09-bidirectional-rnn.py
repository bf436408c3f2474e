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
#     title: 双向循环神经网络（bidirectional RNN）
#     title_en: Bidirectional recurrent neural networks
#     minutes:
#       quick: 0.3
#       full: 1.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 双向循环神经网络（bidirectional RNN）
#
# 语言模型从左往右读，用过去预测将来。但很多任务拿到的是**整个序列**，填空就是一例：
#
# - "今天我很＿。"
# - "今天我很＿，一口气吃了三碗饭。"
#
# 第一句填"累""高兴"都行，第二句多半是"饿"。决定答案的词在空格**后面**：只从左往右读的网络看不到它。
# 词性标注、命名实体识别（"苹果"是水果还是公司，要看后文）、把一整句话编码成一个向量，都是这种情况。
#
# **双向循环神经网络**（bidirectional RNN）用两个循环层读同一个序列：一个从左往右，一个从右往左，
# 每个位置的表示由两者拼接而成，于是同时包含上文和下文。
#
# 本讲：公式、手工验证、从零实现与 `nn.LSTM(bidirectional=True)` 的比较，
# 以及书中的警告：**不要用双向网络做语言模型**，我们亲手验证它错在哪里。

# %%
import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.lm import lm_run, sample, scratch_matches_concise, tokens_per_second
from dlcamp.models import count_parameters, create_model

QUICK = is_quick()  # 快速模式：语料只取开头一段，每个模型只训练 60 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 公式：两个方向，各自一套参数
#
# 前向隐状态 $\overrightarrow{\mathbf{H}}_t$ 由 $\mathbf{X}_t$ 和**前一步**的前向隐状态算出，
# 反向隐状态 $\overleftarrow{\mathbf{H}}_t$ 由 $\mathbf{X}_t$ 和**后一步**的反向隐状态算出
# （上标 f、b 表示两个方向的参数，互不共享）：
#
# $$\overrightarrow{\mathbf{H}}_t = \phi(\mathbf{X}_t \mathbf{W}_{xh}^{(f)} + \overrightarrow{\mathbf{H}}_{t-1} \mathbf{W}_{hh}^{(f)} + \mathbf{b}_h^{(f)})$$
#
# $$\overleftarrow{\mathbf{H}}_t = \phi(\mathbf{X}_t \mathbf{W}_{xh}^{(b)} + \overleftarrow{\mathbf{H}}_{t+1} \mathbf{W}_{hh}^{(b)} + \mathbf{b}_h^{(b)})$$
#
# 两者拼接成 $\mathbf{H}_t = [\overrightarrow{\mathbf{H}}_t, \overleftarrow{\mathbf{H}}_t]$（$n \times 2h$），再接输出层：
#
# $$\mathbf{O}_t = \mathbf{H}_t \mathbf{W}_{hq} + \mathbf{b}_q$$
#
# 换成 LSTM，就是两个方向各有一个 LSTM（各有自己的记忆元）。多层时，
# 下一层的两个方向都读上一层拼接后的输出序列。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 反向 = 把序列倒过来，用普通的循环层读一遍
#
# `nn.LSTM(bidirectional=True)` 的反向参数名后面多了 `_reverse`。把它们放进一个普通的单向 LSTM，
# 让它读**倒过来**的序列，再把输出倒回来，应该正好是双向输出的后一半：

# %%
d, h, n, T = 5, 8, 3, 7  # input size, hidden size, batch size, time steps
bi = nn.LSTM(d, h, bidirectional=True)
print([name for name, _ in bi.named_parameters()])
X = torch.randn(T, n, d)  # (T, n, d)
out, (H_n, C_n) = bi(X)  # (T, n, 2h), (2, n, h) twice


def one_direction(source: nn.LSTM, suffix: str) -> nn.LSTM:
    """A unidirectional LSTM holding the parameters whose names end in `suffix`."""
    one = nn.LSTM(source.input_size, source.hidden_size)
    one.load_state_dict({name.removesuffix(suffix) + "_l0": value
                         for name, value in source.state_dict().items() if name.endswith(suffix)})
    return one


forward, backward = one_direction(bi, "_l0"), one_direction(bi, "_l0_reverse")
out_f, (H_f, _) = forward(X)
out_b_flipped, (H_b, _) = backward(X.flip(0))  # read from the last step to the first
out_b = out_b_flipped.flip(0)                   # back in time order
assert torch.allclose(out, torch.cat([out_f, out_b], dim=-1), atol=1e-6)
print("output", tuple(out.shape), "= forward", tuple(out_f.shape), "+ backward", tuple(out_b.shape))

# %% [markdown]
# 最终状态 `H_n` 的第 0 片是前向读完**最后一步**的状态，第 1 片是反向读完**第一步**的状态。
# 用双向网络把一句话编码成一个向量时，通常把这两片拼起来：各自都"读完了整句话"。

# %%
assert torch.allclose(H_n[0], out[-1, :, :h], atol=1e-6) and torch.allclose(H_n[0], H_f[0], atol=1e-6)
assert torch.allclose(H_n[1], out[0, :, h:], atol=1e-6) and torch.allclose(H_n[1], H_b[0], atol=1e-6)
sentence_vector = torch.cat([H_n[0], H_n[1]], dim=-1)  # (n, 2h)
print("sentence encoding:", tuple(sentence_vector.shape))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 从零实现和 `nn.LSTM` 一样
#
# 注册的 `bilstm` 和 `bilstm-scratch` 是双向 LSTM 语言模型；参数是单向的两倍，输出层的输入是 $2h$ 维。
# 复制权重后比较：

# %%
V = 100
concise = create_model("bilstm", vocab_size=V)
scratch = create_model("bilstm-scratch", vocab_size=V)
names = [name for name, _ in scratch.rnn.named_parameters()]
print(names)
assert names == [name for name, _ in concise.rnn.named_parameters()]
assert count_parameters(concise.rnn) == 2 * count_parameters(create_model("lstm", vocab_size=V).rnn)
gaps = scratch_matches_concise("bilstm", vocab_size=V)  # copies the weights, runs both
print("largest |concise - scratch| of the logits, final state and gradients:",
      {k: f"{v:.1e}" for k, v in gaps.items()})
assert max(gaps.values()) < 1e-5, gaps

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 双向的语言模型看得见答案
#
# 语言模型在位置 $t$ 要预测 $x_{t+1}$。但双向网络在位置 $t$ 的反向隐状态 $\overleftarrow{\mathbf{H}}_t$
# 是从序列末尾一路读到 $x_t$ 得来的，途中**已经读过 $x_{t+1}$**：要预测的答案就在它的输入里。
# 改动一句话里第 6 个词元，看哪些位置的预测跟着变（两个模型都是刚初始化的，这和训练无关，只取决于结构）：

# %%
uni = create_model("lstm", vocab_size=V).eval()
tokens = torch.randint(V, (4, 12))  # (B, T)
changed = tokens.clone()
changed[:, 5] = (changed[:, 5] + 1) % V  # change the token at position 5 only
with torch.no_grad():
    for name, model in (("lstm", uni), ("bilstm", concise.eval())):
        moved = (model(tokens)[0] - model(changed)[0]).abs().amax(dim=(0, 2)) > 1e-6  # (T,)
        print(f"{name:7s} predictions that changed:", "".join("x" if m else "." for m in moved.tolist()))
        if name == "lstm":
            assert not moved[:5].any() and moved[5:].all()  # only positions 5, 6, ...
        else:
            assert moved.all()  # every position, including 4, whose target *is* token 5

# %% [markdown]
# 单向 LSTM 在位置 0—4 的预测不受影响：它们只看到过去。双向 LSTM 每个位置都变了，
# 包括位置 4，而位置 4 要预测的正是被改动的那个词元。训练会发现这条捷径：
# 只要把反向读到的下一个字符"抄"过来，损失就能降得很低。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练一下：困惑度低得不可思议
#
# 在 `quotes-en` 上用同一个配方、同样的步数训练单向的 `lstm` 和双向的 `bilstm`
# （完整模式各 400 步，快速模式各 60 步，只用语料开头）：

# %%
STEPS = 60 if QUICK else 400
runs = {}
for name in ("lstm", "bilstm"):
    runs[name] = lm_run(name, "quotes-en", quick=QUICK, curves=False,
                        epochs=4 if QUICK else 1, max_steps=STEPS)
print(f"\nafter {STEPS} steps on quotes-en:")
for name, (trainer, _, ppl) in runs.items():
    print(f"{name:7s} validation perplexity {ppl:6.2f}   {tokens_per_second(trainer):>8,.0f} tokens/s")

# %% [markdown]
# 双向模型的验证困惑度远低于单向模型，训练越久越接近 1（完全确定下一个字符）。
# 换个角度看：在验证集的一个小批量上，让两个模型逐个位置取概率最大的字符，和真正的下一个字符比：

# %%
bi_trainer, bi_loaders, bi_ppl = runs["bilstm"]
uni_trainer, _, uni_ppl = runs["lstm"]
X_val, Y_val, _ = next(iter(bi_loaders.val))  # (B, T) each: the first validation batch
whole = {}
with torch.no_grad():
    for name, trainer in (("lstm", uni_trainer), ("bilstm", bi_trainer)):
        logits = trainer.model.eval()(X_val)[0]  # (B, T, V): the whole batch at once
        whole[name] = (logits.argmax(dim=-1) == Y_val).float().mean().item()
        print(f"{name:7s} next character right {whole[name]:.0%} of the time")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 可是它写不出东西
#
# 生成文本时，下一个字符还不存在，反向层无从读起：模型一个字符一个字符地往前走，
# 每次调用只给它刚刚得到的那一个字符，反向层能读到的也只有这一个字符。
# 在同一个验证小批量上模拟这种情形：逐个字符喂给模型（状态照常往下传），再算一遍困惑度和准确率：

# %%
step_by_step = {}
with torch.no_grad():
    for name, trainer in (("lstm", uni_trainer), ("bilstm", bi_trainer)):
        state, pieces = None, []
        for t in range(X_val.shape[1]):  # one character per call, as when generating
            logits, state = trainer.model(X_val[:, t:t + 1], state)  # (B, 1, V)
            pieces.append(logits)
        logits = torch.cat(pieces, dim=1)  # (B, T, V)
        nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y_val.reshape(-1))
        step_by_step[name] = (nll.exp().item(), (logits.argmax(dim=-1) == Y_val).float().mean().item())
        print(f"{name:7s} one character at a time: perplexity {step_by_step[name][0]:6.1f}, "
              f"next character right {step_by_step[name][1]:.0%}")
print(f"(guessing uniformly: perplexity {len(bi_loaders.vocab)})")

# %% [markdown]
# 单向 LSTM 一次读完和逐字读，结果差不多：它本来就只用过去。双向 LSTM 一旦看不到未来，
# 就比均匀地乱猜还差：训练教会它的是"抄反向层读到的下一个字符"，而这个字符现在并不存在。
# 所以它生成的文本是乱码（对照单向的 LSTM）：

# %%
for name, (trainer, loaders, _) in runs.items():
    print(f"{name}:", sample(trainer, loaders, "The ", length=80))
bi_text = sample(bi_trainer, bi_loaders, "The ", length=80)

# %% [markdown]
# 所以双向网络用在**能拿到整个序列**的任务上：标注、分类、给翻译模型当编码器（读原文的那一半）；
# 预训练的 BERT 也是这个思路。做语言模型和生成文本，只能用单向的。
# 另一个代价：反向层要等整个序列到齐才能开始，所以双向网络也不适合逐字实时处理的场合。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 双向循环网络由前向和反向两个循环层组成，各有一套参数，每个位置的输出是两者的拼接（$2h$ 维）；
# - 反向层就是读倒序序列的普通循环层；PyTorch 里它的参数名带 `_reverse`，最终状态 `H_n[1]` 是它读完第一步的状态；
# - 双向网络适合能看到整个序列的任务；做语言模型会"偷看"下一个词元，困惑度假装很低，生成时却一塌糊涂。
#
# 自测：一个两层的双向 GRU，隐藏单元 $h$，第二层每个方向的输入是几维？它的参数量是单向两层 GRU 的两倍吗？

# %%
assert bi_ppl < 0.6 * uni_ppl, (bi_ppl, uni_ppl)  # "predicts" far better: it sees the answer
assert whole["bilstm"] > whole["lstm"] + 0.15, whole  # with the future in view
assert step_by_step["bilstm"][0] > 2 * step_by_step["lstm"][0], step_by_step  # without it
assert step_by_step["bilstm"][1] < step_by_step["lstm"][1], step_by_step
assert bi_text.startswith("The ") and len(bi_text) == 84
print(f"lesson 3.09 done: bilstm == bilstm-scratch; perplexity after {STEPS} steps: "
      f"bilstm {bi_ppl:.2f} vs lstm {uni_ppl:.2f}, yet it cannot generate")
