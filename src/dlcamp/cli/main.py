"""The `dlcamp` command line. Every command prints one readable line on error, exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dlcamp.cli.argtypes import OneLineParser, number, whole
from dlcamp.cli.bench import add_parser as add_bench_parser
from dlcamp.cli.camp import add_parser as add_camp_parser
from dlcamp.cli.flags import add_setting_flags, overrides
from dlcamp.cli.text import add_parsers as add_text_parsers
from dlcamp.cli.text import corpus_info, translation_set_info
from dlcamp.core.config import ENGINES, RENAMED_ENGINES
from dlcamp.core.errors import BadArgument, DlcampError, UnknownName
from dlcamp.core.utils import is_quick


def _train(args: argparse.Namespace) -> int:
    from dlcamp.train.distributed import context
    from dlcamp.train.launch import launch_run
    from dlcamp.train.run import make_config, resume_run, train_run

    ctx = context()
    launching = args.nproc > 1 and ctx is None  # --nproc N: this command again in N processes
    if args.resume:
        ignored = [f"--{k.replace('_', '-')}" for k in overrides(args) if k != "epochs"]
        ignored += [flag for flag, value, default in (
            ("--model", args.model, "cnn"), ("--dataset", args.dataset, "fashion-mnist"),
            ("--engine", args.engine, "torch"), ("--out", args.out, None),
            ("--force", args.force, False), ("--quick", args.quick, False)) if value != default]
        if ignored:  # a resumed run keeps its own settings; only --epochs extends it
            print(f"note: --resume continues {args.resume} with the settings in its "
                  f"config.json; ignored: {' '.join(ignored)}", file=sys.stderr)
        if launching:
            return launch_run(None, args.argv, args.nproc, resume=args.resume)
        trainer, out = resume_run(args.resume, epochs=args.epochs, progress=not args.no_progress)
    else:
        engine = args.engine
        if engine in RENAMED_ENGINES:  # a name a user typed keeps working, with a note
            engine = RENAMED_ENGINES[engine]
            print(f"note: --engine {args.engine} is now --engine {engine} (the old name will "
                  "go in a later release)", file=sys.stderr)
        cfg = make_config(args.model, args.dataset, quick=args.quick or is_quick(),
                          engine=engine, **overrides(args))
        if launching:
            return launch_run(cfg, args.argv, args.nproc, args.out, args.force)
        trainer, out = train_run(cfg, args.out, force=args.force, progress=not args.no_progress)
    if ctx is not None and not ctx.is_main:
        return 0  # rank 0 reports
    last = trainer.history[-1] if trainer.history else {}
    metric = f"{trainer.eval_split}_{trainer.task.monitor}"
    if metric in last:
        print(f"final {trainer.eval_split} {trainer.task.monitor}: {last[metric]:.4f} after "
              f"{trainer.epoch} epochs, {trainer.train_seconds:.1f}s of training")
    print(f"run saved in {out}/ (config.json, metrics.csv, curves.png, checkpoint.pt)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dlcamp.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, args.device,
                                 quick=args.quick or is_quick())
    if args.json:
        print(json.dumps(result))
    elif result.get("kind") == "translation":
        from dlcamp.train.translation import format_translation

        print(format_translation(result))
    elif result.get("kind") == "detection":
        from dlcamp.train.detection import format_detection

        print(format_detection(result))
    else:
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in result.items()))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dlcamp.serve.app import serve

    print(f"serving {args.model} on http://{args.host}:{args.port}/ (docs: /docs); Ctrl-C stops")
    serve(args.model, host=args.host, port=args.port, workers=args.workers,
          threads=args.threads, batching=args.batching, max_batch=args.max_batch,
          max_wait_ms=args.max_wait_ms)
    return 0


def _detect(args: argparse.Namespace) -> int:
    from dlcamp.serve.detect import detect_files, format_detections

    results, notes = detect_files(args.run, args.images, args.out, args.out_dir, args.lang,
                                  args.score)
    print(json.dumps(results, ensure_ascii=False) if args.json
          else format_detections(results, args.lang))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from dlcamp.serve.export import export

    print(f"wrote {export(args.checkpoint, args.format, args.out)}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from dlcamp.data.datasets import DATASETS, get_spec, load_dataset

    if args.action == "fetch":
        from dlcamp.data.fetch import fetch_fashion_mnist

        if args.name != "fashion-mnist":
            get_spec(args.name)  # unknown names get the standard error
            print(f"{args.name} ships inside a Python package: {get_spec(args.name).how_to_get}")
            return 0
        kwargs = {"base_url": args.url} if args.url else {}
        dest = fetch_fashion_mnist(Path(args.dir) if args.dir else None, **kwargs)
        print(f"Fashion-MNIST is ready in {dest}")
        return 0
    from dlcamp.text.corpora import list_corpora
    from dlcamp.text.translation import list_translation_sets
    from dlcamp.vision.scene_sets import list_scene_sets

    if args.action == "build" or args.name in list_scene_sets():
        return _scene_info(args.name, build=args.action == "build")
    if args.name in list_corpora():
        return corpus_info(args.name)
    if args.name in list_translation_sets():
        return translation_set_info(args.name)
    if args.name and args.name not in DATASETS:  # one message for all four tables
        from dlcamp.core.registry import unknown_name

        raise unknown_name("dataset, scene set, text corpus or parallel corpus", args.name,
                           [*DATASETS, *list_scene_sets(), *list_corpora(),
                            *list_translation_sets()])
    names = [args.name] if args.name else list(DATASETS)
    for name in names:
        spec = get_spec(name)
        where = spec.locate()
        print(f"{name}: {spec.description}")
        if where is None:
            print(f"  missing. {spec.how_to_get}")
            continue
        train, test = load_dataset(name, "train"), load_dataset(name, "test")
        print(f"  found in {where}; checksums ok")
        print(f"  train {len(train):,}  test {len(test):,}  shape {train.shape}  "
              f"mean {train.mean:.4f}  std {train.std:.4f}")
        pairs = zip(train.classes, train.classes_zh, strict=True)
        print(f"  classes: {', '.join(f'{en} ({zh})' for en, zh in pairs)}")
    if not args.name:
        for name in list_corpora():
            corpus_info(name)
        for name in list_translation_sets():
            translation_set_info(name)
        for name in list_scene_sets():
            _scene_info(name)
    return 0


def _scene_info(name: str | None, build: bool = False) -> int:
    """One scene set (detection): classes, splits, cache state, sources; `build` caches it."""
    from dlcamp.vision.scene_sets import SPLITS, get_scene_set, load_scene_set, scene_set_info

    if name is None:
        raise BadArgument("`dlcamp data build` needs a scene set name, e.g. fruit-1")
    get_scene_set(name)  # unknown names get the standard error
    if build:
        for split in SPLITS:
            print(f"{name} {split}: {len(load_scene_set(name, split)):,} images")
    info = scene_set_info(name)
    print(f"{name} v{info['version']} (scene set, boxes): {info['description']}")
    pairs = zip(info["classes"], info["classes_zh"], strict=True)
    print(f"  classes: {', '.join(f'{en} ({zh})' for en, zh in pairs)}")
    sizes = "  ".join(f"{s} {n:,}{' (cached)' if info['cached'][s] else ''}"
                      for s, n in info["sizes"].items())
    print(f"  {sizes}  images {info['image_size']}x{info['image_size']}")
    print(f"  sources: {', '.join(info['packages'])}")
    if info["missing_packages"]:
        print(f"  missing: {' '.join(info['missing_packages'])} (scripts/install-data.sh)")
    elif not all(info["cached"].values()):
        print(f"  built on first use (seconds), or now: dlcamp data build {name}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from dlcamp.models import count_parameters, create_model, list_models, model_summary

    names = list_models()
    width = max(map(len, names))
    for name in names:
        params = count_parameters(create_model(name))
        print(f"{name:<{width}} {params:>10,} params  {model_summary(name)}")
    return 0


def _lessons(args: argparse.Namespace) -> int:
    from dlcamp.course.lessons import (
        export_lesson,
        find_lesson,
        list_lessons,
        run_lesson,
        write_slides_index,
    )

    if args.action == "list":
        print(f"{'id':<6} {'quick':>6} {'full':>6}  title")
        for lesson in list_lessons():
            print(f"{lesson.id:<6} {lesson.minutes_quick:>5g}m {lesson.minutes_full:>5g}m  "
                  f"{lesson.title}  ({lesson.title_en})")
        return 0
    if args.action == "run":
        if not args.lesson:
            raise UnknownName("which lesson? e.g. `dlcamp lessons run 1.01 --quick`")
        return run_lesson(find_lesson(args.lesson), quick=args.quick or is_quick()).returncode
    lessons = [find_lesson(args.lesson)] if args.lesson else list_lessons()
    out = Path(args.out or ("slides" if args.to == "slides" else "notebooks"))
    for lesson in lessons:
        print(export_lesson(lesson, out, to=args.to, execute=args.execute, quick=not args.full))
    if args.to == "slides":
        print(write_slides_index(out))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from dlcamp.cli.doctor import report

    text, ok = report()
    print(text)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dlcamp", description="A hands-on deep-learning course that runs "
                      "offline on a laptop CPU.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; writes runs/<name>/")
    t.add_argument("--model", default="cnn", help="a name from `dlcamp models` (default: cnn)")
    t.add_argument("--dataset", default="fashion-mnist",
                   help="images: fashion-mnist | mnist | digits; scenes with boxes (for "
                   "tinyssd, yolo): fruit-1 | objects-8; text (for rnn, gru, lstm, gpt, ...): "
                   "tang300 | tang | song100 | sayings-zh | quotes-en; sentence pairs (for "
                   "seq2seq, bahdanau, transformer): translation-zh | translation-fr")
    t.add_argument("--engine", default="torch", choices=[*ENGINES, *RENAMED_ENGINES],
                   metavar="{" + ",".join(ENGINES) + "}",
                   help="torch (default), or numpy: dlcamp's NumPy engine (softmax, mlp, "
                   "lenet, lenet-modern; CPU). `scratch` is its old name")
    add_setting_flags(t)  # --epochs, --lr, --batch-size, ...: from TrainConfig and RunConfig
    t.add_argument("--quick", action="store_true", help="small data, <= 2 epochs (seconds)")
    t.add_argument("--out", help="run directory (default runs/<model>-<dataset>-<time>)")
    t.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this directory")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--nproc", type=whole(1, 64), default=1, metavar="N",
                   help="data-parallel training in N processes on this machine "
                   "(DistributedDataParallel under torchrun; gloo on CPU, NCCL on GPU); "
                   "--batch-size is the global batch")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint (file or run directory)")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", help="default: the dataset it was trained on")
    e.add_argument("--split", default="test")
    e.add_argument("--device", default="auto")
    e.add_argument("--quick", action="store_true")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_evaluate)

    add_text_parsers(sub)  # generate, translate

    sv = sub.add_parser("serve", help="serve over HTTP: a classifier (POST /predict) or a "
                        "detector (POST /detect)")
    sv.add_argument("model", help="run directory, checkpoint, or .onnx file from `dlcamp export`")
    sv.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    sv.add_argument("--port", type=whole(1, 65535), default=8000)
    sv.add_argument("--workers", type=whole(1), default=1, help="server processes (default 1)")
    sv.add_argument("--threads", type=whole(1),
                    help="compute threads per worker (default: all cores; 1 with --workers > 1)")
    sv.add_argument("--batching", action=argparse.BooleanOptionalAction, default=True,
                    help="micro-batching: concurrent requests share one forward pass")
    sv.add_argument("--max-batch", type=whole(1), default=32)
    sv.add_argument("--max-wait-ms", type=number(0, high=1000), default=2.0,
                    help="how long a request may wait for others to join its batch (0 to 1000)")
    sv.set_defaults(func=_serve)

    ex = sub.add_parser("export", help="export a checkpoint (ONNX, dynamic batch)")
    ex.add_argument("checkpoint", help="run directory or checkpoint file")
    ex.add_argument("--format", default="onnx", choices=["onnx"])
    ex.add_argument("--out", help="output file (default: model.onnx beside the checkpoint)")
    ex.set_defaults(func=_export)

    dt = sub.add_parser("detect", help="find objects in photos with a trained detector")
    dt.add_argument("run", help="run directory, checkpoint or .onnx file of tinyssd / yolo")
    dt.add_argument("images", nargs="+", help="image files (any size: letterboxed)")
    where = dt.add_mutually_exclusive_group()
    where.add_argument("--out", help="draw the boxes onto the (one) image, e.g. boxed.png")
    where.add_argument("--out-dir", help="draw each image's boxes into DIR/<name>-boxed.png")
    dt.add_argument("--lang", default="en", choices=["en", "zh"], help="label language")
    dt.add_argument("--score", type=number(0, high=1), default=0.3,
                    help="lowest score kept (0 to 1, default 0.3)")
    dt.add_argument("--json", action="store_true", help="print one JSON list")
    dt.set_defaults(func=_detect)

    d = sub.add_parser("data", help="datasets: info | fetch | build (a scene set)")
    d.add_argument("action", choices=["info", "fetch", "build"])
    d.add_argument("name", nargs="?", help="dataset name (default: all for info, "
                   "fashion-mnist for fetch)")
    d.add_argument("--url", help="fetch: base URL of a mirror")
    d.add_argument("--dir", help="fetch: where to save (default: dlcamp's cache)")
    d.set_defaults(func=_data)

    m = sub.add_parser("models", help="list the registered models")
    m.set_defaults(func=_models)

    les = sub.add_parser("lessons", help="lessons: list | run ID | export")
    les.add_argument("action", choices=["list", "run", "export"])
    les.add_argument("lesson", nargs="?", help="id (1.01), slug (tensors) or file name")
    les.add_argument("--quick", action="store_true", help="run in quick mode (DLCAMP_QUICK=1)")
    les.add_argument("--to", default="ipynb", choices=["ipynb", "slides"],
                     help="export: Jupyter notebooks, or reveal.js slides (one offline HTML each)")
    les.add_argument("--out", help="export folder (default notebooks/ or slides/)")
    les.add_argument("--execute", action="store_true",
                     help="export: run the cells first (quick mode) so outputs and figures show")
    les.add_argument("--full", action="store_true", help="with --execute: run in full mode")
    les.set_defaults(func=_lessons)

    add_camp_parser(sub)
    add_bench_parser(sub)

    doc = sub.add_parser("doctor", help="check Python, torch, device and datasets")
    doc.set_defaults(func=_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are one `error:` line on stderr and exit code 2.

    A reader that stops early (`dlcamp models | head -1`) is not an error: no traceback, and
    exit code 0 (or the command's own when it had finished, e.g. doctor's 1).
    """
    code = 0
    try:
        try:
            code = _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows up here, not at the interpreter's exit
    except BrokenPipeError:
        _discard_stdout()
    return code


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # `train --nproc N` runs the same command again under torchrun
    if args.command == "data" and args.action == "fetch" and args.name is None:
        args.name = "fashion-mnist"
    try:
        return args.func(args)
    except DlcampError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = (" The last finished epoch is saved: continue with `dlcamp train --resume "
                  "RUN_DIR`." if args.command == "train" else "")
        print(f"\ninterrupted.{resume}", file=sys.stderr)
        return 130


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered goes nowhere, and the interpreter's
    final flush cannot print "Exception ignored ... BrokenPipeError" any more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in a test)
        pass


if __name__ == "__main__":
    raise SystemExit(main())
