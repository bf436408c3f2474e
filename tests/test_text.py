"""Text corpora (fortunes-zh, fortunes), vocabularies, LM minibatches, clipping, sampling."""

from __future__ import annotations

import gzip
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from dlcamp.core.errors import BadArgument, DatasetCorrupt, DatasetNotFound, UnknownName
from dlcamp.text import (
    SeqDataLoader,
    Vocab,
    corpus_text,
    encode_corpus,
    list_corpora,
    load_corpus,
    make_text_loaders,
    perplexity,
    sample_next,
    seq_data_iter_random,
    seq_data_iter_sequential,
    tokenize,
)
from dlcamp.text.corpora import (
    FORTUNE_SYSTEM_DIR,
    parse_poem,
    parse_quote,
    parse_saying,
    split_records,
)


def all_strings(records):
    for r in records:
        yield r.title
        yield r.author
        yield from r.lines


def clean(records) -> bool:
    """No escape codes, no control characters, lines stripped and non-empty."""
    return all("\x1b" not in s and not any(ord(c) < 32 for c in s) for s in all_strings(records)) \
        and all(line and line == line.strip() for r in records for line in r.lines)


# --- corpora ------------------------------------------------------------------------------

def test_list_corpora():
    assert list_corpora() == ["quotes-en", "sayings-zh", "song100", "tang", "tang300"]


def test_tang300_poems_titles_authors():
    poems = load_corpus("tang300", "all")
    assert len(poems) == 313
    assert all(p.title and p.author and p.lines for p in poems)
    assert clean(poems)
    jingyesi = [p for p in poems if "床前明月光" in p.text]
    assert len(jingyesi) == 1 and jingyesi[0].author == "李白" and jingyesi[0].title == "夜思"
    assert jingyesi[0].lines == ("床前明月光，疑是地上霜。", "举头望明月，低头思故乡。")
    first = corpus_text("tang300", "all").split("\n")[0]
    assert first == ("兰叶春葳蕤，桂华秋皎洁。欣欣此生意，自尔为佳节。"
                     "谁知林栖者，闻风坐相悦。草木有本心，何求美人折？")


def test_song100_authors_without_dates():
    poems = load_corpus("song100", "all")
    assert len(poems) == 96  # one "%" line carries trailing spaces: still a separator
    assert all(p.title and p.author and p.lines for p in poems)
    assert clean(poems)
    assert not any(c in p.author for p in poems for c in "（）：:１２")
    assert {"苏轼", "陆游", "朱淑真"} <= {p.author for p in poems}
    assert not any(line.startswith("其") and len(line) <= 3 for p in poems for line in p.lines)
    assert not any(p.text.startswith(("题目", "作者")) for p in poems)


def test_sayings_zh_attribution_and_filter():
    sayings = load_corpus("sayings-zh", "all")
    assert 4000 < len(sayings) < 5263
    assert clean(sayings)
    xishi = [s for s in sayings if s.lines == ("家国兴亡自有时，吴人何苦怨西施。",)]
    assert len(xishi) == 1 and (xishi[0].author, xishi[0].title) == ("罗隐", "西施")
    assert not any(line.startswith("--") for s in sayings for line in s.lines)
    # The Debian manual sections and box-drawing tables of the `chinese` file are dropped.
    text = corpus_text("sayings-zh", "all")
    assert "┌" not in text and "Osamu Aoki" not in text
    assert "工欲善其事，必先利其器。\n" in text


def test_quotes_en_attributions_removed():
    quotes = load_corpus("quotes-en", "all")
    assert len(quotes) > 14000
    assert clean(quotes)
    assert "ascii-art" not in {q.title for q in quotes}
    by_text = {q.text: q for q in quotes}
    balliett = by_text["A critic is a bundle of biases held loosely together by a sense of taste."]
    assert (balliett.title, balliett.author) == ("art", "Whitney Balliett")
    heinlein = [q for q in quotes if q.author == "Robert Heinlein" and "critic" in q.text][0]
    assert heinlein.lines[-1] == "-- he hates all creative people equally."  # text, not author
    bullwinkle = [q for q in quotes if q.author == "Bullwinkle Moose"]  # cookie's `-- Name` style
    assert bullwinkle and all("Bullwinkle" not in q.text for q in bullwinkle)
    # A handful of lists and dialogues start lines with "--"; attributions never stay.
    dashed = [q for q in quotes if any(line.startswith("--") for line in q.lines)]
    assert len(dashed) < 0.005 * len(quotes)
    text = corpus_text("quotes-en", "all")
    assert "\t" not in text and "  " not in text and "\x1b" not in text


def test_corpus_text_one_record_per_line():
    for name, joiner in (("tang300", ""), ("quotes-en", " ")):
        records = load_corpus(name, "val")
        assert corpus_text(name, "val") == "".join(joiner.join(r.lines) + "\n" for r in records)
    assert corpus_text("tang300").count("\n") == len(load_corpus("tang300"))


@pytest.mark.parametrize("name", ["tang300", "song100", "sayings-zh", "quotes-en"])
def test_split_is_disjoint_covering_and_deterministic(name):
    from dlcamp.text import corpora as text_module

    every = load_corpus(name, "all")
    train, val = load_corpus(name, "train"), load_corpus(name, "val")
    assert len(val) == max(1, round(0.1 * len(every)))
    assert len(train) + len(val) == len(every)
    assert {r.text for r in train}.isdisjoint(r.text for r in val)
    assert Counter(train + val) == Counter(every)
    text_module._load_cached.cache_clear()  # parse again: same split
    assert load_corpus(name, "val") == val


def test_unknown_corpus_and_split():
    with pytest.raises(UnknownName, match="quotes-en, sayings-zh, song100, tang, tang300"):
        load_corpus("tang3000")
    with pytest.raises(UnknownName, match="train, val, all"):
        load_corpus("tang300", "test")


def test_missing_files_say_how_to_fix(isolated_data):
    with pytest.raises(DatasetNotFound) as e:
        load_corpus("tang300")
    msg = str(e.value)
    assert "tang300" in msg and "sudo apt-get install fortunes-zh" in msg
    assert str(isolated_data / "data" / "fortunes") in msg
    assert str(isolated_data / "system" / "fortunes") in msg
    with pytest.raises(DatasetNotFound, match=r"art, computers, .* and 37 more.*install fortunes`"):
        corpus_text("quotes-en")


def test_files_found_in_dlcamp_data_plain_or_gz(isolated_data):
    shutil.copy(FORTUNE_SYSTEM_DIR / "tang300", isolated_data / "data" / "tang300")
    assert len(load_corpus("tang300", "all")) == 313
    dest = isolated_data / "data" / "fortunes"
    dest.mkdir()
    (dest / "song100.gz").write_bytes(gzip.compress((FORTUNE_SYSTEM_DIR / "song100").read_bytes()))
    assert len(load_corpus("song100", "all")) == 96


@pytest.mark.parametrize("content", [
    b"just some text\nwithout any separator\n",
    b"%\n\n%\n   \n%\n",  # separators but no record
    b"\xff\xfe\x00garbage\n%\n\x80\x81\n",  # not UTF-8
])
def test_garbled_file_is_corrupt(isolated_data, content):
    path = Path(isolated_data / "data" / "tang300")
    path.write_bytes(content)
    with pytest.raises(DatasetCorrupt, match="tang300"):
        load_corpus("tang300")


def test_parsers_on_small_records():
    song = ("\x1b[32m题目:《春居杂兴》二首\x1b[m\n"
            "\x1b[33m作者:王禹偁（９５４－１００１）\x1b[m\n"
            "\n            其一\n两株桃杏映篱斜，\n\n%    \n")
    (raw,) = split_records(song, "song100")
    poem = parse_poem(raw, "song100")
    assert (poem.title, poem.author) == ("春居杂兴二首", "王禹偁")
    assert poem.lines == ("两株桃杏映篱斜，",)
    (raw,) = split_records("读万卷书，\n行万里路。\n\x1b[33m    --\x1b[32m《谚语》\x1b[m\n%\n", "")
    saying = parse_saying(raw, "chinese")
    assert (saying.title, saying.author) == ("谚语", "")
    assert saying.lines == ("读万卷书，", "行万里路。")
    assert parse_saying("9.6. 磁盘映像\n\n    我们在这里讨论磁盘。", "chinese") is None
    quote = parse_quote("\nNobody shot me.\n\t\t-- Frank Gusenberg, his last words,\n"
                        "\t\twhen asked who shot him\n\nOnly Capone kills like that.\n"
                        "\t\t-- Bugs Moran\n", "politics")
    assert quote.lines == ("Nobody shot me.", "Only Capone kills like that.")
    assert quote.author == "Frank Gusenberg, his last words, when asked who shot him; Bugs Moran"
    assert quote.title == "politics"


# --- tokens and vocabularies --------------------------------------------------------------

def test_tokenize():
    assert tokenize(["床前 明月"]) == [["床", "前", " ", "明", "月"]]
    assert tokenize("The cat\nthe  dog\n", "word") == [["The", "cat"], ["the", "dog"]]
    assert tokenize("The cat", "word", lower=True) == [["the", "cat"]]
    with pytest.raises(UnknownName, match="char, word"):
        tokenize("x", "bpe")


def test_vocab_order_unk_reserved_min_freq():
    tokens = [["b", "a", "c"], ["a", "d", "b", "a"]]  # a:3, b:2, c:1, d:1 (c seen first)
    vocab = Vocab(tokens, reserved_tokens=["<pad>", "<unk>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "a", "b", "c", "d"]
    assert vocab.unk == 0 and vocab["zzz"] == 0 and vocab["a"] == 2
    assert vocab[["a", ["d", "?"]]] == [2, [5, 0]]
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 1), ("d", 1)]
    assert len(Vocab(tokens, min_freq=2)) == 3  # <unk>, a, b
    assert Vocab("abca").idx_to_token == ["<unk>", "a", "b", "c"]  # a str counts its chars
    assert len(Vocab()) == 1


def test_vocab_round_trip_and_rebuild():
    text = corpus_text("tang300", "val")
    vocab = Vocab(text)
    ids = vocab[list(text)]
    assert "".join(vocab.to_tokens(ids)) == text
    assert vocab.to_tokens(torch.tensor(ids[:3])) == list(text[:3])
    again = Vocab.from_idx_to_token(vocab.idx_to_token)
    assert again.token_to_idx == vocab.token_to_idx and again[list(text)] == ids
    for bad in (["a", "<unk>"], ["<unk>", "a", "a"], ["<unk>", 3]):
        with pytest.raises(BadArgument):
            Vocab.from_idx_to_token(bad)


def test_encode_corpus_matches_lookup():
    train, val = corpus_text("tang300", "train"), corpus_text("tang300", "val")
    vocab = Vocab(train)
    ids = encode_corpus(val, vocab)
    assert ids.dtype == torch.long and ids.tolist() == [vocab[c] for c in val]
    assert (ids == 0).any() == any(c not in vocab.token_to_idx for c in val)
    assert ids[vocab["\n"] == ids].numel() == val.count("\n")
    words = Vocab(tokenize("the cat sat\non the mat", "word"))
    assert encode_corpus("the dog\nsat", words, "word").tolist() == [1, 0, words["sat"]]
    assert encode_corpus("", vocab).shape == (0,)


# --- minibatches --------------------------------------------------------------------------

def test_random_sampling_covers_each_position_once():
    batch, steps = 4, 5
    corpus = torch.arange(batch * steps * 6 + steps)  # 24 subsequences for any offset
    offsets = set()
    for seed in range(12):
        gen = torch.Generator().manual_seed(seed)
        pairs = list(seq_data_iter_random(corpus, batch, steps, gen))
        xs = [x for x, _ in pairs]
        x, y = torch.cat(xs), torch.cat([y for _, y in pairs])  # (24, T)
        assert len(xs) == 6 and xs[0].shape == (batch, steps)
        assert torch.equal(y, x + 1)  # Y is X shifted by one
        assert torch.equal(x - x[:, :1], torch.arange(steps).expand_as(x))  # contiguous rows
        offset = int(x.min())
        offsets.add(offset)
        assert torch.equal(x.flatten().sort().values, torch.arange(offset, offset + 120))
    assert len(offsets) > 1  # the start moves from epoch to epoch


def test_random_sampling_order_is_random_and_seeded():
    corpus = torch.arange(1000)
    def starts(seed):
        g = torch.Generator().manual_seed(seed)
        return [x[:, 0].tolist() for x, _ in seq_data_iter_random(corpus, 4, 10, g)]
    assert starts(0) == starts(0) and starts(0) != starts(1)
    firsts = [s for batch in starts(0) for s in batch]
    assert firsts != sorted(firsts)


def test_sequential_rows_continue_across_batches():
    batch, steps = 3, 4
    corpus = torch.arange(100) * 7  # any values: check positions through the index
    for seed in range(6):
        pairs = list(seq_data_iter_sequential(corpus, batch, steps,
                                              torch.Generator().manual_seed(seed)))
        xs = torch.cat([x for x, _ in pairs], dim=1) // 7  # (B, n*T) positions
        ys = torch.cat([y for _, y in pairs], dim=1) // 7
        assert torch.equal(ys, xs + 1)
        for row in xs:  # each row is a contiguous slice of the corpus
            assert torch.equal(row, torch.arange(int(row[0]), int(row[0]) + len(row)))
        row_len = (100 - int(xs[0, 0]) - 1) // batch
        assert torch.equal(xs[:, 0] - xs[0, 0], torch.arange(batch) * row_len)
        for (x0, _), (x1, _) in zip(pairs, pairs[1:], strict=False):
            assert torch.equal(x1[:, 0], x0[:, -1] + 7)  # batch i continues batch i-1
    fixed = list(seq_data_iter_sequential(corpus, batch, steps, offset=0))
    assert int(fixed[0][0][0, 0]) == 0


def test_loader_fresh_flags_length_and_epochs():
    corpus = torch.arange(2000)
    for random in (True, False):
        loader = SeqDataLoader(corpus, 8, 10, random=random, seed=3)
        assert loader.num_tokens_per_batch == 80
        runs = []
        for epoch in range(4):
            loader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(loader) > 0
            fresh = [bool(f) for _, _, f in batches]
            assert all(f.dim() == 0 and f.dtype == torch.bool for _, _, f in batches)
            assert fresh == [random or i == 0 for i in range(len(batches))]
            runs.append(torch.stack([x for x, _, _ in batches]))
        loader.set_epoch(2)
        assert torch.equal(torch.stack([x for x, _, _ in loader]), runs[2])  # resumable
        assert not torch.equal(runs[0], runs[1])
    with pytest.raises(BadArgument, match="too few"):
        SeqDataLoader(torch.arange(50), 8, 10)


def test_val_loader_is_fixed():
    loader = SeqDataLoader(torch.arange(500), 4, 10, random=False, offset=0)
    first = [x for x, _, _ in loader]
    loader.set_epoch(5)
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _, _ in loader], strict=True))
    assert int(first[0][0, 0]) == 0


def test_make_text_loaders_quick():
    data = make_text_loaders("tang300", batch_size=16, num_steps=20, quick=True)
    assert data.corpus == "tang300" and data.token == "char"
    assert len(data.train.corpus) == 20_000
    assert data.vocab.idx_to_token[0] == "<unk>" and "\n" in data.vocab.token_to_idx
    x, y, fresh = next(iter(data.train))
    assert x.shape == (16, 20) and bool(fresh) and int(x.max()) < len(data.vocab)
    val_text = corpus_text("tang300", "val")
    unseen = {c for c in val_text if c not in data.vocab.token_to_idx}
    assert unseen and (data.val.corpus == 0).sum() == sum(val_text.count(c) for c in unseen)
    assert len(data.val) >= 1 and data.val.batch_size <= 16
    words = make_text_loaders("quotes-en", token="word", lower=True, quick=True, random=False)
    assert len(words.train.corpus) == 20_000 and words.vocab["the"] == 1


# --- perplexity, sampling -----------------------------------------------------------------

def test_perplexity():
    assert perplexity(math.log(5)) == pytest.approx(5)
    uniform = torch.nn.functional.cross_entropy(torch.zeros(10, 37), torch.zeros(10).long())
    assert perplexity(uniform) == pytest.approx(37, rel=1e-5)
    assert perplexity(1e6) == math.inf


def test_sample_next_greedy_and_shapes():
    logits = torch.randn(6, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next(logits, greedy=True), logits.argmax(-1))
    one = sample_next(logits[0], generator=torch.Generator().manual_seed(1))
    assert one.dim() == 0 and one.dtype == torch.long
    cold = sample_next(logits.repeat(50, 1), temperature=1e-4,
                       generator=torch.Generator().manual_seed(2))
    assert torch.equal(cold, logits.argmax(-1).repeat(50))


def test_sample_next_top_k_allowed_banned():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20, generator=gen)
    many = logits.expand(3000, 20)
    top3 = set(logits.topk(3).indices.tolist())
    assert set(sample_next(many, top_k=3, generator=gen).tolist()) == top3
    assert set(sample_next(many, allowed=[1, 4, 7], generator=gen).tolist()) == {1, 4, 7}
    banned = logits.topk(10).indices
    drawn = set(sample_next(many, banned=banned, generator=gen).tolist())
    assert drawn.isdisjoint(banned.tolist()) and len(drawn) > 5
    best = int(logits.argmax())
    before = logits.clone()
    assert sample_next(logits, greedy=True, banned=[best]) != best
    assert torch.equal(logits, before)  # the caller's logits are left alone


def test_sample_next_frequencies_match_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 40_000
    for temperature in (1.0, 2.0):
        draws = sample_next(logits.expand(n, 5), temperature=temperature,
                            generator=torch.Generator().manual_seed(7))
        freq = torch.bincount(draws, minlength=5).double() / n
        probs = torch.softmax(logits.double() / temperature, -1)
        # Chi-square with 4 degrees of freedom: 18.5 is its 99.9% quantile.
        chi2 = float(((freq - probs) ** 2 / probs).sum() * n)
        assert chi2 < 18.5, (freq, probs)


def test_sample_next_bad_arguments():
    logits = torch.zeros(5)
    for kwargs in ({"temperature": 0}, {"temperature": -1.0}, {"temperature": math.inf},
                   {"temperature": -math.inf}, {"temperature": math.nan}, {"top_k": -1},
                   {"banned": [0, 1, 2, 3, 4]}, {"allowed": []}, {"allowed": [9]}):
        with pytest.raises(ValueError):
            sample_next(logits, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        sample_next(torch.zeros(2, 3, 4))
    for bad in (math.nan, math.inf):  # a diverged model: said so, not a multinomial error
        with pytest.raises(BadArgument, match="diverged"):
            sample_next(torch.tensor([0.0, bad, 1.0]))


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-45, 1e-38, 1e-8])
def test_sample_next_tiny_temperature_is_the_likeliest_token(temperature):
    """No nan where float32 rounds the temperature to 0; exact ties share the draws."""
    logits = torch.tensor([2.0, -1.0, 2.0, 1.9999, -math.inf, 0.5])
    draws = sample_next(logits.expand(2000, 6), temperature=temperature, banned=[5],
                        generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=6)
    assert set(draws.tolist()) == {0, 2} and 800 < counts[0] < 1200, counts


@pytest.mark.parametrize("temperature", [1e4, 1e38, 1e39, 1e308])
def test_sample_next_huge_temperature_is_uniform_over_the_tokens_left(temperature):
    logits = torch.tensor([5.0, -3.0, 0.0, -math.inf, 1.0])
    n = 20_000
    draws = sample_next(logits.expand(n, 5), temperature=temperature, banned=[2],
                        generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=5).double() / n
    assert freq[2] == freq[3] == 0
    torch.testing.assert_close(freq[[0, 1, 4]], torch.full((3,), 1 / 3, dtype=torch.float64),
                               atol=0.02, rtol=0)
