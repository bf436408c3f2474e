"""Helpers shared by the benchmarks: arguments, timing a dlcamp training pass, reporting."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from dlcamp.data import make_loaders
from dlcamp.models import create_model
from dlcamp.train import RunConfig, TrainConfig, Trainer
from dlcamp.train.run import build, parse_augment
from machine import describe


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p.add_argument("--out", type=Path, help="also write results + machine description as JSON")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N) first")
    return p


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


class Take:
    """The first `n_batches` batches of a loader (all of them when None), with len/set_epoch."""

    def __init__(self, loader: Any, n_batches: int | None = None) -> None:
        self.loader, self.n_batches = loader, n_batches

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.n_batches is None else min(n, self.n_batches)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


def time_dlcamp(model_name: str, cfg: TrainConfig, batch_size: int = 256, augment: str = "none",
                batches: int | None = None, warmup: int = 5, seed: int = 0) -> dict[str, Any]:
    """Train `model_name` with dlcamp's loader and Trainer for `batches` batches (None: one
    epoch of Fashion-MNIST) and return the examples, wall-clock seconds and examples/s.

    The same trainer first trains `warmup` batches, so that one-off costs (thread pool, oneDNN
    kernel selection, allocator, torch.compile) fall outside the timed pass; their time is
    returned as `warmup_seconds`.
    Evaluation is not run; data loading is part of the timed loop, as it is in real training.
    """
    cfg = dataclasses.replace(cfg, epochs=1)
    loaders = make_loaders("fashion-mnist", batch_size, augment=parse_augment(augment), seed=seed)
    torch.manual_seed(seed)
    trainer = Trainer(create_model(model_name), cfg)
    start = time.perf_counter()
    if warmup:
        trainer.fit(Take(loaders.train, warmup))  # epoch 0: warm-up
        trainer.config.epochs = 2                 # epoch 1: timed
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    history = trainer.fit(Take(loaders.train, batches))
    seconds = time.perf_counter() - start
    examples = min(len(loaders.train_set), len(Take(loaders.train, batches)) * batch_size)
    return {"examples": examples, "seconds": seconds, "examples_per_s": examples / seconds,
            "warmup_seconds": warmup_seconds, "threads_used": trainer.speed.threads.value,
            "precision": trainer.speed.precision.value,
            "channels_last": trainer.speed.channels_last.value,
            "train_loss": history[-1]["train_loss"], "train_acc": history[-1]["train_acc"]}


def fit_run(cfg: RunConfig, batches: int | None = None, evaluate: bool = True) -> Trainer:
    """Train a run config the way `dlcamp train` builds it (`dlcamp.train.run.build`), but
    writing no files and printing nothing; returns the trained Trainer (`history`,
    `train_seconds`). `batches` trains only the first batches of each epoch (a warm-up).
    """
    trainer, loaders, _ = build(cfg, None, progress=False, log=lambda _: None)
    trainer.fit(Take(loaders.train, batches), loaders.eval if evaluate else None,
                loaders.eval_split)
    return trainer


def markdown_table(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a Markdown table; columns are (header, key, format spec), '' meaning str()."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join("---" if not fmt else "---:" for _, _, fmt in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("–" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between `<!-- begin NAME -->` and `<!-- end NAME -->` in the Markdown file
    `path` (so that a re-run replaces what the last run wrote); markers missing: append them.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    page = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(page):
        page = pattern.sub(lambda _: block, page, count=1)
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(page)


def command_line() -> str:
    """The command that was run, for reproducing it (python path shortened to `python`)."""
    return " ".join(["python", *map(shlex.quote, sys.argv)])


def report(args: argparse.Namespace, name: str, results: Any, markdown: str,
           extra: dict[str, Any] | None = None) -> None:
    """Print the Markdown tables; with --out, write them, the results and the machine as JSON."""
    print(markdown)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"benchmark": name, "command": command_line(), "quick": args.quick,
                   "machine": describe(), "results": results, "markdown": markdown,
                   **(extra or {})}
        args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"\nwrote {args.out}")
