"""Speed switches chosen by what this machine can do: precision, layout, threads, allocator.

    plan = plan_speed(torch.device("cpu"), model)             # every switch on "auto"
    print(plan.describe())      # one line per switch: the value, and why it was chosen

Each switch pays on some machines and costs on others, so "auto" decides from the hardware,
and an explicit value always wins (with a warning in the reason when it is likely slow):

- precision: bf16 autocast only where bf16 arithmetic is native: CUDA GPUs that support it
  (compute capability >= 8.0), CPUs with AVX512_BF16 or AMX. Elsewhere bf16 is emulated
  and slower than fp32: a 2048x2048 matmul ran at 0.3 GFLOP/s in bf16 against 157 in fp32
  on an AVX2-only AMD EPYC, and a training step of the default cnn 8x slower (issue 12);
  on an AVX-512 CPU without AVX512_BF16 it was still 2x slower. bench/speed_switches.py
  measures it on your machine.
- channels-last (NHWC): oneDNN's CPU convolutions and cuDNN's tensor-core kernels prefer
  it; on x86 CPUs it paid 1.1-1.8x for the conv nets of the zoo on both CPU kinds, but cost
  for the two whose batch norm spans only 6 channels (bench/speed_switches.py in
  docs/benchmarks.md). Only models with 2-d convolutions are affected.
- threads: PyTorch runs one OpenMP thread per core. When another program keeps a core busy,
  a team of threads waits at every barrier for the one that lost its core, and one thread
  is faster (measured in docs/benchmarks.md, "a busy laptop"). "auto" counts the idle cores
  over 0.05 s (psutil) and uses that many threads, at least one.
- allocator (Linux with glibc): training allocates and frees the same large activation
  buffers every step. glibc hands big freed blocks back to the kernel and takes them again
  next step, each page faulting in afresh: up to 3,800 page faults and 10 ms of system time
  per LeNet step were measured here. `keep_freed_memory` tells glibc (mallopt) to keep freed
  memory in the process: 10-20% faster LeNet epochs, steadier timings; the process keeps its
  peak memory until it exits.
- torch.compile's kernel cache: kept per PyTorch CPU capability (`compile_cache_dir`).

Evaluation, serving and ONNX export always compute in fp32 (see dlcamp.train.evaluate).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcamp.core.errors import BadArgument

PRECISIONS = ("auto", "fp32", "bf16")
SWITCH = ("auto", "on", "off")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which it has no native bf16 kernels
NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI"}
THREADS_ENV = "DLCAMP_THREADS"
NARROW_BN = 8  # channels-last "auto" stays off on a CPU for batch norm over fewer channels
# PyTorch's own default: one thread per physical core, or OMP_NUM_THREADS (read at import,
# before anything calls torch.set_num_threads)
DEFAULT_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class Choice:
    """One switch: what was asked ("auto" or a value), what was chosen, and why."""

    asked: str
    value: Any
    reason: str


@dataclass(frozen=True)
class SpeedPlan:
    precision: Choice      # value "fp32" | "bf16"
    channels_last: Choice  # value True | False
    threads: Choice        # value: number of intra-op threads
    allocator: Choice = Choice("auto", False, "not applied")  # value: freed memory kept

    @property
    def bf16(self) -> bool:
        return self.precision.value == "bf16"

    def describe(self) -> str:
        """Three lines, e.g. 'precision fp32 (auto: ...)'."""
        layout = "on" if self.channels_last.value else "off"
        rows = [("precision", self.precision, self.precision.value),
                ("channels-last", self.channels_last, layout),
                ("threads", self.threads, str(self.threads.value)),
                ("allocator", self.allocator,
                 "keeps freed memory" if self.allocator.value else "default")]
        return "\n".join(f"{name} {value} ({choice.asked}: {choice.reason})"
                         for name, choice, value in rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- what the CPU has ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; Linux only, else empty."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_flags() -> frozenset[str]:
    return cpu_info()[1]


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine_summary() -> dict[str, Any]:
    """The CPU, its speed-relevant flags and PyTorch's dispatch level: stored with every run
    (config.json, checkpoint), so that a speed figure can be traced to the hardware."""
    model, flags = cpu_info()
    return {"cpu": model, "flags": [f for f in SPEED_FLAGS if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "default_threads": DEFAULT_THREADS,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def cpu_bf16() -> tuple[bool, str]:
    """Whether bf16 matmuls and convolutions run natively on this CPU, and why (not)."""
    flags = cpu_flags()
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if not flags:  # no /proc/cpuinfo (macOS, Windows): ask PyTorch's cpuinfo
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        found = ["avx512_bf16"] if probe is not None and probe() else []
    if not found:
        return False, ("this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag): "
                       "bf16 would be emulated, several times slower than fp32")
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "")
    if isa.upper() in NO_BF16_ISAS:
        return False, (f"ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN from the CPU's "
                       f"{'/'.join(found)}: bf16 would be emulated")
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("DEFAULT", "AVX2", "NO AVX"):
        return False, (f"PyTorch dispatches {capability} kernels (ATEN_CPU_CAPABILITY): "
                       "bf16 element-wise work would be emulated")
    return True, f"native bf16 on this CPU ({'/'.join(found)})"


# -- the three switches -----------------------------------------------------------------------
def choose_precision(asked: str, device: torch.device) -> Choice:
    """fp32 or bf16 for training on `device`. Raises BadArgument for an unknown name."""
    if asked not in PRECISIONS:
        raise BadArgument(f"unknown precision {asked!r}; choose auto, fp32 or bf16")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        why = (f"{torch.cuda.get_device_name(device)} "
               f"{'has' if native else 'has no'} native bf16")
    elif device.type == "cpu":
        native, why = cpu_bf16()
    else:
        native, why = False, f"dlcamp keeps fp32 on {device.type} (bf16 not measured there)"
    if asked == "auto":
        return Choice("auto", "bf16" if native else "fp32", why)
    if asked == "bf16" and not native:
        return Choice("bf16", "bf16", f"as asked, but {why}; expect it to be slow")
    return Choice(asked, asked, f"as asked; {why}")


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def choose_channels_last(asked: str | bool, device: torch.device, model: nn.Module,
                         compile: bool = False) -> Choice:
    """Channels-last (NHWC) memory layout for the model's 4-d tensors, or not."""
    asked = {True: "on", False: "off"}.get(asked, asked)  # bools of older configs
    if asked not in SWITCH:
        raise BadArgument(f"unknown channels-last setting {asked!r}; choose auto, on or off")
    if not has_conv2d(model):
        return Choice(asked, False, "the model has no 2-d convolutions")
    if asked != "auto":
        return Choice(asked, asked == "on", "as asked")
    narrow = min((m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)),
                 default=None)
    if device.type == "cpu" and narrow is not None and narrow < NARROW_BN:
        # NHWC kernels vectorise across channels: batch norm over 6 channels leaves most of an
        # 8-float (AVX2) or 16-float (AVX-512) register empty; lenet-bn and lenet-modern ran
        # 0.59-0.85x as fast in NHWC on both CPU kinds (bench/speed_switches.py)
        return Choice("auto", False, f"batch norm over {narrow} channels is slower in NHWC")
    if compile and device.type == "cpu":
        # torch 2.14.1's compiled CPU code for LeNet's backward in NHWC corrupted the heap
        # on an AVX-512 CPU (batch 256; NCHW, or AVX2 code, ran fine)
        return Choice("auto", False, "torch.compile on the CPU: NHWC code crashed on AVX-512")
    if device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64") \
            and torch.backends.mkldnn.is_available():
        return Choice("auto", True, "oneDNN convolutions on x86 run faster in NHWC "
                      "(bench/speed_switches.py)")
    if device.type == "cuda":
        return Choice("auto", True, "cuDNN's tensor-core convolutions prefer NHWC")
    return Choice("auto", False, f"NHWC is not known to pay on {device.type} "
                  f"({platform.machine()})")


def affinity_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    import psutil

    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error):  # macOS has no affinity
        return list(range(psutil.cpu_count() or 1))


def idle_cores(seconds: float = 0.05) -> float:
    """How many of the usable cores were idle over the next `seconds` (psutil), 0..cores."""
    import psutil

    busy = psutil.cpu_percent(interval=seconds, percpu=True)  # (n_cpus,) percent
    return sum(100.0 - busy[i] for i in affinity_cpus() if i < len(busy)) / 100.0


def choose_threads(asked: int | str | None, device: torch.device) -> Choice:
    """Intra-op threads: a number >= 1, or "auto" (or None): the idle cores, at least 1.

    `DLCAMP_THREADS` in the environment overrides "auto" (a number).
    """
    asked = "auto" if asked in (None, "auto") else asked
    env = os.environ.get(THREADS_ENV)
    if asked == "auto" and env:
        asked = env
    if asked != "auto":
        try:
            n = int(asked)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise BadArgument(f"--threads must be 'auto' or a whole number >= 1, got {asked!r}")
        source = f"{THREADS_ENV}={env}" if asked == env else "as asked"
        return Choice(str(asked), n, source)
    cores = DEFAULT_THREADS
    if device.type != "cpu":
        return Choice("auto", cores, f"compute runs on {device.type}; {cores} CPU threads")
    idle = idle_cores()
    n = max(1, min(cores, int(idle + 0.5)))
    if n == cores:
        return Choice("auto", n, f"{idle:.1f} of {cores} cores idle")
    return Choice("auto", n, f"only {idle:.1f} of {cores} cores idle: other programs are busy, "
                  "and fewer threads wait less for each other; --threads N to override")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
_allocator: list[Choice] = []  # the process-wide setting, made once


def keep_freed_memory() -> Choice:
    """Ask glibc to keep freed memory for reuse instead of returning it to the kernel (once per
    process; see the module docstring). Elsewhere (macOS, Windows, musl) nothing changes."""
    if _allocator:
        return _allocator[0]
    choice = Choice("auto", False, f"not glibc ({platform.system()}): the default allocator")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and (
                libc.mallopt(M_MMAP_THRESHOLD, 2**30) or libc.mallopt(M_MMAP_THRESHOLD, 2**25))
        except (OSError, AttributeError):
            ok = False
        if ok:
            choice = Choice("auto", True, "glibc keeps freed blocks: no page faults per step")
    _allocator.append(choice)
    return choice


def plan_speed(device: torch.device, model: nn.Module, precision: str = "auto",
               channels_last: str | bool = "auto", threads: int | str | None = "auto",
               compile: bool = False) -> SpeedPlan:
    """Decide the switches for training `model` on `device` (see the module docstring);
    `compile`: the model will run through torch.compile. Raises BadArgument for an unknown
    setting.
    """
    return SpeedPlan(choose_precision(precision, device),
                     choose_channels_last(channels_last, device, model, compile),
                     choose_threads(threads, device), keep_freed_memory())


COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir() -> str:
    """Point torch.compile's on-disk kernel cache at a folder of its own for PyTorch's CPU
    capability (…/torchinductor_<user>/dlcamp-<capability>, e.g. dlcamp-avx512), unless the
    user set $TORCHINDUCTOR_CACHE_DIR to a folder of their own; returns the folder.

    Inductor writes its CPU kernels for the vector width that ATEN_CPU_CAPABILITY allows, but
    torch 2.14.1 does not key its cache on it: when an AVX2-capped process reused the kernels
    of an AVX-512 one, a compiled softmax regression on the digits reached 0.11 test accuracy
    instead of 0.96, and a LeNet's loss 1e24 (issue 12). Separate folders keep the two apart.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current, default = os.environ.get(COMPILE_CACHE_ENV), default_cache_dir()
    # PyTorch writes its default into the variable the first time it uses the cache (an ONNX
    # export does): that value is not the user's choice
    if current and os.path.abspath(current) != os.path.abspath(default):
        return current
    capability = torch.backends.cpu.get_cpu_capability().lower().replace(" ", "-")
    folder = os.path.join(default, f"dlcamp-{capability}")
    if current != folder:
        os.environ[COMPILE_CACHE_ENV] = folder
        if current:  # in-memory caches that remember the old folder
            from torch._inductor.utils import clear_caches

            clear_caches()
    return folder


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block, the previous number restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
