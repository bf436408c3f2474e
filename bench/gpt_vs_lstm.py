"""GPT-style Transformer vs LSTM at equal training time; our Transformer vs torch.nn.Transformer.

    python bench/gpt_vs_lstm.py --quick          # smoke run (~20 s); prints only
    python bench/gpt_vs_lstm.py                  # 180 s per model and corpus; prints only
    python bench/gpt_vs_lstm.py --write          # the same, then replaces the section
                                                 # "gpt-vs-lstm" of docs/benchmarks.md
    python bench/gpt_vs_lstm.py --budget 300 --write

1. Validation perplexity at equal training time (dlcamp.course.gpt.equal_time, the code of
   lesson 7.11): "gpt" and "lstm", each by its registered recipe (`dlcamp train --model NAME
   --dataset CORPUS`), train `--budget` seconds on quotes-en and on the whole Tang corpus
   "tang" (the schedule stretched over the clock; evaluation not counted), then the held-out
   split is measured with the final weights. The unigram row is the add-one character
   frequency model fitted on the same training text.
2. Training speed (dlcamp.course.gpt.train_speed, as lesson 7.10): our from-scratch
   "transformer" and the same network with torch.nn.Transformer's encoder and decoder stacks
   (weights copied: same sizes, same embeddings and output layer), one training step
   (forward, per-token cross-entropy, backward) on the same random batch shaped like a
   translation-zh batch, the two taking turns; target tokens per second, median of the
   timings.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from common import parser, replace_section, report, setup
from dlcamp.course.gpt import (
    TorchTransformer,
    equal_time,
    race_markdown,
    train_speed,
    translation_batch,
)
from dlcamp.course.lm import sample
from dlcamp.models import count_parameters, create_model
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parent.parent
SECTION = "gpt-vs-lstm"
CORPORA = ("quotes-en", "tang")
# A translation-zh training batch: 64 pairs (the recipe's batch), padded to the median
# batch's 20 source and 38 target positions; vocabularies about translation-zh's (6,176
# English words, 2,182 Chinese characters with the specials).
BATCH, SRC_STEPS, TGT_STEPS, SRC_VOCAB, TGT_VOCAB = 64, 20, 38, 6000, 2200


def speed_rows(quick: bool, seed: int = 0) -> list[dict]:
    """Target tokens/s of a training step of ours and of torch.nn.Transformer's stacks, at the
    registered recipe's sizes (and at a wider, deeper setting when not quick)."""
    settings = [{}] if quick else [{}, {"num_hiddens": 256, "ffn_num_hiddens": 1024,
                                        "num_heads": 8, "num_blks": 4}]
    batch = translation_batch(BATCH, SRC_STEPS, TGT_STEPS, SRC_VOCAB, TGT_VOCAB, seed=seed)
    rows = []
    for sizes in settings:
        torch.manual_seed(seed)
        ours = create_model("transformer", src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB,
                            **sizes)
        theirs = TorchTransformer(ours)
        rates = train_speed({"ours": ours, "torch": theirs}, batch,
                            steps=2 if quick else 20, repeats=1 if quick else 5)
        blk = ours.encoder.blks[0]
        rows.append({"width": blk.attention.num_hiddens, "ffn": blk.ffn.dense1.out_features,
                     "heads": blk.attention.num_heads, "blocks": len(ours.encoder.blks),
                     "params": count_parameters(ours), "ours": rates["ours"],
                     "torch": rates["torch"], "ratio": rates["torch"] / rates["ours"]})
    return rows


SPEED_COLUMNS = [("width", "width", "d"), ("FFN", "ffn", "d"), ("heads", "heads", "d"),
                 ("blocks", "blocks", "d"), ("params (ours)", "params", ",d"),
                 ("ours tokens/s", "ours", ",.0f"), ("torch.nn tokens/s", "torch", ",.0f"),
                 ("torch.nn / ours", "ratio", ".2f")]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget", type=float, default=180.0,
                   help="seconds of training per model and corpus")
    p.add_argument("--write", action="store_true",
                   help="replace the section of docs/benchmarks.md (not with --quick)")
    args = p.parse_args()
    setup(args)
    budget = 1.0 if args.quick else args.budget
    start = time.perf_counter()
    races, samples = [], []
    for corpus in CORPORA:
        race = equal_time(corpus, budget, quick=args.quick)
        races.append(race)
        for name in ("gpt", "lstm"):
            trainer, loaders, _ = race.runs[name]
            text = (sample(trainer, loaders, "春风", poem=5, seed=0) if corpus == "tang"
                    else sample(trainer, loaders, "The ", length=100, seed=0))
            samples.append((f"{corpus}, {name}", text))
    speed = speed_rows(args.quick)
    took = time.perf_counter() - start
    tables = "\n\n".join(f"**{race.corpus}** ({race.seconds:g} s of training each):\n\n"
                         f"{race_markdown(race.rows)}" for race in races)
    speed_md = race_markdown(speed, SPEED_COLUMNS)
    markdown = "\n".join([
        "### GPT-style Transformer vs LSTM at equal training time", "",
        "Validation perplexity (character level, final weights) after the same seconds of "
        "training by each model's registered recipe and default sizes (`gpt`: "
        "dlcamp/models/gpt.py, a pre-norm decoder-only Transformer; `lstm`: Part 3's, "
        "dlcamp/models/rnn.py); \"window\" is the training sequence length. Unigram: add-one "
        "character frequencies of the same training text.",
        "", tables, "",
        "### Our Transformer vs torch.nn.Transformer (training step)", "",
        f"Target tokens/s of forward + per-token cross-entropy + backward on one random batch "
        f"of {BATCH} pairs padded to {SRC_STEPS} source and {TGT_STEPS} target positions "
        f"(lengths uniform from 1, dlcamp.course.gpt.translation_batch; "
        f"vocabularies {SRC_VOCAB:,} and {TGT_VOCAB:,}); torch.nn.Transformer's stacks hold "
        f"a copy of our weights and sit between copies of our embeddings and output layer; "
        f"the two take turns, median of {1 if args.quick else 5} timing(s).", "", speed_md])
    print("\n".join(f"{title}:\n{text}\n" for title, text in samples))
    report(args, "gpt_vs_lstm", {"races": [r.rows for r in races], "speed": speed,
                                 "samples": samples}, markdown, {"seconds": took})
    if args.write and not args.quick:
        body = "\n".join([f"Command: `python bench/gpt_vs_lstm.py --budget {args.budget:g} "
                          f"--write`; the whole run took {took / 60:.0f} min on "
                          f"{time.strftime('%Y-%m-%d')}.", "", markdown, "", "Machine:", "",
                          describe_markdown(describe())])
        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, body)
        print(f"\nwrote {ROOT / 'docs' / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
