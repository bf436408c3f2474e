"""`dlcamp doctor`: what this machine has, and how to get what is missing."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

from dlcamp.data.datasets import DATASETS
from dlcamp.data.files import cache_dir, system_dir
from dlcamp.utils import pick_device, versions


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def checks() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) rows; `ok` False means something the user should fix or know."""
    rows: list[tuple[str, bool, str]] = []
    v = versions()
    rows.append(("python", sys.version_info >= (3, 11), f"{v['python']} ({sys.executable})"))
    rows.append(("torch", True, f"{v['torch']}, numpy {v['numpy']}, dlcamp {v['dlcamp']}"))
    rows.append(("cpu", True, f"{platform.machine()}, {os.cpu_count()} logical cores, "
                 f"torch uses {torch.get_num_threads()} threads"))
    flags = cpu_flags()
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    rows.append(("bf16 on CPU", True, "fast (AVX-512 BF16/AMX): use --bf16" if bf16
                 else "no native bf16 instructions: leave --bf16 off on the CPU"))
    device = pick_device()
    detail = str(device)
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    rows.append(("device", True, detail + "  (auto: CUDA, then MPS, then CPU)"))
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
