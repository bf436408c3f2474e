"""The roofline of this machine's CPU: how fast it computes, how fast it moves bytes, and
where a model's training step sits between the two.

    roof = measure_roofline(quick=True)          # Roofline(peak_gflops, bandwidth_gbps)
    roof.ridge                                   # FLOP/byte where the two limits meet
    roof.attainable(0.5)                         # GFLOP/s a kernel of 0.5 FLOP/byte can reach
    point = model_point(create_model("lenet"), (1, 28, 28), batch=256)
    plot_roofline(roof, {"lenet": point}, "roofline.png")

The roofline model (Williams, Waterman and Patterson, "Roofline: an insightful visual
performance model for multicore architectures", CACM 52(4), 2009): a kernel that does F FLOPs
while moving B bytes between the processor and main memory has arithmetic intensity I = F / B
(FLOP/byte) and cannot run faster than min(peak FLOP/s, bandwidth x I). Left of the ridge
point (peak / bandwidth) memory limits it; right of it, arithmetic does.

Both limits are measured here, not taken from a data sheet: the peak is the best rate of a
large square fp32 matmul (the fastest thing a CPU does), the bandwidth that of a STREAM-style
triad over arrays much larger than the caches (McCalpin, "STREAM: sustainable memory bandwidth
in high performance computers", 1995). Everything here runs on the CPU; GPUs have their own
roofs (lesson 6.09 explains them).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.benchmark import Timer

from dlcamp.course.compare import training_flops
from dlcamp.models import create_model
from dlcamp.train.speed import cpu_bf16


# -- the two limits ---------------------------------------------------------------------------
def best_seconds(fn: Callable[[], Any], seconds: float = 0.5) -> float:
    """The fastest time of one call of `fn` in seconds, timed by torch.utils.benchmark.Timer
    over about `seconds` (the best block of calls: the least disturbed by other work).

    Timer runs with all of torch's threads here (its own default is one thread).
    """
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return min(timer.blocked_autorange(min_run_time=seconds).times)


def matmul_gflops(n: int = 2048, dtype: torch.dtype = torch.float32,
                  seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of an n x n @ n x n torch.matmul on the CPU (best call of many).

    A square matmul is the fastest thing the CPU does, so its rate is the practical peak that
    a model's FLOP rate is compared with (2 n^3 FLOPs per call: one multiply and one add).
    Where the dtype is emulated (bf16 without AVX512_BF16: under 1 GFLOP/s), n is lowered so
    that one call takes at most about a second.
    """
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(256, 256, generator=gen).to(dtype)
    torch.matmul(small, small)  # the first call starts the thread pool: not a rate
    start = time.perf_counter()
    torch.matmul(small, small)
    rate = 2 * 256**3 / max(time.perf_counter() - start, 1e-9)  # FLOP/s, a first guess
    n = min(n, max(256, int((rate / 2) ** (1 / 3))))  # at most ~1 s per call
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


def memory_gbps(mbytes: float = 256, seconds: float = 1.0, kernel: str = "triad") -> float:
    """Main-memory bandwidth in GB/s (1e9 bytes/s) of a STREAM-style kernel on fp32 arrays of
    `mbytes` MB (1e6 bytes) each: "copy" c = a (reads 1 array, writes 1) or "triad"
    c = a + 3 b (reads 2, writes 1). Bytes counted are those read plus those written, as STREAM
    counts them (the extra read a write-allocate cache makes is not counted).

    Arrays should be several times the last-level cache, or the cache is measured instead.
    Raises ValueError for an unknown kernel or a size under 1 MB.
    """
    if kernel not in ("copy", "triad"):
        raise ValueError(f"kernel must be 'copy' or 'triad', not {kernel!r}")
    if mbytes < 1:
        raise ValueError(f"mbytes must be at least 1, not {mbytes}")
    n = int(mbytes * 1e6) // 4
    a, b, c = torch.rand(n), torch.rand(n), torch.empty(n)
    if kernel == "copy":
        fn, arrays = (lambda: c.copy_(a)), 2
    else:
        fn, arrays = (lambda: torch.add(a, b, alpha=3.0, out=c)), 3
    return arrays * 4 * n / best_seconds(fn, seconds) / 1e9


@dataclass(frozen=True)
class Roofline:
    """A machine's two limits: `peak_gflops` (GFLOP/s) and `bandwidth_gbps` (GB/s).

    Raises ValueError when either is not a positive finite number.
    """

    peak_gflops: float
    bandwidth_gbps: float
    label: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("peak_gflops", "bandwidth_gbps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, not {value}")

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOP/byte) where memory stops limiting: peak / bandwidth."""
        return self.peak_gflops / self.bandwidth_gbps

    def attainable(self, intensity: float) -> float:
        """The highest GFLOP/s of a kernel of `intensity` FLOP/byte: min(peak, bandwidth x I).

        Raises ValueError for a negative intensity.
        """
        if intensity < 0:
            raise ValueError(f"intensity must be >= 0 FLOP/byte, not {intensity}")
        return min(self.peak_gflops, self.bandwidth_gbps * intensity)


def measure_roofline(quick: bool = False, dtype: torch.dtype = torch.float32) -> Roofline:
    """Measure this CPU's roofline: matmul peak (n=2048, 1 s; quick: n=512, 0.2 s) and triad
    bandwidth (256 MB arrays, 1 s; quick: 64 MB, 0.2 s: still twice a 32 MB L3 cache).
    """
    n, mb, seconds = (512, 64, 0.2) if quick else (2048, 256, 1.0)
    return Roofline(matmul_gflops(n, dtype, seconds), memory_gbps(mb, seconds),
                    label=str(dtype).removeprefix("torch."))


# -- where a model sits ---------------------------------------------------------------------
class ByteCounter(TorchDispatchMode):
    """Counts the bytes every tensor operation reads and writes (its tensor inputs plus its
    outputs) while active. Views (reshape, transpose, detach, ...) move nothing and are
    skipped; a tensor counts at most its storage (an expanded scalar is 4 bytes).

    Each eager PyTorch op is a separate pass over memory, so this is the traffic when nothing
    stays in the caches between ops: an upper bound where tensors are small.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0]
                       if isinstance(t, torch.Tensor)]
            self.bytes += sum(min(t.numel() * t.element_size(), t.untyped_storage().nbytes())
                              for t in tensors)
        return out


def model_point(model: nn.Module, input_shape: Sequence[int], batch: int = 256,
                seconds: float = 0.5) -> dict[str, float]:
    """Where one training step (forward + backward, fp32, CPU) of `model` on a batch of
    `batch` x `input_shape` (C, H, W) sits on the roofline.

    Returns {"flops": FLOPs of the step (dlcamp.course.compare.training_flops, i.e.
    FlopCounterMode: convolutions and matmuls), "bytes": bytes its ops read and write
    (ByteCounter), "intensity": flops / bytes (FLOP/byte), "seconds": best time of a step,
    "gflops_measured": flops / seconds / 1e9}. Runs on a copy: `model` is left untouched.
    """
    model = copy.deepcopy(model).cpu().train()
    flops = training_flops(model, input_shape, batch)["train_flops"] * batch
    x = torch.randn(batch, *input_shape)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().sum().backward()

    step()  # warm-up: lazy modules, oneDNN kernel choice
    with ByteCounter() as counter:
        step()
    elapsed = best_seconds(step, seconds)
    return {"flops": float(flops), "bytes": float(counter.bytes),
            "intensity": flops / counter.bytes, "seconds": elapsed,
            "gflops_measured": flops / elapsed / 1e9}


def plot_roofline(roofline: Roofline, points: Mapping[str, Mapping[str, float]],
                  path: str | Path | None = None, title: str = "",
                  fig: Figure | None = None) -> Figure:
    """Draw the roof (log-log: GFLOP/s against FLOP/byte) and each named point at its
    ("intensity", "gflops_measured"), with a dotted line up to what the roof allows there.

    Saves a PNG to `path` when given (a bare Figure draws with Agg: no display needed) and
    returns the Figure; pass `fig=plt.figure()` in a lesson to have pyplot show it.
    """
    intensities = [p["intensity"] for p in points.values()] + [roofline.ridge]
    low, high = min(intensities) / 4, max(intensities) * 4
    xs = [low * (high / low) ** (i / 199) for i in range(200)]
    fig = fig if fig is not None else Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot()
    ax.loglog(xs, [roofline.attainable(x) for x in xs], color="black",
              label=f"roof ({roofline.label}): {roofline.peak_gflops:,.0f} GFLOP/s, "
              f"{roofline.bandwidth_gbps:,.1f} GB/s")
    ax.axvline(roofline.ridge, color="grey", linestyle="--", linewidth=0.8,
               label=f"ridge {roofline.ridge:.1f} FLOP/byte")
    for name, p in points.items():
        (line,) = ax.loglog([p["intensity"]], [p["gflops_measured"]], "o",
                            label=f"{name}: {p['gflops_measured']:,.1f} GFLOP/s")
        ax.plot([p["intensity"]] * 2, [p["gflops_measured"], roofline.attainable(p["intensity"])],
                ":", color=line.get_color())
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title or "Roofline of this CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig


# -- the summary that `dlcamp bench roofline` and bench/roofline.py print -------------------
SUMMARY_MODELS = ("lenet", "cnn")


def roofline_summary(quick: bool = False, models: Sequence[str] = SUMMARY_MODELS
                     ) -> dict[str, Any]:
    """This CPU's fp32 roofline, its bf16 matmul peak where bf16 is native
    (dlcamp.train.speed.cpu_bf16; else None), and a training step of each registered model
    on 1 x 28 x 28 images (batch 256; quick: 64) placed on the fp32 roof.
    """
    roof = measure_roofline(quick)
    native_bf16, why = cpu_bf16()
    bf16 = matmul_gflops(512 if quick else 2048, torch.bfloat16, 0.2 if quick else 1.0) \
        if native_bf16 else None
    batch, seconds = (64, 0.1) if quick else (256, 1.0)
    rows = []
    for name in models:
        torch.manual_seed(0)
        point = model_point(create_model(name), (1, 28, 28), batch, seconds)
        attainable = roof.attainable(point["intensity"])
        rows.append({"model": name, "batch": batch, **point, "attainable_gflops": attainable,
                     "of_attainable": point["gflops_measured"] / attainable,
                     "bound": "memory" if point["intensity"] < roof.ridge else "compute"})
    return {"peak_gflops_fp32": roof.peak_gflops, "peak_gflops_bf16": bf16,
            "bf16_note": why, "bandwidth_gbps": roof.bandwidth_gbps, "ridge": roof.ridge,
            "threads": torch.get_num_threads(), "quick": quick, "models": rows}


def format_summary(summary: Mapping[str, Any]) -> str:
    """`roofline_summary` as a few lines of text and a Markdown table."""
    bf16 = summary["peak_gflops_bf16"]
    lines = [f"- matmul peak fp32: {summary['peak_gflops_fp32']:,.1f} GFLOP/s",
             f"- matmul peak bf16: {bf16:,.1f} GFLOP/s" if bf16 is not None
             else f"- bf16: not measured ({summary['bf16_note']})",
             f"- memory bandwidth (triad): {summary['bandwidth_gbps']:,.1f} GB/s",
             f"- ridge point: {summary['ridge']:.1f} FLOP/byte "
             f"({summary['threads']} torch threads)", "",
             "| model (train step) | batch | GFLOP | MB moved | FLOP/byte | bound | "
             "attainable GFLOP/s | measured GFLOP/s | of attainable |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in summary["models"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['flops'] / 1e9:.3f} | "
                     f"{r['bytes'] / 1e6:,.1f} | {r['intensity']:.2f} | {r['bound']} | "
                     f"{r['attainable_gflops']:,.1f} | {r['gflops_measured']:,.1f} | "
                     f"{r['of_attainable']:.0%} |")
    return "\n".join(lines)
