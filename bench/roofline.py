"""Roofline of this machine: matmul peak, memory bandwidth, and where LeNet and the cnn sit.

    python bench/roofline.py              # n=2048 matmul, 256 MB triad, batch 256; writes docs
    python bench/roofline.py --quick      # small sizes, a few seconds (prints only)

The measurements are dlcamp.course.performance's (the same as `dlcamp bench roofline`):
the best fp32 matmul rate (bf16 too where the CPU runs it natively), a STREAM-style triad over
arrays far larger than the caches, and one fp32 training step (forward + backward) of each
model on 28 x 28 images: its FLOPs from FlopCounterMode, the bytes its ops read and write, and
its measured GFLOP/s against what the roof allows at its arithmetic intensity. A full run
replaces the section "roofline" of docs/benchmarks.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import parser, replace_section, report, setup
from dlcamp.course.performance import format_summary, roofline_summary
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parent.parent
SECTION = "roofline"

NOTES = (
    "A training step's bytes are what its ops read and write, each op counted as one pass "
    "over memory (ByteCounter in dlcamp/course/performance.py): eager PyTorch runs one kernel "
    "per op, but tensors that fit in the caches (LeNet's, mostly) never reach main memory, so "
    "the intensity shown is a lower bound (the true one, and the roof above it, may be "
    "higher). FLOPs count "
    "convolutions and matrix products only. A model far below the roof is limited by neither "
    "roof but by per-op overhead and small kernels (LeNet has 1 to 16 channels).")


def main() -> None:
    args = parser(__doc__).parse_args()
    setup(args)
    start = time.perf_counter()
    summary = roofline_summary(args.quick)
    took = time.perf_counter() - start
    text = format_summary(summary)
    report(args, "roofline", summary, text, {"seconds": took})
    if args.quick:
        return
    body = "\n".join([
        "```", "python bench/roofline.py", "```", "",
        "Measured with `dlcamp bench roofline` (the same code); the whole run took "
        f"{took:.0f} s on {time.strftime('%Y-%m-%d')}.", "", text, "", NOTES, "",
        "Machine:", "", describe_markdown(describe())])
    md = ROOT / "docs" / "benchmarks.md"
    replace_section(md, SECTION, "### Roofline of this machine\n\n" + body)
    print(f"\nwrote {md}")


if __name__ == "__main__":
    main()
