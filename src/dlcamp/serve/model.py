"""A trained image classifier ready to serve: preprocessing, labels and a backend.

    model = ServedModel.load("runs/demo")                    # PyTorch, eager
    model = ServedModel.load("runs/demo/model.onnx")         # onnxruntime (dlcamp export)
    model.predict([pixels_28x28_uint8], top_k=3)

Both backends read the same preprocessing and labels: from the checkpoint, or from the
metadata that `dlcamp export` writes into the ONNX file.
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
    return {"model": ckpt["model"]["name"], "classes": list(data["classes"]),
            "classes_zh": list(data.get("classes_zh") or data["classes"]),
            "dataset": data["dataset"], "preprocess": Preprocess.from_checkpoint(ckpt).to_dict()}


class ServedModel:
    def __init__(self, meta: dict[str, Any], forward: Any, backend: str) -> None:
        self.meta, self.forward, self.backend = meta, forward, backend
        self.preprocess = Preprocess(**meta["preprocess"])
        self.classes, self.classes_zh = meta["classes"], meta["classes_zh"]

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

        def forward(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return model(x).float().numpy()

        return cls(meta, forward, "torch")

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

        def forward(x: torch.Tensor) -> np.ndarray:
            return session.run(None, {name: x.numpy()})[0]

        return cls(json.loads(props[META_KEY]), forward, "onnx")

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
