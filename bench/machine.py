"""What machine a benchmark ran on, and how fast its matrix multiply can go.

    python bench/machine.py            # print the description and the fp32/bf16 matmul peaks
    python bench/machine.py --quick    # smaller matrices, a fraction of a second each

`describe()` goes into every results file; `matmul_peak()` is the yardstick of bench/flops.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                if model and flags and key == "":  # end of the first processor's block
                    break
    except OSError:
        pass
    return model, flags


def describe() -> dict:
    """CPU, cores, versions and thread settings: enough to tell two result files apart."""
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    import dlcamp

    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
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


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0) -> float:
    """Achieved GFLOP/s of an n x n @ n x n torch.matmul on the CPU (best call of many).

    A square matmul is the fastest thing the CPU does, so its rate is the practical peak that
    a model's FLOP rate is compared with (2 n^3 FLOPs per call: one multiply and one add).
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(2):  # warm-up: thread pool start, oneDNN/BLAS kernel selection
        torch.matmul(a, b, out=out)
    best, deadline = float("inf"), time.perf_counter() + seconds
    calls = 0
    while calls < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
        calls += 1
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 matrices, 0.2 s each")
    parser.add_argument("--n", type=int, default=2048, help="matrix side (default 2048)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per dtype")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before measuring")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, seconds = (512, 0.2) if args.quick else (args.n, args.seconds)
    print(describe_markdown(describe()))
    for dtype in (torch.float32, torch.bfloat16):
        print(f"- matmul peak {str(dtype).removeprefix('torch.')}: "
              f"{matmul_peak(dtype, n, seconds):,.1f} GFLOP/s (n={n})")


if __name__ == "__main__":
    main()
