"""The Part 7 lessons' translation helpers (dlcamp.course.translate)."""

from __future__ import annotations

import math

import torch

from dlcamp.course.translate import (
    bleu_tokens,
    sequence_log_probs,
    translate_all,
    translation_run,
)
from dlcamp.models import create_model
from dlcamp.text.codecs import build_codec

BOS, EOS, PAD = 2, 3, 1


def test_sequence_log_probs_equal_a_step_by_step_sum():
    torch.manual_seed(0)
    model = create_model("seq2seq", src_vocab_size=12, tgt_vocab_size=9, src_pad=PAD,
                         tgt_pad=PAD, embed_size=8, num_hiddens=16, num_layers=2, dropout=0.0)
    src = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    src_len = torch.tensor([4, 2])
    outputs = [[4, 5, 6], []]  # different lengths; the empty output is just <eos>
    got = sequence_log_probs(model, src, src_len, outputs, BOS, EOS)
    for row, out in enumerate(outputs):  # one token at a time through decode, summed in Python
        fed, total = BOS, 0.0
        with torch.no_grad():
            state = model.begin_decode(src[row:row + 1, :int(src_len[row])], src_len[row:row + 1])
            for tok in [*out, EOS]:
                logits, state = model.decode(torch.tensor([[fed]]), state)
                total += float(logits[0, -1].double().log_softmax(-1)[tok])
                fed = tok
        assert math.isclose(got[row], total, rel_tol=1e-5, abs_tol=1e-5)


def test_bleu_tokens_drop_spaces_and_keep_placeholders_whole():
    zh = build_codec("char", ["打开 <ph1> 文件", "保存"])
    assert bleu_tokens(zh, "打开 <ph1> 文件") == ["打", "开", "<ph1>", "文", "件"]
    fr = build_codec("bpe", ["ouvrir le fichier", "enregistrer le fichier"] * 20)
    assert bleu_tokens(fr, "ouvrir  le fichier") == ["ouvrir", "le", "fichier"]


def test_quick_translation_run_trains_and_translates():
    run = translation_run("seq2seq", "translation-zh", quick=True, curves=False,
                          log=lambda *_: None, max_steps=4)
    assert run.trainer.global_step == 4
    assert math.isfinite(run.trainer.history[-1]["val_loss"])
    pairs = run.loaders.test_pairs[:5]
    hyps = translate_all(run.translator, pairs, batch_size=2, max_len=8)
    assert len(hyps) == 5 and all(isinstance(h, str) for h in hyps)
    assert all(len(bleu_tokens(run.loaders.tgt_codec, h)) <= 8 for h in hyps)
