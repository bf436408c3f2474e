"""Part 3 sequence models: validation perplexity per model and corpus, scratch vs concise speed.

    python bench/text.py                 # ~12 min; writes docs/results.md + docs/benchmarks.md
    python bench/text.py --quick         # smoke run; docs/ untouched
    python bench/text.py --budget 60     # seconds of training per model on quotes-en

Perplexity: each registered language model (RNN, GRU, LSTM, 2-layer LSTM) is trained by its
recipe (`dlcamp train --model NAME --dataset CORPUS`: Adam lr 0.005, cosine, gradient clipping
at norm 1, batch 32 x 35 characters, sequential sampling with the state carried over, dropout
0.3 around the recurrent layer, 256 hidden units, 64-dim embedding) at character level and
evaluated on the held-out 10% of records with the final weights. tang300 trains the recipe's
12 epochs (21k characters each); quotes-en (2M characters an epoch) trains every model for the
same `--budget` seconds. The unigram row is the add-one-smoothed character-frequency model, the
baseline any language model has to beat.

Speed: tokens/s of the scratch recurrent layers (a Python loop over time steps) against
torch.nn's fused RNN/GRU/LSTM, same sizes, same batches, alternating, median of 3 timings.
Samples: whatever the trained tang300 and quotes-en LSTMs write, with fixed seeds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from common import Take, markdown_table, parser, replace_section, report, setup
from dlcamp.course.lm import lm_run, sample, tokens_per_second, unigram_perplexity
from dlcamp.models import count_parameters
from dlcamp.train import make_config
from dlcamp.train.run import build
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["rnn", "gru", "lstm", "deep-lstm"]
CORPORA = ["tang300", "quotes-en"]


def perplexities(corpus: str, budget: float, quick: bool) -> tuple[list[dict[str, Any]], dict]:
    rows, trained = [], {}
    for name in MODELS:
        extra = {"max_seconds": budget} if corpus == "quotes-en" else {}
        trainer, loaders, ppl = lm_run(name, corpus, quick=quick, curves=False,
                                       log=lambda _: None, **extra)
        rows.append({"corpus": corpus, "model": name, "val_ppl": ppl,
                     "best_val_ppl": min(r["val_ppl"] for r in trainer.history),
                     "epochs": trainer.epoch, "train_s": trainer.train_seconds,
                     "tokens_s": tokens_per_second(trainer),
                     "params": count_parameters(trainer.model), "vocab": len(loaders.vocab)})
        trained[name] = (trainer, loaders)
    _, loaders = trained["lstm"]
    rows.insert(0, {"corpus": corpus, "model": "unigram (add-one)", "vocab": len(loaders.vocab),
                    "val_ppl": unigram_perplexity(loaders.train.corpus, loaders.val.corpus,
                                                  len(loaders.vocab))})
    return rows, trained


def speed(cell: str, steps: int, repeats: int = 3) -> dict[str, Any]:
    """Tokens/s of `cell` and `cell-scratch` on quotes-en batches, timings interleaved."""
    runs = {}
    for variant in (cell, f"{cell}-scratch"):
        cfg = make_config(variant, "quotes-en", quick=True, epochs=1, schedule="constant")
        trainer, loaders, _ = build(cfg, None, progress=False, log=lambda _: None)
        trainer.fit(Take(loaders.train, 3))  # warm-up
        runs[variant] = (trainer, loaders, [])
    for _ in range(repeats):
        for trainer, loaders, times in runs.values():
            trainer.config.epochs = trainer.epoch + 1
            start = time.perf_counter()
            trainer.fit(Take(loaders.train, steps))
            times.append(time.perf_counter() - start)
    tokens = steps * runs[cell][1].train.batch_size * runs[cell][1].train.num_steps
    row = {"cell": cell, "tokens": tokens}
    for variant, (_, _, times) in runs.items():
        row["scratch" if variant.endswith("scratch") else "concise"] = \
            tokens / statistics.median(times)
    row["ratio"] = row["concise"] / row["scratch"]
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget", type=float, default=120.0,
                   help="seconds of training per model on quotes-en")
    args = p.parse_args()
    setup(args)
    budget = 5.0 if args.quick else args.budget
    ppl_rows, samples = [], []
    for corpus in CORPORA:
        rows, trained = perplexities(corpus, budget, args.quick)
        ppl_rows += rows
        trainer, loaders = trained["lstm"]
        if corpus == "tang300":
            for seed in range(3):
                samples.append((f"tang300 lstm, `--prompt 床前 --seed {seed}`",
                                sample(trainer, loaders, "床前", poem=5, seed=seed)))
            samples.append(("tang300 lstm, `--prompt 春 --poem 7 --seed 0`",
                            sample(trainer, loaders, "春", poem=7, seed=0)))
        else:
            for seed in range(2):
                samples.append((f"quotes-en lstm, `--prompt 'The ' --length 160 --seed {seed}`",
                                sample(trainer, loaders, "The ", length=160, seed=seed)))
    speed_rows = [speed(cell, 5 if args.quick else 30) for cell in ("rnn", "gru", "lstm")]
    ppl_md = markdown_table(ppl_rows, [
        ("corpus", "corpus", ""), ("model", "model", ""), ("val perplexity", "val_ppl", ".1f"),
        ("best epoch's", "best_val_ppl", ".1f"), ("epochs", "epochs", "d"),
        ("training s", "train_s", ".1f"), ("train tokens/s", "tokens_s", ",.0f"),
        ("params", "params", ","), ("vocab", "vocab", ",")])
    speed_md = markdown_table(speed_rows, [
        ("cell", "cell", ""), ("tokens per timing", "tokens", ","),
        ("scratch tokens/s", "scratch", ",.0f"), ("concise tokens/s", "concise", ",.0f"),
        ("concise / scratch", "ratio", ".2f")])
    sample_md = "\n\n".join(f"{title}:\n\n```\n{text}\n```" for title, text in samples)
    markdown = (f"### Validation perplexity (character level)\n\n{ppl_md}\n\n"
                f"### Scratch vs concise recurrent layers\n\n{speed_md}\n\n"
                f"### Samples (as generated, not picked)\n\n{sample_md}\n")
    report(args, "text", {"perplexity": ppl_rows, "speed": speed_rows,
                          "samples": samples}, markdown)
    if not args.quick:
        machine = describe_markdown(describe())
        cmd = f"`python bench/text.py --budget {args.budget:g}`"
        replace_section(ROOT / "docs" / "results.md", "part3-text",
                        f"Command: {cmd}.\n\n### Validation perplexity (character level)\n\n"
                        f"{ppl_md}\n\n### Samples (as generated, not picked)\n\n{sample_md}\n\n"
                        f"{machine}")
        replace_section(ROOT / "docs" / "benchmarks.md", "part3-tokens",
                        f"Command: {cmd}. quotes-en batches of 32 x 35 characters, 256 hidden "
                        f"units, 64-dim embedding; median of 3 timings of 30 steps each, "
                        f"variants interleaved.\n\n{speed_md}\n\n{machine}")


if __name__ == "__main__":
    main()
