"""BLEU from scratch (dlcamp.course.bleu) against sacrebleu on the same pre-tokenised sentences."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcamp.course.bleu import (
    SMOOTHING,
    bleu,
    book_sentence_bleu,
    corpus_stats,
    sacrebleu_inputs,
    score_stats,
    zh_chars,
)


def reference_bleu(candidates, references, smooth="exp", max_n=4, effective_order=False):
    """sacrebleu's corpus BLEU on the same tokens, rescaled to [0, 1]."""
    hyps, streams = sacrebleu_inputs(candidates, references)
    metric = sacrebleu.metrics.BLEU(tokenize="none", smooth_method=smooth, max_ngram_order=max_n,
                                    effective_order=effective_order)
    return metric.corpus_score(hyps, streams).score / 100


def check(candidates, references, **kwargs):
    ours, theirs = bleu(candidates, references, **kwargs), reference_bleu(candidates, references,
                                                                          **kwargs)
    assert ours == pytest.approx(theirs, abs=1e-8), (ours, theirs)  # 1e-6 on sacrebleu's 0..100
    return ours


WORDS = st.sampled_from(list("abcde"))  # a small vocabulary, so that n-grams do match
SENTENCE = st.lists(WORDS, min_size=0, max_size=9)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n_sentences=st.integers(1, 5), n_refs=st.integers(1, 3),
       smooth=st.sampled_from(SMOOTHING), max_n=st.integers(1, 4), effective=st.booleans())
def test_equals_sacrebleu_on_random_corpora(data, n_sentences, n_refs, smooth, max_n, effective):
    candidates = [data.draw(SENTENCE) for _ in range(n_sentences)]
    references = [[data.draw(SENTENCE) for _ in range(n_refs)] for _ in range(n_sentences)]
    check(candidates, references, smooth=smooth, max_n=max_n, effective_order=effective)


def test_hand_counted_example():
    # 7 candidate tokens "the" against "the cat is on the mat": clipped unigram precision 2/7
    cand = ["the"] * 7
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    stats = corpus_stats([cand], [refs], max_n=1)
    assert stats.matches == (2,) and stats.totals == (7,) and stats.ref_len == 7  # 7 is closest
    assert check([cand], [refs], max_n=1) == pytest.approx(2 / 7)

    # 4 of 5 unigrams, 2 of 4 bigrams, 1 of 3 trigrams, 0 of 2 4-grams; candidate 5 < reference 6
    cand, ref = "a b c x d".split(), "a b c d e f".split()
    stats = corpus_stats([cand], [[ref]])
    assert stats.matches == (4, 2, 1, 0) and stats.totals == (5, 4, 3, 2)
    bp = math.exp(1 - 6 / 5)
    exp_smoothed = bp * (4 / 5 * 2 / 4 * 1 / 3 * 1 / (2 * 2)) ** 0.25  # first zero -> 1/(2 * 2)
    floored = bp * (4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25
    assert check([cand], [[ref]], smooth="exp") == pytest.approx(exp_smoothed)
    assert check([cand], [[ref]], smooth="floor") == pytest.approx(floored)
    assert check([cand], [[ref]], smooth="none") == 0.0
    assert check([ref], [[ref]], smooth="none") == 1.0


def test_corpus_bleu_pools_counts_and_is_not_the_mean_of_sentences():
    cands = [["a", "b", "c", "d"], ["x", "y"]]
    refs = [[["a", "b", "c", "d"]], [["p", "q"]]]
    stats = corpus_stats(cands, refs)
    assert stats.matches == (4, 3, 2, 1) and stats.totals == (6, 4, 2, 1)
    pooled = check(cands, refs, smooth="none")
    assert pooled == pytest.approx((4 / 6 * 3 / 4 * 2 / 2 * 1 / 1) ** 0.25)
    per_sentence = [bleu([c], [r], smooth="none") for c, r in zip(cands, refs, strict=True)]
    assert per_sentence == [1.0, 0.0] and pooled != sum(per_sentence) / 2


def test_zero_matches_and_short_or_empty_candidates():
    for smooth in SMOOTHING:  # no n-gram matches at all: 0 even when smoothed (as sacrebleu)
        assert check([["x", "y", "z", "w"]], [[["a", "b", "c", "d"]]], smooth=smooth) == 0.0
        assert check([[]], [[["a"]]], smooth=smooth) == 0.0  # empty candidate: brevity penalty 0
    # every candidate shorter than 4 tokens: no 4-grams, so 0 unless only the orders present count
    assert check([["a", "b"]], [[["a", "b"]]]) == 0.0
    assert check([["a", "b"]], [[["a", "b"]]], effective_order=True) == 1.0


def test_closest_reference_length_prefers_the_shorter_on_ties():
    stats = corpus_stats([["a"] * 4], [[["a"] * 2, ["a"] * 6, ["a"] * 3]])
    assert stats.ref_len == 3
    stats = corpus_stats([["a"] * 4], [[["a"] * 6, ["a"] * 2]])  # 2 and 6 tie: 2 wins
    assert stats.ref_len == 2
    check([["a"] * 4], [[["a"] * 6, ["a"] * 2]])


def test_book_sentence_bleu_by_hand_and_where_it_differs():
    cand, ref = "a b c x d".split(), "a b c d e f".split()
    by_hand = math.exp(1 - 6 / 5) * (4 / 5) ** 0.5 * (2 / 4) ** 0.25 * (1 / 3) ** 0.125 * 0
    assert book_sentence_bleu(cand, ref, k=4) == by_hand == 0.0  # no 4-gram matches: 0
    two = book_sentence_bleu(cand, ref, k=2)
    assert two == pytest.approx(math.exp(1 - 6 / 5) * (4 / 5) ** 0.5 * (2 / 4) ** 0.25)
    # the weights 1/2 + 1/4 do not sum to 1: higher than BLEU with max_n=2 (a geometric mean)
    assert two > bleu([cand], [[ref]], max_n=2, smooth="none")
    # a one-token candidate that matches scores 1: orders above its length are skipped
    assert book_sentence_bleu(["a"], ["a"]) == 1.0
    assert book_sentence_bleu(ref, ref) == 1.0 == bleu([ref], [[ref]])
    with pytest.raises(ValueError, match="empty candidate"):
        book_sentence_bleu([], ref)


def test_chinese_characters_agree_with_sacrebleu_zh():
    hyps = ["打开文件。", "保存当前图像", "无法读取文件：权限不足"]
    refs = ["打开文件", "保存图像", "无法读取该文件：没有权限"]
    ours = bleu([zh_chars(h) for h in hyps], [[zh_chars(r)] for r in refs])
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score / 100
    assert ours == pytest.approx(theirs, abs=1e-8) and 0 < ours < 1


def test_readable_errors():
    with pytest.raises(ValueError, match="2 candidates but 1"):
        bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="empty corpus"):
        bleu([], [])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu([["a"]], [[]])
    with pytest.raises(ValueError, match="unknown smoothing 'add-k'"):
        score_stats(corpus_stats([["a"]], [[["a"]]]), smooth="add-k")
    with pytest.raises(ValueError, match="same number of references"):
        sacrebleu_inputs([["a"], ["b"]], [[["a"]], [["b"], ["c"]]])
