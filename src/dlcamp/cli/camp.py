"""`dlcamp camp ...`: run the hackathon app and look after its data.

    dlcamp camp serve  [--data DIR] [--host 127.0.0.1] [--port 8080]
    dlcamp camp new    PROJECT --classes "apple:苹果,mug:杯子" [--name "Team 1"]
    dlcamp camp tokens [--rotate [PROJECT]] [--port N]
    dlcamp camp export PROJECT --format coco|yolo|voc [--out FILE.zip]
    dlcamp camp import PROJECT FILE --format coco|yolo|voc|labelstudio|...
    dlcamp camp backup OUT_DIR
    dlcamp camp train  PROJECT [--minutes 10] [--model yolo-lite0] [--image-size N] [--out DIR]
                       [--resume RUN_ID] [--no-propose] [--quick] [--model-kwargs JSON]
    dlcamp camp propose PROJECT RUN_ID [--score 0.3]
    dlcamp camp testset FILE --format coco|yolo|voc|... [--name "Test set"] [--id test]
    dlcamp camp score  PROJECT RUN_ID [--json]
    dlcamp camp leaderboard [--final] [--csv OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dlcamp.cli.argtypes import number, whole
from dlcamp.core.errors import BadArgument
from dlcamp.core.io import atomic_write_bytes

DEFAULT_DATA = "camp-data"
DEFAULT_PORT = 8080
BOARD = ("testset", "score", "leaderboard")  # the hidden test set and ranking: camp_board.py


def _classes(text: str) -> list[dict]:
    """'apple:苹果,mug:杯子' -> [{"name": "apple", "name_zh": "苹果"}, ...]."""
    out = []
    for part in text.split(","):
        name, _, zh = part.strip().partition(":")
        if not name.strip():
            raise BadArgument(f"--classes: an empty class name in {text!r}; write e.g. "
                              "'apple:苹果,mug:杯子'")
        out.append({"name": name.strip(), "name_zh": zh.strip()})
    return out


def _links_base(data: Path, port: int | None) -> tuple[str, str]:
    """The base URL of the printed join links and where it came from: --port if given, else
    the URL the server recorded in server.json, else this machine's LAN address, port 8080."""
    from dlcamp.camp.server import SERVER_FILE, public_url, recorded

    if port is not None:
        return public_url("0.0.0.0", port), "--port"
    info = recorded(data)
    if info is None:
        return (public_url("0.0.0.0", DEFAULT_PORT), f"port {DEFAULT_PORT}: no server has "
                f"recorded its address in {data / SERVER_FILE}; --port N to change")
    whence = (f"recorded by `dlcamp camp serve` (pid {info.get('pid')}, started "
              f"{info.get('started')}) in {data / SERVER_FILE}; --port N to change")
    if not info.get("lan"):
        whence += ("; that server serves this machine only: restart it with --host 0.0.0.0 "
                   "for phones")
    return info["url"], whence


def _run(args: argparse.Namespace) -> int:
    from dlcamp.camp import server, transfer
    from dlcamp.camp.auth import TOKEN_FILE, TokenBook
    from dlcamp.camp.schema import DB_NAME
    from dlcamp.camp.storage import CampStore

    data = Path(args.data)
    if args.action in BOARD:
        from dlcamp.cli.camp_board import run_board

        return run_board(args)
    if args.action in ("train", "propose"):
        return _train(args, data)
    if args.action == "serve":
        server.serve_camp(data, args.host, args.port or DEFAULT_PORT, qr=not args.no_qr)
        return 0
    if args.action != "new" and not (data / DB_NAME).exists():
        raise BadArgument(f"no camp in {data.resolve()} (it has no {DB_NAME}): give --data "
                          "the folder that `dlcamp camp serve` uses")
    if args.action == "tokens":
        if args.rotate:
            with CampStore(data) as store:
                known = [p["id"] for p in store.list_projects()]
            if args.rotate not in known:
                raise BadArgument(f"--rotate {args.rotate!r}: no such project (the camp has "
                                  f"{', '.join(known) or 'none'})")
        if args.rotate is not None:
            TokenBook(data).rotate(args.rotate or None)
            print("new tokens, in force at once (a running server included): phones must "
                  "join again with the links below")
        base, whence = _links_base(data, args.port)
        print(f"links for {base} ({whence})")
        for who, link in server.join_links(data, base):
            print(f"{who:12s} {link}")
        return 0
    if args.action == "backup":
        with CampStore(data) as store:
            db = store.backup(Path(args.target))
        tokens = data / TOKEN_FILE
        if tokens.exists():  # so that a restored camp keeps the links phones joined with
            atomic_write_bytes(db.parent / TOKEN_FILE, tokens.read_bytes(), mode=0o600)
        print(f"backed up to {db.parent} (database, photos, tokens)")
        return 0
    if not (data / DB_NAME).exists():
        print(f"new camp created in {data.resolve()}")
    with CampStore(data) as store:
        if args.action == "new":
            made = store.create_project(args.project, args.name or args.project,
                                        _classes(args.classes))
            n = len(made["classes"])
            print(f"project {made['id']}: {n} class{'' if n == 1 else 'es'}; team join token: "
                  f"{TokenBook(data).team_token(made['id'])}")
        elif args.action == "export":
            out = Path(args.out or f"{args.project}-{args.format}.zip")
            atomic_write_bytes(out, transfer.export_project(store, args.project, args.format))
            print(f"wrote {out}")
        elif args.action == "import":
            source = Path(args.target)
            if not source.exists():
                raise BadArgument(f"{source}: no such file or folder")
            src = source if source.is_dir() else source.read_bytes()
            added = transfer.import_project(store, args.project, args.format, src, source.name)
            print(json.dumps(added))
    return 0


def _train(args: argparse.Namespace, data: Path) -> int:
    """`dlcamp camp train` and `dlcamp camp propose`: the work is camp.training's."""
    from dlcamp.camp.schema import DB_NAME
    from dlcamp.camp.training import propose_project, train_project

    if not (data / DB_NAME).exists():
        raise BadArgument(f"no camp in {data.resolve()} (it has no {DB_NAME}): give --data "
                          "the folder that `dlcamp camp serve` uses")
    if args.action == "propose":
        state = propose_project(data, args.project, args.target, args.score)
    else:
        try:
            kwargs = json.loads(args.model_kwargs) if args.model_kwargs else None
        except ValueError:
            kwargs = []
        if kwargs is not None and not isinstance(kwargs, dict):
            raise BadArgument("--model-kwargs must be a JSON object, e.g. '{\"width\": 8}'")
        state = train_project(data, args.project, minutes=args.minutes, model=args.model,
                              image_size=args.image_size, resume=args.resume,
                              propose=args.propose, quick=args.quick, out=args.out,
                              model_kwargs=kwargs)
    proposals = state.get("proposals") or {}
    if proposals.get("state") == "done":
        print(f"proposals: {proposals['boxes']} boxes on {proposals['images']} images")
    print(f"run {state['run']}: {state['state']}; "
          f"{data / 'runs' / args.project / state['run']}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `dlcamp camp` to the top-level subcommands."""
    c = sub.add_parser("camp", help="the hackathon app: capture photos, label boxes "
                       "(serve | new | tokens | export | import | backup | train | propose | "
                       "testset | score | leaderboard)")
    c.add_argument("action", choices=["serve", "new", "tokens", "export", "import", "backup",
                                      "train", "propose", *BOARD])
    c.add_argument("project", nargs="?", help="new/export/import/train/propose/score: the "
                   "project (team) id, e.g. team-1; backup: the folder to back up into; "
                   "testset: the zip, JSON file or folder of the hidden test set")
    c.add_argument("target", nargs="?", help="import: the zip, JSON file or folder; "
                   "propose/score: the run id")
    c.add_argument("--data", default=DEFAULT_DATA,
                   help=f"the camp's data folder (default ./{DEFAULT_DATA})")
    c.add_argument("--host", default="127.0.0.1", help="serve: default 127.0.0.1 (this machine "
                   "only, no tokens); 0.0.0.0 serves the classroom network with join tokens")
    c.add_argument("--port", type=whole(1, 65535), default=None,
                   help=f"serve: default {DEFAULT_PORT}; tokens: the port of the printed links "
                   "(default: the one the running server recorded)")
    c.add_argument("--no-qr", action="store_true", help="serve: no QR codes in the terminal")
    c.add_argument("--classes", help="new: 'apple:苹果,mug:杯子' (English:Chinese, comma "
                   "separated)")
    c.add_argument("--name", help="new: a display name (default: the id)")
    c.add_argument("--format", help="export: coco | yolo | voc; import: those, or the exports "
                   "of other tools: labelstudio | labelstudio-coco | cvat-coco | cvat-yolo")
    c.add_argument("--out", help="export: the zip to write (default PROJECT-FORMAT.zip); "
                   "train: the run directory (default DATA/runs/PROJECT/<time>)")
    c.add_argument("--minutes", type=number(0, above=True, high=600), default=10,
                   help="train: the time budget of the training steps (default 10)")
    c.add_argument("--model", default="yolo-lite0", help="train: the detector (default "
                   "yolo-lite0: a pretrained EfficientNet-Lite0 backbone)")
    c.add_argument("--model-kwargs", help="train: JSON arguments for the model, e.g. "
                   "'{\"width\": 8}'")
    c.add_argument("--image-size", type=whole(32, 2048), default=None,
                   help="train: the input side in px (default: the model's camp size)")
    c.add_argument("--resume", metavar="RUN_ID", help="train: continue this run of the "
                   "project within what is left of its budget")
    c.add_argument("--propose", action=argparse.BooleanOptionalAction, default=True,
                   help="train: afterwards, propose boxes on the unlabelled images "
                   "(default: yes)")
    c.add_argument("--score", type=number(0, high=1), default=0.3,
                   help="propose: the lowest score of a proposed box (default 0.3)")
    c.add_argument("--quick", action="store_true", help="train: one epoch at most (a smoke "
                   "test)")
    c.add_argument("--id", default="test", help="testset: the test project's id "
                   "(default test)")
    c.add_argument("--json", action="store_true", help="score: also print the whole report")
    c.add_argument("--final", action="store_true", help="leaderboard: the private, final "
                   "ranking")
    c.add_argument("--csv", metavar="OUT", help="leaderboard: write both rankings as CSV")
    c.add_argument("--rotate", nargs="?", const="", default=None, metavar="PROJECT",
                   help="tokens: replace every token, or one project's")
    c.set_defaults(func=_check_and_run)


def _check_and_run(args: argparse.Namespace) -> int:
    from dlcamp.camp.transfer import EXPORT_FORMATS, IMPORT_FORMATS

    needs = {"new": ("project", "classes"), "export": ("project", "format"),
             "import": ("project", "target", "format"), "backup": ("project",),
             "train": ("project",), "propose": ("project", "target"),
             "testset": ("project", "format"), "score": ("project", "target")}
    for field in needs.get(args.action, ()):
        if getattr(args, field) is None:
            flag = field if field in ("project", "target") else f"--{field}"
            raise BadArgument(f"`dlcamp camp {args.action}` needs {flag}")
    formats = {"export": EXPORT_FORMATS, "import": IMPORT_FORMATS}.get(args.action)
    if formats and args.format not in formats:
        raise BadArgument(f"--format {args.format!r}: {args.action} knows "
                          f"{', '.join(formats)}")
    if args.action in ("backup", "testset"):
        args.target = args.project
    return _run(args)
