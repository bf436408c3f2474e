"""Checkpoints that carry what they need to rebuild themselves, saved atomically, loaded safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)`: nothing in the file can run code on load.

    {"format": "dlcamp-checkpoint", "version": 1,
     "model": {"name": "cnn", "kwargs": {...}},          # create_model(name, **kwargs)
     "data": {"dataset", "classes", "classes_zh", "mean", "std", "shape", "resize"},
     "trainer": Trainer.state_dict(),                     # weights, optimizer, rng, history
     "config": {...}, "metrics": {...}, "versions": {...}}
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcamp.core.errors import CheckpointError
from dlcamp.core.io import atomic_write_bytes
from dlcamp.models.registry import create_model, model_accepts
from dlcamp.text.vocab import Vocab

FORMAT, VERSION = "dlcamp-checkpoint", 1


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write the checkpoint to a temporary file, fsync, then rename over `path`."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def resolve_checkpoint(path: Path | str) -> Path:
    """Accept a checkpoint file or a run directory holding checkpoint.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}. Train first: `dlcamp train --out DIR`, "
                              "then pass DIR or DIR/checkpoint.pt.")
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; anything else than a dlcamp checkpoint is refused."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable dlcamp checkpoint "
                              f"(truncated, corrupt, or it contains objects that are not "
                              f"allowed to load safely): {first}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlcamp checkpoint (no '{FORMAT}' marker).")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer dlcamp (format version "
                              f"{ckpt['version']}); upgrade dlcamp to read it.")
    return ckpt


def check_same_model(ckpt: dict[str, Any], name: str, kwargs: dict[str, Any]) -> None:
    """Refuse to put weights of one architecture into another."""
    saved = ckpt["model"]
    if saved["name"] != name or dict(saved["kwargs"]) != dict(kwargs):
        raise CheckpointError(
            f"this checkpoint belongs to model {saved['name']!r} {dict(saved['kwargs'])}, "
            f"not {name!r} {dict(kwargs)}. Use the same --model (and arguments), "
            "or start a new run in another directory.")


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "") -> None:
    """load_state_dict with a readable error instead of a wall of key names."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {source or 'the checkpoint'} do not fit this "
                              f"model: {str(e).splitlines()[0]}") from e


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights. A model built on
    pretrained weights (`pretrained=True`) is rebuilt without reading them: every weight comes
    from the checkpoint, so serving it needs no weights package."""
    spec = ckpt["model"]
    kwargs = dict(spec["kwargs"])
    if model_accepts(spec["name"], "pretrained"):
        kwargs["pretrained"] = False
    model = create_model(spec["name"], **kwargs)
    load_weights(model, ckpt["trainer"]["model"])
    return model.eval()


def load_language_model(path: Path | str) -> tuple[nn.Module, Vocab, dict[str, Any]]:
    """A language model and its vocabulary from a run directory or checkpoint file."""
    ckpt = load_checkpoint(path)
    data = ckpt.get("data", {})
    if data.get("kind") != "text":
        raise CheckpointError(f"{path} holds a {ckpt['model']['name']!r} model trained on "
                              f"{data.get('dataset', 'images')!r}, not a language model. Train "
                              "one first: `dlcamp train --model lstm --dataset tang300`.")
    return model_from_checkpoint(ckpt), Vocab.from_idx_to_token(data["vocab"]), data
