"""Translation runs: their data, a trained model as a translator, and test-set BLEU.

    dlcamp train --model transformer --dataset translation-zh     # English -> Chinese
    dlcamp translate runs/<run> "Open file" --beam 4
    dlcamp evaluate runs/<run>                                     # sacrebleu BLEU on test

A translation checkpoint stores its model's arguments and both codecs (the English word
vocabulary and the target's characters or BPE merges) as plain data in `ckpt["data"]`, so it
loads with `weights_only=True` and translates offline.

BLEU is sacrebleu's corpus BLEU (Post, 2018): tokenize "zh" for Chinese targets (each CJK
character a token) and "13a" (the WMT standard) for French. Both sides are compared after the
corpus's cleaning, placeholders as their <phN> tokens; `dlcamp translate` puts the user's own
placeholders back.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcamp.core.errors import BadArgument, CheckpointError
from dlcamp.core.utils import pick_device
from dlcamp.models.decoding import beam_search, greedy_search
from dlcamp.text.codecs import codec_from_dict
from dlcamp.text.translation import (
    load_pairs,
    make_translation_loaders,
    pair_loader,
    prepare_source,
    restore_placeholders,
)
from dlcamp.text.translation_clean import PH_TOKEN
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcamp.train.trainer import TrainConfig, Trainer

SAMPLES = 10  # unpicked test translations shown by `dlcamp evaluate`: the first ones in order
MAX_SOURCE_TOKENS = 256  # a longer "sentence" is a document: refused (training pairs: <= 16 words)


def translation_data(cfg: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Loaders (held out: the val split), model arguments and checkpoint metadata for a
    translation model on a parallel corpus (cfg: a RunConfig)."""
    loaders = make_translation_loaders(cfg.dataset, cfg.batch_size, quick=cfg.quick,
                                       seed=cfg.train.seed)
    src, tgt = loaders.src_codec, loaders.tgt_codec
    kwargs = {"src_vocab_size": len(src), "tgt_vocab_size": len(tgt), "src_pad": src.pad,
              "tgt_pad": tgt.pad, **cfg.model_kwargs}
    data = {"dataset": cfg.dataset, "kind": "translation", "src_codec": src.to_dict(),
            "tgt_codec": tgt.to_dict(), "max_tgt_len": int(loaders.max_tgt_len)}
    return loaders, kwargs, data


@dataclass
class Translator:
    """A trained encoder-decoder with its codecs; `translate` is what `dlcamp translate` runs."""

    model: nn.Module
    src_codec: Any
    tgt_codec: Any
    data: dict[str, Any]
    device: torch.device

    def encode(self, sentences: list[str], cleaned: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """Clean English sentences as the corpus was cleaned (unless `cleaned`: sentences of
        the corpus itself, whose cleaning must not be applied twice), then pad their ids:
        src (B, S), src_len (B,), and each sentence's placeholders (to put back later)."""
        ids, holders = [], []
        for sentence in sentences:
            text, found = (sentence, []) if cleaned else prepare_source(sentence)
            if not text:
                raise BadArgument(f"nothing left to translate in {sentence!r} after cleaning")
            ids.append([*self.src_codec.encode(text), self.src_codec.eos])
            if len(ids[-1]) > MAX_SOURCE_TOKENS:
                raise BadArgument(f"a sentence of {len(ids[-1]):,} tokens: at most "
                                  f"{MAX_SOURCE_TOKENS} (this model learnt from interface "
                                  "strings of up to 16 words); split the text into sentences")
            holders.append(found)
        lens = torch.tensor([len(i) for i in ids])
        src = torch.full((len(ids), int(lens.max())), self.src_codec.pad, dtype=torch.long)
        for row, i in enumerate(ids):
            src[row, :len(i)] = torch.tensor(i)
        return src.to(self.device), lens.to(self.device), holders

    @torch.no_grad()
    def translate(self, sentences: list[str], beam: int = 1, max_len: int | None = None,
                  cleaned: bool = False) -> list[dict[str, Any]]:
        """One dict per sentence: translation (str), tokens (target ids, without <eos>),
        score (the beam's length-normalised log-probability; None for greedy search).
        beam 1 is greedy search, batched; beam > 1 searches one sentence at a time.
        `cleaned`: the sentences are the corpus's own (placeholders already <phN>), and the
        translations keep their <phN> tokens. Raises BadArgument for a beam < 1 or an empty
        sentence."""
        if isinstance(sentences, str):
            raise BadArgument("translate takes a list of sentences, e.g. [\"Open file\"]")
        if beam < 1:
            raise BadArgument(f"the beam size must be >= 1, got {beam}")
        if max_len is not None and max_len < 1:
            raise BadArgument(f"max_len must be >= 1, got {max_len}")
        if not sentences:
            return []
        max_len = max_len or 2 * int(self.data.get("max_tgt_len", 50))
        tgt = self.tgt_codec
        src, src_len, holders = self.encode(sentences, cleaned)
        if beam == 1:
            found = greedy_search(self.model, src, src_len, tgt.bos, tgt.eos, max_len)
            scored = [(ids, None) for ids in found]
        else:
            scored = [beam_search(self.model, src[i:i + 1, :int(src_len[i])], src_len[i:i + 1],
                                  tgt.bos, tgt.eos, beam, max_len)[0] for i in range(len(src))]
        out = []
        for (ids, score), held, source in zip(scored, holders, sentences, strict=True):
            text = tgt.decode(ids)
            text = re.sub(r"\s{2,}", " ", text).strip()
            if not cleaned:  # the sentence's own placeholders back, once each
                if "%%" in source:  # a printf string: its literal % stays escaped
                    text = text.replace("%", "%%")
                text = restore_placeholders(drop_invented(text, len(held)), held)
            out.append({"translation": text,
                        "tokens": [int(i) for i in ids],
                        "score": None if score is None else float(score)})
        return out


def drop_invented(text: str, placeholders: int) -> str:
    """`text` with each placeholder token <phN> of the source once: a model can write one the
    source does not have (N > `placeholders`), with nothing to put back, or write one twice,
    which would break the format string ("%d%d files"). Repeats and inventions are dropped."""
    seen: set[str] = set()

    def keep(m: re.Match) -> str:
        if int(m.group(1)) > placeholders or m.group() in seen:
            return ""
        seen.add(m.group())
        return m.group()

    kept = PH_TOKEN.sub(keep, text)
    return " ".join(kept.split()) if kept != text else text


def translator_from_checkpoint(ckpt: dict[str, Any], device: str = "cpu") -> Translator:
    data = ckpt.get("data", {})
    if data.get("kind") != "translation":
        raise CheckpointError(f"this checkpoint holds a {ckpt['model']['name']!r} model trained "
                              f"on {data.get('dataset', 'images')!r}, not a translation model. "
                              "Train one first: `dlcamp train --model transformer --dataset "
                              "translation-zh`.")
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    return Translator(model, codec_from_dict(data["src_codec"]), codec_from_dict(data["tgt_codec"]),
                      data, dev)


def load_translator(path: Path | str, device: str = "cpu") -> Translator:
    """A translation model and its codecs from a run directory or checkpoint file.
    Raises CheckpointError when the file is missing or holds another kind of model."""
    return translator_from_checkpoint(load_checkpoint(path), device)


SPECIAL = re.compile(r"<(ph\d+|unk)>")  # scored as one word each ("ph1"), not "< ph1 >"


def corpus_bleu(hypotheses: list[str], references: list[str], target: str
                ) -> tuple[float, str]:
    """sacrebleu's corpus BLEU (0-100) of one reference per sentence, and its signature (the
    settings that make the number reproducible); `target` "zh" tokenizes each CJK character
    as a token, anything else uses the 13a tokenizer. A placeholder token <phN> (and <unk>)
    counts as one word: both tokenizers would split it into three easy matches."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="zh" if target == "zh" else "13a")
    hyps, refs = ([SPECIAL.sub(r" \1 ", t) for t in texts] for texts in (hypotheses, references))
    return metric.corpus_score(hyps, [refs]).score, str(metric.get_signature())


def target_language(dataset: str) -> str:
    """"zh" for translation-zh, "fr" for translation-fr (the part after the dash)."""
    return dataset.rsplit("-", 1)[-1]


def evaluate_translation(ckpt: dict[str, Any], dataset: str | None = None, split: str = "test",
                         device: str = "auto", quick: bool = False, beam: int = 1,
                         batch_size: int = 128) -> dict[str, Any]:
    """Loss and perplexity (teacher forcing) and sacrebleu corpus BLEU (greedy search, or
    beam search with `beam` > 1) of a translation checkpoint on a split of its parallel
    corpus, plus the first SAMPLES translations of that split (in the split's fixed order:
    not picked). quick: the first 200 pairs."""
    translator = translator_from_checkpoint(ckpt, device)
    name = dataset or translator.data["dataset"]
    if name != translator.data["dataset"]:
        raise BadArgument(f"this model translates {translator.data['dataset']} (its codecs "
                          f"come from it); it cannot be scored on {name}")
    pairs = load_pairs(name, split)
    if quick:
        pairs = pairs[:200]
    if not pairs:
        raise BadArgument(f"{name} has no {split} pairs")
    loader = pair_loader(pairs, translator.src_codec, translator.tgt_codec, batch_size)
    trainer = Trainer(translator.model, TrainConfig(device=str(translator.device),
                                                    compile=False))
    metrics = trainer.evaluate(loader)
    start = time.perf_counter()
    hyps: list[str] = []
    for i in range(0, len(pairs), batch_size):
        chunk = [p.src for p in pairs[i:i + batch_size]]
        hyps += [r["translation"] for r in translator.translate(chunk, beam, cleaned=True)]
    seconds = time.perf_counter() - start
    bleu, signature = corpus_bleu(hyps, [p.tgt for p in pairs], target_language(name))
    samples = [{"source": p.src, "reference": p.tgt, "translation": h}
               for p, h in zip(pairs[:SAMPLES], hyps, strict=False)]
    return {"kind": "translation", "model": ckpt["model"]["name"], "dataset": name,
            "split": split, "pairs": len(pairs), **metrics, "bleu": bleu,
            "bleu_signature": signature,
            "search": "greedy" if beam == 1 else f"beam {beam}",
            "sentences_per_second": len(pairs) / max(seconds, 1e-9),
            "trained_epochs": ckpt["trainer"]["epoch"], "samples": samples}


def format_translation(result: dict[str, Any]) -> str:
    """`dlcamp evaluate`'s report of a translation model: the numbers, then the samples."""
    lines = [f"{result['model']} on {result['dataset']} {result['split']} "
             f"({result['pairs']:,} pairs, {result['search']} search): BLEU "
             f"{result['bleu']:.2f}  loss {result['loss']:.4f}  ppl {result['ppl']:.2f}  "
             f"token acc {result['acc']:.4f}",
             f"  {result['bleu_signature']}"]
    for s in result["samples"]:
        lines += [f"  EN  {s['source']}", f"  REF {s['reference']}", f"  OUT {s['translation']}"]
    return "\n".join(lines)
