"""Export a checkpoint to ONNX (dynamic batch), with labels and preprocessing inside the file.

    dlcamp export runs/demo --format onnx          # -> runs/demo/model.onnx
    dlcamp serve runs/demo/model.onnx              # onnxruntime, no PyTorch model code needed
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.io import atomic_write_bytes
from dlcamp.serve.model import META_KEY, serving_meta
from dlcamp.serve.preprocess import Preprocess
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint

OPSET = 17


def export_onnx(checkpoint: Path | str, out: Path | str | None = None) -> Path:
    """Write the model as ONNX with a dynamic batch axis; returns the file's path."""
    import onnx

    ckpt = load_checkpoint(checkpoint)
    meta = serving_meta(ckpt)
    model = model_from_checkpoint(ckpt).float().eval()
    if meta.get("kind") == "detection":  # raw outputs; the model class decodes (serve/detect)
        example = torch.zeros(2, 3, meta["image_size"], meta["image_size"])  # (B, 3, S, S)
        outputs = [f"output{i}" for i in range(len(model(example)))]
    else:
        pre = Preprocess.from_checkpoint(ckpt)
        side = pre.resize or pre.size
        example = torch.zeros(2, pre.channels, side, side)  # (B, C, H, W); B is dynamic
        outputs = ["logits"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (example,), buffer, input_names=["image"],
                          output_names=outputs, opset_version=OPSET, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in ["image", *outputs]})
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, ensure_ascii=False)
    onnx.checker.check_model(proto)
    path = Path(out) if out else resolve_checkpoint(checkpoint).parent / "model.onnx"
    atomic_write_bytes(path, proto.SerializeToString())
    return path


def export(checkpoint: Path | str, fmt: str = "onnx", out: Path | str | None = None) -> Path:
    if fmt != "onnx":
        raise BadArgument(f"unknown export format {fmt!r}; dlcamp exports onnx")
    return export_onnx(checkpoint, out)
