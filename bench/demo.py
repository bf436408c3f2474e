"""`make demo`, timed: the two commands it runs once set-up is done, as a learner runs them.

    python bench/demo.py                # train the default recipe, then evaluate it
    python bench/demo.py --quick        # `--quick` on both commands (smoke run)

`make demo` = set-up (a no-op once .venv and the data are installed) + these two commands:

    dlcamp train --model cnn --dataset fashion-mnist --out DIR --force
    dlcamp evaluate DIR

Each runs as its own process, so the wall-clock time includes Python and PyTorch start-up,
loading the data, the per-epoch test evaluation, writing the run files and the evaluation.
The training seconds and the final test accuracy are read from the run's metrics.csv.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import markdown_table, parser, report

DLCAMP = [sys.executable, "-m", "dlcamp"]


def timed(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def main() -> None:
    p = parser(__doc__)
    args = p.parse_args()
    quick = ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory(prefix="dlcamp-demo-") as tmp:
        run = Path(tmp) / "demo"
        train_s, train_out = timed([*DLCAMP, "train", "--model", "cnn", "--dataset",
                                    "fashion-mnist", "--out", str(run), "--force",
                                    "--no-progress", *quick])
        eval_s, eval_out = timed([*DLCAMP, "evaluate", str(run), "--json", *quick])
        evaluated = json.loads(eval_out)
        with open(run / "metrics.csv") as f:
            history = list(csv.DictReader(f))
        speed = json.loads((run / "config.json").read_text())["speed"]
    result = {"train_wall_s": train_s, "evaluate_wall_s": eval_s,
              "demo_wall_s": train_s + eval_s,
              "train_seconds": float(history[-1]["train_seconds"]), "epochs": len(history),
              "test_acc": evaluated["acc"], "precision": speed["precision"]["value"],
              "channels_last": speed["channels_last"]["value"],
              "threads": speed["threads"]["value"],
              "log": train_out.splitlines()[:8]}
    print(f"demo: train {train_s:.1f} s + evaluate {eval_s:.1f} s = {train_s + eval_s:.1f} s; "
          f"test accuracy {result['test_acc']:.4f}", flush=True)
    markdown = markdown_table([result], [
        ("train command s", "train_wall_s", ".1f"), ("evaluate command s", "evaluate_wall_s",
                                                     ".1f"),
        ("whole demo s", "demo_wall_s", ".1f"), ("of which training s", "train_seconds", ".1f"),
        ("epochs", "epochs", "d"), ("test acc", "test_acc", ".4f"),
        ("precision", "precision", ""), ("channels-last", "channels_last", ""),
        ("threads", "threads", "")])
    headline = {k: result[k] for k in ("demo_wall_s", "test_acc", "train_seconds")}
    report(args, "demo", result, markdown, {"headline": headline})


if __name__ == "__main__":
    main()
