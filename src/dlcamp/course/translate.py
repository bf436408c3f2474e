"""Translation runs for the Part 7 lessons: train a small translator in memory, then use it.

    run = translation_run("seq2seq", "translation-zh", quick=True)   # trains, prints a line
    run.translator.translate(["Open file"], beam=4)                  # dlcamp translate's code
    hyps = translate_all(run.translator, run.loaders.test_pairs[:50])

A run is `dlcamp train --model NAME --dataset SET` in memory (the registered recipe, then
`overrides`; the Seq2Seq task: the loss averaged per real target token); nothing is written
to disk. Quick mode trains a smaller model for QUICK_STEPS steps on the first 2,000 training
pairs cut short: a step budget, so a busy machine gives the same result, only later.
`seconds` instead trains for that much time, for the lessons' full mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dlcamp.core.utils import seed_everything
from dlcamp.models import create_model
from dlcamp.text.translation import make_translation_loaders
from dlcamp.train.callbacks import EpochLog, ProgressBar
from dlcamp.train.plot import PlotCurves
from dlcamp.train.run import make_config
from dlcamp.train.task import Seq2Seq
from dlcamp.train.trainer import Trainer
from dlcamp.train.translation import Translator

# Quick mode: a one-layer GRU pair, sentences cut to QUICK_MAX_SRC source and QUICK_MAX_TGT
# target tokens (<eos> included; a cut target loses its end), QUICK_STEPS steps of batch 64:
# about two seconds of training on 2 cores.
QUICK_STEPS = 32
QUICK_MAX_SRC, QUICK_MAX_TGT = 12, 16
QUICK_MODEL = {"embed_size": 64, "num_hiddens": 128, "num_layers": 1, "dropout": 0.0}
BUDGET_EPOCHS = 10_000  # with `seconds`, the clock ends training, not the epoch count


@dataclass
class TranslationRun:
    """A trained translator: the Trainer (`history`: train_loss, val_loss, val_ppl, val_acc
    per epoch; `train_seconds`; `model`), the loaders (codecs, `test_pairs`) and a
    `Translator` (dlcamp.train.translation) around the model."""

    trainer: Trainer
    loaders: Any
    translator: Translator

    @property
    def model(self) -> Any:
        return self.trainer.model


def translation_run(model: str = "seq2seq", dataset: str = "translation-zh", quick: bool = False,
                    seconds: float | None = None, curves: bool = True, log: Any = print,
                    max_src: int | None = None, max_tgt: int | None = None,
                    **overrides: Any) -> TranslationRun:
    """Train `model` on the parallel corpus `dataset` with the Seq2Seq task (the loss
    averaged per real target token) and return the TranslationRun.

    quick: QUICK_STEPS steps of batch 64 with QUICK_MODEL's sizes on the quick subset, cut to
    QUICK_MAX_SRC / QUICK_MAX_TGT tokens (each can be overridden: `max_steps=`,
    `model_kwargs=`, `max_src=`, `max_tgt=`). seconds: train for that long instead (the
    schedule stretched over it). Other `overrides` are make_config settings (lr=,
    batch_size=, ...). Raises DatasetNotFound when the catalogs are missing (it names the
    Debian packages)."""
    settings: dict[str, Any] = {}
    if quick:
        settings = {"max_steps": QUICK_STEPS, "epochs": BUDGET_EPOCHS, "batch_size": 64,
                    "model_kwargs": dict(QUICK_MODEL)}
        max_src, max_tgt = max_src or QUICK_MAX_SRC, max_tgt or QUICK_MAX_TGT
    if seconds:
        settings.update(max_seconds=float(seconds), epochs=BUDGET_EPOCHS)
        settings.pop("max_steps", None)
    settings.update(overrides)
    cfg = make_config(model, dataset, quick=quick, **settings)
    seed_everything(cfg.train.seed)
    loaders = make_translation_loaders(dataset, cfg.batch_size, quick=quick, seed=cfg.train.seed,
                                       max_src=max_src, max_tgt=max_tgt)
    src, tgt = loaders.src_codec, loaders.tgt_codec
    net = create_model(model, src_vocab_size=len(src), tgt_vocab_size=len(tgt), src_pad=src.pad,
                       tgt_pad=tgt.pad, **cfg.model_kwargs)
    callbacks: list[Any] = [ProgressBar(disable=True if quick else None), EpochLog(log)]
    if curves:
        callbacks.append(PlotCurves(title=f"{model} on {dataset}"))
    trainer = Trainer(net, cfg.train, task=Seq2Seq(cfg.train.label_smoothing),
                      callbacks=callbacks)
    log(f"{model} on {dataset}: {loaders.describe}")
    trainer.fit(loaders.train, loaders.eval, loaders.eval_split)
    data = {"dataset": dataset, "kind": "translation", "max_tgt_len": max_tgt or 48}
    translator = Translator(trainer.model, src, tgt, data, next(trainer.model.parameters()).device)
    last = trainer.history[-1]
    log(f"{model}: {trainer.global_step} steps in {trainer.train_seconds:.1f} s, train loss "
        f"{last['train_loss']:.3f}, val loss {last['val_loss']:.3f} per token")
    return TranslationRun(trainer, loaders, translator)


def translate_all(translator: Translator, pairs: Sequence[Any], beam: int = 1,
                  batch_size: int = 64, max_len: int | None = None) -> list[str]:
    """The translations (target text, placeholders left as <phN>, as in the references) of
    the English `src` of each pair (dlcamp.text.translation.Pair), in order."""
    out: list[str] = []
    for start in range(0, len(pairs), batch_size):
        chunk = [p.src for p in pairs[start:start + batch_size]]
        out += [r["translation"] for r in translator.translate(chunk, beam, max_len,
                                                               cleaned=True)]
    return out


def bleu_tokens(codec: Any, text: str) -> list[str]:
    """The tokens BLEU counts n-grams of: for a "char" target (Chinese) the codec's tokens,
    one character each and <phN> one token, spaces dropped; otherwise the words between
    spaces (BLEU on BPE pieces would not be comparable with anyone's word BLEU)."""
    if codec.kind == "char":
        return [t for t in codec.tokens(text) if t.strip()]
    return text.split()


def sequence_log_probs(model: Any, src: Any, src_len: Any, outputs: Sequence[Sequence[int]],
                       bos: int, eos: int) -> list[float]:
    """log P(y_1 .. y_L, <eos> | x) of each output (token ids without <bos>/<eos>, as the
    searches return them) under `model`, by teacher forcing through `begin_decode` and
    `decode` (all that the searches use): the scores they compare. src (B, S), src_len (B,),
    len(outputs) == B. The model is put in eval mode."""
    model.eval()
    lens = [len(o) + 1 for o in outputs]
    tgt = torch.full((len(outputs), max(lens)), eos, dtype=torch.long, device=src.device)
    for row, out in enumerate(outputs):
        tgt[row, :len(out)] = torch.tensor(list(out), dtype=torch.long)
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)   # (B, T)
    with torch.no_grad():
        logits, _ = model.decode(tgt_in, model.begin_decode(src, src_len))      # (B, T, V)
    logp = logits.float().log_softmax(-1)
    picked = logp.gather(2, tgt[..., None])[..., 0]                              # (B, T)
    return [float(picked[row, :n].sum()) for row, n in enumerate(lens)]
