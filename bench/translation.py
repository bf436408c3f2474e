"""Part 7 translation: test-set BLEU of seq2seq, Bahdanau and the Transformer at equal time.

    python bench/translation.py                 # 6 runs x --budget s; writes docs/results.md
    python bench/translation.py --budget 240    # seconds of training per model and language
    python bench/translation.py --quick         # a smoke run; docs/ untouched

Each model trains by its registered recipe (`dlcamp train --model M --dataset translation-L
--max-seconds B`, run directory under runs/bench-translation/) for the same wall-clock
budget on the same machine, then the final weights translate the whole held-out test split
with greedy search (`dlcamp evaluate RUN`), scored with sacrebleu's corpus BLEU (tokenize
"zh" for Chinese, "13a" for French). The first 10 test pairs are shown as translated: the
test split's fixed hash order, not picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import markdown_table, parser, replace_section, report, setup
from dlcamp.models import count_parameters
from dlcamp.train import make_config
from dlcamp.train.checkpoint import load_checkpoint
from dlcamp.train.run import train_run
from dlcamp.train.translation import evaluate_translation
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["seq2seq", "bahdanau", "transformer"]
SETS = ["translation-zh", "translation-fr"]


def one(model: str, dataset: str, budget: float, quick: bool) -> dict[str, Any]:
    out = ROOT / "runs" / "bench-translation" / f"{model}-{dataset}"
    cfg = make_config(model, dataset, quick=quick, epochs=1 if quick else 1000,
                      max_seconds=budget)
    trainer, _ = train_run(cfg, out, force=True, progress=False, log=lambda _: None)
    result = evaluate_translation(load_checkpoint(out), split="test", quick=quick)
    last = trainer.history[-1]
    return {"dataset": dataset, "model": model, "bleu": result["bleu"],
            "test_ppl": result["ppl"], "val_ppl": last["val_ppl"], "epochs": trainer.epoch,
            "train_s": trainer.train_seconds, "params": count_parameters(trainer.model),
            "pairs": result["pairs"], "sent_s": result["sentences_per_second"],
            "signature": result["bleu_signature"], "samples": result["samples"],
            "settings": {k: v for k, v in cfg.to_dict()["train"].items()
                         if k in ("lr", "optimizer", "schedule", "grad_clip")}
            | {"batch_size": cfg.batch_size, **cfg.model_kwargs}}


def samples_md(rows: list[dict[str, Any]]) -> str:
    """The 10 unpicked test translations of every model, per language."""
    parts = []
    for dataset in SETS:
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            continue
        lines = [f"**{dataset}** (first 10 test pairs):", ""]
        for i, s in enumerate(mine[0]["samples"]):
            lines.append(f"{i + 1}. EN: {s['source']} — REF: {s['reference']}")
            lines += [f"   - {r['model']}: {r['samples'][i]['translation']}" for r in mine]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget", type=float, default=240.0,
                   help="seconds of training per model and language")
    args = p.parse_args()
    setup(args)
    budget = 5.0 if args.quick else args.budget
    rows = [one(model, dataset, budget, args.quick) for dataset in SETS for model in MODELS]
    table = markdown_table(rows, [
        ("pair", "dataset", ""), ("model", "model", ""), ("test BLEU", "bleu", ".2f"),
        ("test ppl", "test_ppl", ".2f"), ("val ppl", "val_ppl", ".2f"),
        ("epochs", "epochs", "d"), ("training s", "train_s", ".0f"),
        ("params", "params", ","), ("test pairs", "pairs", ","),
        ("sentences/s (greedy)", "sent_s", ".0f")])
    settings = "\n".join(f"- {r['model']} ({r['dataset']}): {r['settings']}" for r in rows
                         if r["dataset"] == SETS[0])
    markdown = (f"{table}\n\nBLEU: sacrebleu `{rows[0]['signature']}` (zh) and "
                f"`{rows[-1]['signature']}` (fr).\n\nSettings (the registered recipes):\n\n"
                f"{settings}\n\n{samples_md(rows)}\n")
    report(args, "translation", rows, markdown)
    if not args.quick:
        machine = describe_markdown(describe())
        cmd = f"`python bench/translation.py --budget {args.budget:g}`"
        replace_section(ROOT / "docs" / "results.md", "part7-translation",
                        f"Command: {cmd}: each model trains {args.budget:g} s on 2 CPU cores, "
                        f"then translates the whole test split greedily.\n\n{markdown}\n"
                        f"{machine}")


if __name__ == "__main__":
    main()
