"""Callbacks: progress bar, epoch log, CSV, curves, checkpoints, early stopping.

A callback is any object with some of these methods; each receives the Trainer first:
on_fit_start, on_epoch_start(epoch, n_batches), on_batch_end(i, loss),
on_epoch_end(record), on_fit_end.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.utils import is_quiet
from dlcamp.train.checkpoint import save_checkpoint


class Callback:
    """Optional base class documenting the events."""

    def on_fit_start(self, trainer) -> None: ...
    def on_epoch_start(self, trainer, epoch: int, n_batches: int) -> None: ...
    def on_batch_end(self, trainer, i: int, loss) -> None: ...
    def on_epoch_end(self, trainer, record: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer) -> None: ...


def format_record(record: dict[str, float], total_epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{total_epochs}"]
    for key, value in record.items():
        if key.endswith(("loss", "acc", "rmse", "ppl")):
            parts.append(f"{key} {value:.4f}")
    parts.append(f"{record['epoch_seconds']:.1f}s")
    parts.append(f"{record['examples_per_s']:,.0f} ex/s")
    return "  ".join(parts)


class ProgressBar(Callback):
    """A tqdm bar per epoch (notebook widget in Jupyter); off under CI or DLCAMP_QUIET."""

    def __init__(self, every: int = 10, disable: bool | None = None) -> None:
        self.every, self.bar = every, None
        self.disable = is_quiet() if disable is None else disable

    def on_epoch_start(self, trainer, epoch: int, n_batches: int) -> None:
        if self.disable:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{trainer.config.epochs}",
                        leave=False, unit="batch", file=sys.stderr)

    def on_batch_end(self, trainer, i: int, loss) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if i % self.every == 0:  # .item() syncs a GPU, so only now and then
                self.bar.set_postfix(loss=f"{loss.item():.4f}")

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLog(Callback):
    """One printed line per epoch with the metrics and the speed."""

    def __init__(self, write: Callable[[str], Any] = print) -> None:
        self.write = write

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        self.write(format_record(record, trainer.config.epochs))


class CSVLogger(Callback):
    """Rewrite `metrics.csv` (atomically) from the whole history after every epoch."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        columns = list(dict.fromkeys(k for r in trainer.history for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(trainer.history)
        atomic_write_bytes(self.path, out.getvalue().encode())


class Checkpoint(Callback):
    """Save trainer state plus `meta` (model spec, data, config) after every epoch."""

    def __init__(self, path: Path | str, meta: dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        save_checkpoint(self.path, {**self.meta, "trainer": trainer.state_dict(),
                                    "metrics": dict(record)})


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str | None = None, patience: int = 3,
                 min_delta: float = 0.0, mode: str | None = None) -> None:
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_fit_start(self, trainer) -> None:
        self.monitor = self.monitor or f"val_{trainer.task.monitor}"
        self.mode = self.mode or trainer.task.mode

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        value = record.get(self.monitor)
        if value is None:
            return
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True
