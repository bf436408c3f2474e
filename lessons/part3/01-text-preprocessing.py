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
#     title: 文本预处理（text preprocessing）
#     title_en: Text preprocessing
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 文本预处理（text preprocessing）
#
# 第三部分讲**序列模型**（sequence model）：输入不再是一张张互不相干的图片，而是有先后顺序的一串数据。
# 最常见的序列是文本。神经网络只会算数，所以训练之前要先把文字变成整数，这一讲走一遍这条流水线：
#
# 1. 读入**语料**（corpus），清理掉不属于正文的东西；
# 2. 把文本切成**词元**（token）：字、词或者更小的片段；
# 3. 建立**词表**（vocabulary），给每个词元一个编号；
# 4. 把整个语料变成一长串编号，并分出训练集和验证集。
#
# 书里用的是英文小说《时间机器》。我们用 Debian 的两个离线软件包 fortunes-zh 和 fortunes
# 里的文本：唐诗三百首、宋诗、中文格言和英文名言。

# %%
import collections
import inspect

import torch

from dlcamp.core.utils import is_quick
from dlcamp.data import files
from dlcamp.text import (
    Vocab,
    corpus_text,
    encode_corpus,
    list_corpora,
    load_corpus,
    make_text_loaders,
    tokenize,
)
from dlcamp.text.corpora import ANSI, CORPORA, clean_line, locate_corpus, split_records

QUICK = is_quick()  # 快速模式：逐字往返检查只做两个小语料，完整模式四个都做

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 四个语料
#
# `list_corpora()` 列出全部语料。每个语料由若干条**记录**（record）组成：一首诗、一条格言或一段名言。
# 下面数一数每个语料训练集和验证集的记录数，以及按训练文本算的字符数和空格分隔的"词"数：

# %%
print(f"{'corpus':11s} {'train':>6s} {'val':>5s} {'chars':>10s} {'words':>8s}  description")
for name in list_corpora():
    n_train, n_val = len(load_corpus(name, "train")), len(load_corpus(name, "val"))
    text = corpus_text(name, "train")
    print(f"{name:11s} {n_train:6d} {n_val:5d} {len(text):10,d} {len(text.split()):8,d}  "
          f"{CORPORA[name].description}")
assert list_corpora() == ["quotes-en", "sayings-zh", "song100", "tang", "tang300"]

# %% [markdown]
# 唐诗只有两万来字，英文名言有两百万字符：差了一百倍。中文的"词"数几乎等于记录数，
# 因为中文不用空格分词，一首诗在训练文本里就是一整行、一个"词"。这一点在下面词元化时很重要。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一条记录：一首诗
#
# `load_corpus(name, split)` 返回 `TextRecord` 的列表，每条有标题 `title`、作者 `author`
# 和正文的各行 `lines`；`text` 是用换行连起来的正文。看看李白的《夜思》
# （唐诗三百首里的版本，即大家熟悉的《静夜思》）：

# %%
tang_all = load_corpus("tang300", "all")
poem = next(r for r in tang_all if r.title == "夜思")
print(poem)
print(f"《{poem.title}》 {poem.author}\n{poem.text}")
assert poem.author == "李白" and poem.lines[0] == "床前明月光，疑是地上霜。"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 原始文件长什么样
#
# fortune 文件是纯文本，记录之间用只有一个 `%` 的行隔开。`fortune` 命令把一条记录打印到终端上，
# 所以 fortunes-zh 给标题和作者加了**颜色转义码**（ANSI escape code）：
# `\x1b[32m` 是 ESC 字符加 `[32m`，意思是"接下来用绿色"，`33` 是黄色，`\x1b[m` 恢复默认颜色。
# 在终端里它们是看不见的，可对语言模型来说它们就是普通字符，会被当成词元去学，所以必须去掉。
# 下面是文件里《夜思》这条记录的原样（`repr` 把不可见的 ESC 显示成 `\x1b`）：

# %%
tang_path = locate_corpus("tang300")[0]
raw_file = files.read_bytes(tang_path).decode("utf-8")
start = raw_file.index("《夜思》") - len("\x1b[32m")
raw_record = raw_file[start:raw_file.index("\n%", start)]
print(tang_path)
for raw_line in raw_record.split("\n"):
    print(repr(raw_line))

# %% [markdown]
# 清理分两步：`split_records` 在 `%` 行处切开文件，并用正则表达式 `ANSI` 删掉颜色码
# （还会删掉响铃、退格这类控制字符）；然后按语料各自的规则把 `《…》` 行识别成标题、`作者：` 行识别成作者，
# 剩下的才是正文。逐行对照一下：

# %%
print("ANSI pattern:", ANSI.pattern)
title_line = raw_record.split("\n")[0]
print(repr(title_line), "->", repr(ANSI.sub("", title_line)))
cleaned = split_records(raw_file, str(tang_path))
print(len(cleaned), "records;", repr(cleaned[0][:40]))
assert ANSI.sub("", title_line) == f"《{poem.title}》"
assert "\x1b" in raw_file and not any("\x1b" in r for r in cleaned)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 格言和英文名言
#
# 中文格言把出处写在最后一行的 `--` 之后（也带颜色码），英文名言的出处则是缩进的 `-- 作者`。
# 解析后出处进了 `title` 和 `author`，正文里不再有它。英文记录的 `title` 是它所在文件的名字，
# 也就是话题（art、computers、cookie……）。

# %%
sayings = load_corpus("sayings-zh", "all")
saying = next(r for r in sayings if r.lines[0].startswith("上善若水"))
raw_sayings = files.read_bytes(locate_corpus("sayings-zh")[0]).decode("utf-8")
at = raw_sayings.index("上善若水")
print(repr(raw_sayings[at:raw_sayings.index("\n%", at)]))
print(saying)

quotes = load_corpus("quotes-en", "all")
quote = next(r for r in quotes if r.lines[0].startswith("Clothes make the man"))
cookie_path = next(p for p in locate_corpus("quotes-en") if p.name.startswith("cookie"))
raw_cookie = files.read_bytes(cookie_path).decode("utf-8")
at = raw_cookie.index("Clothes make the man")
print(repr(raw_cookie[at:raw_cookie.index("\n%", at)]))
print(quote)
assert saying.title == "道德经" and quote.author == "Mark Twain" and quote.title == "cookie"

# %% [markdown]
# 注意英文原文句号后面有两个空格：`clean_line` 把一行里连续的空白（包括全角空格）变成一个空格，
# 这样"两个空格"就不会变成一个单独的词元：

# %%
print(repr(clean_line("Clothes make the man.  Naked people\u3000have  little")))
assert clean_line(" a \t b\u3000c  ") == "a b c"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练用的文本
#
# 语言模型训练时不需要标题和作者。`corpus_text(name, split)` 把每条记录的正文连成**一行**：
# 中文的各行直接相连，英文用一个空格相连；每条记录以 `\n` 结尾。于是一首诗就是一行，
# 换行符 `\n` 标志着"这首诗结束了"，模型可以学会在什么时候收尾。

# %%
tang_text = corpus_text("tang300", "train")
en_text = corpus_text("quotes-en", "train")
for line in tang_text.split("\n")[:2]:
    print(line)
print(en_text.split("\n")[0][:150], "...")
assert tang_text.count("\n") == len(load_corpus("tang300", "train"))
assert "《" not in tang_text.split("\n")[0] and "李白" not in tang_text  # no titles, no authors

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 词元化（tokenization）
#
# 词元是模型一次读入、一次预测的单位。`tokenize(lines, token)` 提供两种切法：
#
# - `token="char"`：每个字符一个词元。中文没有空格，按字切最自然；字符的种类也少（唐诗约 2,400 种）。
# - `token="word"`：按空白切成词。适合英文，但标点会粘在词上（`society.`），
#   `lower=True` 先转成小写，让 `The` 和 `the` 成为同一个词元。
#
# 现代的大语言模型用的是介于两者之间的**子词**（subword，如 BPE）词元，这里不展开。

# %%
print(tokenize(poem.text, "char"))
print(tokenize(quote.text, "word"))
print(tokenize(quote.text, "word", lower=True)[0][:4])
tang_chars = tokenize(tang_text, "char")  # one list of characters per poem
en_words = tokenize(en_text, "word", lower=True)  # one list of words per record
print(len(tang_chars), "poems,", sum(map(len, tang_chars)), "characters")
print(len(en_words), "quotes,", sum(map(len, en_words)), "words")
assert tokenize("床前\n明月", "char") == [["床", "前"], ["明", "月"]]
assert tokenize("The cat, the HAT.", "word", lower=True) == [["the", "cat,", "the", "hat."]]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 词表（vocabulary）
#
# 词元还是字符串，模型需要整数。`Vocab` 数出每个词元出现的次数，然后编号：
# 0 号永远是 `<unk>`（unknown，未知词元），接着按**出现次数从多到少**排列。
# 常见的词元编号小，罕见的编号大；词表里没有的词元查出来都是 0。

# %%
print(inspect.getsource(Vocab.__init__))
tang_vocab = Vocab(tang_chars)
print(tang_vocab)
print("most frequent:", tang_vocab.token_freqs[:10])
print("月 ->", tang_vocab["月"], "| 床前 ->", tang_vocab[["床", "前"]],
      "| an unseen emoji ->", tang_vocab["\U0001f600"])
print(tang_vocab.to_tokens([1, 2, 3, 4]))
assert tang_vocab.idx_to_token[0] == "<unk>" and tang_vocab["\U0001f600"] == 0
assert tang_vocab.to_tokens(tang_vocab["月"]) == "月"
counts = [freq for _, freq in tang_vocab.token_freqs]
assert counts == sorted(counts, reverse=True)  # the most frequent first
assert tang_vocab.idx_to_token[1:] == [tok for tok, _ in tang_vocab.token_freqs]

# %% [markdown]
# 唐诗里最常见的是逗号和句号（每句一个），然后是"不""人""山""无""天""风"。
# 词表的大小就是唐诗训练集里不同字符的种数，加上 `<unk>`：

# %%
n_distinct = len(set(tang_text) - {"\n"})
print(len(tang_vocab), "tokens =", n_distinct, "distinct characters + <unk>")
assert len(tang_vocab) == n_distinct + 1  # tokenize(text) drops the line breaks

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 低频词元与 `min_freq`
#
# 很多词元只出现一两次。模型从一两个例子里学不到什么，它们却让词表和输出层变大。
# `min_freq` 把出现次数少于它的词元排除在外，它们都会变成 `<unk>`。
# 英文词的情况最明显：看看不同的 `min_freq` 下词表有多大、训练文本里有多少词被保留下来
# （`min_freq=0` 和 `1` 一样：保留所有出现过的词元）：

# %%
en_counter = collections.Counter(word for words in en_words for word in words)
n_en = sum(en_counter.values())
sizes = {}
for min_freq in (1, 2, 3, 5, 10):
    vocab = Vocab(en_words, min_freq=min_freq)
    kept = sum(en_counter[tok] for tok in vocab.idx_to_token[1:])
    sizes[min_freq] = len(vocab)
    print(f"min_freq={min_freq:2d}: {len(vocab):6,d} tokens, covering {kept / n_en:.1%} "
          "of the training words")
singletons = sum(1 for c in en_counter.values() if c == 1)
print(f"{singletons:,} of {len(en_counter):,} distinct words ({singletons / len(en_counter):.0%}) "
      "occur only once")
assert len(Vocab(en_words, min_freq=0)) == sizes[1] == len(en_counter) + 1
assert all(sizes[a] > sizes[b] for a, b in ((1, 2), (2, 3), (3, 5), (5, 10)))
assert sizes[1] - sizes[2] == singletons

# %% [markdown]
# `min_freq=2` 把词表砍掉一大半，丢掉的却只是训练文本里很小一部分的词：
# 少数常见词占了文本的绝大部分，下一讲的齐普夫定律会把这件事说清楚。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 保留词元（reserved tokens）
#
# 有些词元不出现在文本里，但模型需要它们，比如填充用的 `<pad>`、
# 句子开头和结尾的 `<bos>`、`<eos>`（后面的机器翻译会用到）。
# `reserved_tokens` 把它们排在 `<unk>` 之后、所有普通词元之前：

# %%
vocab_reserved = Vocab(tang_chars, reserved_tokens=["<pad>", "<bos>", "<eos>"])
print(vocab_reserved.idx_to_token[:8])
assert vocab_reserved.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
assert len(vocab_reserved) == len(tang_vocab) + 3
assert vocab_reserved.idx_to_token[4] == tang_vocab.idx_to_token[1]  # then by frequency

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 编码与解码
#
# `encode_corpus(text, vocab, token)` 把整个语料变成一个一维的整数张量。
# 按字编码时 `\n` 也是一个词元（模型要学会何时结束一首诗），所以词表要从**整段文本**建立：
# `Vocab(text)` 把字符串当作字符序列来数。解码就是查 `idx_to_token` 再拼回去：

# %%
char_vocab = Vocab(tang_text)  # every character, "\n" included
ids = encode_corpus(tang_text, char_vocab, "char")  # (N,) int64
print(ids.shape, ids[:13].tolist())
print("".join(char_vocab.to_tokens(ids[:13])))
assert "".join(char_vocab.to_tokens(ids)) == tang_text  # the round trip is exact
assert len(char_vocab) == len(tang_vocab) + 1  # plus "\n"

# %% [markdown]
# 按词编码时，文本按空白切开，换行不再是词元，所以解码只能还原出"用一个空格连起来的词"：

# %%
word_vocab = Vocab(en_words)
word_ids = encode_corpus(en_text, word_vocab, "word", lower=True)  # (M,)
print(word_ids[:10].tolist(), "->", " ".join(word_vocab.to_tokens(word_ids[:10])))
assert " ".join(word_vocab.to_tokens(word_ids)) == " ".join(en_text.lower().split())

# %% [markdown]
# 各个语料按字编码再解码，都应当原样还原（快速模式只检查两个小语料）：

# %%
for name in ["tang300", "song100"] if QUICK else list_corpora():
    text = corpus_text(name, "train")
    vocab = Vocab(text)
    assert "".join(vocab.to_tokens(encode_corpus(text, vocab, "char"))) == text, name
    print(f"{name}: {len(text):,} characters, {len(vocab):,} tokens, round trip exact")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练集和验证集
#
# 每个语料的 10% 记录划为验证集（`val`），其余为训练集（`train`）。
# 划分不靠随机数发生器，而是看每条记录正文的哈希值（hash）：在任何机器、任何库版本上都一样，
# 软件包更新增删几条记录时，其余记录也不会换边。完全相同的记录只保留一条，
# 所以同一句名言不会同时出现在训练集和验证集里。

# %%
for name in list_corpora():
    train = {r.text for r in load_corpus(name, "train")}
    val = {r.text for r in load_corpus(name, "val")}
    everything = {r.text for r in load_corpus(name, "all")}
    print(f"{name:11s} val = {len(val) / len(everything):.1%} of {len(everything):,} records")
    assert not train & val and train | val == everything

# %% [markdown]
# 词表只从训练集建立：验证集里训练时没见过的字会变成 `<unk>`，就像模型上线后遇到生字一样。
# `make_text_loaders` 就是这样做的。数一数唐诗验证集里有多少字是 `<unk>`：

# %%
val_text = corpus_text("tang300", "val")
val_ids = encode_corpus(val_text, char_vocab, "char")  # vocabulary of the training text
unknown = sorted({ch for ch in val_text if char_vocab[ch] == 0})
print(f"{(val_ids == 0).float().mean():.1%} of the val characters are <unk>, e.g. "
      f"{''.join(unknown[:12])}")
data = make_text_loaders("tang300")
assert data.vocab.idx_to_token == char_vocab.idx_to_token  # the same vocabulary
assert 0 < (val_ids == 0).sum() < 0.1 * len(val_ids)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 语料先清理：去掉颜色转义码、控制字符和多余的空白，把标题、作者、出处从正文里拿出来；
# - 中文按字、英文按词切成词元；`Vocab` 按频率从高到低编号，0 号是 `<unk>`，
#   `min_freq` 去掉低频词元，`reserved_tokens` 预留特殊词元；
# - `encode_corpus` 把语料变成一串整数，按字编码可以原样解码回来；
# - 训练集和验证集按记录的哈希值划分，词表只从训练集建立。
#
# 自测：如果把英文名言也按字编码，词表会有多大？`<unk>` 会多还是少？为什么？
#
# 最后用断言检查本讲的要点：

# %%
assert all("\x1b" not in r.text for name in list_corpora() for r in load_corpus(name, "all"))
v = Vocab("aaabbc", min_freq=2, reserved_tokens=["<eos>"])
assert v.idx_to_token == ["<unk>", "<eos>", "a", "b"] and v["c"] == 0
assert v.to_tokens(v[["a", "b", "c"]]) == ["a", "b", "<unk>"]
assert encode_corpus("abc", v, "char").tolist() == [2, 3, 0]
assert torch.equal(encode_corpus(poem.text, char_vocab, "char"),
                   torch.tensor(char_vocab[list(poem.text)]))
print("lesson 3.01 done: corpora cleaned, tokenized, numbered and split")
