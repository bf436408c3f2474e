"""Run every lesson as a script, in quick and in full mode, and time it.

    python bench/lessons.py               # both modes, writes docs/lessons.md
    python bench/lessons.py --mode quick  # quick mode only (what CI runs, as tests)

Each lesson ends with assertions of what it taught; a lesson that fails is reported as such.
The table keeps the last line the lesson printed before its "done" line (usually the final
test accuracy or error), so the page shows what each run actually reached.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from dlcamp.course.lessons import list_lessons
from machine import describe, describe_markdown

ROOT = Path(__file__).resolve().parents[1]


def run(lesson, quick: bool) -> dict:
    env = {**os.environ, "MPLBACKEND": "Agg", "DLCAMP_QUIET": "1"}
    env.pop("DLCAMP_QUICK", None)
    if quick:
        env["DLCAMP_QUICK"] = "1"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(lesson.path)], env=env, cwd=lesson.path.parent,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines[:-1]) if "acc" in line or "rmse" in
                    line.lower() or "loss" in line), lines[-2] if len(lines) > 1 else "")
    return {"ok": result.returncode == 0, "seconds": seconds, "summary": summary.strip()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["quick", "full", "both"], default="both")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "lessons.md")
    args = p.parse_args()
    modes = ["quick", "full"] if args.mode == "both" else [args.mode]
    rows, totals = [], {m: 0.0 for m in modes}
    for lesson in list_lessons():
        row = {"lesson": lesson}
        for mode in modes:
            row[mode] = run(lesson, quick=mode == "quick")
            totals[mode] += row[mode]["seconds"]
            print(f"{lesson.id} {mode:5} {'ok' if row[mode]['ok'] else 'FAILED'} "
                  f"{row[mode]['seconds']:6.1f}s  {row[mode]['summary']}", flush=True)
        rows.append(row)
    header = "| lesson | title | " + " | ".join(
        f"{m} s | {m} result" for m in modes) + " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(modes))]
    for row in rows:
        cells = [row["lesson"].id, row["lesson"].title]
        for mode in modes:
            r = row[mode]
            cells += [f"{r['seconds']:.1f}", ("" if r["ok"] else "**FAILED** ") + r["summary"]]
        lines.append("| " + " | ".join(cells) + " |")
    totals_line = ", ".join(f"{m} mode {totals[m]:.0f} s in all" for m in modes)
    page = "\n".join([
        "# Lessons: run times and results", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/lessons.py --mode "
        f"{args.mode}`: every lesson run as a script ({totals_line}), including Python and "
        "torch start-up (about 2 s per lesson).", "",
        "## Machine", "", describe_markdown(describe()), "", *lines, ""])
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(page)
    print(f"wrote {args.md}")
    if not all(row[m]["ok"] for row in rows for m in modes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
