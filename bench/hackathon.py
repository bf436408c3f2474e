"""The hackathon bars (issue 16): covariate shift on the synthetic camp, its cures, scoring time.

    taskset -c 0,1 python bench/hackathon.py --threads 2              # 4 runs x 5 min each
    python bench/hackathon.py --threads 2 --minutes 10                 # the issue's upper bound
    python bench/hackathon.py --quick                                  # smoke run, seconds

A team's detector (default `yolo-lite0`: the ImageNet-pretrained EfficientNet-Lite0 with a
YOLO head, the camp's model) trains from ~200 annotated images of a scene set for a time
budget (`--minutes`, per configuration) on the CPU, then is scored with COCO mAP@0.5 and
mAP@[.5:.95] on the team's own validation photos (the in-domain `test` split) and on the
organisers' hidden test set (the `shift` split: other backgrounds, smaller, darker, blurrier
objects). The gap is val minus hidden. Each cure gets the same budget:

  team                the team's photos, the model's recipe augmentation (flip + colour)
  augmented           the same photos, `ShiftAugment` (zoom out, gamma, blur, noise as well)
  varied              as many photos shot in more conditions (`varied_scenes`)
  varied + augmented  both
  ... + flip TTA      test-time augmentation of the row above it (no training): nms / fuse

"closes" is the share of the team's gap that a cure's gain on the hidden test closes
(dlcamp.course.shift.gap_closed). Scoring time: the seconds to score 200 hidden images
(inference + mAP, the server's work for one submission), without and with flip TTA.
Writes bench/results/hackathon.json (not in --quick mode unless --out is given) and prints a
Markdown table with the machine and the command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from common import command_line, markdown_table, parser, setup
from dlcamp.core.io import atomic_write_bytes
from dlcamp.course.datawork import train_detector
from dlcamp.course.shift import SHIFT_AUGMENT, gap_closed, map_scores, predict, varied_scenes
from dlcamp.vision.scene_sets import load_scene_set
from machine import describe, describe_markdown

RESULTS = Path(__file__).parent / "results" / "hackathon.json"
NO_STEP_LIMIT = 10**9  # the time budget ends each run


def measure(model: torch.nn.Module, val, hidden, tta: str | None = None) -> dict[str, Any]:
    """mAP on the own validation photos and on the hidden test, and the gap (mAP@0.5)."""
    out = {"val": map_scores(predict(model, val, tta), val),
           "shift": map_scores(predict(model, hidden, tta), hidden)}
    out["gap_50"] = out["val"]["map_50"] - out["shift"]["map_50"]
    return out


def scoring_seconds(model: torch.nn.Module, hidden, tta: str | None, repeats: int = 3) -> float:
    """Best of `repeats`: detections on every hidden image, then mAP (a submission's score)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        map_scores(predict(model, hidden, tta), hidden)
        best = min(best, time.perf_counter() - start)
    return best


def row(name: str, r: dict[str, Any], base: dict[str, Any], minutes: float | None,
        steps: int | None) -> dict[str, Any]:
    return {"config": name, "minutes": minutes, "steps": steps,
            "val_50": r["val"]["map_50"], "shift_50": r["shift"]["map_50"],
            "val": r["val"]["map"], "shift": r["shift"]["map"], "gap_50": r["gap_50"],
            "closed": gap_closed(base, r) if r is not base else None}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--minutes", type=float, default=5.0,
                   help="training budget per configuration (default 5; the bar allows 10)")
    p.add_argument("--model", default="yolo-lite0", help="a registered detector")
    p.add_argument("--dataset", default="fruit-1", help="scene set (fruit-1 or objects-8)")
    p.add_argument("--images", type=int, default=200, help="the team's annotated photos")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    setup(args)
    minutes = 0.1 if args.quick else args.minutes
    n_test = 32 if args.quick else None
    if args.quick:
        args.images = min(args.images, 48)
    team = load_scene_set(args.dataset, "train", n=args.images)
    val = load_scene_set(args.dataset, "test", n=n_test)
    hidden = load_scene_set(args.dataset, "shift", n=n_test)
    varied = varied_scenes(args.dataset, args.images, seed=args.seed)
    print(f"{args.model} on {args.dataset}: {len(team)} photos, {minutes:g} min per run; "
          f"{len(val)} validation / {len(hidden)} hidden images", flush=True)

    runs: dict[str, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {}
    for name, data, augment in (("team", team, None),
                                ("augmented", team, SHIFT_AUGMENT.with_boxes),
                                ("varied", varied, None),
                                ("varied + augmented", varied, SHIFT_AUGMENT.with_boxes)):
        trainer = train_detector(data, NO_STEP_LIMIT, seed=args.seed, model=args.model,
                                 augment=augment, max_seconds=minutes * 60)
        models[name] = trainer.model
        runs[name] = measure(trainer.model, val, hidden)
        runs[name].update(train_minutes=trainer.train_seconds / 60, steps=trainer.global_step)
        print(f"  {name:20s} val {runs[name]['val']['map_50']:.3f}  hidden "
              f"{runs[name]['shift']['map_50']:.3f}  ({runs[name]['steps']} steps, "
              f"{runs[name]['train_minutes']:.1f} min)", flush=True)
    best = max(runs, key=lambda k: runs[k]["shift"]["map_50"])
    base = runs["team"]
    rows = [row(k, r, base, r["train_minutes"], r["steps"]) for k, r in runs.items()]
    for name in dict.fromkeys(("team", best)):
        for merge in ("nms", "fuse"):
            r = measure(models[name], val, hidden, merge)
            runs[f"{name} + flip TTA ({merge})"] = r
            rows.append(row(f"{name} + flip TTA ({merge})", r, base, None, None))

    scoring = {tta or "plain": scoring_seconds(models["team"], hidden, tta)
               for tta in (None, "fuse")}
    machine = describe()
    table = markdown_table(rows, [
        ("configuration", "config", ""), ("train min", "minutes", ".1f"), ("steps", "steps", "d"),
        ("val mAP@0.5", "val_50", ".3f"), ("hidden mAP@0.5", "shift_50", ".3f"),
        ("gap", "gap_50", "+.3f"), ("closes", "closed", "+.0%"),
        ("val mAP", "val", ".3f"), ("hidden mAP", "shift", ".3f")])
    md = "\n".join([
        f"{args.model} on {args.dataset}, {len(team)} training photos, {minutes:g} min of "
        f"training per configuration; validation = in-domain `test` ({len(val)} images), "
        f"hidden = `shift` ({len(hidden)} images). mAP = COCO mAP@[.5:.95].", "", table, "",
        f"Scoring {len(hidden)} hidden images (inference + mAP): "
        f"{scoring['plain']:.2f} s, with flip TTA {scoring['fuse']:.2f} s.", "",
        describe_markdown(machine), f"- command: `{command_line()}`"])
    print("\n" + md)
    out = args.out or (None if args.quick else RESULTS)
    if out:
        payload = {"benchmark": "hackathon", "command": command_line(), "quick": args.quick,
                   "machine": machine, "model": args.model, "dataset": args.dataset,
                   "minutes": minutes, "images": len(team), "runs": runs, "rows": rows,
                   "scoring_seconds": scoring, "scoring_images": len(hidden), "markdown": md}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(payload, indent=2, default=str) + "\n").encode())
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
