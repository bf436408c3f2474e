"""Evaluate a checkpoint on a dataset split, with the preprocessing stored in the checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcamp.core.errors import CheckpointError
from dlcamp.core.utils import pick_device
from dlcamp.data.datasets import ImageSet, load_dataset
from dlcamp.data.loader import TensorLoader
from dlcamp.text.corpora import corpus_text
from dlcamp.text.data import eval_loader
from dlcamp.text.vocab import Vocab, encode_corpus
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcamp.train.detection import evaluate_detector
from dlcamp.train.trainer import TrainConfig, Trainer
from dlcamp.train.translation import evaluate_translation


def evaluate_checkpoint(path: Path | str, dataset: str | None = None, split: str = "test",
                        device: str = "auto", batch_size: int = 1024,
                        quick: bool = False) -> dict[str, Any]:
    """Accuracy and loss of a saved model; the dataset defaults to the one it was trained on.
    A detector reports mAP instead (dlcamp.train.detection.evaluate_detector): trained on a
    scene set, on the test and the shift split; on a detection set on disk (a directory, e.g.
    a camp run's data/, looked for next to the checkpoint first), on its val and test split;
    `split` other than "test": that split only.

    Computed in fp32 whatever precision the model was trained in, as the server and the ONNX
    export compute: `dlcamp evaluate` and `dlcamp serve` give the same answers for the same
    checkpoint. The loss is plain cross-entropy (no label smoothing).
    """
    ckpt = load_checkpoint(path)
    data_meta = ckpt["data"]
    if data_meta.get("kind") == "text":
        return _evaluate_language_model(ckpt, dataset, split, device, quick)
    if data_meta.get("kind") == "translation":  # loss, ppl and sacrebleu BLEU (greedy)
        return evaluate_translation(ckpt, dataset, split, device, quick)
    if data_meta.get("kind") == "scenes":  # mAP on test + shift, or val + test of a set dir
        splits = None if split == "test" else (split,)
        run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
        return evaluate_detector(ckpt, dataset, splits, device, quick, run_dir=run_dir)
    name = dataset or data_meta["dataset"]
    data = load_dataset(name, split)
    if list(data.shape) != list(data_meta["shape"]):
        raise CheckpointError(f"the checkpoint expects images of shape {data_meta['shape']}, "
                              f"but {name!r} has {list(data.shape)}.")
    if quick:
        data = data.subset(2000)
    # Normalise exactly as in training: the statistics come from the checkpoint.
    data = ImageSet(data.name, data.split, data.images, data.labels, data.classes,
                    data.classes_zh, float(data_meta["mean"]), float(data_meta["std"]))
    model = model_from_checkpoint(ckpt)
    cfg = TrainConfig.from_dict({**ckpt.get("config", {}).get("train", {}), "device": device,
                                  "compile": False})
    trainer = Trainer(model, cfg)  # evaluates in fp32, in the layout that is fastest here
    loader = TensorLoader(data, batch_size, device=pick_device(device),
                          resize=data_meta.get("resize", 0))
    metrics = trainer.evaluate(loader)
    return {"model": ckpt["model"]["name"], "dataset": name, "split": split,
            "examples": len(data), **metrics, "trained_epochs": ckpt["trainer"]["epoch"]}


def _evaluate_language_model(ckpt: dict[str, Any], dataset: str | None, split: str,
                             device: str, quick: bool) -> dict[str, Any]:
    """Perplexity of a language model on a corpus split ("test" means the held-out "val"),
    encoded with the vocabulary stored in the checkpoint, read sequentially (state carried)."""
    data_meta = ckpt["data"]
    name = dataset or data_meta["dataset"]
    split = "val" if split == "test" else split
    vocab = Vocab.from_idx_to_token(data_meta["vocab"])
    ids = encode_corpus(corpus_text(name, split), vocab, data_meta.get("token", "char"))
    if quick:
        ids = ids[:5000]
    cfg = ckpt.get("config", {})
    loader = eval_loader(ids, cfg.get("batch_size", 32), data_meta.get("num_steps", 35))
    trainer = Trainer(model_from_checkpoint(ckpt), TrainConfig(device=device))
    metrics = trainer.evaluate(loader)
    return {"model": ckpt["model"]["name"], "dataset": name, "split": split,
            "tokens": len(ids), **metrics, "trained_epochs": ckpt["trainer"]["epoch"]}
