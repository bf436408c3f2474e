"""BLEU written out: clipped n-gram precision, brevity penalty, geometric mean (lesson 7.04).

    score = bleu([["the", "cat", "sat"]], [[["the", "cat", "sat", "down"]]])   # in [0, 1]

Corpus BLEU (Papineni et al., 2002, "BLEU: a method for automatic evaluation of machine
translation", ACL) adds up the n-gram statistics of every sentence first and divides once;
it is not the mean of sentence scores. With the same pre-tokenised sentences, `bleu(...) * 100`
equals `sacrebleu.corpus_bleu(hyps, refs, tokenize="none", smooth_method=...)`.score (sacrebleu
2.x reports 0..100; tests/test_bleu.py checks it to 1e-6), including sacrebleu's choices:
the reference length of a sentence is the one closest to the candidate (ties: the shorter),
a corpus without a single matching n-gram scores 0 whatever the smoothing, and an order with
no n-grams at all (every candidate shorter than n) scores 0 unless `effective_order`.

`book_sentence_bleu` is the formula of Dive into Deep Learning, section 10.7 (one sentence,
one reference, weights 1/2^n instead of 1/N); the lesson shows where the two differ.
`zh_chars` makes Chinese text into tokens, one a character, as sacrebleu's "zh" tokenizer does
for Chinese characters and CJK punctuation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# Smoothing of a zero n-gram count, named as in sacrebleu (after Chen and Cherry, 2014,
# "A systematic comparison of smoothing techniques for sentence-level BLEU", WMT):
# "none": a zero precision makes BLEU 0; "floor": the k-th zero count becomes `floor` (0.1);
# "exp": the k-th order with zero matches gets precision 1 / (2^k * total) (mteval-v13a.pl).
SMOOTHING = ("none", "floor", "exp")
FLOOR = 0.1

Tokens = Sequence[str]


@dataclass(frozen=True)
class BleuStats:
    """Sufficient statistics of corpus BLEU: summed over sentences, then scored.

    matches[n-1]: clipped matches of n-grams; totals[n-1]: n-grams in the candidates;
    hyp_len: candidate tokens; ref_len: the chosen reference's tokens, summed.
    """

    matches: tuple[int, ...]
    totals: tuple[int, ...]
    hyp_len: int
    ref_len: int

    def __add__(self, other: BleuStats) -> BleuStats:
        return BleuStats(tuple(a + b for a, b in zip(self.matches, other.matches, strict=True)),
                         tuple(a + b for a, b in zip(self.totals, other.totals, strict=True)),
                         self.hyp_len + other.hyp_len, self.ref_len + other.ref_len)


@dataclass(frozen=True)
class BleuScore:
    """A BLEU score in [0, 1] with its parts: the n-gram precisions (after smoothing), the
    brevity penalty and the statistics they came from."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    stats: BleuStats


def ngrams(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    """How often each n-gram (a tuple of n tokens) occurs in `tokens`."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_matches(candidate: Tokens, references: Sequence[Tokens], n: int) -> tuple[int, int]:
    """(matches, total) for n-grams of one candidate: an n-gram counts at most as often as it
    occurs in the reference that has it most often ("modified precision", clipping)."""
    cand = ngrams(candidate, n)
    most: Counter[tuple[str, ...]] = Counter()
    for reference in references:
        most |= ngrams(reference, n)  # element-wise maximum of the counts
    return sum(min(count, most[gram]) for gram, count in cand.items()), sum(cand.values())


def closest_ref_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length closest to the candidate's; of two equally close, the shorter."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def brevity_penalty(hyp_len: int, ref_len: int) -> float:
    """exp(1 - r/c) when the candidates are shorter than the references (c < r), else 1;
    0 for empty candidates."""
    if hyp_len >= ref_len:
        return 1.0
    return math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0


def sentence_stats(candidate: Tokens, references: Sequence[Tokens], max_n: int = 4) -> BleuStats:
    """The statistics of one candidate against one or more references."""
    if not references:
        raise ValueError("a candidate needs at least one reference")
    counts = [clipped_matches(candidate, references, n) for n in range(1, max_n + 1)]
    ref_len = closest_ref_length(len(candidate), [len(r) for r in references])
    return BleuStats(tuple(m for m, _ in counts), tuple(t for _, t in counts), len(candidate),
                     ref_len)


def corpus_stats(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]],
                 max_n: int = 4) -> BleuStats:
    """Sum of `sentence_stats` over the corpus; references[i] are the references of candidate i.

    Raises ValueError for an empty corpus or lists of different lengths."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if not candidates:
        raise ValueError("BLEU of an empty corpus is undefined")
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    total = sentence_stats(candidates[0], references[0], max_n)
    for candidate, refs in zip(candidates[1:], references[1:], strict=True):
        total = total + sentence_stats(candidate, refs, max_n)
    return total


def score_stats(stats: BleuStats, smooth: str = "exp", floor: float = FLOOR,
                effective_order: bool = False) -> BleuScore:
    """BLEU = brevity penalty * geometric mean of the n-gram precisions (uniform weights 1/N).

    `effective_order`: average only over the orders that have n-grams (sacrebleu's
    sentence_bleu does this). Raises ValueError for an unknown `smooth`."""
    if smooth not in SMOOTHING:
        raise ValueError(f"unknown smoothing {smooth!r}; choose one of {SMOOTHING}")
    bp = brevity_penalty(stats.hyp_len, stats.ref_len)
    max_n = len(stats.totals)
    precisions = [0.0] * max_n
    if not any(stats.matches):  # nothing matches: 0, smoothed or not
        return BleuScore(0.0, tuple(precisions), bp, stats)
    zeros, orders = 0, max_n
    for n, (matched, total) in enumerate(zip(stats.matches, stats.totals, strict=True), 1):
        if total == 0:  # no candidate has n tokens
            orders = n - 1 if effective_order else max_n
            break
        if matched > 0:
            precisions[n - 1] = matched / total
        elif smooth == "exp":
            zeros += 1
            precisions[n - 1] = 1 / (2**zeros * total)
        elif smooth == "floor":
            precisions[n - 1] = floor / total
    used = precisions[:orders]
    if min(used) == 0.0:
        return BleuScore(0.0, tuple(precisions), bp, stats)
    score = bp * math.exp(sum(math.log(p) for p in used) / orders)
    return BleuScore(score, tuple(precisions), bp, stats)


def bleu(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], max_n: int = 4,
         smooth: str = "exp", floor: float = FLOOR, effective_order: bool = False) -> float:
    """Corpus BLEU in [0, 1] of tokenised `candidates` (list of token lists) against
    `references` (per candidate, a list of reference token lists). 100 x sacrebleu's scale.

    Raises ValueError for an empty corpus, mismatched lengths, a candidate without
    references or an unknown `smooth`."""
    stats = corpus_stats(candidates, references, max_n)
    return score_stats(stats, smooth, floor, effective_order).score


def book_sentence_bleu(candidate: Tokens, reference: Tokens, k: int = 4) -> float:
    """The sentence BLEU of d2l.ai section 10.7:
    exp(min(0, 1 - len_ref / len_cand)) * prod_{n=1..min(k, len_cand)} p_n ** (1 / 2**n),
    p_n the clipped n-gram precision against ONE reference. The weights 1/2^n favour long
    matching n-grams but do not sum to 1, so it is not a geometric mean; orders longer than
    the candidate are skipped; no smoothing. Raises ValueError for an empty candidate."""
    if not candidate:
        raise ValueError("the book's formula divides by the candidate length: empty candidate")
    score = math.exp(min(0.0, 1 - len(reference) / len(candidate)))
    for n in range(1, min(k, len(candidate)) + 1):
        matched, total = clipped_matches(candidate, [reference], n)
        score *= (matched / total) ** (0.5**n)
    return score


def zh_chars(text: str) -> list[str]:
    """Chinese text as tokens, one per character (whitespace dropped). For Chinese characters
    and CJK punctuation this is what sacrebleu's tokenize="zh" does; Latin words inside
    Chinese text it keeps whole, so the two differ there."""
    return [ch for ch in text if not ch.isspace()]


def sacrebleu_inputs(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]]
                     ) -> tuple[list[str], list[list[str]]]:
    """The same corpus as sacrebleu wants it: hypotheses as space-joined strings, references
    as streams (stream k holds the k-th reference of every sentence). Every candidate needs
    the same number of references; raises ValueError otherwise."""
    counts = {len(refs) for refs in references}
    if len(counts) != 1:
        raise ValueError(f"sacrebleu needs the same number of references per sentence: {counts}")
    streams = [[" ".join(refs[k]) for refs in references] for k in range(counts.pop())]
    return [" ".join(c) for c in candidates], streams
