"""What machine a benchmark ran on, how fast its matrix multiply can go, and the CPU kinds.

    python bench/machine.py              # the description, fp32/bf16 matmul peaks, both kinds
    python bench/machine.py --quick      # smaller matrices, a fraction of a second each

`describe()` goes into every results file; the matmul peak
(`dlcamp.course.performance.matmul_gflops`) is the yardstick of bench/flops.py and
bench/roofline.py.

Two CPU kinds are measured on one machine (issue 12): `native`, and `avx2`, an emulated
AVX2-only laptop: PyTorch's own kernels dispatch at AVX2 (ATEN_CPU_CAPABILITY=avx2) and oneDNN,
which runs convolutions and matmuls, is capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), so no
AVX-512 and no native bf16 reach the benchmark. `probe_kind()` checks that the cap really
holds (oneDNN's own report of its ISA, PyTorch's dispatch level, bf16 vs fp32 matmul speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import torch

from dlcamp.course.performance import matmul_gflops
from dlcamp.train.speed import SPEED_FLAGS, cpu_info

KINDS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
KIND_TITLES = {"native": "this CPU (native)", "avx2": "emulated AVX2-only laptop"}


def kind_env(kind: str) -> dict[str, str]:
    """The environment of a benchmark process of this CPU kind."""
    if kind not in KINDS:
        raise SystemExit(f"unknown CPU kind {kind!r}; choose {', '.join(KINDS)}")
    # torch.compile's kernel cache must not be shared between the kinds (wrong numbers in
    # torch 2.14.1): without TORCHINDUCTOR_CACHE_DIR the Trainer keeps one per capability
    # (dlcamp.train.speed.compile_cache_dir)
    drop = {*KINDS["avx2"], "TORCHINDUCTOR_CACHE_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **KINDS[kind]}


def current_kind() -> str:
    """The kind this process runs as (from its environment)."""
    return "avx2" if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2" else "native"


def describe() -> dict:
    """CPU, cores, versions and thread settings: enough to tell two result files apart."""
    model, flags = cpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    import dlcamp

    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu_flags": {flag: flag in flags for flag in SPEED_FLAGS},
        "kind": current_kind(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "dlcamp": dlcamp.__version__,
        "os": platform.platform(),
    }


def describe_markdown(info: dict) -> str:
    """The description as a short Markdown list."""
    flags = ", ".join(f for f, present in info["cpu_flags"].items() if present) or "none"
    return "\n".join([
        f"- CPU: {info['cpu']} ({info['logical_cores']} logical cores, "
        f"{info['usable_cores']} usable; flags: {flags}; torch dispatch: "
        f"{info['torch_cpu_capability']})",
        f"- GPU: {info['cuda'] or 'none (CPU only)'}",
        f"- torch {info['torch']} with {info['torch_threads']} threads "
        f"(OMP_NUM_THREADS={info['OMP_NUM_THREADS'] or 'unset'}), Python {info['python']}, "
        f"dlcamp {info['dlcamp']}",
        f"- OS: {info['os']}",
    ])


_PROBE = """
import json, torch
from dlcamp.models import create_model
from dlcamp.train.speed import plan_speed
torch.nn.functional.conv2d(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3))
plan = plan_speed(torch.device("cpu"), create_model("cnn"), threads="1")
print("PROBE" + json.dumps({"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "auto_precision": plan.precision.value,
                            "auto_reason": plan.precision.reason}))
"""


def probe_kind(kind: str, n: int = 1024, seconds: float = 0.5) -> dict:
    """Run a small probe as CPU kind `kind`: the ISA oneDNN reports it uses (ONEDNN_VERBOSE),
    PyTorch's dispatch level, dlcamp's automatic precision, and fp32/bf16 matmul GFLOP/s.

    Raises SystemExit when the emulated AVX2 kind still sees AVX-512 (the emulation failed).
    """
    env = {**kind_env(kind), "ONEDNN_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout
    isa = next((line.split("isa:", 1)[1].strip() for line in out.splitlines()
                if ",info,cpu,isa:" in line), "unknown")
    info = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("PROBE")))
    peaks = subprocess.run(
        [sys.executable, __file__, "--peaks-json", "--n", str(n), "--seconds", str(seconds)],
        env=kind_env(kind), capture_output=True, text=True, check=True).stdout
    result = {"kind": kind, "env": KINDS[kind], "onednn_isa": isa, **info,
              **json.loads(peaks.strip().splitlines()[-1])}
    if kind == "avx2" and (result["torch_cpu_capability"] != "AVX2" or "512" in isa
                           or "AMX" in isa):
        raise SystemExit(f"the AVX2 emulation did not take: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 matrices, 0.2 s each")
    parser.add_argument("--n", type=int, default=2048, help="matrix side (default 2048)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per dtype")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before measuring")
    parser.add_argument("--peaks-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, seconds = (512, 0.2) if args.quick else (args.n, args.seconds)
    peaks = {f"{str(d).removeprefix('torch.')}_gflops": matmul_gflops(n, d, seconds)
             for d in (torch.float32, torch.bfloat16)}
    if args.peaks_json:
        print(json.dumps(peaks))
        return
    print(describe_markdown(describe()))
    for key, value in peaks.items():
        print(f"- matmul peak {key.split('_')[0]}: {value:,.1f} GFLOP/s (n<={n})")
    for kind in KINDS:
        print(f"- {kind}: {probe_kind(kind, 512 if args.quick else 1024)}")


if __name__ == "__main__":
    main()
