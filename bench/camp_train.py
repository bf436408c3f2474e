"""The hackathon bar through the camp itself (issue 16): train a team's project, score it on the
hidden test set, and time the scoring.

    taskset -c 0,1 python bench/camp_train.py                # 200 photos, 10 min budget
    python bench/camp_train.py --minutes 5 --images 200
    python bench/camp_train.py --quick                       # smoke run, ~1 minute

What the evening does, with the synthetic camp standing in for phone photos: a camp is made
in a temporary folder; a team's project gets `--images` photos of a scene set's `train` split
with their boxes (a COCO zip through `transfer.import_project`, as a team's import would);
`training.train_project` fine-tunes the camp's detector (`yolo-lite0`, 128 px) for `--minutes`
of training steps, exactly as `dlcamp camp train` and the page's Train button do (its own
validation split: a fifth of the photos, by hash). The instructor's hidden test set is the
`shift` split (`--hidden` images, with condition tags), imported with `testset.import_testset`;
the run is submitted and scored by `board.score_submission`, the server's own path (decode,
letterbox, batch inference, torchmetrics mAP, the shift report and its picture). Scoring is
timed twice: cold (the test photos decoded from disk) and warm (cached, as for every later
submission). Writes bench/results/camp_train.json (not with --quick unless --out).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from common import command_line, parser, setup
from dlcamp.camp import board, testset, training
from dlcamp.camp.storage import CampStore
from dlcamp.camp.transfer import import_project, scene_zip
from dlcamp.core.io import atomic_write_bytes
from dlcamp.vision.scene_sets import load_scene_set
from machine import describe, describe_markdown

RESULTS = Path(__file__).parent / "results" / "camp_train.json"
TAGS = ("background_source", "scale_bucket", "n_objects")


def score(store: CampStore, data: Path, pid: str, run: str) -> tuple[dict, float]:
    """Submit run `run` and score it now; (the submission with its report, seconds)."""
    sub = board.add_submission(store, pid, "run", run, uuid.uuid4().hex)
    start = time.perf_counter()
    board.score_submission(store, data, sub["id"])
    seconds = time.perf_counter() - start
    done = board.get_submission(store, pid, sub["id"])
    if done["status"] != "done":
        raise SystemExit(f"scoring failed: {done['error']}")
    return done, seconds


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget (default 10)")
    p.add_argument("--dataset", default="fruit-1", help="scene set (fruit-1 or objects-8)")
    p.add_argument("--images", type=int, default=200, help="the team's annotated photos")
    p.add_argument("--hidden", type=int, default=200, help="hidden test images")
    args = p.parse_args()
    setup(args)
    if args.quick:
        args.minutes, args.images, args.hidden = 0.2, 40, 40
    team = load_scene_set(args.dataset, "train", n=args.images)
    hidden = load_scene_set(args.dataset, "shift", n=args.hidden)
    with tempfile.TemporaryDirectory(prefix="camp-bench-") as tmp:
        data = Path(tmp)
        with CampStore(data) as store:
            store.create_project("team", "Team", [{"name": n, "name_zh": z} for n, z in zip(
                team.class_names, team.class_names_zh, strict=True)])
            import_project(store, "team", "coco", scene_zip(team, prefix="team"))
            testset.import_testset(store, scene_zip(hidden, tags=TAGS, prefix="hidden"), "coco")
        start = time.perf_counter()
        state = training.train_project(data, "team", minutes=args.minutes, propose=False)
        wall = time.perf_counter() - start
        with CampStore(data) as store:
            cold, cold_s = score(store, data, "team", state["run"])
            _, warm_s = score(store, data, "team", state["run"])
    report = cold["report"]
    result = {"benchmark": "camp_train", "command": command_line(), "quick": args.quick,
              "machine": describe(), "dataset": args.dataset, "images": len(team),
              "hidden": len(hidden), "minutes": args.minutes, "run": state,
              "train_wall_seconds": wall, "val": report.get("val"), "test": {
                  k: report[k] for k in ("map", "map_50", "map_75")},
              "gap": report.get("gap"), "conditions": report.get("conditions"),
              "scoring_seconds": {"cold": cold_s, "warm": warm_s}}
    val = report.get("val") or {}
    md = "\n".join([
        f"`dlcamp camp train` path: {state.get('model')} at {state.get('image_size')} px, "
        f"{len(team)} photos of {args.dataset} (val split {state['images']['val']}), "
        f"{args.minutes:g} min of training steps ({state.get('seconds', 0) / 60:.1f} min "
        f"trained, {wall / 60:.1f} min wall with validation and set-up); hidden test = "
        f"{len(hidden)} `shift` images.", "",
        "| | mAP@[.5:.95] | mAP@0.5 |", "|---|---|---|",
        f"| own validation (in-domain) | {val.get('map', float('nan')):.3f} | "
        f"{val.get('map_50', float('nan')):.3f} |",
        f"| hidden test (shifted) | {report['map']:.3f} | {report['map_50']:.3f} |",
        f"| gap | {report.get('gap') or float('nan'):+.3f} | "
        f"{val.get('map_50', float('nan')) - report['map_50']:+.3f} |", "",
        f"Scoring the {len(hidden)} hidden images (`board.score_submission`: decode, "
        f"letterbox, inference, mAP, report and picture): {cold_s:.1f} s cold, "
        f"{warm_s:.1f} s warm.", "", describe_markdown(result["machine"]),
        f"- command: `{command_line()}`"])
    print("\n" + md)
    result["markdown"] = md
    out = args.out or (None if args.quick else RESULTS)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(result, indent=2, default=str) + "\n").encode())
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
