"""torch.compile on this CPU: eager vs Inductor for the mlp, cnn and lstm, compile time apart.

    python bench/compile.py                   # both CPU kinds; writes docs/benchmarks.md
    python bench/compile.py --kinds native    # one kind
    python bench/compile.py --quick           # smoke run (current kind only); docs untouched

For each model (dlcamp.course.compiling.compile_rows: the registered mlp and cnn on 28x28
images, the lstm language model on 35 tokens, batch 64) the forward pass (eval mode,
no_grad) and one training step (forward, cross-entropy, backward, SGD), and the lstm's forward
once more with torch._dynamo.config.allow_rnn, run eager and compiled, side by side in one
process:
torch.utils.benchmark.Timer blocks of 20 calls, eager and compiled blocks alternating, 5
rounds, the median block kept; the speed-up is eager ms / compiled ms. Compile time is the
first compiled call, made into an empty Inductor cache folder (a cold compile, as on a
machine that never compiled the model); Inductor's once-per-process start-up is measured
before the first model and reported apart. Threads are fixed (--threads, default PyTorch's
own: one per core). Each CPU kind (bench/machine.py) runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import markdown_table, parser, replace_section, report
from dlcamp.course.compiling import compile_rows, inductor_startup
from machine import KIND_TITLES, KINDS, current_kind, describe, describe_markdown, kind_env

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [("model", "model", ""), ("step", "step", ""), ("backend", "backend", ""),
           ("eager ms", "eager_ms", ".3f"), ("compiled ms", "compiled_ms", ".3f"),
           ("speed-up", "speedup", ".2f"), ("compile s (cold)", "compile_s", ".1f"),
           ("graph breaks", "graph_breaks", "d"), ("max abs diff", "max_abs_diff", ".1e")]


def measure(quick: bool, threads: int) -> dict:
    """This process's rows: threads fixed, Inductor start-up first, then compile_rows."""
    torch.set_num_threads(threads)
    startup = inductor_startup(fresh_cache=not quick)
    start = time.perf_counter()
    rows = compile_rows(quick, fresh_cache=not quick)
    return {"kind": current_kind(), "threads": threads, "startup_s": startup,
            "seconds": time.perf_counter() - start, "machine": describe(), "rows": rows}


def run_kind(kind: str, quick: bool, threads: int) -> dict:
    """measure() in a fresh process of CPU kind `kind` (its environment from bench/machine.py)."""
    with tempfile.TemporaryDirectory(prefix="dlcamp-compile-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, __file__, "--worker", str(out), "--threads", str(threads)]
        subprocess.run(command + (["--quick"] if quick else []), env=kind_env(kind), check=True)
        return json.loads(out.read_text())


def kind_text(result: dict) -> str:
    table = markdown_table(result["rows"], COLUMNS)
    return (f"#### {KIND_TITLES[result['kind']]}\n\n{table}\n\nInductor start-up (once per "
            f"process, before the first model): {result['startup_s']:.1f} s; all rows "
            f"{result['seconds'] / 60:.1f} min.\n\nMachine:\n\n"
            f"{describe_markdown(result['machine'])}\n")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: native, avx2")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one kind's process
    args = p.parse_args()
    threads = args.threads or torch.get_num_threads()
    if args.worker:
        args.worker.write_text(json.dumps(measure(args.quick, threads), default=str))
        return
    kinds = [current_kind()] if args.quick else args.kinds.split(",")
    results = []
    for kind in kinds:
        print(f"== {KIND_TITLES[kind]}", flush=True)
        results.append(run_kind(kind, args.quick, threads))
    command = "python bench/compile.py" + (f" --kinds {args.kinds}" if args.kinds != ",".join(
        KINDS) else "") + (f" --threads {args.threads}" if args.threads else "")
    smoke = "**Quick smoke run: aot_eager rows, few calls; not for citing.**\n\n" \
        if args.quick else ""
    text = (f"### torch.compile on this CPU\n\n```\n{command}\n```\n\n{smoke}"
            "Eager PyTorch against `torch.compile` (Inductor: generated C++/OpenMP kernels) "
            "for dlcamp's registered mlp (784-256-10) and cnn (widths 16-32-64) on 28×28 "
            "images and the lstm language model (vocabulary 1,000, 256 hidden, 35 steps), "
            f"batch {results[0]['rows'][0]['batch']}, {threads} threads, fp32. *forward*: "
            "eval mode under no_grad; *train*: "
            "forward, cross-entropy, backward and an SGD step (the model compiled, the "
            "optimizer eager). Timings: `torch.utils.benchmark.Timer` blocks of 20 calls, "
            "eager and compiled alternating, 5 rounds, median block; speed-up = eager ÷ "
            "compiled. Compile s: the first compiled call into an empty Inductor cache (cold); "
            "a second process finds the kernels in the cache and compiles in a fraction of "
            "that. max abs diff: largest difference from eager over the outputs (forward) or the "
            "loss and every gradient (train). `nn.LSTM` is a graph break unless "
            "`torch._dynamo.config.allow_rnn` is set (the `lstm (allow_rnn)` row: forward "
            "only, its backward unrolls the 35 steps and compiles for minutes). Measured "
            f"{time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(kind_text(r) for r in results))
    report(args, "compile", results, text)
    if not args.quick:
        replace_section(ROOT / "docs" / "benchmarks.md", "compile", text)


if __name__ == "__main__":
    main()
