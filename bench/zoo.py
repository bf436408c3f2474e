"""Part 2 model zoo: every CNN's CPU-sized recipe trained in full, against the book's accuracy.

    python bench/zoo.py                       # all models; writes docs/results.md + benchmarks.md
    python bench/zoo.py --models lenet,nin    # some of them (the docs get only those rows)
    python bench/zoo.py --quick               # smoke run on subsets; docs/ untouched

Each model is trained by its registered recipe (`make_config(name)`, what `dlcamp train
--model NAME` runs) on the 60,000 Fashion-MNIST training images and tested on all 10,000 test
images with the final weights. Training seconds are the training steps with data loading
(`Trainer.train_seconds`), evaluation excluded; train examples/s = examples seen / those seconds.
The bar of the issue: each run reaches the book's published accuracy for the architecture
within 10 minutes of training on 2 CPU cores.

The book's GPU throughput is the "examples/sec on cuda:0" line printed under each training cell
of Dive into Deep Learning (d2l-zh, 2nd edition, PyTorch), given for reference only: a GPU at
the book's 224/96-pixel inputs and full width, against a CPU at 28 pixels and reduced width.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import markdown_table, parser, replace_section, report, setup
from dlcamp.course.compare import count_flops, input_shape_of, train_model
from dlcamp.models import count_parameters
from dlcamp.models.book import book_config
from dlcamp.train import make_config
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["lenet", "lenet-bn", "lenet-modern", "alexnet", "vgg", "nin", "googlenet", "resnet18",
          "densenet"]
BUDGET_SECONDS = 600  # the bar: within 10 minutes of training each

# examples/sec on cuda:0 as printed in d2l-zh (2nd ed.) under each model's training cell, with
# that run's test accuracy; None where we have no copy of the book's printed line.
BOOK_GPU = {"lenet": (55296.6, 0.779), "vgg": (2463.7, 0.920), "googlenet": (3265.5, 0.886),
            "resnet18": (5032.7, 0.893), "densenet": (5626.3, 0.885)}


def run_one(name: str, quick: bool) -> dict[str, Any]:
    cfg = make_config(name, quick=quick)
    trainer, loaders = train_model(cfg, test_every_epoch=False, curves=False, progress=False,
                                   log=lambda _: None)
    test = trainer.evaluate(loaders.eval)
    examples = sum(record["train_examples"] for record in trainer.history)
    book = book_config(name) if name != "lenet-modern" else None
    gpu = BOOK_GPU.get(name, (None, None))
    recipe = cfg.train
    return {
        "model": name, "kwargs": cfg.model_kwargs, "epochs": len(trainer.history),
        "batch_size": cfg.batch_size, "augment": cfg.augment,
        "recipe": f"{recipe.optimizer} lr {recipe.lr:g}"
                  + (f" m {recipe.momentum:g}" if recipe.momentum and recipe.optimizer == "sgd"
                     else "")
                  + (f", {recipe.schedule}" if recipe.schedule != "constant" else "")
                  + f", {trainer.speed.precision.value}",
        "test_acc": test["acc"], "train_seconds": trainer.train_seconds,
        "examples_per_s": examples / trainer.train_seconds,
        "params": count_parameters(trainer.model),
        "mflops": count_flops(trainer.model, input_shape_of(cfg, loaders)) / 1e6,
        "book_acc": book["book_test_acc"] if book else None,
        "book_section": book["section"] if book else "(dlcamp's variant)",
        "book_size": book["image_size"] if book else None,
        "book_gpu_examples_per_s": gpu[0],
        "passes": (book is None or test["acc"] >= book["book_test_acc"])
                  and trainer.train_seconds <= BUDGET_SECONDS,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    args = p.parse_args()
    setup(args)
    started = time.perf_counter()
    rows = []
    for name in args.models.split(","):
        row = run_one(name, args.quick)
        print(f"{name:<13} {row['test_acc']:.4f} in {row['train_seconds']:.0f} s "
              f"({row['epochs']} epochs, {row['examples_per_s']:,.0f} ex/s)", flush=True)
        rows.append(row)
    total = time.perf_counter() - started
    for row in rows:
        row["verdict"] = "yes" if row["passes"] else "**no**"
        row["kwargs_text"] = ", ".join(f"{k}={v}" for k, v in row["kwargs"].items()) or "–"
    results = markdown_table(rows, [
        ("model", "model", ""), ("book section", "book_section", ""),
        ("CPU-size arguments", "kwargs_text", ""), ("recipe", "recipe", ""),
        ("epochs", "epochs", "d"), ("book acc", "book_acc", ".3f"),
        ("dlcamp acc", "test_acc", ".4f"), ("training s", "train_seconds", ".0f"),
        ("≥ book within 10 min", "verdict", "")])
    speed = markdown_table(rows, [
        ("model", "model", ""), ("params", "params", ",d"),
        ("MFLOP/example (fwd)", "mflops", ".1f"),
        ("dlcamp train ex/s (CPU, 28 px)", "examples_per_s", ",.0f"),
        ("book input px", "book_size", "d"),
        ("book train ex/s (GPU, for reference)", "book_gpu_examples_per_s", ",.0f")])
    command = "python bench/zoo.py" + (f" --models {args.models}" if args.models != ",".join(
        MODELS) else "") + (f" --threads {args.threads}" if args.threads else "")
    machine = describe_markdown(describe())
    text = (f"```\n{command}\n```\n\nEach model's registered CPU recipe on all 60,000 training "
            "images (28×28, no resize), final weights tested on the 10,000 test images, one seed "
            "(0). Training seconds exclude evaluation. Whole run: "
            f"{total / 60:.1f} min, measured {time.strftime('%Y-%m-%d')}.\n\n{results}\n\n"
            f"Machine:\n\n{machine}\n")
    speed_text = (f"```\n{command}\n```\n\nTraining throughput of each CPU-sized model during "
                  "its full run above (data loading included, evaluation excluded). The book's "
                  "figure is the `examples/sec on cuda:0` line printed under the model's "
                  "training cell in d2l-zh (2nd ed., PyTorch): a GPU at the book's input size "
                  "and full width, so it is a reference, not a ratio.\n\n"
                  f"{speed}\n\nMachine:\n\n{machine}\n")
    report(args, "zoo", rows, results + "\n\n" + speed)
    if not args.quick:
        replace_section(ROOT / "docs" / "results.md", "part2-zoo", text)
        replace_section(ROOT / "docs" / "benchmarks.md", "part2-zoo-speed", speed_text)


if __name__ == "__main__":
    main()
