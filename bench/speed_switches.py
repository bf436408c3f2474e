"""Speed switches per model: does channels-last (NHWC) pay, and does bf16, on this CPU kind?

    python bench/speed_switches.py                 # every registered image CNN, fp32 layouts
    python bench/speed_switches.py --bf16          # + a bf16 NHWC row for lenet and cnn
    python bench/speed_switches.py --quick         # two models, a few steps (smoke run)

For each model: one training step (forward, backward, SGD) on a Fashion-MNIST-sized batch of
random images at the recipe's batch size, in NCHW and in NHWC, interleaved, `--repeats`
times `--steps` steps after a warm-up; the median milliseconds per step are reported. This is
the evidence behind `dlcamp.train.speed.choose_channels_last` ("auto": on for conv nets on x86
CPUs) and behind choosing bf16 only where it is native.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from common import markdown_table, parser, report, setup
from dlcamp.models import create_model, model_recipe
from dlcamp.train.speed import keep_freed_memory

MODELS = ["lenet", "lenet-bn", "lenet-modern", "cnn", "nin", "alexnet", "vgg", "googlenet",
          "resnet18", "densenet"]


def step_ms(name: str, channels_last: bool, bf16: bool, steps: int, warmup: int) -> float:
    """Median milliseconds of one training step of `name` in the given layout and precision."""
    recipe = model_recipe(name)
    batch = recipe.get("batch_size", 256)
    torch.manual_seed(0)
    model = create_model(name, **recipe.get("model_kwargs", {}))
    x = torch.randn(batch, 1, 28, 28)  # (B, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row and repeat (5)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps (2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (3)")
    p.add_argument("--bf16", action="store_true", help="also time bf16 NHWC for lenet and cnn")
    args = p.parse_args()
    setup(args)
    keep_freed_memory()  # as dlcamp's Trainer does: no page faults per step
    models = ["lenet", "cnn"] if args.quick else args.models.split(",")
    steps, repeats = (1, 1) if args.quick else (args.steps, args.repeats)
    variants = [("fp32", False, False), ("fp32", True, False)]
    results = []
    for name in models:
        rows = variants + ([("bf16", True, True)] if args.bf16 and name in ("lenet", "cnn")
                           else [])
        timings: dict[tuple, list[float]] = {v: [] for v in rows}
        for _ in range(repeats):  # interleaved: a slow spell hits every variant alike
            for v in rows:
                timings[v].append(step_ms(name, v[1], v[2], steps, args.warmup))
        ms = {v: statistics.median(t) for v, t in timings.items()}
        row = {"model": name, "batch": model_recipe(name).get("batch_size", 256),
               "nchw_ms": ms[variants[0]], "nhwc_ms": ms[variants[1]]}
        row["nhwc_speedup"] = row["nchw_ms"] / row["nhwc_ms"]
        if ("bf16", True, True) in ms:
            row["bf16_nhwc_ms"] = ms[("bf16", True, True)]
            row["bf16_vs_fp32"] = row["nhwc_ms"] / row["bf16_nhwc_ms"]
        results.append(row)
        print(f"{name:<13} NCHW {row['nchw_ms']:8.1f} ms  NHWC {row['nhwc_ms']:8.1f} ms  "
              f"x{row['nhwc_speedup']:.2f}", flush=True)
    columns = [("model", "model", ""), ("batch", "batch", "d"),
               ("fp32 NCHW ms/step", "nchw_ms", ".1f"), ("fp32 NHWC ms/step", "nhwc_ms", ".1f"),
               ("NHWC speed-up", "nhwc_speedup", ".2f")]
    if args.bf16:
        columns += [("bf16 NHWC ms/step", "bf16_nhwc_ms", ".1f"),
                    ("bf16 speed-up over fp32 NHWC", "bf16_vs_fp32", ".2f")]
    markdown = markdown_table(results, columns)
    headline = {r["model"]: r["nhwc_speedup"] for r in results}
    report(args, "speed_switches", results, markdown, {"headline": headline})


if __name__ == "__main__":
    main()
