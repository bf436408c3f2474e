"""The command line, as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import corrupt_gz


def dlcamp(*args: str, env: dict | None = None, check: bool = True, cwd: Path | None = None):
    result = subprocess.run([sys.executable, "-m", "dlcamp", *args], capture_output=True,
                            text=True, env={**os.environ, "DLCAMP_QUIET": "1", **(env or {})},
                            cwd=cwd, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"dlcamp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_models_and_help():
    out = dlcamp("models").stdout
    for name in ("softmax", "mlp", "lenet", "lenet-modern", "cnn"):
        assert name in out
    assert "train" in dlcamp("--help").stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("dlcamp")
    assert subprocess.run([script, "models"], capture_output=True).returncode == 0


def test_doctor_reports_machine_and_data():
    out = dlcamp("doctor").stdout
    assert "torch" in out and "device" in out and "data: fashion-mnist" in out


def test_doctor_says_how_to_get_missing_data(isolated_data):
    result = dlcamp("doctor", check=False)
    assert result.returncode == 1
    assert "apt-get install dataset-fashion-mnist" in result.stdout


def test_data_info():
    out = dlcamp("data", "info", "fashion-mnist").stdout
    assert "checksums ok" in out and "60,000" in out and "短靴" in out


def test_train_then_evaluate_agree(tmp_path):
    out = tmp_path / "run"
    train = dlcamp("train", "--model", "mlp", "--quick", "--out", str(out)).stdout
    assert "final test acc" in train and "epoch 2/2" in train
    result = json.loads(dlcamp("evaluate", str(out), "--quick", "--json").stdout)
    last = (out / "metrics.csv").read_text().splitlines()[-1].split(",")
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert result["acc"] == pytest.approx(float(last[header.index("val_acc")]))
    assert result["acc"] > 0.7 and result["examples"] == 2000


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "resnet9000", "--quick"], ["unknown model", "cnn"]),
    (["train", "--dataset", "cifar", "--quick"], ["unknown dataset", "fashion-mnist"]),
    (["train", "--resume", "nowhere"], ["not a run directory"]),
    (["evaluate", "nowhere/checkpoint.pt"], ["no checkpoint"]),
    (["train", "--model", "lenet", "--dataset", "digits", "--quick"], ["12x12"]),
    (["train", "--model", "mlp", "--lr", "-1", "--quick"], ["sgd optimizer", "learning rate"]),
])
def test_bad_input_gives_one_readable_error(args, fragments, tmp_path):
    assert_one_line_error(dlcamp(*args, check=False, cwd=tmp_path), *fragments)


def test_garbage_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 100)
    assert_one_line_error(dlcamp("evaluate", str(tmp_path), check=False), "not a readable")


def test_corrupt_and_missing_dataset_via_cli(fashion_copy, tmp_path):
    env = {k: os.environ[k] for k in ("DLCAMP_DATA", "DLCAMP_CACHE", "DLCAMP_SYSTEM_DATA")}
    corrupt_gz(fashion_copy / "train-images-idx3-ubyte.gz")
    result = dlcamp("train", "--quick", "--out", str(tmp_path / "r"), env=env, check=False)
    assert_one_line_error(result, "corrupt", "train-images")
    for f in fashion_copy.iterdir():
        f.unlink()
    result = dlcamp("train", "--quick", "--out", str(tmp_path / "r2"), env=env, check=False)
    assert_one_line_error(result, "not found", "apt-get install dataset-fashion-mnist")


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    dlcamp("train", "--model", "softmax", "--quick", "--epochs", "1", "--out", str(out))
    before = (out / "checkpoint.pt").read_bytes()
    result = dlcamp("train", "--model", "softmax", "--quick", "--out", str(out), check=False)
    assert_one_line_error(result, "refusing to overwrite", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == before


def test_killed_run_resumes(tmp_path):
    """Kill a real training process after its first checkpoint, then --resume it."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dlcamp", "train", "--model", "mlp", "--quick", "--epochs",
           "40", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DLCAMP_QUIET": "1"})
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "checkpoint.pt").exists(), "no checkpoint was written"
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: like a power cut
    finally:
        proc.wait(timeout=30)
    rows_before = len((out / "metrics.csv").read_text().splitlines()) - 1
    assert 1 <= rows_before < 40
    result = dlcamp("train", "--resume", str(out), "--epochs", str(rows_before + 2))
    assert f"resuming {out} after epoch" in result.stdout
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, rows_before + 3))
