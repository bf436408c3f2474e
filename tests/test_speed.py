"""Speed switches are chosen by what the machine can do, stated with a reason, and stored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dlcamp.core.errors import BadArgument
from dlcamp.models import create_model
from dlcamp.train import TrainConfig, Trainer, make_config, train_run
from dlcamp.train import speed as speed_mod
from dlcamp.train.speed import choose_channels_last, choose_precision, choose_threads
from test_cli import assert_one_line_error, dlcamp

CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda _: None)


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has the given flags (and PyTorch dispatches AVX512 kernels)."""

    def set_flags(*flags: str, capability: str = "AVX512") -> None:
        monkeypatch.setattr(speed_mod, "cpu_info", lambda: ("test CPU", frozenset(flags)))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)

    return set_flags


# -- precision ----------------------------------------------------------------------------------
def test_auto_precision_is_fp32_without_native_bf16(cpu_with):
    cpu_with("avx2", "avx512f")  # AVX-512 but no avx512_bf16: emulated bf16
    choice = choose_precision("auto", CPU)
    assert choice.value == "fp32" and "no native bf16" in choice.reason


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_precision_is_bf16_where_it_is_native(cpu_with, flag):
    cpu_with("avx2", "avx512f", flag)
    choice = choose_precision("auto", CPU)
    assert choice.value == "bf16" and flag in choice.reason


def test_an_emulated_avx2_laptop_gets_fp32(cpu_with, monkeypatch):
    cpu_with("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert choose_precision("auto", CPU).value == "fp32"
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in choose_precision("auto", CPU).reason
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    cpu_with("avx2", "avx512_bf16", capability="AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert choose_precision("auto", CPU).value == "fp32"


def test_asked_precision_wins_with_a_warning(cpu_with):
    cpu_with("avx2")
    choice = choose_precision("bf16", CPU)
    assert choice.value == "bf16" and "slow" in choice.reason
    assert choose_precision("fp32", CPU).value == "fp32"
    with pytest.raises(BadArgument, match="auto, fp32 or bf16"):
        choose_precision("fp16", CPU)


# -- layout and threads -------------------------------------------------------------------------
def test_channels_last_only_for_conv_nets():
    assert choose_channels_last("auto", CPU, create_model("mlp")).value is False
    # batch norm over 6 channels runs slower in NHWC on a CPU (bench/speed_switches.py)
    for name in ("lenet-bn", "lenet-modern"):
        choice = choose_channels_last("auto", CPU, create_model(name))
        assert choice.value is False and "6 channels" in choice.reason
    assert choose_channels_last("on", CPU, create_model("lenet-bn")).value is True
    assert choose_channels_last("on", CPU, create_model("mlp")).value is False
    assert choose_channels_last("off", CPU, create_model("cnn")).value is False
    assert choose_channels_last(True, CPU, create_model("cnn")).value is True  # old configs
    with pytest.raises(BadArgument, match="auto, on or off"):
        choose_channels_last("yes", CPU, create_model("cnn"))


@pytest.mark.parametrize("idle,threads", [(2.0, 2), (1.6, 2), (1.1, 1), (0.9, 1), (0.0, 1)])
def test_auto_threads_follow_the_idle_cores(monkeypatch, idle, threads):
    monkeypatch.setattr(speed_mod, "DEFAULT_THREADS", 2)
    monkeypatch.setattr(speed_mod, "idle_cores", lambda: idle)
    monkeypatch.delenv(speed_mod.THREADS_ENV, raising=False)
    choice = choose_threads("auto", CPU)
    assert choice.value == threads
    assert ("--threads" in choice.reason) == (threads < 2)


def test_threads_can_be_set_by_flag_or_environment(monkeypatch):
    monkeypatch.setenv(speed_mod.THREADS_ENV, "1")
    assert choose_threads("auto", CPU).value == 1
    assert choose_threads("3", CPU).value == 3  # the flag beats the environment
    for bad in ("0", 0, "0.5", "-1", "many"):
        with pytest.raises(BadArgument, match="--threads"):
            choose_threads(bad, CPU)


def test_idle_cores_is_measured_between_zero_and_all_cores():
    idle = speed_mod.idle_cores(seconds=0.05)
    assert 0.0 <= idle <= len(speed_mod.affinity_cpus()) + 1e-6


def test_training_uses_the_planned_threads_and_restores_them():
    seen = []

    class Record:
        def on_epoch_end(self, trainer, record):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    trainer = Trainer(nn.Linear(4, 2), TrainConfig(epochs=1, threads="1", device="cpu"),
                      callbacks=[Record()])
    trainer.fit(batches)
    assert seen == [1] and torch.get_num_threads() == before


# -- the plan in a run --------------------------------------------------------------------------
def test_train_run_prints_and_stores_the_plan(tmp_path):
    lines: list[str] = []
    cfg = make_config("lenet", quick=True, epochs=1, max_steps=3, precision="fp32", threads="1")
    trainer, out = train_run(cfg, tmp_path / "r", progress=False, log=lines.append)
    text = "\n".join(lines)
    assert "precision fp32 (fp32: as asked" in text and "threads 1 (1:" in text
    assert "channels-last" in text
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["precision"] == "fp32"  # what was asked ...
    assert saved["speed"]["precision"]["value"] == "fp32"  # ... and what it became, with why
    assert saved["speed"]["threads"]["value"] == 1 and saved["speed"]["threads"]["reason"]
    assert "cpu" in saved["machine"] and "torch_cpu_capability" in saved["machine"]


def test_recipes_leave_speed_switches_to_the_machine():
    for name in ("cnn", "lenet", "lenet-bn", "resnet18", "densenet", "vgg"):
        train = make_config(name).train
        assert (train.precision, train.channels_last, train.threads) == ("auto", "auto", "auto")


def test_old_configs_with_a_bf16_flag_still_load():
    assert TrainConfig.from_dict({"bf16": True}).precision == "bf16"
    assert TrainConfig.from_dict({"bf16": False, "channels_last": True}).channels_last == "on"


def test_cli_speed_flags(tmp_path):
    out = tmp_path / "r"
    dlcamp("train", "--model", "softmax", "--quick", "--epochs", "1", "--max-steps", "2",
           "--precision", "fp32", "--channels-last", "off", "--threads", "1", "--out", str(out))
    speed = json.loads((out / "config.json").read_text())["speed"]
    assert speed["precision"]["value"] == "fp32" and speed["threads"]["value"] == 1
    result = dlcamp("train", "--model", "softmax", "--quick", "--threads", "0",
                    "--out", str(tmp_path / "bad"), check=False)
    assert_one_line_error(result, "--threads")
    assert "precision" in dlcamp("doctor").stdout


# -- evaluation, serving and ONNX agree ----------------------------------------------------------
def test_evaluate_serve_and_onnx_agree_on_a_bf16_trained_checkpoint(tmp_path):
    """Whatever the training precision, evaluate, the server and ONNX compute in fp32."""
    pytest.importorskip("onnxruntime")
    from dlcamp.data import load_dataset
    from dlcamp.serve.export import export_onnx
    from dlcamp.serve.model import ServedModel
    from dlcamp.train.evaluate import evaluate_checkpoint

    cfg = make_config("cnn", quick=True, epochs=1, max_steps=15, precision="bf16")
    train_run(cfg, tmp_path / "run", **QUIET)
    result = evaluate_checkpoint(tmp_path / "run", quick=True)
    test = load_dataset("fashion-mnist", "test").subset(2000)
    pixels = list(test.images[:, 0].numpy())
    labels = test.labels.numpy()
    served = ServedModel.load(tmp_path / "run")
    onnx = ServedModel.load(export_onnx(tmp_path / "run"))
    torch_logits, onnx_logits = served.logits(pixels), onnx.logits(pixels)
    assert np.allclose(torch_logits, onnx_logits, atol=1e-3)
    served_acc = float((torch_logits.argmax(1) == labels).mean())
    assert result["acc"] == pytest.approx(served_acc, abs=1 / 2000)
    assert float((onnx_logits.argmax(1) == labels).mean()) == pytest.approx(served_acc,
                                                                           abs=1 / 2000)


def test_compiled_kernels_are_cached_per_cpu_capability(monkeypatch, tmp_path):
    # torch 2.14.1 reuses AVX-512 kernels in an AVX2-capped process (wrong numbers): each
    # capability gets its own cache folder, and a folder the user set wins. (No torch.compile
    # under a faked capability here: inductor remembers what it saw for the whole process.)
    env = speed_mod.COMPILE_CACHE_ENV
    real = torch.backends.cpu.get_cpu_capability().lower().replace(" ", "-")
    monkeypatch.setenv(env, "recorded")  # teardown restores the variable as it was before
    folders = {}
    for capability in ("AVX512", "AVX2"):
        monkeypatch.delenv(env)
        with monkeypatch.context() as fake:
            fake.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
            folders[capability] = speed_mod.compile_cache_dir()
        assert speed_mod.os.environ[env] == folders[capability]
        monkeypatch.setenv(env, "recorded")
    assert folders["AVX512"].endswith("dlcamp-avx512")
    assert folders["AVX2"].endswith("dlcamp-avx2")
    monkeypatch.setenv(env, str(tmp_path))
    assert speed_mod.compile_cache_dir() == str(tmp_path)
    # PyTorch's own default in the variable (set by its first use of the cache) is replaced
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    monkeypatch.setenv(env, default_cache_dir())
    assert speed_mod.compile_cache_dir().endswith("dlcamp-" + real)
    # the Trainer sets it before compiling, for the real capability
    monkeypatch.delenv(env)
    Trainer(create_model("softmax", image_size=8), TrainConfig(compile=True, device="cpu"))
    assert speed_mod.os.environ[env].endswith("dlcamp-" + real)
