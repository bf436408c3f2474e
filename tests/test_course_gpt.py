"""dlcamp.course.gpt: our Transformer next to torch.nn.Transformer's stacks, the speed timing,
and the equal-time race of language models (lessons 7.10 and 7.11, bench/gpt_vs_lstm.py)."""

from __future__ import annotations

import math

import pytest
import torch

from dlcamp.course import gpt as course_gpt
from dlcamp.course.gpt import (
    TorchTransformer,
    equal_time,
    race_markdown,
    train_speed,
    translation_batch,
)
from dlcamp.course.lm import unigram_perplexity
from dlcamp.models.transformer import Transformer
from dlcamp.train.run import make_config


def _tiny(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(30, 40, src_pad=1, tgt_pad=1, num_hiddens=16, ffn_num_hiddens=32,
                       num_heads=4, num_blks=2, dropout=0.1)


def test_translation_batch_is_shaped_and_padded_like_the_loaders():
    src, src_len, tgt_in, tgt_out, tgt_len = translation_batch(16, 9, 12, 30, 40, pad=1)
    assert src.shape == (16, 9) and tgt_in.shape == tgt_out.shape == (16, 12)
    assert src_len.min() >= 1 and src_len.max() == 9 and tgt_len.max() == 12
    positions = torch.arange(12)
    assert torch.equal(tgt_out == 1, positions >= tgt_len[:, None])  # pad exactly after len
    assert torch.equal(src == 1, torch.arange(9) >= src_len[:, None])
    assert torch.equal(tgt_in[:, 1:][tgt_out[:, :-1] != 1], tgt_out[:, :-1][tgt_out[:, :-1] != 1])
    assert torch.equal(translation_batch(16, 9, 12, 30, 40)[0], src)  # same seed, same batch


def test_torch_transformer_computes_our_logits_and_is_an_independent_copy():
    ours = _tiny().eval()
    theirs = TorchTransformer(ours).eval()
    src, src_len, tgt_in, tgt_out, tgt_len = translation_batch(5, 7, 6, 30, 40)
    torch.testing.assert_close(theirs(src, src_len, tgt_in), ours(src, src_len, tgt_in),
                               atol=1e-5, rtol=1e-5)
    theirs.train()(src, src_len, tgt_in).sum().backward()
    assert all(p.grad is None for p in ours.parameters())  # copies, not shared modules
    assert not ours.training and theirs.training


def test_train_speed_counts_real_target_tokens_per_second(monkeypatch):
    ticks = iter(range(1000))
    monkeypatch.setattr(course_gpt.time, "perf_counter", lambda: float(next(ticks)))
    batch = translation_batch(4, 7, 6, 30, 40)
    ours = _tiny()
    rates = train_speed({"ours": ours, "torch": TorchTransformer(ours)}, batch, steps=2,
                        repeats=2, warmup=0)
    # every timing reads the fake clock twice, one "second" apart: 2 steps per second
    assert rates == {"ours": 2 * int(batch[4].sum()), "torch": 2 * int(batch[4].sum())}
    assert ours.encoder.blks[0].ffn.dense1.weight.grad is not None  # it did train steps
    with pytest.raises(ValueError, match="steps and repeats"):
        train_speed({"ours": ours}, batch, steps=0)


def test_equal_time_gives_every_model_the_same_training_seconds():
    seconds = 0.4
    race = equal_time("quotes-en", seconds, names=("gpt", "lstm"), quick=True,
                      log=lambda _: None)
    unigram, *models = race.rows
    assert [row["model"] for row in models] == ["gpt", "lstm"]
    _, loaders, _ = race.runs["gpt"]
    vocab = len(loaders.vocab)
    assert unigram["val_ppl"] == pytest.approx(
        unigram_perplexity(loaders.train.corpus, loaders.val.corpus, vocab))
    for row in models:
        trainer, run_loaders, ppl = race.runs[row["model"]]
        assert seconds <= row["train_s"] < seconds + 5  # the budget, plus one step at most
        assert row["steps"] == trainer.global_step >= 1 and row["val_ppl"] == ppl
        assert math.isfinite(ppl) and ppl < vocab  # it learned something in 0.4 s
        assert row["tokens"] == row["steps"] * run_loaders.train.num_tokens_per_batch
        assert row["context"] == make_config(row["model"], "quotes-en").num_steps
        assert len(run_loaders.vocab) == vocab  # the same corpus, the same vocabulary


@pytest.mark.parametrize("kwargs,match", [({"seconds": 0}, "seconds must be > 0"),
                                          ({"seconds": 1, "names": ()}, "at least one")])
def test_equal_time_refuses_an_empty_race(kwargs, match):
    with pytest.raises(ValueError, match=match):
        equal_time("quotes-en", **kwargs)


def test_race_markdown_aligns_numbers_and_marks_missing_values():
    rows = [{"model": "unigram (add-one)", "val_ppl": 24.6},
            {"model": "gpt", "val_ppl": 5.123, "steps": 1200, "tokens": 2_457_600,
             "train_s": 60.04, "tokens_s": 40_932.7, "params": 420_000, "context": 64}]
    lines = race_markdown(rows).splitlines()
    assert lines[0].startswith("| model | val perplexity |")
    assert lines[1].startswith("|---|---:|")
    assert lines[2] == "| unigram (add-one) | 24.60 | – | – | – | – | – | – |"
    assert lines[3] == "| gpt | 5.12 | 1,200 | 2,457,600 | 60.0 | 40,933 | 420,000 | 64 |"
