"""A training run end to end: recipe -> data -> model -> Trainer -> runs/<name>/.

    runs/<name>/config.json    what was asked (enough to resume or repeat the run)
    runs/<name>/metrics.csv    one row per epoch
    runs/<name>/curves.png     loss and accuracy curves
    runs/<name>/checkpoint.pt  written atomically after every epoch; loads with weights_only
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dlcamp.core.config import (
    RENAMED_ENGINES,
    RunConfig,
    TrainConfig,
    check_name,
    check_setting,
    engine_name,
    split_settings,
)
from dlcamp.core.errors import BadArgument, CheckpointError, RunDirExists
from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.registry import unknown_name
from dlcamp.core.utils import pick_device, seed_everything, versions
from dlcamp.data.datasets import get_spec, list_datasets
from dlcamp.data.loader import Augment, Loaders, flip_and_shift, make_loaders
from dlcamp.engine import nn as engine_nn
from dlcamp.engine.models import create_scratch_model
from dlcamp.models import create_model, model_recipe
from dlcamp.models.detector import is_detector
from dlcamp.models.registry import model_accepts
from dlcamp.models.whitening import input_whitening
from dlcamp.text.corpora import list_corpora
from dlcamp.text.data import make_text_loaders
from dlcamp.text.translation import list_translation_sets
from dlcamp.train.callbacks import Checkpoint, CSVLogger, EarlyStopping, EpochLog, ProgressBar
from dlcamp.train.checkpoint import check_same_model, load_checkpoint, load_weights
from dlcamp.train.detection import (
    is_set_dir,
    locate_dataset,
    scene_data,
    scene_loaders,
    scene_sets,
)
from dlcamp.train.distributed import (
    DistContext,
    DistributedTrainer,
    check_distributed,
    context,
    process_group,
    shard_loaders,
)
from dlcamp.train.engine import ScratchTrainer
from dlcamp.train.plot import PlotCurves
from dlcamp.train.speed import machine_summary
from dlcamp.train.trainer import Trainer
from dlcamp.train.translation import translation_data

RUN_FILES = ("config.json", "metrics.csv", "curves.png", "checkpoint.pt")
WHITENING_IMAGES = 5_000  # images whose 3x3 patches fit a PatchWhitening first layer


def make_config(model: str = "cnn", dataset: str = "fashion-mnist", quick: bool = False,
                engine: str = "torch", **overrides: Any) -> RunConfig:
    """The model's registered recipe, then `overrides` (None values are ignored).

    An override is any field of TrainConfig or RunConfig that a recipe may set (epochs=,
    lr=, batch_size=, augment=, model_kwargs=, ...); each goes to the dataclass that has
    the field, and an unknown name raises BadArgument.
    Quick mode trains on small subsets and caps the recipe at 2 epochs (unless `epochs` is given).
    The NumPy engine (engine="numpy"; "scratch", its old name, still works with a
    FutureWarning) keeps the recipe's optimiser and schedule; PyTorch-only speed settings
    (bf16, channels-last, compile) do not apply to it.
    """
    if engine in RENAMED_ENGINES:
        warnings.warn(f"engine {engine!r} is now called {RENAMED_ENGINES[engine]!r}",
                      FutureWarning, stacklevel=2)
    engine = engine_name(engine)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        check_name(key, "make_config setting")
        check_setting(key, value)  # the range and choices that the CLI's flag checks
    settings = {**model_recipe(model), **overrides}
    if engine == "numpy":
        pytorch_only = {"precision": ("auto", "fp32"), "channels_last": ("auto", "off"),
                        "compile": (False,)}
        for key, fine in pytorch_only.items():
            if key in overrides and overrides[key] not in fine:
                raise BadArgument(f"--{key.replace('_', '-')} {overrides[key]} is a PyTorch "
                                  "setting; the NumPy engine computes in float32")
            settings.pop(key, None)
    if quick and "epochs" not in overrides:
        settings["epochs"] = min(settings.get("epochs", 2), 2)
    run, train = split_settings(settings)
    return RunConfig(model=model, dataset=dataset, quick=quick, engine=engine,
                     train=TrainConfig(**train), **run)


def parse_augment(spec: str | bool | None) -> Augment | None:
    """'flip', 'shift' or 'flip+shift' (shift: up to 2 pixels) -> a batch augmentation."""
    spec = {True: "flip", False: "none", None: "none"}.get(spec, spec)
    parts = set(spec.replace(",", "+").split("+")) - {"none", ""}
    if parts - {"flip", "shift"}:
        raise BadArgument(f"unknown augmentation {spec!r}; use none, flip, shift or flip+shift")
    if not parts:
        return None
    return flip_and_shift(pad=2 if "shift" in parts else 0, flip="flip" in parts)


def default_out(cfg: RunConfig, root: Path | str = "runs") -> Path:
    return Path(root) / f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(out: Path, force: bool = False, create: bool = True) -> Path:
    """Create `out`; refuse to reuse a non-empty directory unless `force` (then clear our files).
    `create=False` only checks (RunDirExists), changing nothing on disk."""
    if out.exists() and not out.is_dir():
        raise RunDirExists(f"{out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RunDirExists(
                f"{out} already holds files; refusing to overwrite them. Use --resume {out} to "
                "continue that run, --force to start over in it, or choose another --out.")
    if not create:
        return out
    if out.is_dir() and force:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _model_kwargs(cfg: RunConfig, shape: tuple[int, ...], n_classes: int) -> dict[str, Any]:
    """Fill in input shape (after resizing) and class count from the data, unless given."""
    kwargs = dict(cfg.model_kwargs)
    for arg, value in (("num_classes", n_classes), ("in_channels", shape[0]),
                       ("image_size", cfg.resize or shape[1])):
        if model_accepts(cfg.model, arg):
            kwargs.setdefault(arg, value)
    return kwargs


def data_kind(dataset: str) -> str:
    """"text" for a text corpus (dlcamp.text.corpora), "translation" for a parallel corpus
    (dlcamp.text.translation), "image" for an image dataset
    (dlcamp.data.datasets), "scenes" for a detection set (dlcamp.vision.scene_sets, or a
    directory holding train.safetensors + val.safetensors: dlcamp.train.detection): the one
    place a run decides which data, model arguments and checks it needs. Any other name is
    UnknownName, suggesting from all the tables."""
    if dataset in list_corpora():
        return "text"
    if dataset in list_translation_sets():
        return "translation"
    if dataset in list_datasets():
        return "image"
    if dataset in scene_sets() or is_set_dir(dataset):
        return "scenes"
    if Path(dataset).is_dir():
        raise BadArgument(f"{dataset} is a directory but holds no train.safetensors: a "
                          "detection set on disk is train.safetensors + val.safetensors "
                          "(+ test.safetensors), written by DetectionSet.save")
    raise unknown_name("dataset, scene set, text corpus or parallel corpus", dataset,
                       [*list_datasets(), *scene_sets(), *list_corpora(),
                        *list_translation_sets()])


def text_corpora() -> list[str]:
    return list_corpora()


def _check_model_fits(cfg: RunConfig, kind: str) -> None:
    """A language model needs a text corpus, and any other model an image dataset."""
    translator = model_accepts(cfg.model, "tgt_vocab_size")
    if (kind == "translation") != translator:
        raise BadArgument(f"{cfg.dataset} is a parallel corpus; train a translation model on it: "
                          "--model seq2seq, bahdanau or transformer" if not translator else
                          f"{cfg.model!r} translates; train it on a parallel corpus: "
                          f"{', '.join(list_translation_sets())}")
    language_model = model_accepts(cfg.model, "vocab_size")
    if kind == "text" and not language_model:
        raise BadArgument(f"{cfg.dataset} is a text corpus; {cfg.model!r} is not a language "
                          "model. Try --model lstm (or rnn, gru, deep-lstm, *-scratch).")
    if kind != "text" and language_model:
        raise BadArgument(f"{cfg.model!r} is a language model; train it on a text corpus: "
                          f"{', '.join(text_corpora())}")
    detector = is_detector(cfg.model)
    if kind == "scenes" and not detector:
        raise BadArgument(f"{cfg.dataset} is a detection set (images with boxes); {cfg.model!r} "
                          "is not a detector. Try --model tinyssd (or yolo).")
    if kind != "scenes" and detector:
        raise BadArgument(f"{cfg.model!r} is a detector; train it on a scene set (images "
                          f"with boxes): {', '.join(scene_sets())}")


def _text_data(cfg: RunConfig) -> tuple[Loaders, dict[str, Any], dict[str, Any]]:
    """Loaders (held out: the corpus's val split), model arguments and checkpoint metadata
    for a language model on a corpus."""
    if cfg.sampling not in ("sequential", "random"):
        raise BadArgument(f"unknown sampling {cfg.sampling!r}; choose sequential or random")
    loaders = make_text_loaders(cfg.dataset, cfg.batch_size, cfg.num_steps, token=cfg.token,
                                random=cfg.sampling == "random", quick=cfg.quick,
                                seed=cfg.train.seed)
    kwargs = {"vocab_size": len(loaders.vocab), **cfg.model_kwargs}
    if model_accepts(cfg.model, "max_len"):  # GPT: positions only as far as training reaches
        kwargs.setdefault("max_len", cfg.num_steps)
    data = {"dataset": cfg.dataset, "kind": "text", "token": cfg.token,
            "vocab": list(loaders.vocab.idx_to_token), "num_steps": cfg.num_steps}
    return loaders, kwargs, data


def _image_data(cfg: RunConfig, device: Any, augment: str
                ) -> tuple[Loaders, dict[str, Any], dict[str, Any]]:
    """Loaders (held out: the test split), model arguments and checkpoint metadata."""
    loaders = make_loaders(cfg.dataset, cfg.batch_size, device, quick=cfg.quick,
                           seed=cfg.train.seed, augment=parse_augment(augment),
                           resize=cfg.resize)  # the Trainer puts batches in its layout
    ds = loaders.train_set
    data = {"dataset": cfg.dataset, "kind": "image", "classes": ds.classes,
            "classes_zh": ds.classes_zh, "mean": ds.mean, "std": ds.std,
            "shape": list(ds.shape), "resize": cfg.resize}
    return loaders, _model_kwargs(cfg, ds.shape, len(ds.classes)), data


def build(cfg: RunConfig, out: Path | None, progress: bool = True,
          log: Callable[[str], Any] = print, callbacks: Sequence[Any] = (),
          ctx: DistContext | None = None) -> tuple[Trainer, Loaders, dict[str, Any]]:
    """Data, model, trainer and callbacks for a run (nothing trained, nothing written yet);
    `callbacks` are added to the run's own (progress reports of a caller, e.g. the camp's).
    With `ctx` (a torchrun job, in its process group) the trainer is a DistributedTrainer on
    this rank's chunks, and only rank 0 gets the callbacks that print or write files.

    The loaders are `Loaders` for every task; fit on `loaders.train`, measure on
    `loaders.eval` (the split named by `loaders.eval_split`)."""
    seed_everything(cfg.train.seed)
    kind = data_kind(cfg.dataset)
    _check_model_fits(cfg, kind)
    if ctx is not None:
        check_distributed(kind, cfg.engine)
    augment = cfg.augment
    mirror = kind == "scenes" or (kind == "image" and get_spec(cfg.dataset).mirror_symmetric)
    if "flip" in str(augment) and not mirror:
        # A mirrored 2 is not a 2: a recipe tuned on clothes must not flip digits.
        augment = str(augment).replace("flip", "").strip("+,") or "none"
        log(f"note: no flip augmentation on {cfg.dataset} (mirroring changes its labels)")
    numpy_engine = cfg.engine == "numpy"
    device = "cpu" if numpy_engine else pick_device(cfg.train.device)
    if kind == "text":
        loaders, kwargs, data = _text_data(cfg)
    elif kind == "translation":
        loaders, kwargs, data = translation_data(cfg)
    elif kind == "scenes":
        sets, kwargs, data = scene_data(cfg)
    else:
        loaders, kwargs, data = _image_data(cfg, device, augment)
        if kwargs.get("test_flip") and not mirror:
            kwargs["test_flip"] = False
            log(f"note: no test-time flips on {cfg.dataset} (mirroring changes its labels)")
    if numpy_engine:
        engine_nn.manual_seed(cfg.train.seed)
        model = create_scratch_model(cfg.model, **kwargs)
    else:
        model = create_model(cfg.model, **kwargs)
        if kind == "scenes":  # normalised as the detector says; the checkpoint says it too
            loaders = scene_loaders(cfg, sets, device, model.normalize, augment)
            data = {**data, **model.describe()}
        whitening = input_whitening(model) if kind == "image" else None
        if whitening is not None:  # only then are images gathered (resized ones are large)
            whitening.fit(loaders.train.head(WHITENING_IMAGES))
            log(f"first layer: patch whitening fitted to the first "
                f"{min(WHITENING_IMAGES, len(loaders.train_set)):,} training images, frozen")
    meta = {"model": model.dlcamp_spec, "data": data, "config": cfg.to_dict(),
            "versions": versions(), "machine": machine_summary()}
    extra = list(callbacks)
    callbacks = [ProgressBar(disable=None if progress else True), EpochLog(log), *extra]
    if ctx is not None:
        loaders = shard_loaders(loaders, ctx)
        meta["distributed"] = ctx.to_dict()
        if not ctx.is_main:  # the other ranks train and keep quiet
            callbacks, out = [], None
    if out is not None:
        callbacks += [CSVLogger(out / "metrics.csv"),
                      PlotCurves(out / "curves.png", title=f"{cfg.model} on {cfg.dataset}"),
                      Checkpoint(out / "checkpoint.pt", meta)]
    if cfg.patience:  # Checkpoint runs after it (Checkpoint.order): the file holds its state
        callbacks.append(EarlyStopping(patience=cfg.patience))
    if numpy_engine:
        meta["engine"] = "numpy"
        trainer = ScratchTrainer(model, cfg.train, callbacks=callbacks)
    elif ctx is not None:
        trainer = DistributedTrainer(model, ctx, cfg.train, callbacks=callbacks)
    else:
        trainer = Trainer(model, cfg.train, callbacks=callbacks)
    meta["speed"] = trainer.speed.to_dict()
    return trainer, loaders, meta


def rename_split(history: list[dict[str, Any]], old: str, new: str) -> list[dict[str, Any]]:
    """The records with `old`_* keys named `new`_*: runs written before the metrics named
    their split recorded the test set's as val_acc, val_loss, ..."""
    if old == new:
        return history
    prefix = f"{old}_"
    return [{f"{new}_{k[len(prefix):]}" if k.startswith(prefix) else k: v for k, v in r.items()}
            for r in history]


def write_config(out: Path, cfg: RunConfig, speed: dict[str, Any] | None = None,
                 ctx: DistContext | None = None) -> None:
    """config.json: the settings asked for, plus (`speed`) what "auto" chose on this machine
    and why (ignored when the run is resumed: the machine decides again), and for a
    data-parallel run (`ctx`) its "distributed": world_size and backend."""
    payload = {**cfg.to_dict(), **({"speed": speed, "machine": machine_summary()}
                                   if speed else {}),
               **({"distributed": ctx.to_dict()} if ctx else {})}
    atomic_write_bytes(out / "config.json", json.dumps(payload, indent=2).encode())


def log_speed(trainer: Trainer, log: Callable[[str], Any]) -> None:
    """Print the speed plan: one line per switch with the reason for its value."""
    for line in trainer.speed.describe().splitlines():
        log(f"  {line}")


def train_run(cfg: RunConfig, out: Path | None = None, force: bool = False,
              progress: bool = True, log: Callable[[str], Any] = print,
              callbacks: Sequence[Any] = ()) -> tuple[Trainer, Path]:
    """Train a new run into `out` (default runs/<model>-<dataset>-<time>); `callbacks` are
    added to the run's own. Under torchrun (several processes) this process trains its share
    and only rank 0 writes `out` (dlcamp.train.distributed)."""
    ctx = context(cfg.train.device)  # None unless torchrun (or --nproc) started this process
    main = ctx is None or ctx.is_main
    out = Path(out) if out else default_out(cfg)
    if not main:
        log = _silent
    with process_group(ctx):
        if main:
            prepare_run_dir(out, force, create=False)
        trainer, loaders, _ = build(cfg, out, progress, log, callbacks, ctx)  # bad settings raise
        if main:
            prepare_run_dir(out, force)
            write_config(out, cfg, trainer.speed.to_dict(), ctx)
        engine = " with the NumPy engine (dlcamp.engine)" if cfg.engine == "numpy" else ""
        procs = f" in {ctx.world_size} processes ({ctx.backend})" if ctx else ""
        log(f"training {cfg.model}{engine} on {cfg.dataset} ({loaders.describe}) on "
            f"{trainer.device}{procs}; run directory {out}")
        log_speed(trainer, log)
        trainer.fit(loaders.train, loaders.eval, loaders.eval_split)
    return trainer, out


def _silent(*_: Any) -> None:
    """The log of a rank other than 0."""


def resume_run(run_dir: Path | str, epochs: int | None = None, progress: bool = True,
               log: Callable[[str], Any] = print, callbacks: Sequence[Any] = ()
               ) -> tuple[Trainer, Path]:
    """Continue an interrupted run from its last checkpoint (optionally to more epochs),
    within what is left of its time budget (max_seconds counts the training time already
    spent). A run on a detection set on disk reads it from `<run_dir>/data` when that holds
    one (the run directory may have moved). `callbacks` are added to the run's own."""
    out = Path(run_dir)
    if not (out / "config.json").is_file():
        raise CheckpointError(f"{out} is not a run directory (no config.json); nothing to resume. "
                              "Start a run with `dlcamp train --out DIR` first.")
    cfg = RunConfig.from_dict(json.loads((out / "config.json").read_text()))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    if epochs is not None:
        cfg.train.epochs = epochs
    cfg.dataset = locate_dataset(cfg.dataset, out)
    ctx = context(cfg.train.device)  # None unless torchrun (or --nproc) started this process
    main = ctx is None or ctx.is_main
    if not main:
        log = _silent
    with process_group(ctx):
        trainer, loaders, _ = build(cfg, out, progress, log, callbacks, ctx)
        check_same_model(ckpt, trainer.model.dlcamp_spec["name"],
                         trainer.model.dlcamp_spec["kwargs"])
        if cfg.engine == "torch":
            load_weights(trainer.model, ckpt["trainer"]["model"], str(out / "checkpoint.pt"))
        trainer.load_state_dict(ckpt["trainer"])
        trainer.history = rename_split(trainer.history, "val", loaders.eval_split)
        if main:
            write_config(out, cfg, trainer.speed.to_dict(), ctx)
        log(f"resuming {out} after epoch {trainer.epoch} of {cfg.train.epochs}")
        log_speed(trainer, log)
        trainer.fit(loaders.train, loaders.eval, loaders.eval_split)
    return trainer, out
