"""`dlcamp bench ...`: measure this machine the way Part 6 of the course does.

    dlcamp bench roofline [--quick] [--json]   # peak GFLOP/s, memory GB/s, ridge, LeNet + cnn
    dlcamp bench compile  [--quick] [--json]   # torch.compile vs eager: mlp, cnn, lstm

`roofline` measures the CPU's fp32 matmul peak (bf16 too where the CPU runs it natively),
its STREAM-style triad bandwidth, and where one training step of LeNet and of the default
cnn sits on that roofline (dlcamp.course.performance). `compile` times eager and compiled
forward passes, compile time apart (dlcamp.course.compiling). --quick: small sizes, seconds
(DLCAMP_QUICK=1 does the same); the full run takes a minute or more.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dlcamp.core.utils import is_quick


def _roofline(quick: bool, as_json: bool) -> int:
    from dlcamp.course.performance import format_summary, roofline_summary

    summary = roofline_summary(quick)
    print(json.dumps(summary, indent=2) if as_json else format_summary(summary))
    return 0


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec) if spec else str(value)


def compile_table(rows: list[dict[str, Any]]) -> str:
    """The rows of dlcamp.course.compiling.compile_rows as a Markdown table (a key a row
    lacks shows as –)."""
    columns = [("model", "model", ""), ("step", "step", ""), ("backend", "backend", ""),
               ("batch", "batch", ""), ("eager ms", "eager_ms", ".2f"),
               ("compiled ms", "compiled_ms", ".2f"), ("speed-up", "speedup", ".2f"),
               ("compile s", "compile_s", ".1f"), ("max abs diff", "max_abs_diff", ".1e"),
               ("graph breaks", "graph_breaks", "")]
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "".join("---:|" if f else "---|" for _, _, f in columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), f) for _, k, f in columns) + " |")
    return "\n".join(lines)


def _compile(quick: bool, as_json: bool) -> int:
    from dlcamp.course.compiling import compile_rows

    rows = compile_rows(quick)
    print(json.dumps(rows, indent=2, default=str) if as_json else compile_table(rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    quick = args.quick or is_quick()
    if args.what == "roofline":
        return _roofline(quick, args.json)
    return _compile(quick, args.json)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `dlcamp bench` to the top-level subcommands."""
    b = sub.add_parser("bench", help="measure this machine: roofline (peak GFLOP/s, memory "
                       "GB/s, where LeNet and the cnn sit) | compile (torch.compile speed-ups)")
    b.add_argument("what", choices=["roofline", "compile"],
                   help="roofline: this CPU's compute and memory limits; compile: "
                   "torch.compile vs eager for mlp, cnn, lstm")
    b.add_argument("--quick", action="store_true",
                   help="small sizes, a few seconds (also DLCAMP_QUICK=1)")
    b.add_argument("--json", action="store_true", help="print the measurements as JSON")
    b.set_defaults(func=_run)
