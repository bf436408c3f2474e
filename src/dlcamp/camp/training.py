"""Train a detector on a camp project, and let it propose boxes: `dlcamp camp train PROJECT`.

A run lives in `<data_dir>/runs/<project>/<run_id>/` (run_id like 20261206-093015) and is a
normal dlcamp run (checkpoint.pt, config.json, metrics.csv, curves.png: `dlcamp evaluate`,
`detect`, `export`, `serve` take it), plus:

    data/train.safetensors, data/val.safetensors   the project's photos as trained on
                                                   (camp.dataset.project_sets)
    camp.json       {project, run, classes, images: {train, val}, minutes, image_size, model,
                     model_kwargs, created, state, error, val_map, val_map_50, proposals}
                     state: queued | running | done | failed | cancelled | interrupted
    progress.jsonl  one JSON object per line: {"t" (unix s), "event" (step | epoch | state),
                     "epoch", "step", "seconds" (training s so far), "budget_seconds", "loss",
                     "val_map", "val_map_50" (the latest evaluation, null before the first),
                     "state"}

The time budget is the Trainer's `max_seconds` (minutes x 60 of training steps; the
learning-rate schedule is stretched over it, and the per-epoch validation comes on top), with
so many epochs that the budget ends the run. Resuming continues from the last checkpoint in
the same directory, within what is left of the budget.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlcamp.camp.dataset import load_work, project_sets
from dlcamp.camp.storage import CampStore
from dlcamp.core.errors import BadArgument
from dlcamp.core.io import atomic_write_bytes
from dlcamp.data.detection import DetectionSet
from dlcamp.models.lite_yolo import DEFAULT_CAMP_SIZE
from dlcamp.train.callbacks import Callback
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcamp.train.run import make_config, resume_run, train_run

DEFAULT_MODEL = "yolo-lite0"
MAX_MINUTES = 600.0
RUN_ID = re.compile(r"^\d{8}-\d{6}(-\d{1,3})?$")
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ENDED = ("done", "failed", "cancelled", "interrupted")
EPOCHS = 100_000  # "forever": the time budget ends the run
_UNLABELLED_SQL = """
SELECT i.id FROM images i
WHERE i.project_id = ? AND i.no_objects = 0 AND i.review != 'done' AND NOT EXISTS (
    SELECT 1 FROM boxes b WHERE b.image_id = i.id AND b.deleted = 0 AND b.proposed = 0)
ORDER BY i.id"""


# -- run directories and their files -----------------------------------------------------------
def check_run_id(run: str) -> str:
    """`run` if it looks like a run id (YYYYmmdd-HHMMSS[-n]); BadArgument otherwise (so no
    path ever leaves the project's runs folder)."""
    if not isinstance(run, str) or not RUN_ID.match(run):
        raise BadArgument(f"{str(run)[:40]!r} is not a run id (like 20261206-093015)")
    return run


def runs_root(data_dir: Path | str, pid: str) -> Path:
    return Path(data_dir) / "runs" / pid


def run_path(data_dir: Path | str, pid: str, run: str) -> Path:
    """`<data_dir>/runs/<pid>/<run>` (not checked for existence). BadArgument for a bad id."""
    return runs_root(data_dir, pid) / check_run_id(run)


def new_run_id(data_dir: Path | str, pid: str) -> str:
    """A fresh id from the local time, -2, -3... added when that second is taken."""
    root, stamp = runs_root(data_dir, pid), time.strftime("%Y%m%d-%H%M%S")
    run, n = stamp, 1
    while (root / run).exists():
        n += 1
        run = f"{stamp}-{n}"
    return run


def read_state(out: Path) -> dict[str, Any]:
    """camp.json of a run ({} when missing or unreadable)."""
    try:
        state = json.loads((out / "camp.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(out: Path, **changes: Any) -> dict[str, Any]:
    """Update camp.json with `changes` (written atomically); returns the new contents."""
    state = {**read_state(out), **changes}
    atomic_write_bytes(out / "camp.json", json.dumps(state, indent=1).encode())
    return state


def read_progress(out: Path, start: int = 0) -> list[dict[str, Any]]:
    """The progress lines of a run from line `start` (0-based); a torn last line is skipped."""
    try:
        lines = (out / "progress.jsonl").read_text("utf-8").splitlines()[start:]
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


class CampProgress(Callback):
    """Append a line to progress.jsonl every `every` seconds of training and after each epoch
    (one write() per line, so a reader never sees half a line but at the very end)."""

    def __init__(self, path: Path, budget_seconds: float, every: float = 1.0) -> None:
        self.path, self.budget, self.every = Path(path), budget_seconds, every
        self.val: dict[str, float | None] = {"val_map": None, "val_map_50": None}
        self.epoch_start, self.last = 0.0, 0.0

    def write(self, trainer: Any = None, event: str = "state", state: str = "running",
              **fields: Any) -> None:
        record = {"t": round(time.time(), 3), "event": event, "state": state, **self.val,
                  "budget_seconds": self.budget}
        if trainer is not None:
            record.update(epoch=trainer.epoch, step=trainer.global_step,
                          seconds=round(trainer.train_seconds, 3))
        record.update(fields)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def on_fit_start(self, trainer) -> None:
        if trainer.history:  # resumed: the latest evaluation so far
            self._remember(trainer.history[-1])
        self.write(trainer)

    def on_epoch_start(self, trainer, epoch: int, n_batches: int) -> None:
        self.epoch_start = self.last = trainer.clock()

    def on_batch_end(self, trainer, i: int, loss) -> None:
        now = trainer.clock()
        if now - self.last >= self.every:
            self.last = now
            seconds = trainer.train_seconds + now - self.epoch_start
            self.write(trainer, "step", epoch=trainer.epoch + 1,
                       loss=round(float(loss.detach()), 5), seconds=round(seconds, 3))

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        self._remember(record)
        self.write(trainer, "epoch", loss=record.get("train_loss"))

    def _remember(self, record: dict[str, Any]) -> None:
        for key in self.val:
            if record.get(key) is not None:
                self.val[key] = float(record[key])


# -- training ------------------------------------------------------------------------------------
def train_project(data_dir: Path | str, pid: str, minutes: float = 10, model: str = DEFAULT_MODEL,
                  image_size: int | None = None, resume: str | None = None, propose: bool = True,
                  quick: bool = False, out: Path | str | None = None,
                  model_kwargs: dict[str, Any] | None = None,
                  log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train `model` on project `pid` of the camp in `data_dir` for `minutes` of training
    steps; then (`propose`) let it propose boxes on the unlabelled images. Returns camp.json.

    `resume`: a run id of the project to continue (its own settings; the other arguments are
    ignored). `out`: the run directory of a new run (default runs/<pid>/<new id>; the camp
    server names it when it queues the run). `quick`: one epoch at most (tests, smoke runs).
    Raises BadArgument (too few labelled images, a bad setting, a finished or unknown run to
    resume), NotFound (no project), and whatever training raises (camp.json then says
    "failed" with the error; Ctrl-C leaves "interrupted").
    """
    if not 0 < minutes <= MAX_MINUTES:
        raise BadArgument(f"minutes must lie in (0, {MAX_MINUTES:g}], got {minutes}")
    data_dir = Path(data_dir)
    with CampStore(data_dir) as store:
        store.get_project(pid)  # NotFound before anything is written
        if resume is not None:
            out = run_path(data_dir, pid, resume)
            state = read_state(out)
            if not state:
                raise BadArgument(f"project {pid!r} has no run {resume!r} to resume")
            if state.get("state") == "done":
                raise BadArgument(f"run {resume} finished its {state.get('minutes')} "
                                  "minutes; start a new run instead")
            # its own settings (a run queued but never started has only its minutes)
            model, image_size = state.get("model", model), state.get("image_size", image_size)
            minutes = state.get("minutes", minutes)
            model_kwargs = state.get("model_kwargs", model_kwargs)
        else:
            out = Path(out) if out else runs_root(data_dir, pid) / new_run_id(data_dir, pid)
            if (out / "checkpoint.pt").exists():
                raise BadArgument(f"{out} already holds a trained run; resume it with "
                                  f"--resume {out.name} or start a new one")
        image_size = int(image_size or DEFAULT_CAMP_SIZE)
        try:
            state = _train(store, pid, out, minutes, model, image_size, quick,
                           dict(model_kwargs or {}), log)
        except KeyboardInterrupt:
            if (out / "camp.json").exists():
                write_state(out, state="interrupted", error="interrupted (Ctrl-C)")
            raise
        except Exception as e:
            if (out / "camp.json").exists():
                write_state(out, state="failed", error=str(e) or type(e).__name__)
            raise
        if propose:
            try:
                state = propose_run(store, pid, out, log=log)
            except Exception as e:  # the run itself is fine: say so, keep it "done"
                log(f"note: no proposals: {e}")
                state = write_state(out, proposals={"state": "failed", "error": str(e)})
    return state


def _train(store: CampStore, pid: str, out: Path, minutes: float, model: str,
           image_size: int, quick: bool, model_kwargs: dict[str, Any],
           log: Callable[[str], Any]) -> dict[str, Any]:
    """Save the sets (unless the run has them), then train or resume; returns camp.json."""
    if not (out / "data" / "train.safetensors").is_file():
        train, val = project_sets(store, pid, image_size)
        (out / "data").mkdir(parents=True, exist_ok=True)
        val.save(out / "data" / "val.safetensors")
        train.save(out / "data" / "train.safetensors")  # last: its presence = complete
    sizes = _set_sizes(out)
    write_state(out, project=pid, run=out.name, classes=sizes["classes"],
                images={"train": sizes["train"], "val": sizes["val"]}, minutes=minutes,
                image_size=image_size, model=model, model_kwargs=model_kwargs,
                created=read_state(out).get("created") or time.time(), state="running",
                error=None)
    budget = minutes * 60.0
    progress = CampProgress(out / "progress.jsonl", budget)
    try:
        if (out / "checkpoint.pt").is_file():
            trainer, _ = resume_run(out, progress=False, log=log, callbacks=[progress])
        else:
            cfg = make_config(model, str((out / "data").resolve()), quick=quick,
                              epochs=1 if quick else EPOCHS, max_seconds=budget,
                              model_kwargs={**model_kwargs, "image_size": image_size})
            trainer, _ = train_run(cfg, out, force=True, progress=False, log=log,
                                   callbacks=[progress])
    except BaseException as e:
        ended = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        progress.write(state=ended, error=str(e) or type(e).__name__)
        raise
    last = trainer.history[-1] if trainer.history else {}
    progress.write(trainer, state="done")  # the last line first: a reader seeing "done" has it
    state = write_state(out, state="done", error=None, finished=time.time(),
                        epochs=trainer.epoch, seconds=round(trainer.train_seconds, 2),
                        val_map=last.get("val_map"), val_map_50=last.get("val_map_50"))
    log(f"trained {model} on {pid} for {trainer.train_seconds:.0f}s ({trainer.epoch} epochs): "
        f"val mAP {_pct(state['val_map'])}, mAP@0.5 {_pct(state['val_map_50'])}; run {out}")
    return state


def _set_sizes(out: Path) -> dict[str, Any]:
    train = DetectionSet.load(out / "data" / "train.safetensors")
    val = DetectionSet.load(out / "data" / "val.safetensors")
    return {"train": len(train), "val": len(val),
            "classes": [{"name": n, "name_zh": z}
                        for n, z in zip(train.class_names, train.class_names_zh, strict=True)]}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# -- proposals -----------------------------------------------------------------------------------
def unlabelled_images(store: CampStore, pid: str) -> list[int]:
    """Ids of the images without an accepted box, not marked no_objects, not reviewed."""
    with store._read() as conn:
        return [r[0] for r in conn.execute(_UNLABELLED_SQL, (pid,))]


@torch.no_grad()
def predict(model: torch.nn.Module, meta: dict[str, Any], store: CampStore, pid: str,
            ids: list[int], score_threshold: float = 0.3, batch: int = 8
            ) -> dict[int, list[dict[str, Any]]]:
    """Boxes the detector finds on each image's working copy: {iid: [{"label", "x1", "y1",
    "x2", "y2", "score"}]} in working-copy pixels (letterboxed in, mapped back out)."""
    side = int(meta["image_size"])
    mean, std = (torch.tensor(v, dtype=torch.float32)[None, :, None, None]
                 for v in meta["normalize"])
    fill = tuple(int(round(float(m) * 255)) for m in meta["normalize"][0])
    found: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        pictures, fits = zip(*(load_work(store, pid, iid, side, fill) for iid in chunk),
                             strict=True)
        x = (torch.stack(pictures).float() / 255.0 - mean) / std  # (B, 3, side, side)
        detections = model.detect(model(x), score_threshold=score_threshold)
        for iid, fit, det in zip(chunk, fits, detections, strict=True):
            boxes = fit.to_original(det["boxes"]).tolist()
            found[iid] = [{"label": int(c), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3],
                           "score": round(float(s), 4)}
                          for b, c, s in zip(boxes, det["labels"], det["scores"], strict=True)
                          if b[2] - b[0] >= 1 and b[3] - b[1] >= 1]
    return found


def propose_run(store: CampStore, pid: str, out: Path, score_threshold: float = 0.3,
                log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Let the run in `out` propose boxes on the project's unlabelled images, each image's
    proposals replacing its older ones (CampStore.propose_many). Records
    {"state", "images", "boxes", "skipped", "score_threshold", "at"} as camp.json's
    "proposals" and returns camp.json. An image that changed meanwhile is skipped."""
    write_state(out, proposals={"state": "running", "score_threshold": score_threshold})
    ckpt = load_checkpoint(out)
    model = model_from_checkpoint(ckpt).eval()
    ids = unlabelled_images(store, pid)
    found = predict(model, ckpt["data"], store, pid, ids, score_threshold)
    boxes = skipped = 0
    items = [{"image": iid, "boxes": proposals} for iid, proposals in found.items()]
    for start in range(0, len(items), 1000):  # one transaction per 1,000 images
        made = store.propose_many(pid, out.name, items[start:start + 1000])
        boxes, skipped = boxes + made["boxes"], skipped + len(made["skipped"])
    log(f"proposed {boxes} boxes on {len(found) - skipped} unlabelled images")
    return write_state(out, proposals={"state": "done", "images": len(found) - skipped,
                                       "boxes": boxes, "skipped": skipped,
                                       "score_threshold": score_threshold, "at": time.time()})


def propose_project(data_dir: Path | str, pid: str, run: str, score_threshold: float = 0.3,
                    log: Callable[[str], Any] = print) -> dict[str, Any]:
    """`propose_run` for run id `run` of project `pid` (`dlcamp camp propose`)."""
    if not 0 <= score_threshold <= 1:
        raise BadArgument(f"score threshold must lie in [0, 1], got {score_threshold}")
    out = run_path(data_dir, pid, run)
    if not (out / "checkpoint.pt").is_file():
        raise BadArgument(f"project {pid!r} has no trained run {run!r}")
    with CampStore(data_dir) as store:
        store.get_project(pid)
        return propose_run(store, pid, out, score_threshold, log)
