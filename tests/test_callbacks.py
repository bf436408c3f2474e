"""The Trainer's contract with callbacks and engines: hook names, callback state, step methods,
and metrics named after the split they were measured on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcamp.core.errors import BadArgument
from dlcamp.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochLog,
    Task,
    TrainConfig,
    Trainer,
    load_checkpoint,
    make_config,
    resume_run,
    save_checkpoint,
    train_run,
)
from dlcamp.train.callbacks import HOOKS
from test_trainer import QUIET, interrupted_run, untimed

BATCHES = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 3


def tiny_trainer(*callbacks, epochs: int = 2, **settings) -> Trainer:
    torch.manual_seed(0)
    return Trainer(nn.Linear(4, 2), TrainConfig(epochs=epochs, device="cpu", **settings),
                   callbacks=callbacks)


# -- hook names ------------------------------------------------------------------------------
class Misspelt(Callback):
    def on_epoch_ends(self, trainer, record):  # never called: a typo of on_epoch_end
        raise AssertionError


class NotACallbackSubclass:
    def on_batch_end(self, trainer, i, loss): ...

    def on_ready(self, trainer): ...  # nothing like a hook


def test_a_misspelt_hook_is_refused_with_a_suggestion():
    with pytest.raises(BadArgument, match="Misspelt.on_epoch_ends .*did you mean 'on_epoch_end'"):
        tiny_trainer(Misspelt())
    trainer = tiny_trainer()
    with pytest.raises(BadArgument, match="on_ready is not a callback hook"):
        trainer.add_callback(NotACallbackSubclass())
    assert trainer.callbacks == []
    assert set(HOOKS) == {n for n in vars(Callback) if n.startswith("on_")}  # defined once
    with pytest.raises(BadArgument, match="the class EpochLog; pass EpochLog"):
        tiny_trainer(EpochLog)  # the class, not an instance


def test_known_hooks_run_in_order_with_checkpoint_last(tmp_path):
    calls: list[str] = []

    class Record(Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_epoch_end(self, trainer, record):
            calls.append(self.name)

    class Spy(Checkpoint):
        def on_epoch_end(self, trainer, record):
            calls.append("checkpoint")
            super().on_epoch_end(trainer, record)

    trainer = tiny_trainer(Record("a"), Spy(tmp_path / "c.pt", {}), Record("b"), epochs=1)
    trainer.add_callback(Record("c"))
    trainer.fit(BATCHES)
    assert calls == ["a", "b", "c", "checkpoint"]


# -- callback state ----------------------------------------------------------------------------
def test_callback_state_is_plain_and_loads_with_weights_only(tmp_path):
    trainer = tiny_trainer(EpochLog(lambda s: None), EarlyStopping(patience=5),
                           EarlyStopping(monitor="train_loss", patience=5), epochs=2, lr=0.0)
    trainer.fit(BATCHES, BATCHES)
    state = trainer.state_dict()["callbacks"]
    assert set(state) == {"EarlyStopping.0", "EarlyStopping.1"}  # EpochLog has no state
    assert state["EarlyStopping.0"]["monitor"] == "val_acc"
    assert state["EarlyStopping.1"]["bad_epochs"] == 1  # lr 0: no improvement in epoch 2
    save_checkpoint(tmp_path / "c.pt", {"trainer": trainer.state_dict()})
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["trainer"]["callbacks"]
    fresh = tiny_trainer(EarlyStopping(patience=5), EarlyStopping(monitor="train_loss"))
    fresh.load_state_dict({**trainer.state_dict(), "callbacks": loaded})
    assert [cb.state_dict() for cb in fresh.callbacks] == list(state.values())


def test_early_stopping_resumes_where_it_stopped(tmp_path):
    """Interrupted after epoch 2 (one bad epoch counted) and resumed: early stopping ends the
    run after epoch 3, as in the run that was not interrupted; without its state the resumed
    run would count afresh and stop after epoch 5. A learning rate of 1e-30 (0 is refused)
    changes no float32 weight, so every epoch after the first is a bad one, on any machine."""
    cfg = make_config("softmax", "digits", quick=True, epochs=8, lr=1e-30, patience=2)
    straight, _ = train_run(cfg, tmp_path / "straight", **QUIET)
    interrupted_run(cfg, tmp_path / "cut", after=2)
    assert load_checkpoint(tmp_path / "cut")["trainer"]["callbacks"]["EarlyStopping.0"][
        "bad_epochs"] == 1
    resumed, _ = resume_run(tmp_path / "cut", **QUIET)
    assert straight.epoch == resumed.epoch == 3
    assert untimed(resumed.history) == untimed(straight.history)
    stopper = [cb for cb in resumed.callbacks if isinstance(cb, EarlyStopping)]
    assert stopper[0].state_dict() == {"monitor": "test_acc", "mode": "max", "bad_epochs": 2,
                                       "best": straight.history[0]["test_acc"]}
    again, _ = resume_run(tmp_path / "cut", epochs=20, **QUIET)  # a stopped run stays stopped
    assert again.epoch == 3


def test_a_run_saved_before_metrics_named_their_split_resumes(tmp_path):
    """Old checkpoints: no callback state, and the test set's metrics recorded as val_*."""
    cfg = make_config("softmax", "digits", quick=True, epochs=1)
    _, out = train_run(cfg, tmp_path / "old", **QUIET)
    ckpt = load_checkpoint(out)
    del ckpt["trainer"]["callbacks"]
    ckpt["trainer"]["history"] = [{k.replace("test_", "val_"): v for k, v in r.items()}
                                  for r in ckpt["trainer"]["history"]]
    save_checkpoint(out / "checkpoint.pt", ckpt)
    resumed, _ = resume_run(out, epochs=2, **QUIET)
    assert [sorted(k for k in r if k.startswith(("val_", "test_"))) for r in resumed.history] \
        == [["test_acc", "test_loss"]] * 2
    assert (out / "metrics.csv").read_text().splitlines()[0].count("test_acc") == 1


# -- split names ----------------------------------------------------------------------------
def test_metrics_are_named_after_the_evaluated_split():
    history = tiny_trainer(EarlyStopping(patience=1), epochs=1).fit(BATCHES, BATCHES, "test")
    assert {"test_loss", "test_acc"} <= set(history[-1]) and "val_acc" not in history[-1]
    trainer = tiny_trainer(epochs=1)
    assert {"val_loss", "val_acc"} <= set(trainer.fit(BATCHES, BATCHES)[-1])  # the default
    with pytest.raises(BadArgument, match="eval_split"):
        trainer.fit(BATCHES, BATCHES, eval_split="train")


def test_early_stopping_on_a_metric_the_run_does_not_record_says_which_it_does():
    """The old name (`val_acc`) on a run that evaluates the test split is an error, not a
    stopper that silently never stops."""
    trainer = tiny_trainer(EarlyStopping(monitor="val_acc", patience=1), epochs=2)
    with pytest.raises(BadArgument, match="'val_acc'.*did you mean 'test_acc'.*test_loss"):
        trainer.fit(BATCHES, BATCHES, "test")


def test_text_runs_keep_val_and_image_runs_say_test(tmp_path):
    from dlcamp.train.run import build

    _, text, _ = build(make_config("rnn", "tang300", quick=True), None, **QUIET)
    _, images, _ = build(make_config("softmax", "digits", quick=True), None, **QUIET)
    assert (text.eval_split, images.eval_split) == ("val", "test")


# -- the step methods ------------------------------------------------------------------------
class NumberSteps(Trainer):
    """An 'engine' whose steps return plain numbers: the Trainer's loop does the rest."""

    def train_step(self, batch):
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return torch.tensor(0.5), {"loss": 0.5 * len(batch[1]), "n": len(batch[1])}

    def eval_step(self, batch):
        return {"loss": 0.25 * len(batch[1]), "n": len(batch[1])}


def test_an_engine_overrides_only_the_steps():
    losses: list[float] = []

    class Losses(Callback):
        def on_batch_end(self, trainer, i, loss):
            losses.append(float(loss))

    trainer = NumberSteps(nn.Linear(4, 2), TrainConfig(epochs=3, lr=1.0, schedule="cosine",
                                                       device="cpu", max_steps=7),
                          task=Task(), callbacks=[Losses()])
    trainer.lrs = []
    history = trainer.fit(BATCHES, BATCHES, "test")
    assert trainer.global_step == 7 and losses == [0.5] * 7
    assert trainer.lrs[0] == 1.0 and trainer.lrs == sorted(trainer.lrs, reverse=True)
    assert [r["train_examples"] for r in history] == [24, 24, 8]
    assert history[-1]["test_loss"] == 0.25


def test_scratch_trainer_inherits_the_loop():
    from dlcamp.train.engine import ScratchTrainer

    overridden = set(vars(ScratchTrainer))
    assert {"train_step", "eval_step"} <= overridden
    assert not overridden & {"__init__", "fit", "_fit", "_train_epoch", "evaluate"}
