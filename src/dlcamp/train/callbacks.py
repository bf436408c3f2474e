"""Callbacks: progress bar, epoch log, CSV, curves, checkpoints, early stopping.

A callback is an object with some of the methods named in `HOOKS`; each receives the
Trainer first: on_fit_start, on_epoch_start(epoch, n_batches), on_batch_end(i, loss),
on_epoch_end(record), on_fit_end. The Trainer refuses a callback with any other public
`on_...` method (a misspelt hook would otherwise never run). A callback with state that a
resumed run needs (EarlyStopping's best value) returns it from `state_dict()`: the Trainer
saves it in its own state and gives it back through `load_state_dict()`.
"""

from __future__ import annotations

import csv
import difflib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from dlcamp.core.errors import BadArgument
from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.utils import is_quiet
from dlcamp.train.checkpoint import save_checkpoint

HOOKS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class: the events (all no-ops here), the callback's state and its place in line.

    `order`: callbacks run in ascending order, ties in the order given. Checkpoint runs last
    (order 100), so that it saves the state the other callbacks reached in that epoch.
    """

    order: ClassVar[int] = 0

    def on_fit_start(self, trainer) -> None: ...
    def on_epoch_start(self, trainer, epoch: int, n_batches: int) -> None: ...
    def on_batch_end(self, trainer, i: int, loss) -> None: ...
    def on_epoch_end(self, trainer, record: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: numbers, strings, lists, dicts and None only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def check_callback(callback: object) -> None:
    """Raise BadArgument if `callback` is a class (not an instance) or has a public `on_...`
    method that is not a hook."""
    if isinstance(callback, type):
        raise BadArgument(f"a callback must be an object, got the class {callback.__name__}; "
                          f"pass {callback.__name__}(...)")
    for name in dir(callback):
        if name.startswith("on_") and name not in HOOKS and callable(getattr(callback, name)):
            close = difflib.get_close_matches(name, HOOKS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadArgument(f"{type(callback).__name__}.{name} is not a callback hook and "
                              f"would never be called; {hint}the hooks are {', '.join(HOOKS)}")


def _keyed(callbacks: list[Any]) -> list[tuple[str, Any]]:
    """("EarlyStopping.0", callback), ...: the class name and the index among that class, so
    adding a callback of another kind keeps the keys of the others."""
    seen: dict[str, int] = {}
    keyed = []
    for cb in callbacks:
        name = type(cb).__name__
        keyed.append((f"{name}.{seen.get(name, 0)}", cb))
        seen[name] = seen.get(name, 0) + 1
    return keyed


def callback_states(callbacks: list[Any]) -> dict[str, dict[str, Any]]:
    """{"EarlyStopping.0": state, ...}: the callbacks' non-empty states."""
    states = {}
    for key, cb in _keyed(callbacks):
        state = cb.state_dict() if callable(getattr(cb, "state_dict", None)) else {}
        if state:
            states[key] = state
    return states


def load_callback_states(callbacks: list[Any], states: dict[str, dict[str, Any]]) -> None:
    """Give each callback its state from `callback_states` (none saved: left as it is)."""
    for key, cb in _keyed(callbacks):
        if key in states and callable(getattr(cb, "load_state_dict", None)):
            cb.load_state_dict(states[key])


def format_record(record: dict[str, float], total_epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{total_epochs}"]
    for key, value in record.items():
        if key.endswith(("loss", "acc", "rmse", "ppl", "map", "map_50")):
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
    """Save trainer state plus `meta` (model spec, data, config) after every epoch, after
    the other callbacks (order 100), so their state for that epoch is in the file."""

    order = 100

    def __init__(self, path: Path | str, meta: dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        save_checkpoint(self.path, {**self.meta, "trainer": trainer.state_dict(),
                                    "metrics": dict(record)})


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs.

    `monitor` defaults to the task's metric on the evaluation split (`test_acc` when fit
    evaluates on "test", `val_ppl` on "val"). Its best value and count of bad epochs are
    part of the trainer's state, so a resumed run stops where the uninterrupted one did (a
    run it has already stopped stays stopped).
    """

    def __init__(self, monitor: str | None = None, patience: int = 3,
                 min_delta: float = 0.0, mode: str | None = None) -> None:
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_fit_start(self, trainer) -> None:
        self.monitor = self.monitor or f"{trainer.eval_split}_{trainer.task.monitor}"
        self.mode = self.mode or trainer.task.mode
        if self.bad_epochs >= self.patience:
            trainer.should_stop = True

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        value = record.get(self.monitor)
        if value is None:  # e.g. "val_acc" while the run records "test_acc": say so, once
            numbers = [k for k, v in record.items() if isinstance(v, float) and k != "lr"]
            same = f"{trainer.eval_split}_{str(self.monitor).partition('_')[2]}"
            close = [same] if same in numbers else difflib.get_close_matches(
                str(self.monitor), numbers, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadArgument(f"EarlyStopping monitors {self.monitor!r}, which this run does "
                              f"not record; {hint}it records {', '.join(numbers)}")
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_epochs = float(value), 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.monitor is not None and state["monitor"] not in (None, self.monitor):
            return  # saved for another metric: its best value means nothing here
        self.monitor = self.monitor or state["monitor"]
        self.mode = self.mode or state["mode"]
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])
