"""Parallel corpora for translation: the pairs (dlcamp.text.catalogs), their minibatches.

    from dlcamp.text.translation import load_pairs, make_translation_loaders
    data = make_translation_loaders("translation-zh", batch_size=64)
    for src, src_len, tgt_in, tgt_out, tgt_len in data.train: ...

A batch is a tuple of 5 int64 tensors on the CPU (B pairs, S and T the longest source and
target in the batch, not in the whole split):

    src     (B, S)  source ids + <eos>, padded with the source codec's <pad>
    src_len (B,)    real source tokens, <eos> included
    tgt_in  (B, T)  <bos> y1 .. yn, padded with the target codec's <pad>  (the decoder's input)
    tgt_out (B, T)  y1 .. yn <eos>, padded                                 (what it must predict)
    tgt_len (B,)    n + 1

`tgt_out` is `tgt_in` shifted left by one: at step t the decoder has seen <bos> y1 .. y(t-1)
and is trained to say y(t) (teacher forcing). A split is padded once (one tensor per field);
each batch gathers its rows and cuts the columns to its own longest pair. This module also
re-exports the pairs' API (load_pairs, translation_info, ...) and the placeholder helpers a
translator needs (prepare_source, restore_placeholders).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from dlcamp.core.errors import BadArgument
from dlcamp.data.loader import Loaders
from dlcamp.text.catalogs import (
    TRANSLATION_SETS,
    Pair,
    list_translation_sets,
    load_pairs,
    split_of,
    translation_info,
)
from dlcamp.text.codecs import Codec, build_codec
from dlcamp.text.translation_clean import prepare_source, restore_placeholders

__all__ = [
    "TRANSLATION_SETS", "Pair", "TranslationLoader", "TranslationLoaders",
    "list_translation_sets", "load_pairs", "make_translation_loaders", "pair_loader",
    "prepare_source", "restore_placeholders", "split_of", "translation_info",
]

TranslationBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
QUICK_TRAIN, QUICK_EVAL = 2000, 200  # pairs kept in quick mode (train; val and test)


def _pad_rows(rows: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    """(N, L) int64, row i = rows[i] then `pad` up to the longest row (L >= 1)."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)  # (N,)
    out = torch.full((len(rows), max(int(lengths.max()), 1)), pad, dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(rows)), dtype=torch.long)
    out[torch.arange(out.shape[1]) < lengths[:, None]] = flat  # row-major: row i, then i + 1
    return out


class TranslationLoader:
    """Iterate (src, src_len, tgt_in, tgt_out, tgt_len) batches over encoded pairs.

    `src_ids[i]` / `tgt_ids[i]` are the token ids of pair i without specials. `shuffle`
    orders the pairs by torch.randperm with a generator seeded by (seed, epoch): call
    `set_epoch` before each epoch (the Trainer does). `max_src` / `max_tgt` cut longer
    sequences so that S <= max_src and T <= max_tgt (<eos> is kept at the end of a cut
    source; a cut target loses its end and its <eos>).
    """

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                 src_codec: Codec, tgt_codec: Codec, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0, max_src: int | None = None,
                 max_tgt: int | None = None) -> None:
        if len(src_ids) != len(tgt_ids) or not src_ids:
            raise BadArgument(f"need as many sources as targets, at least one; got "
                              f"{len(src_ids)} and {len(tgt_ids)}")
        if batch_size < 1 or (max_src is not None and max_src < 2) or \
                (max_tgt is not None and max_tgt < 2):
            raise BadArgument("batch_size must be >= 1, max_src and max_tgt >= 2")
        cut_s, cut_t = (max_src or 10**9) - 1, max_tgt or 10**9
        src = [[*s[:cut_s], src_codec.eos] for s in src_ids]
        tgt_in = [[tgt_codec.bos, *t][:cut_t] for t in tgt_ids]
        self.src = _pad_rows(src, src_codec.pad)  # (N, S_max)
        self.src_len = torch.tensor([len(s) for s in src])  # (N,)
        self.tgt_in = _pad_rows(tgt_in, tgt_codec.pad)  # (N, T_max)
        self.tgt_out = _pad_rows([[*t, tgt_codec.eos][:cut_t] for t in tgt_ids],
                                 tgt_codec.pad)  # (N, T_max)
        self.tgt_len = torch.tensor([len(t) for t in tgt_in])  # (N,)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def __len__(self) -> int:
        return -(-len(self.src_len) // self.batch_size)

    @property
    def num_pairs(self) -> int:
        return len(self.src_len)

    def set_epoch(self, epoch: int) -> None:
        """Pick the shuffle order of `epoch`."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[TranslationBatch]:
        n = self.num_pairs
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            src_len, tgt_len = self.src_len[idx], self.tgt_len[idx]
            s, t = int(src_len.max()), int(tgt_len.max())
            yield (self.src[idx, :s], src_len, self.tgt_in[idx, :t], self.tgt_out[idx, :t],
                   tgt_len)


@dataclass(kw_only=True)
class TranslationLoaders(Loaders):
    """A translation run's data: train and val (`.eval`, also `.val`) loaders, the codecs
    of both sides, the test pairs (`test_pairs`, for BLEU after training) and the longest
    training target in tokens, <eos> included (`max_tgt_len`: a bound for decoding)."""

    eval_split: str = "val"
    dataset: str
    src_codec: Codec
    tgt_codec: Codec
    test_pairs: list[Pair]
    max_tgt_len: int

    @property
    def describe(self) -> str:
        """One line for the log, e.g. "37,171 train / 2,053 val pairs; 7,000 source and
        2,182 target (char) tokens"."""
        return (f"{self.train.num_pairs:,} train / {self.eval.num_pairs:,} val pairs; "
                f"{len(self.src_codec):,} source and {len(self.tgt_codec):,} target "
                f"({self.tgt_codec.kind}) tokens")


def make_translation_loaders(name: str, batch_size: int = 64, quick: bool = False,
                             seed: int = 0, max_src: int | None = None,
                             max_tgt: int | None = None) -> TranslationLoaders:
    """Loaders for translation set `name` ("translation-zh", "translation-fr").

    The codecs are learnt from the training pairs only: a "word" codec for the English, the
    set's target codec ("char" for Chinese, "bpe" for French). Train batches are shuffled
    (seeded by seed and epoch), val batches are in the split's fixed order. Quick mode keeps
    the first 2,000 train and 200 val and test pairs (the splits are in a hashed, well-mixed
    order) and learns the codecs from those 2,000. Raises DatasetNotFound when catalogs
    are missing (the error names the Debian packages).
    """
    spec = TRANSLATION_SETS.get(name)
    train, val, test = (load_pairs(name, s) for s in ("train", "val", "test"))
    if quick:
        train, val, test = train[:QUICK_TRAIN], val[:QUICK_EVAL], test[:QUICK_EVAL]
    src_codec = build_codec("word", [p.src for p in train])
    tgt_codec = build_codec(spec.target, [p.tgt for p in train])

    def loader(pairs: list[Pair], shuffle: bool) -> TranslationLoader:
        return pair_loader(pairs, src_codec, tgt_codec, batch_size, shuffle, seed, max_src,
                           max_tgt)

    train_loader = loader(train, True)
    return TranslationLoaders(train=train_loader, eval=loader(val, False), dataset=name,
                              src_codec=src_codec, tgt_codec=tgt_codec, test_pairs=test,
                              max_tgt_len=int(train_loader.tgt_len.max()))


def pair_loader(pairs: Sequence[Pair], src_codec: Codec, tgt_codec: Codec,
                batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                max_src: int | None = None, max_tgt: int | None = None) -> TranslationLoader:
    """Batches of `pairs` encoded with the given codecs (e.g. a checkpoint's, for evaluating
    it on a split); in the pairs' order unless `shuffle`."""
    return TranslationLoader(src_codec.encode_many([p.src for p in pairs]),
                             tgt_codec.encode_many([p.tgt for p in pairs]), src_codec,
                             tgt_codec, batch_size, shuffle, seed, max_src, max_tgt)
