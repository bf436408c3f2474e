"""The NumPy engine (dlcamp.engine) beside PyTorch: speed per epoch and the accuracy it reaches.

    python bench/scratch.py              # speed + accuracy; writes docs/benchmarks.md (~12 min)
    python bench/scratch.py --quick      # a smoke run on a few batches; docs/ untouched
    python bench/scratch.py --no-accuracy

Speed: the same network (same initial weights), batch size, data loader, optimiser and number
of steps, trained by `ScratchTrainer` (dlcamp.engine, NumPy) and by `Trainer` (PyTorch, fp32,
eager, no bf16/channels-last/compile). Epochs alternate between the two engines so that both
see the same machine load; the table gives the median epoch time of `--repeats` epochs each.
NumPy's BLAS (OpenBLAS) and PyTorch both use every core for matrix products.

Accuracy: each engine trains the full recipe on the 60,000 training images and is tested on
all 10,000 test images with the final weights. The bars of the issue: the engine's MLP
(784-256-10) and a LeNet-style CNN reach >= 85%; the MLP's epoch time is within 2x of PyTorch's.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from common import Take, markdown_table, parser, replace_section, report, setup
from dlcamp.train import make_config
from dlcamp.train.run import build
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]
# One recipe for both engines: SGD with Nesterov momentum and a one-cycle schedule.
RECIPE = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, schedule="onecycle",
              batch_size=256, precision="fp32", channels_last="off", compile=False)
MODELS = {"mlp": "MLP 784-256-10", "lenet-modern": "LeNet (BN, ReLU, max pool)"}


def trainer_for(model: str, engine: str, epochs: int, **extra: Any):
    settings = {**RECIPE, **extra}
    if engine == "numpy":  # PyTorch-only switches are refused by the NumPy engine
        settings = {k: v for k, v in settings.items() if k not in ("precision", "channels_last",
                                                                     "compile")}
    cfg = make_config(model, engine=engine, epochs=epochs, **settings)
    trainer, loaders, _ = build(cfg, None, progress=False, log=lambda _: None)
    return trainer, loaders


def speed(model: str, repeats: int, batches: int | None) -> dict[str, Any]:
    """Median seconds per epoch of each engine, epochs interleaved; same weights at the start."""
    trainers = {e: trainer_for(model, e, epochs=1, schedule="constant")
                for e in ("numpy", "torch")}
    import torch

    start = {k: torch.from_numpy(v.copy()) for k, v in trainers["numpy"][0].model
             .state_dict().items()}
    trainers["torch"][0].model.load_state_dict(start)
    seconds: dict[str, list[float]] = {"numpy": [], "torch": []}
    for trainer, _ in trainers.values():
        trainer.config.epochs = 0  # each pass below trains one more epoch
    for _ in range(repeats + 1):  # the first epoch of each is a warm-up and not counted
        for engine, (trainer, loaders) in trainers.items():
            trainer.config.epochs += 1
            trainer.fit(Take(loaders.train, batches))
            seconds[engine].append(trainer.history[-1]["epoch_seconds"])
    examples = trainers["torch"][0].history[-1]["train_examples"]
    row = {"model": MODELS[model], "examples": examples, "repeats": repeats}
    for engine, values in seconds.items():
        row[f"{engine}_s"] = statistics.median(values[1:])
        row[f"{engine}_ex_s"] = examples / row[f"{engine}_s"]
    row["ratio"] = row["numpy_s"] / row["torch_s"]
    return row


def accuracy(model: str, engine: str, epochs: int, quick: bool) -> dict[str, Any]:
    extra = {"max_steps": 20} if quick else {}
    trainer, loaders = trainer_for(model, engine, epochs, **extra)
    trainer.fit(loaders.train)
    test = trainer.evaluate(loaders.eval)
    return {"model": MODELS[model], "engine": engine, "epochs": trainer.epoch,
            "test_acc": test["acc"], "train_s": trainer.train_seconds,
            "s_per_epoch": trainer.train_seconds / max(trainer.epoch, 1)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per engine (median)")
    p.add_argument("--mlp-epochs", type=int, default=10)
    p.add_argument("--cnn-epochs", type=int, default=5)
    p.add_argument("--no-accuracy", action="store_true", help="only the speed comparison")
    args = p.parse_args()
    setup(args)
    batches = 10 if args.quick else None
    speed_rows = [speed(m, 1 if args.quick else args.repeats, batches) for m in MODELS]
    speed_md = markdown_table(speed_rows, [
        ("network", "model", ""), ("examples / epoch", "examples", ","),
        ("NumPy engine s / epoch", "numpy_s", ".2f"), ("PyTorch s / epoch", "torch_s", ".2f"),
        ("NumPy engine ex/s", "numpy_ex_s", ",.0f"), ("PyTorch ex/s", "torch_ex_s", ",.0f"),
        ("NumPy engine / PyTorch time", "ratio", ".2f")])
    acc_rows: list[dict[str, Any]] = []
    if not args.no_accuracy:
        for model, epochs in (("mlp", args.mlp_epochs), ("lenet-modern", args.cnn_epochs)):
            for engine in ("numpy", "torch"):
                acc_rows.append(accuracy(model, engine, epochs, args.quick))
    acc_md = markdown_table(acc_rows, [
        ("network", "model", ""), ("engine", "engine", ""), ("epochs", "epochs", "d"),
        ("test accuracy", "test_acc", ".4f"), ("training s", "train_s", ".1f"),
        ("s / epoch", "s_per_epoch", ".1f")]) if acc_rows else ""
    markdown = f"### Speed, side by side\n\n{speed_md}\n"
    if acc_md:
        markdown += f"\n### Accuracy (full training set, 10,000 test images)\n\n{acc_md}\n"
    report(args, "numpy", {"speed": speed_rows, "accuracy": acc_rows}, markdown)
    if not args.quick:
        settings = ", ".join(f"{k}={v}" for k, v in RECIPE.items())
        body = (f"Command: `python bench/scratch.py{' --no-accuracy' if args.no_accuracy else ''}`"
                f". Recipe for both engines: {settings}; speed runs use a constant learning "
                f"rate. Fashion-MNIST, float32.\n\n{markdown}\n{describe_markdown(describe())}")
        replace_section(ROOT / "docs" / "benchmarks.md", "scratch-engine", body)


if __name__ == "__main__":
    main()
