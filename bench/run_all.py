"""Run the headline benchmarks on both CPU kinds and write docs/benchmarks.md.

    python bench/run_all.py                      # native and emulated AVX2 (about an hour)
    python bench/run_all.py --kinds avx2         # one kind
    python bench/run_all.py --quick              # smoke run; writes to a temporary file

Most learners' laptops have AVX2 and no native bf16 (issue 12), so every headline figure is
measured twice on this machine: as it is ("native"), and as an emulated AVX2-only laptop
(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; bench/machine.py checks that the cap held).
Each benchmark runs in its own process (fresh thread pools and caches) and hands back JSON;
the page shows a side-by-side headline table, then each benchmark's tables per kind with the
command that reproduces it. Only the part between `<!-- begin run-all -->` and
`<!-- end run-all -->` is rewritten: other benchmarks' sections stay.
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

from common import markdown_table, replace_section
from machine import KIND_TITLES, KINDS, describe, describe_markdown, kind_env, probe_kind

ROOT = Path(__file__).resolve().parents[1]

# (script, arguments of the full run, arguments of the quick run, title, what it shows)
BENCHMARKS = [
    ("time_to_accuracy.py", [], ["--quick"], "Time to accuracy",
     "dlcamp's default recipe (`dlcamp train --model cnn`) on Fashion-MNIST: cumulative "
     "training seconds (evaluation excluded) and test accuracy after each epoch."),
    ("demo.py", [], ["--quick"], "`make demo`",
     "The two commands `make demo` runs once set-up is done (`dlcamp train --model cnn "
     "--dataset fashion-mnist --out DIR --force`, then `dlcamp evaluate DIR`), each timed by "
     "the wall clock as its own process: start-up, data loading, training, per-epoch tests, "
     "run files and the final evaluation."),
    ("throughput.py", [], ["--quick"], "Training throughput",
     "The classic LeNet (sigmoid, average pooling, batch 256, SGD lr 0.9) trained the way the "
     "*Dive into Deep Learning* book's `train_ch6` does it (torchvision dataset, `DataLoader` "
     "with 4 workers, a `float()` per batch) and with dlcamp's in-memory loader and Trainer: "
     "fp32 NCHW, then dlcamp's LeNet recipe with the precision and layout dlcamp chooses on "
     "the machine, then the same with `torch.compile` (compile time in the warm-up column); "
     "then the default `cnn` recipe in fp32 and in bf16. One epoch (60,000 examples) per row "
     "after a few warm-up batches (bf16 where it is emulated: 20 batches), rows interleaved, "
     "3 repeats, median; only training is timed, data loading included."),
    ("busy.py", [], ["--quick"], "A busy laptop",
     "The default `cnn` recipe while another CPU-bound process (`while True: pass`) runs, "
     "with 2 threads, 1 thread, and dlcamp's `--threads auto` (the idle cores, measured when "
     "training starts); 40 batches per row, 3 interleaved repeats, median."),
    ("speed_switches.py", ["--bf16"], ["--quick", "--bf16"], "Speed switches per model",
     "One training step of each registered CNN at its recipe's batch size, fp32 NCHW against "
     "fp32 channels-last (NHWC), and bf16 NHWC for LeNet and the cnn: the evidence behind "
     "`--channels-last auto` and `--precision auto`."),
]

# (label, benchmark, headline key, format)
HEADLINE = [
    ("default recipe: training s to 92% test acc", "time_to_accuracy", "time_to_target", ".1f"),
    ("default recipe: best test acc within 60 s", "time_to_accuracy", "acc_at_seconds", ".4f"),
    ("default recipe: final test acc", "time_to_accuracy", "final_acc", ".4f"),
    ("default recipe: training s (all epochs)", "time_to_accuracy", "total_seconds", ".1f"),
    ("`make demo`: wall-clock s (train + evaluate commands)", "demo", "demo_wall_s", ".1f"),
    ("`make demo`: test acc", "demo", "test_acc", ".4f"),
    ("LeNet, book train_ch6 loop: examples/s", "throughput", "lenet_book", ",.0f"),
    ("LeNet, dlcamp recipe: examples/s", "throughput", "lenet_recipe", ",.0f"),
    ("LeNet, dlcamp recipe ÷ book loop", "throughput", "lenet_recipe_vs_book", ".2f"),
    ("cnn recipe fp32: examples/s", "throughput", "cnn_fp32", ",.0f"),
    ("cnn recipe bf16: examples/s", "throughput", "cnn_bf16", ",.0f"),
    ("cnn bf16 ÷ fp32", "throughput", "cnn_bf16_vs_fp32", ".2f"),
    ("busy laptop, cnn: 2 threads, ex/s", "busy", "busy, 2 threads", ",.0f"),
    ("busy laptop, cnn: 1 thread, ex/s", "busy", "busy, 1 thread", ",.0f"),
    ("busy laptop, cnn: `--threads auto`, ex/s", "busy", "busy, auto", ",.0f"),
    ("idle, cnn: 2 threads, ex/s", "busy", "idle, 2 threads", ",.0f"),
]


def reproduce(script: str, extra: list[str], kind: str = "native") -> str:
    env = " ".join(f"{k}={v}" for k, v in KINDS[kind].items())
    if os.environ.get("OMP_NUM_THREADS"):
        env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {env}"
    return (env + " " if env else "") + " ".join(["python", f"bench/{script}",
                                                  *map(shlex.quote, extra)])


def kinds_table(probes: dict[str, dict]) -> str:
    rows = [{**p, "kind": KIND_TITLES[k], "ratio": p["bfloat16_gflops"] / p["float32_gflops"],
             "env": " ".join(f"{a}={b}" for a, b in p["env"].items()) or "–"}
            for k, p in probes.items()]
    return markdown_table(rows, [
        ("kind", "kind", ""), ("environment", "env", ""),
        ("PyTorch dispatch", "torch_cpu_capability", ""), ("oneDNN ISA", "onednn_isa", ""),
        ("fp32 matmul GFLOP/s", "float32_gflops", ",.1f"),
        ("bf16 matmul GFLOP/s", "bfloat16_gflops", ",.1f"), ("bf16 ÷ fp32", "ratio", ".3f"),
        ("`--precision auto` chooses", "auto_precision", "")])


def headline_table(results: dict[str, dict[str, dict]], kinds: list[str]) -> str:
    rows = []
    for label, bench, key, fmt in HEADLINE:
        row = {"figure": label}
        for kind in kinds:
            value = results.get(kind, {}).get(bench, {}).get("headline", {}).get(key)
            row[kind] = None if value is None else format(value, fmt)
        rows.append(row)
    return markdown_table(rows, [("figure", "figure", "")] + [(KIND_TITLES[k], k, "")
                                                             for k in kinds])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run, output to a temp file")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: native, avx2")
    p.add_argument("--md", type=Path, help="Markdown page to write (default docs/benchmarks.md; "
                   "with --quick a temporary file)")
    p.add_argument("--out", type=Path, help="also write all results as one JSON file")
    p.add_argument("--only", help="comma-separated script names to run, e.g. demo,throughput")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    md = args.md or (Path(tempfile.mkdtemp(prefix="dlcamp-bench-")) / "benchmarks.md"
                     if args.quick else ROOT / "docs" / "benchmarks.md")
    probes = {kind: probe_kind(kind, 512 if args.quick else 1024) for kind in kinds}
    results: dict[str, dict[str, dict]] = {kind: {} for kind in kinds}
    sections = []
    with tempfile.TemporaryDirectory(prefix="dlcamp-bench-") as tmp:
        for script, full, quick, title, about in BENCHMARKS:
            name = script.removesuffix(".py")
            if args.only and name not in args.only.split(","):
                continue
            extra = list(quick if args.quick else full)
            parts = [f"### {title}\n\n{about}\n"]
            for kind in kinds:
                out = Path(tmp) / f"{name}-{kind}.json"
                print(f"\n## {reproduce(script, extra, kind)}", flush=True)
                start = time.perf_counter()
                subprocess.run([sys.executable, str(ROOT / "bench" / script), *extra, "--out",
                                str(out)], cwd=ROOT, check=True, env=kind_env(kind))
                result = json.loads(out.read_text())
                result["wall_seconds"] = time.perf_counter() - start
                results[kind][name] = result
                parts.append(f"#### {KIND_TITLES[kind]}\n\n```\n{reproduce(script, extra, kind)}"
                             f"\n```\n\n{result['markdown']}\n")
            sections.append("\n".join(parts))

    text = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/run_all.py"
        + (f" {' '.join(map(shlex.quote, sys.argv[1:]))}" if sys.argv[1:] else "") + "`"
        + (" (**quick smoke run: numbers are not meaningful**)" if args.quick else "")
        + ", one benchmark at a time with nothing else running. Numbers depend on the "
        "machine and on what else it was doing.",
        "",
        "### Machine",
        "",
        describe_markdown(describe()),
        "",
        "### CPU kinds",
        "",
        "The emulated laptop keeps PyTorch's kernels at AVX2 and caps oneDNN at AVX2; the table "
        "shows that the cap held (oneDNN's own report of the ISA it uses, from ONEDNN_VERBOSE) "
        "and what it does to bf16.",
        "",
        kinds_table(probes),
        "",
        "### Headline",
        "",
        headline_table(results, kinds),
        "",
        *sections,
    ])
    md.parent.mkdir(parents=True, exist_ok=True)
    replace_section(md, "run-all", text)
    print(f"\nwrote {md}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": describe(), "probes": probes,
                                        "benchmarks": results}, indent=2, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
