"""Byte-pair encoding (BPE) written out, for lesson 7.12 -- and checked against `tokenizers`.

BPE (Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword Units")
learns a vocabulary of subwords from a table of word frequencies:

1. every word starts as its characters; the vocabulary is the special tokens, then the
   characters in code-point order;
2. count every pair of adjacent symbols over all words, each word weighted by its frequency;
3. merge the most frequent pair everywhere (left to right within a word) into one new symbol,
   record the merge, and go back to 2 until the vocabulary has `vocab_size` entries or no
   pair is left. A tie goes to the pair whose (left id, right id) is smallest, where the ids
   number the vocabulary in the order it grew.

A new word is cut by starting from its characters and applying the learnt merges, the
earliest-learnt pair present first, until none applies (`apply_bpe`). Characters never seen
in training become the unknown token.

These rules are those of Hugging Face `tokenizers` (models.BPE + BpeTrainer, Whitespace
pre-tokenizer, no min_frequency, no suffixes): `tokenizers_bpe` trains the library on the
same text, and the lesson and tests check that both give the same merges, the same
vocabulary ids and the same pieces for held-out words. This module counts pairs afresh at
every merge: clear, and fast enough for a few thousand distinct words; the library updates
the counts incrementally in Rust.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# tokenizers' Whitespace pre-tokenizer: runs of word characters, runs of other non-spaces
PRE_TOKEN = re.compile(r"\w+|[^\w\s]+")
UNK = "[UNK]"


def pre_tokenize(text: str) -> list[str]:
    """"Don't panic!" -> ["Don", "'", "t", "panic", "!"] (as tokenizers' Whitespace does)."""
    return PRE_TOKEN.findall(text)


def word_counts(texts: Iterable[str]) -> collections.Counter[str]:
    """How often each pre-tokenised word occurs in `texts`."""
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(pre_tokenize(text))
    return counts


@dataclass
class BPE:
    """A learnt BPE: `vocab` token -> id (in the order it grew) and `merges` in order."""

    vocab: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[str, str]] = field(default_factory=list)


def _merge_word(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every occurrence of `pair` in `symbols`, left to right, by its concatenation."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def pair_counts(words: Mapping[tuple[str, ...], int]) -> collections.Counter[tuple[str, str]]:
    """Adjacent symbol pairs, each counted once per occurrence times the word's frequency."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for symbols, freq in words.items():
        for pair in itertools.pairwise(symbols):
            counts[pair] += freq
    return counts


def learn_bpe(counts: Mapping[str, int], vocab_size: int,
              special_tokens: Iterable[str] = (UNK,), log: list | None = None) -> BPE:
    """Learn merges from word frequencies `counts` until the vocabulary has `vocab_size`
    tokens (special tokens and characters included) or no pair is left.

    `log`, if a list, receives (pair, count) for each merge: what the lesson prints.
    """
    bpe = BPE()
    for tok in [*special_tokens, *sorted({ch for word in counts for ch in word})]:
        bpe.vocab.setdefault(tok, len(bpe.vocab))
    words = {tuple(word): freq for word, freq in counts.items() if word}
    while len(bpe.vocab) < vocab_size:
        pairs = pair_counts(words)
        if not pairs:
            break
        ids = bpe.vocab
        best = max(pairs, key=lambda p: (pairs[p], -ids[p[0]], -ids[p[1]]))
        bpe.merges.append(best)
        bpe.vocab.setdefault(best[0] + best[1], len(bpe.vocab))
        if log is not None:
            log.append((best, pairs[best]))
        words = {_merge_word(symbols, best): freq for symbols, freq in words.items()}
    return bpe


def apply_bpe(word: str, bpe: BPE, unk: str = UNK) -> list[str]:
    """The pieces of one word: its characters (unknown ones -> `unk`), then the merges,
    earliest-learnt first, until none applies."""
    rank = {pair: i for i, pair in enumerate(bpe.merges)}
    symbols = tuple(ch if ch in bpe.vocab else unk for ch in word)
    while len(symbols) > 1:
        present = [p for p in itertools.pairwise(symbols) if p in rank]
        if not present:
            break
        symbols = _merge_word(symbols, min(present, key=rank.__getitem__))
    return list(symbols)


def tokenize(text: str, bpe: BPE) -> list[str]:
    """All pieces of a text: pre-tokenised into words, each word cut by `apply_bpe`."""
    return [piece for word in pre_tokenize(text) for piece in apply_bpe(word, bpe)]


def tokenizers_bpe(texts: Iterable[str], vocab_size: int,
                   special_tokens: Iterable[str] = (UNK,)) -> tuple[BPE, object]:
    """The same BPE trained by Hugging Face `tokenizers`: (its vocab and merges as a BPE,
    the trained `tokenizers.Tokenizer`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in model["merges"]]
    return BPE(dict(model["vocab"]), merges), tokenizer
