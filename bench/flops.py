"""FLOP utilisation: how much of the CPU's matmul peak dlcamp's training actually uses.

    python bench/flops.py                  # one epoch per row, 2 s matmul peaks
    python bench/flops.py --quick          # a few batches, small matmuls (smoke run)

Training FLOPs per example are counted by torch.utils.flop_counter.FlopCounterMode over one
forward and one backward pass, by dlcamp.course.compare.training_flops (convolutions and matrix
products, a multiply-add = 2 FLOPs; element-wise work such as activations, pooling, batch norm
and the optimizer is not counted, so the rate is a lower bound of the work done). The backward
pass is about 2x the forward one (less for the first convolution, whose input needs no
gradient), so training is ~3x forward.
Examples/s come from dlcamp's loader + Trainer, as in bench/throughput.py. The fraction of
peak compares with the fp32 matmul peak for fp32 rows and the bf16 peak for bf16 rows.
"""

from __future__ import annotations

import dataclasses

import torch

from common import markdown_table, parser, report, setup, time_dlcamp
from dlcamp.course.compare import training_flops
from dlcamp.course.performance import matmul_gflops
from dlcamp.models import create_model
from dlcamp.train import TrainConfig, make_config


def rows_to_run() -> list[dict]:
    lenet = TrainConfig(epochs=1, lr=0.9, momentum=0.0, precision="fp32", channels_last="off")
    cnn = make_config("cnn")
    return [
        {"model": "lenet", "precision": "fp32 NCHW", "cfg": lenet},
        {"model": "lenet", "precision": "auto",
         "cfg": dataclasses.replace(lenet, precision="auto", channels_last="auto")},
        {"model": "cnn", "precision": "fp32", "augment": cnn.augment,
         "cfg": dataclasses.replace(cnn.train, precision="fp32")},
        {"model": "cnn", "precision": "bf16", "augment": cnn.augment,
         "cfg": dataclasses.replace(cnn.train, precision="bf16")},
    ]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batches", type=int, help="training batches per row (default: one epoch)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up batches per row")
    p.add_argument("--matmul-n", type=int, default=2048, help="matrix side of the peak matmul")
    p.add_argument("--matmul-seconds", type=float, default=2.0, help="seconds per peak dtype")
    args = p.parse_args()
    setup(args)
    if args.quick:
        args.batches, args.warmup, args.matmul_n, args.matmul_seconds = 4, 2, 512, 0.2

    peaks = {dtype: matmul_gflops(args.matmul_n, getattr(torch, dtype), args.matmul_seconds)
             for dtype in ("float32", "bfloat16")}
    print(f"matmul peak (n={args.matmul_n}): fp32 {peaks['float32']:,.1f} GFLOP/s, "
          f"bf16 {peaks['bfloat16']:,.1f} GFLOP/s", flush=True)
    counts = {name: training_flops(create_model(name), (1, 28, 28)) for name in ("lenet", "cnn")}

    results = []
    for row in rows_to_run():
        timing = time_dlcamp(row["model"], row["cfg"], 256, row.get("augment", "none"),
                             args.batches, args.warmup)
        flops = counts[row["model"]]
        gflops = flops["train_flops"] * timing["examples_per_s"] / 1e9
        peak = peaks["bfloat16" if timing["precision"] == "bf16" else "float32"]
        layout = "NHWC" if timing["channels_last"] else "NCHW"
        results.append({
            "model": row["model"], "precision": f"{row['precision']}: {timing['precision']} "
                                                  f"{layout}",
            "forward_mflop": flops["forward_flops"] / 1e6,
            "train_mflop": flops["train_flops"] / 1e6,
            "examples_per_s": timing["examples_per_s"], "gflops": gflops, "peak_gflops": peak,
            "percent_of_peak": 100 * gflops / peak, "timing": timing,
        })
        print(f"{row['model']:6} {row['precision']:22} {timing['examples_per_s']:10,.0f} ex/s "
              f"{gflops:8.1f} GFLOP/s", flush=True)

    markdown = markdown_table(results, [
        ("model", "model", ""), ("precision", "precision", ""),
        ("forward MFLOP/example", "forward_mflop", ".2f"),
        ("training MFLOP/example", "train_mflop", ".2f"),
        ("examples/s", "examples_per_s", ",.0f"), ("achieved GFLOP/s", "gflops", ".1f"),
        ("matmul peak GFLOP/s", "peak_gflops", ".1f"), ("% of peak", "percent_of_peak", ".1f")])
    markdown += (f"\n\nPeak: best square torch.matmul, n={args.matmul_n}, same dtype as the row "
                 f"(fp32 {peaks['float32']:,.1f}, bf16 {peaks['bfloat16']:,.1f} GFLOP/s).")
    report(args, "flops", results, markdown, {"matmul_peak_gflops": peaks})


if __name__ == "__main__":
    main()
