"""A submitted checkpoint, checked before anything costly is done with it, then rebuilt.

    model, classes, metrics = load_detector(path)   # Unscorable (HTTP 422) says why not

The checks run cheapest first, so that a hostile or broken upload costs little:
1. the file: at most MAX_CHECKPOINT_BYTES, a zip (torch.save's format since PyTorch 1.6) whose
   entries unpack to at most MAX_UNPACKED_BYTES in all and none compressed beyond MAX_RATIO
   (torch.save stores its entries uncompressed: a high ratio means a zip bomb);
2. the content: loaded with weights_only=True (no pickle code runs), a registered Detector,
   image_size 32..640, num_classes 1..100, other numeric arguments finite and within
   +-MAX_KWARG, `data.classes` naming each class, `data.normalize` (if given) a 2 x 3 table of
   finite numbers with std > 0;
3. the size: the model is built on torch.device("meta") (shapes only, no memory) and refused
   unless its parameter count is at most MAX_PARAMETERS and at most the element count of the
   checkpoint's own tensors (weights that cannot fill the model cannot be loaded anyway);
4. only then is the model built for real and its weights loaded (strictly).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import torch

from dlcamp.camp.reads import Invalid
from dlcamp.core.errors import CheckpointError, UnknownName
from dlcamp.models.detector import is_detector
from dlcamp.models.registry import create_model, model_accepts
from dlcamp.train.checkpoint import load_checkpoint, load_weights

MAX_CHECKPOINT_BYTES = 100 * 1024**2
MAX_UNPACKED_BYTES = 4 * MAX_CHECKPOINT_BYTES  # the entries' sizes added up, as declared
MAX_RATIO = 20  # uncompressed / compressed size of one entry (torch.save's are 1)
MAX_PARAMETERS = 50_000_000
MAX_IMAGE_SIZE, MAX_CLASSES, MAX_KWARG = 640, 100, 1024


class Unscorable(Invalid):
    """A submission that cannot be scored (HTTP 422); the message says why."""


def check_archive(path: Path) -> None:
    """Refuse a file that is not a zip, or whose entries would unpack to more than
    MAX_UNPACKED_BYTES or are compressed beyond MAX_RATIO. Raises Unscorable."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise Unscorable(f"not a usable checkpoint: not a torch.save zip ({e})") from None
    total = sum(e.file_size for e in entries)
    if total > MAX_UNPACKED_BYTES:
        raise Unscorable(f"the checkpoint would unpack to {total:,} bytes; at most "
                         f"{MAX_UNPACKED_BYTES:,}")
    for e in entries:
        if e.file_size > MAX_RATIO * max(e.compress_size, 1024):
            raise Unscorable(f"the checkpoint's entry {e.filename[:60]!r} is compressed "
                             f"{e.file_size / max(e.compress_size, 1):.0f}:1; torch.save "
                             "stores entries uncompressed (a zip bomb?)")


def check_normalize(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """data.normalize -> ((mean r, g, b), (std r, g, b)): 2 rows of 3 finite numbers, std > 0
    (the input is (x - mean) / std). Raises Unscorable."""
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(
        isinstance(row, list | tuple) and len(row) == 3 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in row) for row in value)
    if not ok or min(value[1]) <= 0:
        raise Unscorable("data.normalize must be [[mean r, g, b], [std r, g, b]]: finite "
                         "numbers, each std > 0")
    return tuple(float(v) for v in value[0]), tuple(float(v) for v in value[1])


def _check_kwargs(kwargs: dict) -> None:
    for key, value in kwargs.items():
        if isinstance(value, float | int) and not isinstance(value, bool) and (
                not math.isfinite(value) or abs(value) > MAX_KWARG):
            raise Unscorable(f"model argument {key}={value!r} is out of range")
        if not isinstance(value, bool | int | float | str | type(None)):
            raise Unscorable(f"model argument {key} must be a plain value")
    size, n = kwargs.get("image_size", 0), kwargs.get("num_classes", 0)
    if not (isinstance(size, int) and 32 <= size <= MAX_IMAGE_SIZE):
        raise Unscorable(f"image_size must be an integer from 32 to {MAX_IMAGE_SIZE}, got "
                         f"{size!r}")
    if not (isinstance(n, int) and 1 <= n <= MAX_CLASSES):
        raise Unscorable(f"num_classes must be from 1 to {MAX_CLASSES}, got {n!r}")


def meta_parameters(name: str, kwargs: dict) -> int:
    """The parameter count of model `name`(**kwargs), built on the meta device (no memory is
    allocated for its tensors). Raises Unscorable when it cannot be built."""
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except (UnknownName, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise Unscorable(f"the checkpoint's model cannot be rebuilt: {e}") from None
    return sum(p.numel() for p in model.parameters())


def _weights(ckpt: dict) -> dict:
    try:
        weights = ckpt["trainer"]["model"]
    except (KeyError, TypeError):
        weights = None
    if not (isinstance(weights, dict) and all(isinstance(t, torch.Tensor)
                                              for t in weights.values())):
        raise Unscorable("the checkpoint lacks its weights (trainer.model: name -> tensor)")
    return weights


def load_detector(path: Path) -> tuple[torch.nn.Module, list[str], dict]:
    """A submitted checkpoint (file, or a run directory holding checkpoint.pt) -> (detector in
    eval mode, its class names, the checkpoint's metrics), after the module docstring's
    checks. Raises Unscorable."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise Unscorable(f"no checkpoint at {path.name}: the run has not saved one yet")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise Unscorable(f"the checkpoint is {path.stat().st_size:,} bytes; at most "
                         f"{MAX_CHECKPOINT_BYTES:,}")
    check_archive(path)
    try:
        ckpt = load_checkpoint(path)
        spec, data = ckpt["model"], ckpt.get("data") or {}
        name, kwargs = str(spec["name"]), dict(spec["kwargs"])
        detector = is_detector(name)
    except (CheckpointError, UnknownName) as e:
        raise Unscorable(f"not a usable checkpoint: {e}") from None
    except (KeyError, TypeError, AttributeError, ValueError):
        raise Unscorable("the checkpoint lacks its model description (model.name, "
                         "model.kwargs)") from None
    if not detector:
        raise Unscorable(f"model {name!r} is not a detector: only detectors are scored")
    _check_kwargs(kwargs)
    if not isinstance(data, dict):
        raise Unscorable("the checkpoint's data must be an object")
    n, classes = kwargs["num_classes"], data.get("classes")
    if not (isinstance(classes, list) and len(classes) == n
            and all(isinstance(c, str) for c in classes)):
        raise Unscorable(f"the checkpoint must name its {n} classes (data.classes)")
    normalize = check_normalize(data["normalize"]) if "normalize" in data else None
    if model_accepts(name, "pretrained"):
        kwargs["pretrained"] = False  # the weights come from the checkpoint
    weights = _weights(ckpt)
    have = sum(t.numel() for t in weights.values())
    need = meta_parameters(name, kwargs)
    if need > min(have, MAX_PARAMETERS):
        raise Unscorable(f"model {name} with these arguments has {need:,} parameters; the "
                         f"checkpoint holds {have:,} weights (and at most "
                         f"{MAX_PARAMETERS:,} are scored)")
    try:
        model = create_model(name, **kwargs)
        load_weights(model, weights, path.name)
    except (CheckpointError, UnknownName, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise Unscorable(f"the checkpoint's model cannot be rebuilt: {e}") from None
    if normalize is not None:
        model.normalize = normalize
    return model.eval(), classes, dict(ckpt.get("metrics") or {})
