"""BPE from scratch (course/subword.py) equals Hugging Face tokenizers' BPE."""

from __future__ import annotations

import pytest
from tokenizers import pre_tokenizers

from dlcamp.course.subword import (
    apply_bpe,
    learn_bpe,
    pre_tokenize,
    tokenize,
    tokenizers_bpe,
    word_counts,
)

TOY = ["low lower lowest newer newest wider widest",
       "the newest fast faster fastest tall taller tallest"] * 3 + ["slow slower snow"]
# Repeated letters (overlapping pairs, "aaaa" -> "aa aa"), the same token reached by two
# merges, ties everywhere, punctuation and accents.
TRICKY = ["aaaa aaa aa a banana bandana ananas nana", "l'été, c'est l'été ! étés... été?",
          "naan anna banana-bandana", "x1 x12 x123 x1234 12 123 1234"] * 2
HELD_OUT = ["lowering", "tallest", "newly", "slowest", "fastidious", "aaaaaaa", "bananas",
            "l'étéx1234!", "Zebra"]


@pytest.mark.parametrize("corpus, vocab_size", [(TOY, 40), (TOY, 200), (TRICKY, 30),
                                                 (TRICKY, 60)])
def test_same_merges_vocab_and_pieces_as_tokenizers(corpus, vocab_size):
    ours = learn_bpe(word_counts(corpus), vocab_size)
    theirs, tokenizer = tokenizers_bpe(corpus, vocab_size)
    assert len(ours.merges) > 5
    assert ours.merges == theirs.merges
    assert ours.vocab == theirs.vocab
    for text in HELD_OUT + corpus:
        assert tokenize(text, ours) == tokenizer.encode(text).tokens, text


def test_pre_tokenizer_is_tokenizers_whitespace():
    text = "Don't panic: l'été 2024 -- naïve café! x_1"
    assert pre_tokenize(text) == [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)]


def test_first_merges_by_hand():
    log = []
    bpe = learn_bpe({"aaab": 2, "ab": 3}, vocab_size=100, log=log)
    # pairs: (a,a) 2*2=4, (a,b) 2+3=5 -> merge a+b; then "a a ab": (a,a) 2, (a,ab) 2 -> tie:
    # ids a=1 < ab... (a,a)=(1,1) wins; then "aa ab": (aa,ab) 2.
    assert log == [(("a", "b"), 5), (("a", "a"), 2), (("aa", "ab"), 2)]
    assert bpe.vocab == {"[UNK]": 0, "a": 1, "b": 2, "ab": 3, "aa": 4, "aaab": 5}
    assert apply_bpe("aaaab", bpe) == ["aa", "a", "ab"] and apply_bpe("abc", bpe) == ["ab", "[UNK]"]
