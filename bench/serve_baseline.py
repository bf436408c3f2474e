"""The obvious way to serve the model, as the baseline of bench/serve.py: one synchronous
FastAPI endpoint, PIL decode, eager PyTorch, one process.

    DLCAMP_BASELINE_RUN=runs/demo uvicorn serve_baseline:app --port 8001
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from fastapi import FastAPI, UploadFile
from PIL import Image

from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint

ckpt = load_checkpoint(os.environ["DLCAMP_BASELINE_RUN"])
model = model_from_checkpoint(ckpt).eval()
mean, std, classes = ckpt["data"]["mean"], ckpt["data"]["std"], ckpt["data"]["classes"]
app = FastAPI()


@app.post("/predict")
def predict(file: UploadFile) -> dict:
    img = Image.open(io.BytesIO(file.file.read())).convert("L").resize((28, 28))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None, None]
    with torch.no_grad():
        probs = torch.softmax(model((x - mean) / std), dim=1)[0]
    top = int(probs.argmax())
    return {"label": classes[top], "probability": float(probs[top])}
