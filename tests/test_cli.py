"""The command line, as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import corrupt_gz
from dlcamp.cli.main import build_parser, main
from dlcamp.cli.text import MAX_LENGTH, MAX_LINES


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
    assert result["acc"] == pytest.approx(float(last[header.index("test_acc")]))
    assert result["acc"] > 0.7 and result["examples"] == 2000


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "resnet9000", "--quick"], ["unknown model", "cnn"]),
    (["train", "--dataset", "cifar", "--quick"], ["unknown dataset", "fashion-mnist"]),
    (["train", "--resume", "nowhere"], ["not a run directory"]),
    (["evaluate", "nowhere/checkpoint.pt"], ["no checkpoint"]),
    (["train", "--model", "lenet", "--dataset", "digits", "--quick"], ["12x12"]),
    (["train", "--model", "mlp", "--lr", "-1", "--quick"], ["--lr", "finite number > 0"]),
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


def test_a_refused_run_leaves_no_folder_and_suggests_the_name(tmp_path, capsys):
    """A typo in --dataset is caught before anything is written, corpora included."""
    out = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--dataset", "tang30", "--quick", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown dataset, scene set, text corpus or parallel corpus "
                          "'tang30'; did you mean 'tang300'") and "fashion-mnist" in err
    assert "translation-zh" in err
    assert main(["train", "--model", "lstm", "--quick", "--out", str(out)]) == 2
    assert "is a language model" in capsys.readouterr().err
    assert not out.exists()


def test_resume_says_which_flags_it_ignores(tmp_path, capsys):
    code = main(["train", "--resume", str(tmp_path / "none"), "--lr", "0.5", "--model", "vgg"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and "ignored: --lr --model" in err[0] and err[1].startswith("error:")


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


# --- numeric flags: a defined behaviour, or one error line that names the flag -------------

@pytest.fixture(scope="session")
def language_model(tmp_path_factory) -> Path:
    """An LSTM trained for 3 steps on tang300: enough to run `dlcamp generate` with."""
    out = tmp_path_factory.mktemp("lm") / "run"
    dlcamp("train", "--model", "lstm", "--dataset", "tang300", "--quick", "--epochs", "1",
           "--max-steps", "3", "--batch-size", "8", "--num-steps", "8", "--out", str(out))
    return out


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`dlcamp ARGS` in this process: exit code, stdout, stderr. A traceback fails the test."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse refuses a flag, or prints --help
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, flag: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert flag in lines[0], lines[0]


# (flag=value, accepted?): the edges of each range and the values floats hide (nan, inf)
GENERATE_GRID = [
    *[(f"--temperature={v}", False) for v in ("0", "-0.5", "-inf", "inf", "nan", "1e309", "hot")],
    *[(f"--temperature={v}", True) for v in ("1e-300", "5e-324", "0.8", "1e308")],
    *[(f"--top-k={v}", True) for v in ("0", "1", "100000", str(10**30))],
    *[(f"--top-k={v}", False) for v in ("-1", "2.5", "nan")],
    *[(f"--length={v}", True) for v in ("0", "7")],
    *[(f"--length={v}", False) for v in ("-1", str(MAX_LENGTH + 1), str(10**18), "1e3")],
    *[(f"--lines={v}", True) for v in ("1", "2")],
    *[(f"--lines={v}", False) for v in ("0", "-4", str(MAX_LINES + 1))],
    *[(f"--seed={v}", True) for v in ("0", str(2**32 - 1))],
    *[(f"--seed={v}", False) for v in ("-1", str(2**32), "0.5")],
    *[(f"--prompt={v}", False) for v in ("", "，。", "☃", "\x1b[31m")],
    ("--prompt=明\n月", True),
    ("--prompt=" + "明月" * 11, False),  # 22 characters: more than 4 lines of 5 hold
]


@pytest.mark.parametrize("arg,accepted", GENERATE_GRID, ids=[a for a, _ in GENERATE_GRID])
def test_generate_flag_values(language_model, capsys, arg, accepted):
    flag = arg.split("=")[0]
    poem = ["--poem", "5"] if flag in ("--lines", "--prompt") else ["--poem", "off"]
    code, out, err = cli(capsys, "generate", str(language_model), "--prompt", "明月",
                         "--length", "5", "--seed", "1", *poem, arg)
    if accepted:
        assert code == 0 and out.strip() and not err, err
    else:
        assert_refused(code, err, flag)


def test_generate_flag_edges_mean_what_help_says(language_model, capsys):
    base = ["generate", str(language_model), "--prompt", "明月", "--poem", "off", "--length",
            "30", "--seed", "3"]

    def text(*extra: str) -> str:
        code, out, err = cli(capsys, *base, *extra)
        assert code == 0, err
        return out

    greedy = text("--greedy")
    assert text("--temperature", "1e-300") == greedy  # tiny: always the likeliest token
    assert text("--top-k", "1") == greedy
    assert text("--top-k", "100000") == text("--top-k", "0")  # beyond the vocabulary: no limit
    assert text("--length", "0") == "明月\n"
    assert len(text("--temperature", "1e308")) == 2 + 30 + 1  # nearly uniform, still text
    # With a space, argparse reads "-inf" as an option: refused too, in one line.
    code, _, err = cli(capsys, *base, "--temperature", "-inf")
    assert_refused(code, err, "--temperature")


TRAIN, SERVE = ["train", "--quick"], ["serve", "nowhere"]


@pytest.mark.parametrize("args", [
    *[[*TRAIN, f"--lr={v}"] for v in ("nan", "inf", "-inf", "0", "-1", "1e400")],
    *[[*TRAIN, f"--epochs={v}"] for v in ("0", "-1", "1.5")],
    *[[*TRAIN, f"--batch-size={v}"] for v in ("0", "-8", "nan")],
    *[[*TRAIN, f"--max-seconds={v}"] for v in ("nan", "inf", "-1")],
    *[[*TRAIN, f"--grad-clip={v}"] for v in ("nan", "inf", "-0.5")],
    *[[*TRAIN, f"--weight-decay={v}"] for v in ("nan", "-1e-4")],
    *[[*TRAIN, f"--{flag}=-1"] for flag in ("max-steps", "patience", "num-steps", "seed")],
    *[[*SERVE, f"--port={v}"] for v in ("0", "65536", "http")],
    *[[*SERVE, f"--{flag}=0"] for flag in ("workers", "threads", "max-batch")],
    *[[*SERVE, f"--max-wait-ms={v}"] for v in ("nan", "inf", "-1", "1e9")],
], ids=lambda args: " ".join(args))
def test_numeric_flags_refuse_impossible_values(args, capsys):
    """Refused before anything runs: no training starts, no server binds a port."""
    code, out, err = cli(capsys, *args)
    assert_refused(code, err, args[-1].split("=")[0])
    assert not out


def test_numeric_flags_accept_their_documented_range():
    train = build_parser().parse_args(
        ["train", "--lr", "1e-4", "--epochs", "1", "--batch-size", "1", "--max-seconds", "0",
         "--grad-clip", "0", "--max-steps", "0", "--patience", "0", "--seed", "0",
         "--weight-decay", "0", "--num-steps", "1"])
    assert (train.lr, train.epochs, train.batch_size, train.max_seconds, train.grad_clip,
            train.max_steps, train.patience, train.seed) == (1e-4, 1, 1, 0, 0, 0, 0, 0)
    serve = build_parser().parse_args(["serve", "m", "--port", "65535", "--max-wait-ms", "0",
                                       "--max-batch", "1", "--workers", "2", "--threads", "1"])
    assert (serve.port, serve.max_wait_ms, serve.max_batch) == (65535, 0.0, 1)


@pytest.mark.parametrize("device", ["nope", "cuda:7"])
def test_unusable_device_is_one_line(device, capsys, tmp_path):
    code, _, err = cli(capsys, "train", "--model", "mlp", "--quick", "--device", device,
                       "--out", str(tmp_path / "r"))
    assert_refused(code, err, "--device")


# --- pipes: `dlcamp ... | head -1` ----------------------------------------------------------

PIPED = {"models": ["models"], "lessons": ["lessons", "list"],
         "data": ["data", "info", "tang300"], "doctor": ["doctor"], "help": ["--help"],
         "generate": ["generate", "RUN", "--prompt", "明月", "--length", "50", "--poem", "off"]}


@pytest.mark.parametrize("name", PIPED)
def test_a_reader_that_left_is_not_an_error(name, request):
    """The reader closes the pipe before dlcamp writes (Python takes a second to start), so
    the write must fail with EPIPE: dlcamp exits 0 without a traceback or a shutdown warning.
    """
    args = PIPED[name]
    if name == "generate":
        args = [str(request.getfixturevalue("language_model")) if a == "RUN" else a
                for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "dlcamp", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "DLCAMP_QUIET": "1"})
    proc.stdout.close()  # nobody reads any more: `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and not err.strip(), err


def test_head_gets_the_first_line(language_model):
    python = shlex.quote(sys.executable)
    run = shlex.quote(str(language_model))
    script = (f"set -o pipefail; {python} -m dlcamp lessons list | head -1; "
              f"{python} -m dlcamp generate {run} --prompt 明月 --length 300 --poem off "
              "| head -c 6")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "DLCAMP_QUIET": "1"})
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert result.stdout.split() == ["id", "quick", "full", "title", "明月"]
