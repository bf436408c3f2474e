"""Tokens and vocabularies: text -> tokens -> integer ids, and back.

A language model does not see characters or words; it sees integers. `tokenize` cuts text
into tokens, `Vocab` numbers them (the most frequent first), and `encode_corpus` turns a
whole corpus into one long tensor of ids, which the sequence iterators in `dlcamp.text.data`
cut into minibatches.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Sequence

import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.registry import unknown_name

TOKEN_KINDS = ("char", "word")
UNK = "<unk>"


def _check_kind(token: str) -> None:
    if token not in TOKEN_KINDS:
        raise unknown_name("token kind", token, TOKEN_KINDS)


def tokenize(lines: list[str] | str, token: str = "char", lower: bool = False) -> list[list[str]]:
    """Split each line into tokens: characters (`char`) or whitespace-separated words (`word`).

    A string is first cut into lines at "\\n". Characters suit Chinese (no spaces between
    words) and small corpora; words suit English once the corpus is large. `lower=True`
    lowercases first, so "The" and "the" are one token.
    """
    _check_kind(token)
    if isinstance(lines, str):
        lines = lines.split("\n")
        if lines and lines[-1] == "":  # "a\nb\n" is two lines, not three
            lines.pop()
    if lower:
        lines = [line.lower() for line in lines]
    return [list(line) if token == "char" else line.split() for line in lines]


def _flatten(tokens: Iterable) -> Iterable[str]:
    """Tokens may come flat (a list of str, or a str = its characters) or as lists of lines."""
    if isinstance(tokens, str):
        return tokens
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], (list, tuple)):
        return itertools.chain.from_iterable(tokens)
    return tokens


class Vocab:
    """A numbering of tokens: index 0 is `<unk>`, then `reserved_tokens`, then the tokens
    that occur at least `min_freq` times, most frequent first (ties: first seen first).

    vocab["月"] -> its id (0 when unknown); vocab[["床", "前"]] -> a list of ids;
    vocab.to_tokens(ids) goes back. Only `idx_to_token` is needed to rebuild a vocabulary
    (`Vocab.from_idx_to_token`), so that is what a checkpoint stores.
    """

    def __init__(self, tokens: Iterable | None = None, min_freq: int = 0,
                 reserved_tokens: Sequence[str] = ()) -> None:
        counter = collections.Counter(_flatten(tokens if tokens is not None else []))
        # sorted() is stable and a Counter remembers first appearances: ties keep that order.
        self.token_freqs: list[tuple[str, int]] = sorted(counter.items(), key=lambda kv: -kv[1])
        self.idx_to_token: list[str] = [UNK]
        for tok in reserved_tokens:
            if tok not in self.idx_to_token:
                self.idx_to_token.append(tok)
        reserved = set(self.idx_to_token)
        self.idx_to_token += [tok for tok, freq in self.token_freqs
                              if freq >= min_freq and tok not in reserved]
        self.token_to_idx: dict[str, int] = {tok: i for i, tok in enumerate(self.idx_to_token)}

    @classmethod
    def from_idx_to_token(cls, idx_to_token: Sequence[str]) -> Vocab:
        """Rebuild a vocabulary from its list of tokens (as saved in a checkpoint)."""
        tokens = list(idx_to_token)
        if not tokens or tokens[0] != UNK or not all(isinstance(t, str) for t in tokens):
            raise BadArgument(f"a vocabulary is a list of str starting with {UNK!r}")
        if len(set(tokens)) != len(tokens):
            raise BadArgument("a vocabulary cannot hold the same token twice")
        vocab = cls()
        vocab.idx_to_token = tokens
        vocab.token_to_idx = {tok: i for i, tok in enumerate(tokens)}
        return vocab

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        """The id of a token (0 = <unk> if unknown), or a list of ids for a list of tokens."""
        if isinstance(tokens, (list, tuple)):
            return [self[t] for t in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def to_tokens(self, indices):
        """The token of an id, or a list of tokens for a list (or tensor) of ids."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if isinstance(indices, (list, tuple)):
            return [self.to_tokens(i) for i in indices]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        return 0

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.idx_to_token[:8])
        return f"Vocab({len(self)} tokens: {head}, ...)"


def encode_corpus(text: str, vocab: Vocab, token: str = "char", lower: bool = False
                  ) -> torch.Tensor:
    """All token ids of `text`, in order, as one (N,) int64 tensor.

    At char level every character counts, "\\n" included, so a model learns where a poem
    ends. At word level the text is split on whitespace (newlines are not tokens).
    """
    _check_kind(token)
    if lower:
        text = text.lower()
    if token == "word":
        return torch.tensor(vocab[text.split()], dtype=torch.long)
    if not text:
        return torch.zeros(0, dtype=torch.long)
    # Char level without a Python loop over millions of characters: look the code points up
    # in a sorted table of the vocabulary's single-character tokens.
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    pairs = sorted((ord(t), i) for t, i in vocab.token_to_idx.items() if len(t) == 1)
    if not pairs:
        return torch.zeros(len(codes), dtype=torch.long)
    keys = torch.tensor([k for k, _ in pairs])  # (K,) sorted code points
    ids = torch.tensor([i for _, i in pairs])  # (K,) their ids
    pos = torch.searchsorted(keys, codes).clamp_(max=len(keys) - 1)  # (N,)
    return torch.where(keys[pos] == codes, ids[pos], vocab.unk)  # (N,)
