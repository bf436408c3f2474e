"""A busy laptop: training throughput while another CPU-bound program runs, by thread count.

    python bench/busy.py                  # the default cnn recipe, 40 batches per row
    python bench/busy.py --quick          # a few batches per row (smoke run)

A learner's laptop is rarely idle: a browser tab, a video call, an indexer. PyTorch starts one
OpenMP thread per core, and every parallel region ends at a barrier where all of them meet;
when another program holds one of two cores, one of our two threads keeps losing its core,
and the other waits for it. Rows (the `cnn` recipe with the precision and layout that dlcamp
chooses here, batch 256; only training is timed, data loading included):

  idle, 2 threads          nothing else running: PyTorch's default
  busy, 2 threads          one `while True: pass` process running beside training
  busy, 1 thread           the same, PyTorch on one thread
  busy, auto               `--threads auto` (dlcamp's default): the idle cores, measured at
                           the start of training (dlcamp.train.speed.choose_threads)

Rows are timed in turn, `--repeats` times, median reported. The busy process starts before
the busy rows and is killed after them, so the idle row is measured without it.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time

from common import markdown_table, parser, report, setup, time_dlcamp
from dlcamp.train import make_config

BUSY = [sys.executable, "-c", "while True: pass"]


def rows_to_run() -> list[dict]:
    cnn = make_config("cnn")
    return [
        {"row": "idle, 2 threads", "busy": False, "threads": "2", "augment": cnn.augment},
        {"row": "busy, 2 threads", "busy": True, "threads": "2", "augment": cnn.augment},
        {"row": "busy, 1 thread", "busy": True, "threads": "1", "augment": cnn.augment},
        {"row": "busy, auto", "busy": True, "threads": "auto", "augment": cnn.augment},
    ]


def time_row(row: dict, batches: int, warmup: int) -> dict:
    cfg = dataclasses.replace(make_config("cnn").train, threads=row["threads"])
    result = time_dlcamp("cnn", cfg, 256, row["augment"], batches, warmup)
    return result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batches", type=int, default=40, help="timed batches per row (40)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up batches per row (3)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per row (3)")
    args = p.parse_args()
    setup(args)
    batches, warmup, repeats = (3, 1, 1) if args.quick else (args.batches, args.warmup,
                                                             args.repeats)
    rows = rows_to_run()
    runs: list[list[dict]] = [[] for _ in rows]
    for _ in range(repeats):
        for busy in (False, True):
            hog = subprocess.Popen(BUSY) if busy else None
            try:
                time.sleep(0.5 if busy else 0.0)  # let the scheduler see it
                for row, timings in zip(rows, runs, strict=True):
                    if row["busy"] == busy:
                        timings.append(time_row(row, batches, warmup))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    results = []
    for row, timings in zip(rows, runs, strict=True):
        speed = statistics.median(t["examples_per_s"] for t in timings)
        results.append({"row": row["row"], "threads": row["threads"], "examples_per_s": speed,
                        "threads_used": timings[0].get("threads_used"), "runs": timings})
        print(f"{row['row']:<18} {speed:10,.0f} ex/s  (threads used: "
              f"{timings[0].get('threads_used')})", flush=True)
    base = next(r for r in results if r["row"] == "busy, 2 threads")["examples_per_s"]
    for r in results:
        r["vs_busy_2"] = r["examples_per_s"] / base
    markdown = markdown_table(results, [
        ("row", "row", ""), ("--threads", "threads", ""), ("threads used", "threads_used", ""),
        ("examples/s", "examples_per_s", ",.0f"), ("vs busy, 2 threads", "vs_busy_2", ".2f")])
    headline = {r["row"]: r["examples_per_s"] for r in results}
    report(args, "busy", results, markdown, {"headline": headline})


if __name__ == "__main__":
    main()
