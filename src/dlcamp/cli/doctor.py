"""`dlcamp doctor`: what this machine has, and how to get what is missing."""

from __future__ import annotations

import os
import platform
import sys
import time

import torch

from dlcamp.core.utils import pick_device, versions
from dlcamp.data.datasets import DATASETS
from dlcamp.data.files import cache_dir, system_dir
from dlcamp.models import create_model
from dlcamp.train.speed import SPEED_FLAGS, THREADS_ENV, cpu_info, plan_speed


def matmul_gflops(dtype: torch.dtype, n: int = 256, seconds: float = 0.05) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on the CPU, best of a few calls (a quick look,
    not a benchmark: bench/machine.py measures the peak properly)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best, deadline = float("inf"), time.perf_counter() + seconds
    for _ in range(20):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * n**3 / best / 1e9


def speed_rows(device: torch.device) -> list[tuple[str, bool, str]]:
    """What `dlcamp train` would choose here for a conv net, and a measured bf16/fp32 look."""
    plan = plan_speed(device, create_model("cnn"))
    layout = "on" if plan.channels_last.value else "off"
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    return [
        ("precision", True, f"{plan.precision.value} ({plan.precision.reason}); CPU matmul "
         f"measured now: fp32 {fp32:,.1f}, bf16 {bf16:,.1f} GFLOP/s; override: --precision"),
        ("channels-last", True, f"{layout} for conv nets ({plan.channels_last.reason}); "
         "override: --channels-last"),
        ("threads", True, f"{plan.threads.value} ({plan.threads.reason}); override: --threads N "
         f"or {THREADS_ENV}=N"),
        ("allocator", True, plan.allocator.reason),
    ]


def checks() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) rows; `ok` False means something the user should fix or know."""
    rows: list[tuple[str, bool, str]] = []
    v = versions()
    rows.append(("python", sys.version_info >= (3, 11), f"{v['python']} ({sys.executable})"))
    rows.append(("torch", True, f"{v['torch']}, numpy {v['numpy']}, dlcamp {v['dlcamp']}"))
    rows.append(("cpu", True, f"{platform.machine()}, {os.cpu_count()} logical cores, "
                 f"torch uses {torch.get_num_threads()} threads"))
    model, flags = cpu_info()
    wanted = [f for f in SPEED_FLAGS if f in flags]
    shown = ", ".join(wanted) or "none of " + "/".join(SPEED_FLAGS)
    rows.append(("cpu flags", True, f"{model}: {shown}; PyTorch dispatch "
                 f"{torch.backends.cpu.get_cpu_capability()}"))
    device = pick_device()
    detail = str(device)
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    rows.append(("device", True, detail + "  (auto: CUDA, then MPS, then CPU)"))
    rows += speed_rows(device)
    for name, spec in DATASETS.items():
        try:
            where = spec.locate()
        except Exception as e:  # noqa: BLE001 - a doctor reports, it does not crash
            where, spec_fix = None, f"{e}; {spec.how_to_get}"
        else:
            spec_fix = spec.how_to_get
        rows.append((f"data: {name}", where is not None,
                     f"found in {where}" if where else f"missing. {spec_fix}"))
    env = os.environ.get("DLCAMP_DATA")
    rows.append(("data folders", True, f"DLCAMP_DATA={env or '(unset)'}; cache {cache_dir()}; "
                 f"system {system_dir()}"))
    return rows


def report() -> tuple[str, bool]:
    rows = checks()
    width = max(len(r[0]) for r in rows)
    lines = [f"{'ok ' if ok else 'NO '} {what:<{width}}  {detail}" for what, ok, detail in rows]
    return "\n".join(lines), all(ok for _, ok, _ in rows)
