"""The trainer learns, checkpoints atomically and safely, and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlcamp.core.errors import CheckpointError, RunDirExists
from dlcamp.data import make_loaders
from dlcamp.models import create_model
from dlcamp.train import (
    Callback,
    EarlyStopping,
    PlotCurves,
    Regression,
    TrainConfig,
    Trainer,
    load_checkpoint,
    make_config,
    model_from_checkpoint,
    resume_run,
    save_checkpoint,
    train_run,
)
from dlcamp.train.run import build, prepare_run_dir, write_config
from dlcamp.train.trainer import lr_at

QUIET = {"log": lambda s: None, "progress": False}


def test_quick_mlp_run_learns(tmp_path):
    cfg = make_config("mlp", quick=True, epochs=3)
    trainer, out = train_run(cfg, tmp_path / "run", **QUIET)
    h = trainer.history
    assert len(h) == 3
    assert h[-1]["train_loss"] < h[0]["train_loss"] < math.log(10)
    assert h[-1]["test_acc"] > 0.75 and "val_acc" not in h[-1]  # evaluated on "test"
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.csv", "curves.png",
                                               "checkpoint.pt"}
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and len(lines) == 4
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_cnn_quick_run_learns(tmp_path):
    trainer, _ = train_run(make_config("cnn", quick=True), tmp_path / "run", **QUIET)
    assert trainer.history[-1]["test_acc"] > 0.80


def test_regression_task_uses_the_same_loop():
    torch.manual_seed(0)
    x = torch.randn(512, 3)
    y = x @ torch.tensor([2.0, -3.4, 1.0]) + 4.2
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 512, 64)]
    model = nn.Linear(3, 1)
    trainer = Trainer(model, TrainConfig(epochs=20, lr=0.05, momentum=0.0, device="cpu"),
                      task=Regression())
    history = trainer.fit(batches, batches)
    assert history[-1]["val_rmse"] < 0.01 < history[0]["train_rmse"]
    assert torch.allclose(model.weight, torch.tensor([[2.0, -3.4, 1.0]]), atol=0.01)


def test_onecycle_schedule_shape():
    cfg = TrainConfig(lr=1.0, schedule="onecycle", warmup=0.25)
    lrs = [lr_at(s / 100, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 25 and lrs[-1] == pytest.approx(1e-3)
    assert lr_at(0.5, TrainConfig(lr=1.0, schedule="cosine")) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Trainer(nn.Linear(1, 1), TrainConfig(schedule="triangle"))


def test_early_stopping_and_time_budget():
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    trainer = Trainer(nn.Linear(4, 2), TrainConfig(epochs=50, lr=0.0, device="cpu"),
                      callbacks=[EarlyStopping(patience=2)])
    assert len(trainer.fit(batches, batches)) == 3  # lr 0: no progress after the first epoch
    trainer = Trainer(nn.Linear(4, 2), TrainConfig(epochs=50, max_seconds=1e-9, device="cpu"))
    assert len(trainer.fit(batches)) <= 1  # stops as soon as the clock says so


class RecordLR(Callback):
    """Appends the learning rate of every step to `lrs`."""

    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs

    def on_batch_end(self, trainer, i, loss):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


class FakeClock:
    """A clock that advances `tick` seconds each time it is read: the same on any machine."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_anneals_the_schedule():
    """With max_seconds the one-cycle schedule follows the clock and ends annealed."""
    lrs: list[float] = []
    batches = [(torch.randn(64, 32), torch.randint(0, 2, (64,)))] * 20
    cfg = TrainConfig(epochs=10_000, lr=1.0, schedule="onecycle", max_seconds=0.3, device="cpu")
    trainer = Trainer(nn.Linear(32, 2), cfg, callbacks=[RecordLR(lrs)])
    trainer.clock = FakeClock(0.001)  # one tick per reading: about 300 steps fit in 0.3 s
    trainer.fit(batches)
    assert trainer.epoch < 10_000 and trainer.train_seconds == pytest.approx(0.3, abs=0.01)
    assert 250 < len(lrs) < 310
    assert max(lrs) > 0.9 and lrs[-1] < 0.02  # warmed up, then annealed within the budget


def test_step_budget_stops_mid_epoch_and_anneals():
    """max_steps: exactly that many steps, the schedule ending annealed at the last one."""
    lrs: list[float] = []
    batches = [(torch.randn(16, 8), torch.randint(0, 2, (16,)))] * 7
    cfg = TrainConfig(epochs=100, lr=1.0, schedule="onecycle", max_steps=30, device="cpu")
    trainer = Trainer(nn.Linear(8, 2), cfg, callbacks=[RecordLR(lrs)])
    history = trainer.fit(batches)
    assert trainer.global_step == 30 and len(history) == 5  # 4 whole epochs + 2 steps
    assert history[-1]["train_examples"] == 2 * 16
    assert max(lrs) == pytest.approx(1.0, abs=0.05) and lrs[-1] < 0.05


def test_checkpoint_round_trip(tmp_path):
    trainer, out = train_run(make_config("lenet-modern", quick=True, epochs=1), tmp_path / "r",
                             **QUIET)
    ckpt = load_checkpoint(out)  # a run directory is accepted
    assert ckpt["model"]["name"] == "lenet-modern" and ckpt["data"]["classes"][0] == "T-shirt/top"
    assert {"torch", "dlcamp", "python"} <= set(ckpt["versions"])
    model = model_from_checkpoint(ckpt)
    x = torch.randn(5, 1, 28, 28)
    trainer.model.eval()
    assert torch.allclose(model(x), trainer.model(x), atol=1e-6)


class Evil:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_checkpoint_loading_never_unpickles_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dlcamp-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable dlcamp checkpoint"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a dlcamp checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    _, out = train_run(make_config("softmax", quick=True, epochs=1), tmp_path / "r", **QUIET)
    ckpt = load_checkpoint(out)
    ckpt["model"] = {"name": "mlp", "kwargs": {}}  # weights of softmax, claimed to be an MLP
    save_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))


class StopAfter(Callback):
    """Simulate Ctrl-C right after epoch `n` has been checkpointed."""

    order = 200  # after Checkpoint (100)

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, trainer, record):
        if trainer.epoch == self.n:
            raise KeyboardInterrupt


TIMING = {"epoch_seconds", "train_seconds", "examples_per_s"}  # clock readings, never equal


def untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def interrupted_run(cfg, out, after: int) -> None:
    """Train `cfg` into `out` as `train_run` does, and press Ctrl-C after epoch `after`."""
    prepare_run_dir(out)
    trainer, loaders, _ = build(cfg, out, progress=False, log=lambda s: None)
    write_config(out, cfg)
    trainer.callbacks.append(StopAfter(after))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(loaders.train, loaders.test, loaders.eval_split)
    assert load_checkpoint(out)["trainer"]["epoch"] == after


def test_resume_continues_exactly(tmp_path):
    """Interrupted after epoch 2 and resumed: bit for bit the uninterrupted run.

    An MLP with dropout and a one-cycle schedule: resuming must restore the random-number
    generators (dropout masks) and the data order (shuffling is seeded by seed and epoch).
    """
    cfg = make_config("mlp", quick=True, epochs=3, schedule="onecycle",
                      model_kwargs={"hidden": [64], "dropout": 0.3})
    full, _ = train_run(cfg, tmp_path / "full", **QUIET)
    interrupted_run(cfg, tmp_path / "cut", after=2)
    resumed, _ = resume_run(tmp_path / "cut", **QUIET)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert untimed(resumed.history) == untimed(full.history)


def test_resume_refuses_a_different_model(tmp_path):
    _, out = train_run(make_config("softmax", quick=True, epochs=1), tmp_path / "r", **QUIET)
    config = (out / "config.json").read_text().replace('"softmax"', '"mlp"')
    (out / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="belongs to model 'softmax'"):
        resume_run(out, **QUIET)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        resume_run(tmp_path, **QUIET)


def test_existing_run_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunDirExists, match="--force"):
        train_run(make_config("softmax", quick=True, epochs=1), out, **QUIET)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    train_run(make_config("softmax", quick=True, epochs=1), out, force=True, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces only run files


def test_bf16_autocast_trains():
    loaders = make_loaders("digits", 128)
    model = create_model("mlp", image_size=8)
    trainer = Trainer(model, TrainConfig(epochs=3, lr=0.1, precision="bf16", device="cpu"))
    history = trainer.fit(loaders.train, loaders.test, eval_split="test")
    assert history[-1]["test_acc"] > 0.85


def test_curves_update_live_in_a_notebook(tmp_path, monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    plot = PlotCurves(tmp_path / "c.png", live=True)
    Trainer(nn.Linear(4, 2), TrainConfig(epochs=3, device="cpu"), callbacks=[plot]).fit(batches)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]  # one figure, redrawn
    assert shown[-1][1].data[:4] == b"\x89PNG" and (tmp_path / "c.png").exists()


def test_compiled_model_trains_and_checkpoints_like_the_plain_one(tmp_path):
    torch.manual_seed(0)
    loaders = make_loaders("digits", 128)
    model = create_model("softmax", image_size=8)
    trainer = Trainer(model, TrainConfig(epochs=2, lr=0.5, compile=True, device="cpu"))
    history = trainer.fit(loaders.train, loaders.test, eval_split="test")
    assert history[-1]["test_acc"] > 0.85
    assert trainer.step_model is not trainer.model
    assert set(trainer.state_dict()["model"]) == {"1.weight", "1.bias"}  # no compile prefix


def test_recipe_flip_is_not_applied_to_digits(tmp_path):
    lines = []
    cfg = make_config("cnn", "digits", quick=True, epochs=1, precision="fp32")
    trainer, loaders, _ = build(cfg, None, progress=False, log=lines.append)
    assert cfg.augment == "flip" and loaders.train.augment is None
    assert any("no flip" in line for line in lines)
    # nor are digits mirrored at test time, while clothes are
    assert cfg.model_kwargs["test_flip"] and not trainer.model.dlcamp_spec["kwargs"]["test_flip"]
    assert any("no test-time flips" in line for line in lines)
    cfg = make_config("cnn", "fashion-mnist", quick=True, epochs=1)
    assert build(cfg, None, progress=False, log=lines.append)[0].model.dlcamp_spec["kwargs"][
        "test_flip"]
    cfg = make_config("cnn", "fashion-mnist", quick=True, augment="flip+shift")
    assert build(cfg, None, progress=False, log=lines.append)[1].train.augment is not None


def test_reported_loss_is_plain_cross_entropy_with_label_smoothing():
    """The step minimises the smoothed objective; every reported `loss` is plain CE."""
    import torch.nn.functional as F

    from dlcamp.train import Classification

    torch.manual_seed(0)
    logits = torch.randn(16, 10, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    task = Classification(label_smoothing=0.1)
    loss, sums = task.step(lambda x: x, (logits, y))
    assert torch.allclose(loss, F.cross_entropy(logits, y, label_smoothing=0.1))  # objective
    assert torch.allclose(sums["loss"] / 16, F.cross_entropy(logits, y))  # reported: plain CE
    assert torch.allclose(sums["loss_smoothed"] / 16, loss)
    with torch.no_grad():  # evaluation: plain cross-entropy only
        _, sums = task.step(lambda x: x, (logits, y))
    assert "loss_smoothed" not in sums


def test_a_label_smoothed_run_reports_plain_test_loss(tmp_path):
    cfg = make_config("lenet-modern", quick=True, epochs=1, max_steps=20, label_smoothing=0.2)
    trainer, out = train_run(cfg, tmp_path / "r", **QUIET)
    last = trainer.history[-1]
    assert "train_loss_smoothed" in last and "test_loss_smoothed" not in last
    assert last["train_loss_smoothed"] > last["train_loss"]  # smoothing adds to the objective
    from dlcamp.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(out, quick=True)  # the same 2,000 test images, plain CE
    assert result["loss"] == pytest.approx(last["test_loss"], rel=1e-4)
