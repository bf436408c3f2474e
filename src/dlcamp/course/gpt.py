"""Transformers in Part 7's lessons and benchmark: ours against torch.nn's, GPT against the LSTM.

    torch_model = TorchTransformer(ours)                  # the same function, torch's stacks
    batch = translation_batch(64, 20, 38, 6000, 2200)     # random, translation-sized
    rates = train_speed({"ours": ours, "torch.nn": torch_model}, batch)   # target tokens/s
    race = equal_time("tang", seconds=120)                # GPT and LSTM, same training time
    print(race_markdown(race.rows))

`equal_time` trains each language model by its registered recipe (`dlcamp train --model NAME
--dataset CORPUS`, in memory) for the same number of seconds of training (the Trainer's
`max_seconds`: the learning-rate schedule is stretched over the clock, evaluation is not
counted) and measures validation perplexity with the final weights, next to the add-one
unigram model that any language model has to beat (dlcamp.course.lm.unigram_perplexity).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlcamp.course.compare import BUDGET_EPOCHS
from dlcamp.course.lm import lm_run, tokens_per_second, unigram_perplexity
from dlcamp.models import count_parameters
from dlcamp.models.transformer import Transformer, copy_to_torch
from dlcamp.train.task import masked_cross_entropy

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# -- our Transformer and torch.nn.Transformer, side by side ------------------------------------
class TorchTransformer(nn.Module):
    """`ours`' embeddings and output layer around torch.nn.Transformer's encoder and decoder
    stacks holding a copy of `ours`' block weights (dlcamp.models.transformer.copy_to_torch).

    forward(src (B, S), src_len (B,), tgt_in (B, T)) -> logits (B, T, V_tgt), the call of our
    Transformer: source padding is masked in the encoder and in the cross-attention, the
    target by a causal mask. Everything is copied, so the two models train independently;
    in eval mode (dropout off) both compute the same logits up to rounding.
    """

    def __init__(self, ours: Transformer) -> None:
        super().__init__()
        self.src_embed = copy.deepcopy(ours.encoder.embed)
        self.tgt_embed = copy.deepcopy(ours.decoder.embed)
        self.stacks = copy_to_torch(ours)
        # eval mode would pack padded sources into nested tensors (a prototype API that warns)
        self.stacks.encoder.enable_nested_tensor = self.stacks.encoder.use_nested_tensor = False
        self.dense = copy.deepcopy(ours.decoder.dense)
        self.train(ours.training)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        steps = tgt_in.shape[1]
        padding = torch.arange(src.shape[1], device=src.device) >= src_len[:, None]  # True: skip
        causal = torch.ones(steps, steps, dtype=torch.bool, device=src.device).triu(1)
        out = self.stacks(self.src_embed(src), self.tgt_embed(tgt_in), tgt_mask=causal,
                          src_key_padding_mask=padding, memory_key_padding_mask=padding,
                          tgt_is_causal=True)                               # (B, T, d)
        return self.dense(out)


def translation_batch(batch_size: int, src_steps: int, tgt_steps: int, src_vocab: int,
                      tgt_vocab: int, pad: int = 1, seed: int = 0) -> Batch:
    """A random batch shaped like dlcamp.text.translation's: (src (B, S), src_len (B,),
    tgt_in (B, T), tgt_out (B, T), tgt_len (B,)); lengths uniform in 1..S and 1..T (row 0
    has both full lengths, as the longest pair of a padded batch does), padding `pad` after
    them; token ids from 4 up (0-3 are the codecs' specials). A translation-zh training batch
    of 64 pairs is typically padded to S = 20, T = 38, with half or less of it real."""
    gen = torch.Generator().manual_seed(seed)
    src_len = torch.randint(1, src_steps + 1, (batch_size,), generator=gen)
    tgt_len = torch.randint(1, tgt_steps + 1, (batch_size,), generator=gen)
    src_len[0], tgt_len[0] = src_steps, tgt_steps
    src = torch.randint(4, src_vocab, (batch_size, src_steps), generator=gen)
    tgt = torch.randint(4, tgt_vocab, (batch_size, tgt_steps + 1), generator=gen)
    src[torch.arange(src_steps) >= src_len[:, None]] = pad
    tgt_in, tgt_out = tgt[:, :-1].clone(), tgt[:, 1:].clone()
    tgt_out[torch.arange(tgt_steps) >= tgt_len[:, None]] = pad
    return src, src_len, tgt_in, tgt_out, tgt_len


def train_speed(models: dict[str, nn.Module], batch: Batch, steps: int = 10, repeats: int = 3,
                warmup: int = 2) -> dict[str, float]:
    """Target tokens per second of a training step (forward, per-token cross-entropy over
    the real target tokens, backward; no optimiser step) of each translation model on the
    same `batch` (see `translation_batch`). Each model first runs `warmup` steps; then
    `repeats` timings of `steps` steps each, the models taking turns (a busy machine slows
    them alike), and the median is kept. Tokens counted: tgt_len.sum() per step, as fairseq
    counts words per second."""
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, got {steps} and {repeats}")
    src, src_len, tgt_in, tgt_out, tgt_len = batch

    def step(model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        total, n = masked_cross_entropy(model(src, src_len, tgt_in), tgt_out, tgt_len)
        (total / n).backward()

    for model in models.values():
        model.train()
        for _ in range(warmup):
            step(model)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(model)
            times[name].append(time.perf_counter() - start)
    tokens = steps * int(tgt_len.sum())
    return {name: tokens / statistics.median(t) for name, t in times.items()}


# -- GPT against the LSTM at equal training time ---------------------------------------------
@dataclass
class Race:
    """What `equal_time` found: `rows` (the unigram baseline first, then one per model) and
    `runs` {name: (trainer, loaders, val_ppl)} for sampling from the trained models."""

    corpus: str
    seconds: float
    rows: list[dict[str, Any]]
    runs: dict[str, tuple[Any, Any, float]]


def equal_time(corpus: str, seconds: float, names: Sequence[str] = ("gpt", "lstm"),
               quick: bool = False, log: Callable[[str], Any] = print,
               **overrides: Any) -> Race:
    """Train each registered language model in `names` on `corpus` for `seconds` seconds of
    training by its own recipe (plus `overrides`), then compare validation perplexities.

    Each row: model, val_ppl (held-out split, final weights), steps, tokens (predicted
    training tokens), train_s, tokens_s, params, context (tokens a training window holds),
    vocab. The first row is the add-one unigram model fitted on the same training tokens
    (the first model's loaders). Quick mode trains on the corpus's first 20,000 tokens
    (dlcamp.text.data). Raises ValueError for no model or a budget <= 0.
    """
    if not names:
        raise ValueError("give at least one model name")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    budget = {"epochs": BUDGET_EPOCHS, "max_steps": 0, **overrides, "max_seconds": seconds}
    runs = {name: lm_run(name, corpus, quick=quick, curves=False, log=lambda _: None, **budget)
            for name in names}
    _, loaders, _ = runs[names[0]]
    vocab = len(loaders.vocab)
    rows: list[dict[str, Any]] = [{
        "model": "unigram (add-one)", "vocab": vocab,
        "val_ppl": unigram_perplexity(loaders.train.corpus, loaders.val.corpus, vocab)}]
    for name, (trainer, run_loaders, ppl) in runs.items():
        rows.append({"model": name, "val_ppl": ppl, "steps": trainer.global_step,
                     "tokens": sum(r["train_examples"] for r in trainer.history),
                     "train_s": trainer.train_seconds, "tokens_s": tokens_per_second(trainer),
                     "params": count_parameters(trainer.model),
                     "context": run_loaders.train.num_steps, "vocab": vocab})
    for row in rows:
        log(f"{corpus:>10} {row['model']:<18} validation perplexity {row['val_ppl']:8.2f}" +
            (f"   {row['steps']:>6,} steps   {row['tokens_s']:>8,.0f} tokens/s   "
             f"{row['train_s']:6.1f} s" if "steps" in row else ""))
    return Race(corpus, seconds, rows, runs)


RACE_COLUMNS = [("model", "model", ""), ("val perplexity", "val_ppl", ".2f"),
                ("steps", "steps", ",d"), ("train tokens", "tokens", ",d"),
                ("training s", "train_s", ".1f"), ("tokens/s", "tokens_s", ",.0f"),
                ("params", "params", ",d"), ("window", "context", "d")]


def race_markdown(rows: Sequence[dict[str, Any]],
                  columns: Sequence[tuple[str, str, str]] = tuple(RACE_COLUMNS)) -> str:
    """Rows (of `equal_time`) as a Markdown table; columns are (header, key, format spec),
    '' meaning str(); a missing value shows as "–"."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join("---:" if fmt else "---" for _, _, fmt in columns) + "|"]
    for row in rows:
        cells = [("–" if row.get(key) is None else format(row[key], fmt) if fmt
                  else str(row[key])) for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
