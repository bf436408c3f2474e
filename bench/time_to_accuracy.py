"""Time to accuracy: dlcamp's default recipe (`cnn`) on Fashion-MNIST, epoch by epoch.

    python bench/time_to_accuracy.py                      # the registered recipe, to 92%
    python bench/time_to_accuracy.py --max-seconds 300    # + best accuracy in 5 minutes
    python bench/time_to_accuracy.py --quick              # 1 epoch on a subset (smoke run)

Runs `dlcamp.train.train_run` (the code behind `dlcamp train`) and reads its history: training
seconds are cumulative and exclude evaluation; accuracy is on the 10,000 test images after
each epoch, so times to a target are known to one epoch's resolution.

--max-seconds S adds a second run, the recipe given a time budget: the one-cycle schedule
is planned for a fixed number of epochs, so the budget run gets as many epochs as fit in S at
the speed measured by the first run (or --budget-epochs), with S as a hard stop as well.
"""

from __future__ import annotations

import math
import tempfile

from common import markdown_table, parser, report, setup
from dlcamp.models import model_recipe
from dlcamp.train import make_config, train_run


def train(model: str, epochs: int | None, max_seconds: float | None, quick: bool) -> dict:
    """One run of the recipe; returns its settings, per-epoch history and summary numbers."""
    cfg = make_config(model, quick=quick, epochs=epochs, max_seconds=max_seconds)
    with tempfile.TemporaryDirectory(prefix="dlcamp-tta-") as out:
        trainer, _ = train_run(cfg, out=out, force=True, progress=False)
    epochs_ = [{"epoch": r["epoch"], "train_seconds": r["train_seconds"],
                "test_acc": r["test_acc"], "train_loss": r["train_loss"]}
               for r in trainer.history]
    return {"config": cfg.to_dict(), "planned_epochs": cfg.train.epochs, "epochs": epochs_}


def summarize(run: dict, target: float, at_seconds: float) -> dict:
    history = run["epochs"]
    reached = next((r for r in history if r["test_acc"] >= target), None)
    by_time = [r for r in history if r["train_seconds"] <= at_seconds]
    return {
        "epochs_done": len(history), "planned_epochs": run["planned_epochs"],
        "time_to_target": reached["train_seconds"] if reached else None,
        "epoch_of_target": reached["epoch"] if reached else None,
        "acc_at_seconds": max((r["test_acc"] for r in by_time), default=None),
        "final_acc": history[-1]["test_acc"], "best_acc": max(r["test_acc"] for r in history),
        "total_seconds": history[-1]["train_seconds"],
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", default="cnn", help="registered model whose recipe is run")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--max-seconds", type=float, help="also run the recipe with this budget")
    p.add_argument("--budget-epochs", type=int, help="epochs of the budget run (default: as "
                   "many as fit in --max-seconds at the first run's speed)")
    p.add_argument("--target", type=float, default=0.92, help="test accuracy target (0.92, the "
                   "bar of issue 12)")
    p.add_argument("--at-seconds", type=float, default=60.0,
                   help="report the accuracy reached within this much training time (60)")
    args = p.parse_args()
    setup(args)
    epochs = args.epochs or (1 if args.quick else None)

    runs = {"recipe": train(args.model, epochs, None, args.quick)}
    if args.max_seconds:
        budget_epochs = args.budget_epochs
        if budget_epochs is None:
            first = runs["recipe"]["epochs"]
            per_epoch = first[-1]["train_seconds"] / len(first)
            budget_epochs = max(1, math.floor(args.max_seconds / per_epoch))
        runs["budget"] = train(args.model, budget_epochs, args.max_seconds, args.quick)

    summary, per_epoch = [], []
    for name, run in runs.items():
        s = summarize(run, args.target, args.at_seconds)
        n = run["planned_epochs"]
        label = (f"recipe ({n} epoch{'s' * (n != 1)})" if name == "recipe" else
                 f"{args.max_seconds:g} s budget ({n} epoch{'s' * (n != 1)} planned)")
        if s["epochs_done"] < s["planned_epochs"]:
            label += f" (stopped after {s['epochs_done']}: schedule not finished)"
        summary.append({"run": label, **s})
        run["summary"] = s
        per_epoch += [{"run": name, **r} for r in run["epochs"]]

    pct = f"{args.target:.0%}"
    markdown = markdown_table(summary, [
        ("run", "run", ""), (f"training s to {pct} test acc", "time_to_target", ".1f"),
        (f"test acc within {args.at_seconds:g} s", "acc_at_seconds", ".4f"),
        ("final test acc", "final_acc", ".4f"), ("best test acc", "best_acc", ".4f"),
        ("total training s", "total_seconds", ".1f")])
    markdown += "\n\n" + markdown_table(per_epoch, [
        ("run", "run", ""), ("epoch", "epoch", "d"),
        ("cumulative training s", "train_seconds", ".1f"), ("train loss", "train_loss", ".4f"),
        ("test acc", "test_acc", ".4f")])
    recipe = model_recipe(args.model)
    markdown += (f"\n\nRecipe `{args.model}`: "
                 + ", ".join(f"{k}={v}" for k, v in recipe.items())
                 + (". Quick mode: 6,000 train / 2,000 test images." if args.quick else "."))
    first = runs["recipe"]["summary"]
    headline = {"time_to_target": first["time_to_target"],
                "acc_at_seconds": first["acc_at_seconds"], "final_acc": first["final_acc"],
                "total_seconds": first["total_seconds"],
                "epochs": first["epochs_done"], "target": args.target,
                "at_seconds": args.at_seconds}
    report(args, "time_to_accuracy", runs, markdown, {"headline": headline})


if __name__ == "__main__":
    main()
