"""`dlcamp camp testset | score | leaderboard`: the hidden test set and the ranking, offline.

    dlcamp camp testset FILE --format coco [--name "Shifted test"] [--id test] [--data DIR]
    dlcamp camp score PROJECT RUN [--data DIR]       score a team's run now (a submission)
    dlcamp camp leaderboard [--final] [--csv OUT] [--data DIR]

cli/camp.py parses them; `run_board(args)` runs one.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

from dlcamp.core.errors import BadArgument
from dlcamp.core.io import atomic_write_bytes

DEFAULT_DATA = "camp-data"


def run_board(args: argparse.Namespace) -> int:
    """Run `dlcamp camp testset|score|leaderboard` from cli/camp.py's parsed arguments."""
    return {"testset": testset, "score": score, "leaderboard": leaderboard}[args.action](args)


def _store(data: str):
    from dlcamp.camp.schema import DB_NAME
    from dlcamp.camp.storage import CampStore

    if not (Path(data) / DB_NAME).exists():
        raise BadArgument(f"no camp in {Path(data).resolve()} (it has no {DB_NAME}): give "
                          "--data the folder that `dlcamp camp serve` uses")
    return CampStore(data)


def testset(args: argparse.Namespace) -> int:
    """Import FILE (zip, JSON or folder) as the hidden test set."""
    from dlcamp.camp.testset import import_testset
    from dlcamp.camp.transfer import IMPORT_FORMATS

    source = Path(args.target)
    if not source.exists():
        raise BadArgument(f"{source}: no such file or folder")
    if args.format not in IMPORT_FORMATS:
        raise BadArgument(f"--format {args.format!r}: use one of {', '.join(IMPORT_FORMATS)}")
    Path(args.data).mkdir(parents=True, exist_ok=True)
    from dlcamp.camp.storage import CampStore

    with CampStore(args.data) as store:
        src = source if source.is_dir() else source.read_bytes()
        made = import_testset(store, src, args.format, args.id, args.name or "Test set")
    print(f"test set {made['project']}: {made['images_added']} images, {made['boxes_added']} "
          f"boxes, {made['tagged']} with condition tags; teams cannot see it")
    return 0


def score(args: argparse.Namespace) -> int:
    """Submit run RUN of PROJECT and score it at once; print the report's headline."""
    from dlcamp.camp import board

    with _store(args.data) as store:
        board.run_dir(Path(args.data), args.project, args.target)
        sub = board.add_submission(store, args.project, "run", args.target,
                                   f"cli-{uuid.uuid4().hex}")
        sub = board.score_submission(store, Path(args.data), sub["id"])
        sub = board.get_submission(store, args.project, sub["id"])
    if sub["status"] != "done":
        raise BadArgument(f"submission {sub['id']} failed: {sub['error']}")
    r = sub["report"]
    print(f"submission {sub['id']} of {args.project} (run {args.target}): test mAP "
          f"{r['map']:.4f}, mAP@0.5 {r['map_50']:.4f}; public {_f(r['public']['map'])}, "
          f"private {_f(r['private']['map'])}")
    if r.get("val"):
        print(f"its own validation mAP {r['val']['map']:.4f}: gap {r['gap']:+.4f}")
    for tag, rows in r["conditions"].items():
        print(f"  {tag}: " + ", ".join(f"{c['value']} {_f(c['map'])}" for c in rows))
    if args.json:
        print(json.dumps(r, indent=1))
    return 0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def leaderboard(args: argparse.Namespace) -> int:
    """Print the ranking (public, or --final: private); --csv OUT writes both."""
    from dlcamp.camp import board, testset

    with _store(args.data) as store:
        rows = board.leaderboard(store, final=args.final)
        text = board.leaderboard_csv(store) if args.csv else None
        state = testset.event(store)["state"]
    score_key = "private_map" if args.final else "public_map"
    print(f"{'final (private half)' if args.final else 'public half'} ranking; event {state}")
    print(f"{'rank':>4}  {'team':<20}{'mAP':>8}{'val mAP':>9}{'subs':>6}")
    for r in rows:
        print(f"{r['rank']:>4}  {r['project']:<20}{_f(r[score_key]):>8}{_f(r['val_map']):>9}"
              f"{r['submissions']:>6}")
    if text is not None:
        atomic_write_bytes(Path(args.csv), text.encode())
        print(f"wrote {args.csv}")
    return 0
