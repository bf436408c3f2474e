"""A trained image classifier ready to serve: preprocessing, labels and a backend.

    model = ServedModel.load("runs/demo")                    # PyTorch, eager
    model = ServedModel.load("runs/demo/model.onnx")         # onnxruntime (dlcamp export)
    model.predict([pixels_28x28_uint8], top_k=3)

Both backends read the same preprocessing and labels: from the checkpoint, or from the
metadata that `dlcamp export` writes into the ONNX file. A detector (tinyssd, yolo) loads the
same way with `kind` "detection": its forward returns the raw output tensors, and
dlcamp.serve.detect letterboxes the photos and decodes the boxes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcamp.core.errors import CheckpointError
from dlcamp.serve.preprocess import Preprocess
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint

META_KEY = "dlcamp"  # ONNX metadata_props key holding the JSON below


def serving_meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a server needs besides the weights: labels, preprocessing, model name."""
    data = ckpt["data"]
    if data.get("kind") == "text":
        raise CheckpointError("this is a language model; serve image classifiers. "
                              "Language models write text with `dlcamp generate RUN`.")
    if data.get("kind") == "translation":
        raise CheckpointError("this is a translation model; serve, export and detect take "
                              "image models. Translate with `dlcamp translate RUN \"Open "
                              "file\"`.")
    if data.get("kind") == "scenes":  # a detector: dlcamp.serve.detect letterboxes and decodes
        return {"model": ckpt["model"]["name"], "kind": "detection",
                "classes": list(data["classes"]), "classes_zh": list(data["classes_zh"]),
                "dataset": data["dataset"], "image_size": int(data["image_size"]),
                "normalize": [list(v) for v in data["normalize"]],
                "detector": {"name": ckpt["model"]["name"],
                             "kwargs": dict(ckpt["model"]["kwargs"])}}
    return {"model": ckpt["model"]["name"], "classes": list(data["classes"]),
            "classes_zh": list(data.get("classes_zh") or data["classes"]),
            "dataset": data["dataset"], "preprocess": Preprocess.from_checkpoint(ckpt).to_dict()}


class ServedModel:
    def __init__(self, meta: dict[str, Any], forward: Any, backend: str,
                 module: torch.nn.Module | None = None) -> None:
        self.meta, self.forward, self.backend = meta, forward, backend
        self.kind = meta.get("kind", "classification")  # or "detection" (serve/detect.py)
        self.preprocess = Preprocess(**meta["preprocess"]) if "preprocess" in meta else None
        self.classes, self.classes_zh = meta["classes"], meta["classes_zh"]
        self.module = module  # the PyTorch model (None for ONNX): detectors decode with it

    @classmethod
    def load(cls, path: Path | str, threads: int | None = None) -> ServedModel:
        path = Path(path)
        if path.suffix == ".onnx":
            return cls._load_onnx(path, threads)
        ckpt = load_checkpoint(path)
        meta = serving_meta(ckpt)
        model = model_from_checkpoint(ckpt).eval()
        if threads:
            torch.set_num_threads(threads)

        def forward(x: torch.Tensor) -> Any:
            with torch.inference_mode():
                out = model(x)
            if isinstance(out, tuple):  # a detector's raw outputs
                return tuple(o.float() for o in out)
            return out.float().numpy()

        return cls(meta, forward, "torch", module=model)

    @classmethod
    def _load_onnx(cls, path: Path, threads: int | None) -> ServedModel:
        import onnxruntime as ort

        if not path.is_file():
            raise CheckpointError(f"no ONNX model at {path}; make one with "
                                  "`dlcamp export RUN --format onnx`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path} is not a loadable ONNX model: {e}") from e
        props = session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise CheckpointError(f"{path} has no dlcamp metadata (labels, preprocessing); "
                                  "export it with `dlcamp export`.")
        name = session.get_inputs()[0].name
        meta = json.loads(props[META_KEY])
        detector = meta.get("kind") == "detection"

        def forward(x: torch.Tensor) -> Any:
            outputs = session.run(None, {name: x.numpy()})
            if detector:  # raw outputs, decoded by the model class (serve/detect.py)
                return tuple(torch.from_numpy(o) for o in outputs)
            return outputs[0]

        return cls(meta, forward, "onnx")

    def logits(self, pixels: list[np.ndarray]) -> np.ndarray:
        """uint8 images (size, size) -> logits (B, classes)."""
        return self.forward(self.preprocess.to_tensor(np.stack(pixels)))

    def predict(self, pixels: list[np.ndarray], top_k: int = 3) -> list[list[dict[str, Any]]]:
        """Top-k labels (English and Chinese) with probabilities for each image."""
        logits = self.logits(pixels)
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[{"index": int(i), "label": self.classes[i], "label_zh": self.classes_zh[i],
                  "probability": round(float(p[i]), 6)} for i in row]
                for p, row in zip(probs, order, strict=True)]


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - start) * 1000.0
