"""Where a LeNet training step spends its time, and what other ways of computing it cost.

    python bench/lenet_step.py            # 5 interleaved rounds of 40 steps per variant
    python bench/lenet_step.py --quick    # smoke run
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/lenet_step.py

The book's LeNet (sigmoid, average pooling), batch 256, SGD lr 0.9, one fixed batch of
random images (no loader): every variant computes the same function with the same
parameters; only the kernels differ. "as shipped" is what dlcamp's Trainer runs on a CPU
(channels-last, pooling as a depthwise convolution, dlcamp.models.blocks.AvgPool2d).
Then a profile of the shipped step: self time per operator and input shape.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common import markdown_table, parser, report, setup
from dlcamp.models import create_model
from dlcamp.train.speed import keep_freed_memory, num_threads

BATCH = 256


class PlainPool(nn.Module):
    """ATen's average pooling (what nn.AvgPool2d runs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)


class ReshapePool(nn.Module):
    """2x2 average pooling as a reshape of the channels-last tensor and a mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        blocks = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c)
        return blocks.mean((2, 4)).permute(0, 3, 1, 2)  # (B, C, H/2, W/2), channels-last


class UnfoldConv(nn.Module):
    """A 5x5 convolution with padding 2 as im2col (F.unfold) + one matmul, NHWC output."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        out_c, k = self.weight.shape[0], self.weight[0].numel()
        cols = F.unfold(x, 5, padding=2).transpose(1, 2).reshape(-1, k)  # (B*H*W, C*25)
        out = torch.addmm(self.bias, cols, self.weight.view(out_c, k).t())  # (B*H*W, out_c)
        return out.view(b, h, w, out_c).permute(0, 3, 1, 2)


VARIANTS: dict[str, tuple[bool, int, dict[int, Callable[[nn.Module], nn.Module]]]] = {
    # name: (channels-last, threads, {layer index: replacement})
    "as shipped (NHWC, depthwise-conv pooling)": (True, 2, {}),
    "NHWC, F.avg_pool2d": (True, 2, {2: lambda m: PlainPool(), 5: lambda m: PlainPool()}),
    "NCHW, depthwise-conv pooling": (False, 2, {}),
    "NCHW, F.avg_pool2d": (False, 2, {2: lambda m: PlainPool(), 5: lambda m: PlainPool()}),
    "as shipped, 1 thread": (True, 1, {}),
    "NHWC, pooling as reshape + mean": (True, 2, {2: lambda m: ReshapePool(),
                                                  5: lambda m: ReshapePool()}),
    "NHWC, first conv as unfold + matmul": (True, 2, {0: UnfoldConv}),
}


def make_step(channels_last: bool, swaps: dict, x: torch.Tensor, y: torch.Tensor):
    torch.manual_seed(0)
    net = create_model("lenet")
    for index, swap in swaps.items():
        net[index] = swap(net[index])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.9, fused=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def profile_rows(step: Callable[[], None], steps: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return [{"op": e.key, "shapes": str([s for s in e.input_shapes if s][:3]),
             "ms": e.self_cpu_time_total / steps / 1000,
             "share": 100 * e.self_cpu_time_total / total} for e in top]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=40, help="steps per variant and round")
    args = p.parse_args()
    setup(args)
    rounds, steps = (1, 3) if args.quick else (args.rounds, args.steps)
    keep_freed_memory()  # as the Trainer does
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    variants = {name: (make_step(nhwc, swaps, x, y), threads)
                for name, (nhwc, threads, swaps) in VARIANTS.items()}
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for step, threads in variants.values():  # warm-up: kernel selection, allocator
        with num_threads(threads):
            for _ in range(max(2, steps // 4)):
                step()
    for _ in range(rounds):
        for name, (step, threads) in variants.items():
            with num_threads(threads):
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                ms[name].append((time.perf_counter() - start) / steps * 1000)
    shipped = statistics.median(ms[next(iter(ms))])
    results = [{"variant": name, "ms": statistics.median(v), "ex_s": BATCH * 1000 /
                statistics.median(v), "vs": shipped / statistics.median(v)}
               for name, v in ms.items()]
    with num_threads(2):
        profile = profile_rows(variants[next(iter(variants))][0], max(steps // 2, 2))
    markdown = markdown_table(results, [
        ("variant", "variant", ""), ("ms/step (median)", "ms", ".2f"),
        ("examples/s", "ex_s", ",.0f"), ("speed vs shipped", "vs", ".2f")])
    markdown += "\n\nProfile of the shipped step (self CPU time per operator and input shape):\n\n"
    markdown += markdown_table(profile, [("operator", "op", ""), ("input shapes", "shapes", ""),
                                         ("ms/step", "ms", ".2f"), ("% of step", "share", ".1f")])
    report(args, "lenet_step", {"variants": results, "profile": profile}, markdown)


if __name__ == "__main__":
    main()
