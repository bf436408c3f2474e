"""Training throughput: the book's LeNet loop side by side with dlcamp's, same model and data.

    python bench/throughput.py                 # one epoch (60,000 examples) per row
    python bench/throughput.py --quick         # a few batches per row (smoke run)
    python bench/throughput.py --out results/throughput.json

Rows (Fashion-MNIST, batch 256, only training is timed, evaluation is not run):
  lenet  book    the "Dive into Deep Learning" `train_ch6` way: torchvision FashionMNIST with
                 transforms.ToTensor(), DataLoader(shuffle=True, num_workers=4), plain SGD lr 0.9,
                 a per-batch Accumulator that calls float() on the loss and accuracy, fp32.
  lenet  dlcamp  make_loaders (whole split in memory as uint8, batched as tensors) + Trainer
                 (SGD lr 0.9, no momentum): fp32 NCHW, then dlcamp's LeNet recipe with the
                 precision and layout that dlcamp chooses on this machine ("auto"), then the
                 same with torch.compile.
  cnn    dlcamp  dlcamp's default model and recipe (augmentation, SGD+Nesterov, one-cycle)
                 in fp32 and in bf16 autocast (layout "auto"). Where bf16 is emulated, the bf16
                 row times only --slow-batches batches: a whole epoch would take minutes.
The book's rows run in a fresh process each time, with PyTorch's and glibc's defaults, as the
book's code would: dlcamp's Trainer tunes the process (dlcamp.train.speed.keep_freed_memory).
Rows are timed in turn, `--repeats` times (median reported), so that slow spells of a shared
machine hit every row alike. Each row runs a few warm-up batches first. The speed-up column
compares with the first row of the same model. Data loading is inside the timed loop for every
row (the book's own timer leaves it out, which hides most of the cost of the DataLoader).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from common import Take, markdown_table, parser, report, setup, time_dlcamp
from dlcamp.data import files
from dlcamp.data.datasets import FASHION_FILES
from dlcamp.models import create_model
from dlcamp.train import TrainConfig, make_config
from dlcamp.train.speed import cpu_bf16

BATCH = 256
LENET_LR = 0.9


# --- the book's way -----------------------------------------------------------------------

def torchvision_root(tmp: Path) -> Path:
    """A torchvision root holding FashionMNIST/raw/<the four IDX files>, decompressed from the
    copies dlcamp finds (Debian's /usr/share/datasets/fashion-mnist/*.gz, $DLCAMP_DATA, cache).
    torchvision 0.29 reads raw/<name without .gz> when download=False and checks no MD5."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    dirs = files.search_dirs("fashion-mnist")
    for stem in FASHION_FILES:
        path = files.find_file(dirs, stem)
        if path is None:
            raise SystemExit(f"Fashion-MNIST file {stem} not found in {dirs}; run "
                             "`make data` or `dlcamp data fetch fashion-mnist`.")
        (raw / stem).write_bytes(files.read_bytes(path))
    return tmp


def book_accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """d2l.accuracy: the number of correct predictions, as a Python float (a sync per batch)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def book_epoch(net: nn.Module, loader, optimizer, loss) -> tuple[list[float], float]:
    """The body of d2l.train_ch6 for one epoch (minus evaluation and plotting)."""
    metric = [0.0, 0.0, 0.0]  # d2l.Accumulator(3): loss sum, correct, examples
    net.train()
    start = time.perf_counter()
    for X, y in loader:
        optimizer.zero_grad()
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():
            batch = (l * X.shape[0], book_accuracy(y_hat, y), X.shape[0])
            metric = [a + float(b) for a, b in zip(metric, batch, strict=True)]
    return metric, time.perf_counter() - start


def time_book(batches: int | None, warmup: int, workers: int, seed: int = 0) -> dict:
    import torchvision
    from torchvision import transforms

    with tempfile.TemporaryDirectory(prefix="dlcamp-bench-") as tmp:
        root = torchvision_root(Path(tmp))
        train = torchvision.datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor(),
                                                  download=False)
        # The book's 4 workers on a 2-core laptop is the point of the row: silence the advice.
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        loader = torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True,
                                             num_workers=workers)
        torch.manual_seed(seed)
        net = create_model("lenet")

        def init_weights(m: nn.Module) -> None:  # as train_ch6 does
            if type(m) in (nn.Linear, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

        net.apply(init_weights)
        if warmup:  # a throw-away copy of the model takes the one-off costs
            warm = copy.deepcopy(net)
            book_epoch(warm, Take(loader, warmup), torch.optim.SGD(warm.parameters(), lr=LENET_LR),
                       nn.CrossEntropyLoss())
        metric, seconds = book_epoch(net, Take(loader, batches),
                                     torch.optim.SGD(net.parameters(), lr=LENET_LR),
                                     nn.CrossEntropyLoss())
    n = int(metric[2])
    return {"examples": n, "seconds": seconds, "examples_per_s": n / seconds,
            "train_loss": metric[0] / n, "train_acc": metric[1] / n}


def book_in_own_process(batches: int | None, warmup: int, workers: int) -> dict:
    """`time_book` in a fresh Python process (its DataLoader forks workers, as on Linux)."""
    out = subprocess.run([sys.executable, __file__, "--book-json", json.dumps(
        [batches, warmup, workers])], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- the table ----------------------------------------------------------------------------

def rows_to_run(workers: int) -> list[dict]:
    lenet = TrainConfig(epochs=1, lr=LENET_LR, momentum=0.0, precision="fp32",
                        channels_last="off")
    lenet_recipe = make_config("lenet").train  # precision and layout: "auto"
    cnn = make_config("cnn")  # the registered recipe, speed switches on "auto"
    return [
        {"model": "lenet", "way": f"book train_ch6 (torchvision + DataLoader, {workers} workers)",
         "precision": "fp32", "run": "book"},
        {"model": "lenet", "way": "dlcamp, fp32 NCHW", "precision": "fp32", "cfg": lenet},
        {"model": "lenet", "way": "dlcamp recipe", "precision": "auto",
         "cfg": dataclasses.replace(lenet_recipe, epochs=1)},
        {"model": "lenet", "way": "dlcamp recipe + torch.compile", "precision": "auto",
         "cfg": dataclasses.replace(lenet_recipe, epochs=1, compile=True)},
        {"model": "cnn", "way": "dlcamp recipe (augmented)", "precision": "fp32",
         "cfg": dataclasses.replace(cnn.train, precision="fp32"), "augment": cnn.augment},
        {"model": "cnn", "way": "dlcamp recipe (augmented)", "precision": "bf16",
         "cfg": dataclasses.replace(cnn.train, precision="bf16"), "augment": cnn.augment,
         "slow": True},
    ]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batches", type=int, help="batches per row (default: one epoch, 235)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up batches per row (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per row, interleaved "
                   "across rows; the median is reported (default 3)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the book row "
                   "(the book uses 4)")
    p.add_argument("--models", default="lenet,cnn", help="comma-separated: lenet, cnn")
    p.add_argument("--slow-batches", type=int, default=20, help="batches of the bf16 row where "
                   "bf16 is emulated (one epoch would take minutes; default 20)")
    p.add_argument("--book-json", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.book_json:  # the child of book_in_own_process
        print(json.dumps(time_book(*json.loads(args.book_json))))
        return
    setup(args)
    batches, warmup = (4, 2) if args.quick else (args.batches, args.warmup)
    models = args.models.split(",")

    rows = [row for row in rows_to_run(args.workers) if row["model"] in models]
    timings: list[list[dict]] = [[] for _ in rows]
    for _ in range(args.repeats):  # interleaved, so slow spells of a shared machine hit all rows
        for row, runs in zip(rows, timings, strict=True):
            if row.get("run") == "book":  # its own process: PyTorch and glibc as they start
                runs.append(book_in_own_process(batches, warmup, args.workers))
            else:
                n = batches
                if row.get("slow") and not cpu_bf16()[0]:  # emulated bf16: 5-10x slower
                    n = min(n or args.slow_batches, args.slow_batches)
                runs.append(time_dlcamp(row["model"], row["cfg"], BATCH,
                                        row.get("augment", "none"), n, warmup))
    results = []
    for row, runs in zip(rows, timings, strict=True):
        speed = statistics.median(r["examples_per_s"] for r in runs)
        result = {k: v for k, v in row.items() if k not in ("cfg", "run")}
        if result["precision"] == "auto":
            result["precision"] = f"auto: {runs[0]['precision']}"
        result["layout"] = "NHWC" if runs[0].get("channels_last") else "NCHW"
        result.update(examples=runs[0]["examples"], examples_per_s=speed,
                      warmup_seconds=runs[0].get("warmup_seconds"),
                      seconds=runs[0]["examples"] / speed, runs=runs,
                      config=dataclasses.asdict(row["cfg"]) if "cfg" in row else None)
        results.append(result)
        print(f"{row['model']:6} {row['way']:52} {row['precision']:22} {speed:10,.0f} ex/s",
              flush=True)

    for _, group in itertools.groupby(results, key=lambda r: r["model"]):
        group = list(group)
        for r in group:
            r["speedup"] = r["examples_per_s"] / group[0]["examples_per_s"]
            r["vs"] = "–" if r is group[0] else f"{group[0]['way'].split(' (')[0]} " \
                                                f"{group[0]['precision']}"
    markdown = markdown_table(results, [
        ("model", "model", ""), ("training loop", "way", ""), ("precision", "precision", ""),
        ("layout", "layout", ""), ("examples", "examples", ","), ("seconds", "seconds", ".1f"),
        ("examples/s", "examples_per_s", ",.0f"), ("speed-up", "speedup", ".2f"),
        ("warm-up s (incl. compile)", "warmup_seconds", ".1f"),
        ("compared with", "vs", "")])
    by = {(r["model"], r["way"].split(" (")[0], r["precision"].split(": ")[-1]): r
          for r in results}
    headline = {"lenet_book": results[0]["examples_per_s"] if results else None}
    for r in results:
        if r["model"] == "lenet" and r["way"] == "dlcamp recipe":
            headline["lenet_recipe"] = r["examples_per_s"]
            headline["lenet_recipe_vs_book"] = r["speedup"]
        if r["model"] == "cnn":
            headline[f"cnn_{r['precision']}"] = r["examples_per_s"]
    if ("cnn", "dlcamp recipe", "fp32") in by and ("cnn", "dlcamp recipe", "bf16") in by:
        headline["cnn_bf16_vs_fp32"] = (by[("cnn", "dlcamp recipe", "bf16")]["examples_per_s"]
                                        / by[("cnn", "dlcamp recipe", "fp32")]["examples_per_s"])
    report(args, "throughput", results, markdown, {"headline": headline})


if __name__ == "__main__":
    main()
