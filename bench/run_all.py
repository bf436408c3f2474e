"""Run every benchmark in turn and write docs/benchmarks.md (machine, tables, commands).

    python bench/run_all.py             # the full set (tens of minutes on a 2-core laptop)
    python bench/run_all.py --quick     # smoke run; writes to a temporary file, not docs/

Each benchmark runs in its own process (fresh thread pools and caches) and hands back its
results as JSON; the page shows each table with the command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]

# (script, arguments of the full run, arguments of the quick run, title, what it shows)
BENCHMARKS = [
    ("throughput.py", [], ["--quick"], "Training throughput",
     "The same classic LeNet (sigmoid, average pooling, batch 256, SGD lr 0.9) trained the "
     "way the *Dive into Deep Learning* book's `train_ch6` does it (torchvision dataset, "
     "`DataLoader` with 4 workers, a `float()` per batch) and with dlcamp's in-memory loader "
     "and Trainer: fp32, then dlcamp's LeNet recipe (bf16 autocast + channels-last), then the "
     "same with `torch.compile` (its compile time is in the warm-up column, not in the rate); "
     "then dlcamp's default `cnn` recipe in fp32 and in bf16 + channels-last. One epoch "
     "(60,000 examples) per row after a few warm-up batches, rows interleaved, 3 repeats, "
     "median; only training is timed, data loading included."),
    ("flops.py", [], ["--quick"], "FLOP utilisation",
     "Training FLOPs per example counted with `torch.utils.flop_counter.FlopCounterMode` "
     "(convolutions and matrix products only), times dlcamp's measured examples/s, against the "
     "best square `torch.matmul` rate of the same dtype on this CPU."),
    ("time_to_accuracy.py", ["--max-seconds", "300"], ["--quick", "--max-seconds", "3"],
     "Time to accuracy",
     "dlcamp's default recipe (`dlcamp train --model cnn`) on Fashion-MNIST: cumulative "
     "training seconds (evaluation excluded) and test accuracy after each epoch; then the "
     "same recipe given a 5-minute budget, with as many epochs as fit in it."),
]


def reproduce(script: str, extra: list[str]) -> str:
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " \
        if os.environ.get("OMP_NUM_THREADS") else ""
    return env + " ".join(["python", f"bench/{script}", *map(shlex.quote, extra)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run, output to a temp file")
    p.add_argument("--md", type=Path, help="Markdown page to write (default docs/benchmarks.md; "
                   "with --quick a temporary file)")
    p.add_argument("--out", type=Path, help="also write all results as one JSON file")
    p.add_argument("--threads", type=int, help="passed on to every benchmark")
    p.add_argument("--only", help="comma-separated script names to run, e.g. flops,throughput")
    args = p.parse_args()
    md = args.md or (Path(tempfile.mkdtemp(prefix="dlcamp-bench-")) / "benchmarks.md"
                     if args.quick else ROOT / "docs" / "benchmarks.md")

    sections, everything = [], {}
    with tempfile.TemporaryDirectory(prefix="dlcamp-bench-") as tmp:
        for script, full, quick, title, about in BENCHMARKS:
            name = script.removesuffix(".py")
            if args.only and name not in args.only.split(","):
                continue
            extra = list(quick if args.quick else full)
            extra += ["--threads", str(args.threads)] if args.threads else []
            out = Path(tmp) / f"{name}.json"
            print(f"\n## {reproduce(script, extra)}", flush=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "bench" / script), *extra, "--out",
                            str(out)], cwd=ROOT, check=True)
            result = json.loads(out.read_text())
            result["wall_seconds"] = time.perf_counter() - start
            everything[name] = result
            sections.append(f"## {title}\n\n{about}\n\n```\n{reproduce(script, extra)}\n```\n\n"
                            f"{result['markdown']}\n")

    machine = describe()
    if args.threads:
        machine["torch_threads"] = args.threads
    page = "\n".join([
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `{reproduce('run_all.py', sys.argv[1:])}`"
        + (" (**quick smoke run: numbers are not meaningful**)" if args.quick else "")
        + ". Each section gives the command that reproduces it; numbers depend on the machine "
        "and on what else it was doing.",
        "",
        "## Machine",
        "",
        describe_markdown(machine),
        "",
        *sections,
    ])
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(page)
    print(f"\nwrote {md}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "benchmarks": everything}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
