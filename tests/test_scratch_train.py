"""Training with the NumPy engine: `dlcamp train --engine numpy`, run files, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dlcamp.cli.main import main
from dlcamp.core.config import RunConfig
from dlcamp.core.errors import BadArgument
from dlcamp.engine import optim
from dlcamp.engine.models import create_scratch_model
from dlcamp.train.checkpoint import load_checkpoint
from dlcamp.train.engine import ScratchTrainer
from dlcamp.train.run import make_config, resume_run, train_run
from dlcamp.train.trainer import TrainConfig, make_optimizer
from test_cli import assert_one_line_error, dlcamp
from test_trainer import interrupted_run, untimed


def metrics(run) -> list[dict[str, str]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]


def test_cli_trains_with_the_scratch_engine_and_torch_evaluates_the_run(tmp_path):
    out = tmp_path / "run"
    train = dlcamp("train", "--engine", "numpy", "--model", "mlp", "--quick", "--out",
                   str(out)).stdout
    assert "NumPy engine" in train and "epoch 2/2" in train and "final test acc" in train
    for name in ("config.json", "metrics.csv", "curves.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["engine"] == "numpy"
    last = metrics(out)[-1]
    assert float(last["test_acc"]) > 0.7 and float(last["train_loss"]) < 1.0
    # The checkpoint holds PyTorch-named weights: `dlcamp evaluate` rebuilds the network in
    # PyTorch and must find the same accuracy and loss that the engine measured.
    result = json.loads(dlcamp("evaluate", str(out), "--quick", "--json").stdout)
    assert result["acc"] == pytest.approx(float(last["test_acc"]))
    assert result["loss"] == pytest.approx(float(last["test_loss"]), rel=1e-4)


@pytest.mark.parametrize("args,fragments", [
    (["--model", "resnet18"], ["unknown NumPy engine model 'resnet18'", "lenet-modern, mlp",
                               "--engine torch"]),
    (["--model", "mlp", "--precision", "bf16"], ["--precision bf16", "float32"]),
    (["--model", "lenet", "--channels-last", "on"], ["--channels-last on", "float32"]),
    (["--model", "mlp", "--device", "cuda"], ["CPU"]),
])
def test_scratch_engine_bad_input(args, fragments, tmp_path):
    result = dlcamp("train", "--engine", "numpy", "--quick", "--out", str(tmp_path / "r"),
                    *args, check=False)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("library", [optim, torch.optim], ids=["scratch", "torch"])
@pytest.mark.parametrize("optimizer,lr,fragment", [
    ("sgd", -1.0, "negative|Invalid learning rate"), ("adamw", -1.0, "lr >= 0|Invalid learning"),
    ("sgd", math.nan, "finite"), ("adam", math.inf, "finite"),
])
def test_optimizers_refuse_impossible_learning_rates(library, optimizer, lr, fragment):
    """The CLI refuses these values first; a RunConfig built in Python meets these checks."""
    model = create_scratch_model("mlp", hidden=[8], image_size=4)
    params = model.parameters() if library is optim else torch.nn.Linear(2, 2).parameters()
    with pytest.raises(BadArgument, match=fragment):
        make_optimizer(params, TrainConfig(optimizer=optimizer, lr=lr), library=library)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_gives_the_same_run_as_training_straight_through(tmp_path, optimizer):
    """Weights, optimiser moments and the epoch counter all survive the checkpoint.

    (A constant learning rate: a schedule planned for 1 epoch differs from one for 2.)
    """
    settings = dict(quick=True, engine="numpy", epochs=2, optimizer=optimizer,
                    lr=0.05 if optimizer == "sgd" else 1e-3, momentum=0.9, nesterov=True,
                    schedule="constant", weight_decay=1e-4)
    quiet = dict(progress=False, log=lambda _: None)
    straight, _ = train_run(make_config("mlp", **settings), tmp_path / "a", **quiet)
    train_run(make_config("mlp", **{**settings, "epochs": 1}), tmp_path / "b", **quiet)
    resumed, _ = resume_run(tmp_path / "b", epochs=2, **quiet)
    assert resumed.epoch == straight.epoch == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["test_acc"] for r in straight.history] == [r["test_acc"] for r in resumed.history]
    ckpt = load_checkpoint(tmp_path / "b")  # weights_only: nothing executable in the file
    assert ckpt["engine"] == "numpy" and ckpt["trainer"]["engine"] == "numpy"


def test_interrupted_run_with_dropout_resumes_bit_for_bit(tmp_path):
    """Ctrl-C after epoch 1, then resume to 2: exactly the uninterrupted run.

    The dropout masks come from the engine's own NumPy generator (dlcamp.engine.nn), so
    the checkpoint must carry its state; a one-cycle schedule spans both epochs.
    """
    cfg = make_config("mlp", quick=True, engine="numpy", epochs=2, schedule="onecycle",
                      model_kwargs={"hidden": [64], "dropout": 0.3})
    quiet = dict(progress=False, log=lambda _: None)
    straight, _ = train_run(cfg, tmp_path / "a", **quiet)
    interrupted_run(cfg, tmp_path / "b", after=1)
    resumed, _ = resume_run(tmp_path / "b", **quiet)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert resumed.epoch == 2 and a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert untimed(resumed.history) == untimed(straight.history)
    assert straight.history[-1]["test_acc"] > 0.7  # the masks were drawn in a network that learns


def test_scratch_cnn_learns_with_the_trainer():
    from dlcamp.data.loader import make_loaders

    cfg = make_config("lenet-modern", quick=True, engine="numpy", max_steps=40, epochs=1)
    loaders = make_loaders("fashion-mnist", 64, "cpu", quick=True)
    model = create_scratch_model("lenet-modern")
    trainer = ScratchTrainer(model, cfg.train)
    before = trainer.evaluate(loaders.test)
    trainer.fit(loaders.train)
    after = trainer.evaluate(loaders.test)
    assert trainer.global_step == 40
    assert after["loss"] < before["loss"] - 0.5 and after["acc"] > 0.6, (before, after)


def test_the_engines_old_name_still_works_and_says_the_new_one(tmp_path, capsys):
    """`--engine scratch` (before the engine/ folder) means `--engine numpy`, with a note."""
    with pytest.warns(FutureWarning, match="'scratch' is now called 'numpy'"):
        assert make_config("mlp", engine="scratch").engine == "numpy"
    assert RunConfig.from_dict({"model": "mlp", "engine": "scratch"}).engine == "numpy"
    code = main(["train", "--engine", "scratch", "--model", "resnet18", "--quick", "--out",
                 str(tmp_path / "r")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0] == ("note: --engine scratch is now --engine numpy (the old name will go in a "
                      "later release)")
    assert err[1].startswith("error: unknown NumPy engine model 'resnet18'")
    with pytest.raises(BadArgument, match="unknown engine 'jax'; choose torch or numpy"):
        make_config("mlp", engine="jax")
