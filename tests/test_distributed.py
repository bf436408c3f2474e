"""Data-parallel training (dlcamp.train.distributed): DDP in two processes on the CPU equals one
process on the same global batches, resumes, and leaves a checkpoint that loads in one process.

The multi-process runs go through the real command: `dlcamp train --nproc 2` launches torchrun.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from dlcamp.cli.main import main
from dlcamp.core.errors import BadArgument
from dlcamp.data.datasets import load_dataset
from dlcamp.data.loader import TensorLoader
from dlcamp.train.checkpoint import load_checkpoint
from dlcamp.train.distributed import (
    DistContext,
    DistributedTrainer,
    ShardedLoader,
    check_distributed,
    check_gpus,
    shard,
)
from dlcamp.train.launch import strip_nproc

# lenet on 4,000 MNIST digits: convolutions, no batch norm, no dropout (those differ per rank).
# Global batches of 75: 53 of them (chunks of 38 + 37) and a last one of 25, so every step
# checks the weighting of unequal chunks.
ARGS = ["train", "--model", "lenet", "--dataset", "mnist", "--batch-size", "75",
        "--optimizer", "adam", "--lr", "0.003", "--schedule", "constant", "--threads", "1",
        "--no-progress", "--device", "cpu"]
ENV = {**os.environ, "DLCAMP_QUIET": "1", "OMP_NUM_THREADS": "1"}


def dlcamp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlcamp", *args], capture_output=True,
                          text=True, env=ENV, timeout=300)


def weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["trainer"]["model"]


def rows(run) -> list[dict[str, float]]:
    with open(run / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 2 epochs; two processes for 1 epoch (`--nproc 2`), then resumed in two
    for a 2nd (torchrun)."""
    root = tmp_path_factory.mktemp("ddp")
    single, ddp = root / "single", root / "ddp"
    one = dlcamp(*ARGS, "--epochs", "2", "--out", str(single))
    assert one.returncode == 0, one.stderr
    two = dlcamp(*ARGS, "--epochs", "1", "--out", str(ddp), "--nproc", "2")
    assert two.returncode == 0, two.stderr
    first_epoch = weights(ddp)
    # the second epoch under torchrun itself (the first went through --nproc's own launcher)
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc-per-node=2", "-m", "dlcamp", "train", "--resume", str(ddp),
                              "--epochs", "2", "--no-progress"], capture_output=True, text=True,
                             env={**ENV, "TMPDIR": str(root)}, timeout=300)  # torchrun's folders
    assert resumed.returncode == 0, resumed.stderr
    return single, ddp, first_epoch, two.stdout + resumed.stdout


def test_two_processes_equal_one_on_the_same_global_batches(runs):
    single, ddp, _, out = runs
    a, b = weights(single), weights(ddp)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
    assert "in 2 processes (gloo)" in out and out.count("final test acc") == 2  # rank 0 only
    assert json.loads((ddp / "config.json").read_text())["distributed"] == {
        "world_size": 2, "backend": "gloo"}


def test_metrics_are_all_reduced_over_the_ranks(runs):
    single, ddp, _, _ = runs
    one, two = rows(single), rows(ddp)
    assert len(one) == len(two) == 2
    for r1, r2 in zip(one, two, strict=True):
        assert r2["train_examples"] == r1["train_examples"] == 4000  # both halves counted
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert r2[key] == pytest.approx(r1[key], abs=1e-4), key
    assert two[-1]["test_acc"] > 0.5  # and it learned


def test_a_ddp_checkpoint_loads_and_evaluates_in_one_process(runs, capsys):
    _, ddp, first_epoch, _ = runs
    assert not any(k.startswith("module.") for k in first_epoch)  # the plain model's names
    assert main(["evaluate", str(ddp), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 1000
    assert result["acc"] == pytest.approx(rows(ddp)[-1]["test_acc"], abs=1e-6)


def test_batch_norm_and_a_time_budget_stay_in_step_over_the_ranks(tmp_path, capsys):
    """The default cnn (batch norm) under a time budget: the ranks stop at the same step (rank
    0's clock decides), and the test accuracy logged by the two ranks together is the accuracy
    of rank 0's checkpoint in one process (its batch-norm statistics are broadcast first)."""
    out = tmp_path / "cnn"
    run = dlcamp("train", "--model", "cnn", "--dataset", "mnist", "--epochs", "1000",
                 "--max-seconds", "3", "--threads", "1", "--no-progress", "--nproc", "2",
                 "--device", "cpu", "--out", str(out))
    assert run.returncode == 0, run.stderr
    logged = rows(out)
    assert 0 < len(logged) < 1000  # stopped by the budget, not by the epochs
    assert main(["evaluate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc"] == pytest.approx(logged[-1]["test_acc"], abs=1e-6)
    assert result["loss"] == pytest.approx(logged[-1]["test_loss"], rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_with_nccl(tmp_path):
    out = tmp_path / "gpu"
    run = dlcamp("train", "--model", "lenet", "--quick", "--epochs", "1", "--no-progress",
                 "--nproc", "2", "--device", "cuda", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "config.json").read_text())["distributed"]["backend"] == "nccl"


def test_nproc_refuses_what_it_cannot_train_before_launching(tmp_path, capsys):
    assert main(["train", "--model", "lstm", "--dataset", "tang300", "--nproc", "2"]) == 2
    assert "image classification" in capsys.readouterr().err
    (tmp_path / "x").write_text("a run")
    assert main(["train", "--out", str(tmp_path), "--nproc", "2"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["train", "--batch-size", "1", "--nproc", "2"]) == 2
    assert "at least one example" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--nproc", "0"])
    text_run = tmp_path / "poems"
    text_run.mkdir()
    (text_run / "config.json").write_text(json.dumps({"model": "lstm", "dataset": "tang300"}))
    assert main(["train", "--resume", str(text_run), "--nproc", "2"]) == 2
    assert "image classification" in capsys.readouterr().err
    with pytest.raises(BadArgument, match="NumPy|numpy"):
        check_distributed("image", "numpy")
    if torch.cuda.device_count() < 2:  # one process per GPU
        with pytest.raises(BadArgument, match="GPUs"):
            check_gpus(2)


def test_shards_split_each_global_batch_contiguously():
    x, y = torch.arange(10).reshape(5, 2), torch.arange(5)
    parts = [shard((x, y), r, 2) for r in range(2)]
    assert [len(p[1]) for p in parts] == [3, 2] and all(p.global_size == 5 for p in parts)
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    loader = ShardedLoader([(x, y), (x[:1], y[:1])], rank=1, world_size=2, train=True)
    assert [len(b[1]) for b in loader] == [2]  # a batch smaller than the world is skipped
    assert strip_nproc(["train", "--nproc", "2", "--nproc=3", "--quick"]) == ["train", "--quick"]
    # 10 examples in batches of 4 over 3 ranks: the last batch (2) is skipped, and not counted
    digits = TensorLoader(load_dataset("digits", "test").subset(10, 0), batch_size=4)
    assert len(ShardedLoader(digits, 0, 3, train=True)) == len(list(
        ShardedLoader(digits, 0, 3, train=True))) == 2
    assert len(ShardedLoader(digits, 0, 3, train=False)) == 3


def test_time_budget_and_sums_go_through_the_process_group(tmp_path, monkeypatch):
    """In one process (a world of one), the collectives the trainer adds run and agree."""
    from dlcamp.core.config import TrainConfig

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0,
                            world_size=1)
    try:
        ctx = DistContext(0, 1, 0, 1)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        trainer = DistributedTrainer(model, ctx, TrainConfig(epochs=10_000, lr=0.1, max_seconds=0.3,
                                                             threads="1"))
        x, y = torch.randn(32, 1, 2, 2), torch.randint(0, 3, (32,))
        loader = ShardedLoader([(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)], 0, 1, True)
        history = trainer.fit(loader, ShardedLoader([(x, y)], 0, 1, train=False))
        assert 0 < len(history) < 10_000 and trainer.progress() >= 1.0  # stopped by the budget
        assert history[-1]["train_examples"] in (8, 16, 24, 32)
        assert trainer.reduce_sums({"n": torch.tensor(3), "loss": torch.tensor(1.5)}) == {
            "loss": 1.5, "n": 3.0}
    finally:
        dist.destroy_process_group()
