"""Minibatches for language models: (X, Y) pairs of token ids, Y being X shifted by one.

A corpus is one long sequence of ids. A language model reads `num_steps` tokens at a time
and predicts, at every position, the next token. The book ("Dive into Deep Learning",
"Language Models and the Dataset") cuts the corpus in two ways; both start at a random
offset in [0, num_steps), so that over the epochs every position can begin a subsequence:

- random sampling: the corpus is cut into subsequences of num_steps tokens, taken in a
  random order. Two neighbouring rows or batches are unrelated, so the hidden state of an
  RNN must start afresh for every batch.
- sequential partitioning: the corpus is cut into batch_size long rows, read left to right
  num_steps at a time: row j of batch i continues row j of batch i - 1 exactly, so the
  hidden state can be carried over (and detached) from one batch to the next.

Both gather a batch with one indexing operation: no Python loop over tokens.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dlcamp.core.errors import BadArgument
from dlcamp.data.loader import Loaders
from dlcamp.text.corpora import corpus_text
from dlcamp.text.vocab import Vocab, encode_corpus, tokenize

Batch = tuple[torch.Tensor, torch.Tensor]

# Quick mode keeps the beginning of each split: a few seconds of CPU training still shows
# the loss going down, on whole lines of the real corpus.
QUICK_TRAIN_TOKENS = 20_000
QUICK_VAL_TOKENS = 5_000


def _random_offset(num_steps: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(num_steps, (1,), generator=generator))


def seq_data_iter_random(corpus: torch.Tensor, batch_size: int, num_steps: int,
                         generator: torch.Generator | None = None,
                         offset: int | None = None) -> Iterator[Batch]:
    """Random sampling: subsequences of `num_steps` tokens in a random order, batch by batch.

    After the offset (random in [0, num_steps) unless given), subsequence k starts at token
    offset + k * num_steps; the ones left over after the last full batch are dropped.
    """
    if offset is None:
        offset = _random_offset(num_steps, generator)
    num_subseqs = max(0, (len(corpus) - offset - 1) // num_steps)  # -1: Y needs one more
    starts = offset + num_steps * torch.randperm(num_subseqs, generator=generator)  # (S,)
    steps = torch.arange(num_steps)  # (T,)
    for i in range(num_subseqs // batch_size):
        pos = (starts[i * batch_size:(i + 1) * batch_size, None] + steps).to(corpus.device)
        yield corpus[pos], corpus[pos + 1]  # (B, T), (B, T)


def seq_data_iter_sequential(corpus: torch.Tensor, batch_size: int, num_steps: int,
                             generator: torch.Generator | None = None,
                             offset: int | None = None) -> Iterator[Batch]:
    """Sequential partitioning: `batch_size` contiguous rows, read `num_steps` at a time.

    `offset` fixes the starting token (for a validation set read the same way every time);
    by default it is random in [0, num_steps), as in the book.
    """
    if offset is None:
        offset = _random_offset(num_steps, generator)
    num_tokens = max(0, (len(corpus) - offset - 1) // batch_size * batch_size)
    xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)  # (B, L)
    ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)  # (B, L)
    for i in range(0, xs.shape[1] // num_steps * num_steps, num_steps):
        yield xs[:, i:i + num_steps], ys[:, i:i + num_steps]  # (B, T), (B, T)


class SeqDataLoader:
    """Iterate (X, Y, fresh) over a corpus of token ids, one epoch at a time.

    `fresh` is a 0-d bool tensor saying whether the hidden state must start afresh: always
    with random sampling, only on the first batch of an epoch with sequential partitioning.
    The random offset and order depend on (seed, epoch) only: call `set_epoch` before each
    epoch (the Trainer does), and a resumed run sees the batches an uninterrupted one saw.
    `offset` fixes the starting token instead (the validation loader uses 0).

    Every epoch has `len(loader)` batches: the count for the least favourable offset.
    """

    def __init__(self, corpus: torch.Tensor, batch_size: int, num_steps: int,
                 random: bool = True, seed: int = 0, offset: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        if corpus.dim() != 1 or corpus.dtype != torch.long:
            raise BadArgument(f"corpus must be a 1-D int64 tensor of token ids, got "
                              f"{corpus.dtype} of shape {tuple(corpus.shape)}")
        if batch_size < 1 or num_steps < 1:
            raise BadArgument(f"batch_size and num_steps must be >= 1, got {batch_size} and "
                              f"{num_steps}")
        if offset is not None and not 0 <= offset < num_steps:
            raise BadArgument(f"offset must be in [0, num_steps={num_steps}), got {offset}")
        self.device = torch.device(device)
        self.corpus = corpus.to(self.device)  # (N,)
        self.batch_size, self.num_steps = batch_size, num_steps
        self.random, self.seed, self.offset, self.epoch = random, seed, offset, 0
        if len(self) == 0:
            raise BadArgument(
                f"{len(corpus)} tokens are too few for one batch of {batch_size} x {num_steps} "
                f"(need about {(batch_size + 1) * num_steps}): lower batch_size or num_steps")

    def __len__(self) -> int:
        worst = self.num_steps - 1 if self.offset is None else self.offset
        usable = len(self.corpus) - worst - 1  # tokens that can be an X (Y is one further)
        if self.random:
            return max(0, usable // self.num_steps // self.batch_size)
        return max(0, usable // self.batch_size // self.num_steps)

    @property
    def num_tokens_per_batch(self) -> int:
        return self.batch_size * self.num_steps

    def set_epoch(self, epoch: int) -> None:
        """Pick the offset and order of `epoch`."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        make = seq_data_iter_random if self.random else seq_data_iter_sequential
        batches = make(self.corpus, self.batch_size, self.num_steps, gen, self.offset)
        for i, (x, y) in enumerate(itertools.islice(batches, len(self))):
            yield x, y, torch.tensor(self.random or i == 0)  # fresh: a 0-d bool on the CPU


@dataclass(kw_only=True)
class TextLoaders(Loaders):
    """A language-model run's data: `Loaders` whose held-out split is the corpus's "val"
    (`.eval`, also `.val`; the corpora have no test split), with the vocabulary and where
    they came from."""

    eval_split: str = "val"
    vocab: Vocab
    corpus: str
    token: str

    @property
    def describe(self) -> str:
        """One line for the log: the vocabulary, e.g. "2,412 char tokens in the vocabulary"."""
        return f"{len(self.vocab):,} {self.token} tokens in the vocabulary"


def _prefix(text: str, token: str, n: int) -> str:
    """The beginning of `text` holding its first n tokens (characters or words)."""
    if token == "char":
        return text[:n]
    words = list(itertools.islice(re.finditer(r"\S+", text), n))
    return text[:words[-1].end()] if words else ""


def make_text_loaders(corpus: str, batch_size: int = 32, num_steps: int = 35,
                      token: str = "char", min_freq: int = 0, random: bool = True,
                      quick: bool = False, seed: int = 0, device: torch.device | str = "cpu",
                      lower: bool = False) -> TextLoaders:
    """Train and val loaders over a text corpus (see `dlcamp.text.corpora.list_corpora`).

    The vocabulary is built from the training text only: a val token never seen in training
    becomes <unk>, as it would for a deployed model. Train batches use random sampling
    (`random=True`) or sequential partitioning; val is always sequential from token 0, the
    same batches every epoch, with a batch size <= batch_size that covers the most of it.
    Quick mode keeps the first 20,000 training and 5,000 val tokens (and builds the
    vocabulary from those 20,000).
    """
    train_text, val_text = corpus_text(corpus, "train"), corpus_text(corpus, "val")
    if quick:
        train_text = _prefix(train_text, token, QUICK_TRAIN_TOKENS)
        val_text = _prefix(val_text, token, QUICK_VAL_TOKENS)
    if token == "char":  # a str counts as its characters: "\n" is a token too
        vocab = Vocab(train_text.lower() if lower else train_text, min_freq)
    else:
        vocab = Vocab(tokenize(train_text, token, lower), min_freq)
    train_ids = encode_corpus(train_text, vocab, token, lower)  # (N,)
    val_ids = encode_corpus(val_text, vocab, token, lower)  # (M,)
    return TextLoaders(
        train=SeqDataLoader(train_ids, batch_size, num_steps, random=random, seed=seed,
                            device=device),
        eval=eval_loader(val_ids, batch_size, num_steps, device),
        vocab=vocab, corpus=corpus, token=token)


def eval_loader(ids: torch.Tensor, batch_size: int, num_steps: int,
                device: torch.device | str = "cpu") -> SeqDataLoader:
    """Sequential batches from token 0, the same every epoch, for measuring perplexity.

    As many rows as fit, at most batch_size, chosen so that few subsequences are left over
    (a short val text read by 32 rows could drop half of its tokens).
    """
    subseqs = max(1, (len(ids) - 1) // num_steps)
    rows = subseqs // -(-subseqs // batch_size)  # subseqs // ceil(subseqs / batch_size)
    return SeqDataLoader(ids, rows, num_steps, random=False, offset=0, device=device)
