"""A task tells the training loop what loss to minimise and what to measure.

The loop never knows whether it trains a classifier, a regressor or a language model: it asks
the task for `step(model, batch) -> (loss, sums)`, adds the `sums` up on the device (no
`.item()` per batch), and asks the task to `summarize` the totals at the end of an epoch.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.models.detector import Detector
from dlcamp.models.gpt import GPT
from dlcamp.models.rnn import RNNLM
from dlcamp.models.seq2seq import EncoderDecoder

Batch = tuple[torch.Tensor, ...]


def add_sums(sums: dict[str, Any], batch_sums: dict[str, Any]) -> None:
    """Add one batch's sums into `sums`, in place. Tensors stay on their device (no sync per
    batch); plain numbers (the NumPy engine's) add up as numbers."""
    for k, v in batch_sums.items():
        if k in sums:
            sums[k] = sums[k] + v
        else:
            sums[k] = v.clone() if isinstance(v, torch.Tensor) else v


class Task:
    """Base class. `monitor`/`mode` name the metric that decides 'best' and early stopping."""

    monitor: str = "loss"
    mode: str = "min"

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums.get("n", 0.0), 1.0)
        return {"loss": sums["loss"] / n}

    def start_eval(self) -> None:
        """Called by Trainer.evaluate before the first batch: a task whose metric needs the
        whole split (mAP) starts collecting here."""

    def finish_eval(self) -> dict[str, float]:
        """Called by Trainer.evaluate after the last batch: metrics of the whole split, added
        to `summarize`'s (none here)."""
        return {}


class Classification(Task):
    """Cross-entropy on logits; reports mean loss and accuracy.

    With `label_smoothing` = eps > 0 the training step minimises the smoothed objective
    (1 - eps) * CE + eps * mean over classes of -log p (Szegedy et al., 2016, as
    `F.cross_entropy(label_smoothing=eps)` computes it), but the reported `loss` is always the
    plain cross-entropy, the number the book and `dlcamp evaluate` report; the objective
    itself is reported as `loss_smoothed` (training only).
    """

    monitor, mode = "acc", "max"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        logits = model(x)  # (B, num_classes)
        log_p = F.log_softmax(logits.float(), dim=1)  # (B, num_classes)
        nll = F.nll_loss(log_p, y, reduction="none")  # (B,) plain cross-entropy
        sums = {
            "loss": nll.detach().sum(),
            "correct": (logits.argmax(1) == y).sum(),
            "n": torch.tensor(len(y)),
        }
        eps = self.label_smoothing
        if eps and torch.is_grad_enabled():  # training; evaluation reports plain CE only
            smoothed = (1.0 - eps) * nll - eps * log_p.mean(dim=1)  # (B,)
            sums["loss_smoothed"] = smoothed.detach().sum()
            return smoothed.mean(), sums
        return nll.mean(), sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        out = {"loss": sums["loss"] / n, "acc": sums["correct"] / n}
        if "loss_smoothed" in sums:
            out["loss_smoothed"] = sums["loss_smoothed"] / n
        return out


class Regression(Task):
    """Mean squared error; reports MSE and RMSE."""

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        pred = model(x).reshape(y.shape)
        loss = F.mse_loss(pred.float(), y.float())
        return loss, {"loss": loss.detach() * len(y), "n": torch.tensor(len(y))}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        mse = sums["loss"] / max(sums["n"], 1.0)
        return {"loss": mse, "rmse": mse**0.5}


def detach_state(state):
    """Cut the graph at the batch boundary: keep the values, drop the history (truncated BPTT)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class LanguageModel(Task):
    """Next-token prediction: mean cross-entropy per token; reports loss and perplexity.

    Batches are (X, Y, fresh) from a SeqDataLoader. The hidden state is carried from one batch
    to the next (detached, so gradients stop at the batch boundary) unless `fresh` says the
    rows do not continue the previous batch (random sampling, or a new epoch).
    """

    monitor, mode = "ppl", "min"

    def __init__(self) -> None:
        self.state = None

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch[0], batch[1]
        fresh = len(batch) < 3 or bool(batch[2])
        state = None if fresh or self._batch_size(model) != len(x) else detach_state(self.state)
        logits, self.state = model(x, state)  # (B, T, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, {"loss": loss.detach() * y.numel(), "n": torch.tensor(y.numel())}

    def _batch_size(self, model: nn.Module) -> int:
        """The rows of the carried state: dim 1 of a recurrent state (layers, B, H), or the
        model's `state_batch_dim` (0 for GPT's context of token ids, (B, L))."""
        if self.state is None:
            return -1
        h = self.state[0] if isinstance(self.state, tuple) else self.state
        return h.shape[getattr(model, "state_batch_dim", 1)]

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss"] / max(sums["n"], 1.0)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid_len: torch.Tensor,
                         label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over the real tokens of padded target sequences.

    logits (B, T, V), targets (B, T) int64, valid_len (B,): how many of each row's T positions
    are real (the target tokens and <eos>; the rest is padding). Returns (sum of the per-token
    losses over real positions, number of real positions), both 0-d tensors: their ratio is
    the loss averaged per real token. d2l's MaskedSoftmaxCELoss (section 10.7) instead zeroes
    padded positions and then averages over all T positions of each row, so a sentence's loss
    shrinks with the padding that happens to follow it in its batch.
    """
    B, T, V = logits.shape
    real = torch.arange(T, device=targets.device)[None, :] < valid_len[:, None]   # (B, T)
    nll = F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T),
                          reduction="none", label_smoothing=label_smoothing)    # (B * T,)
    return (nll.reshape(B, T) * real).sum(), real.sum()


class Seq2Seq(Task):
    """Translation with an encoder-decoder, trained with teacher forcing.

    Batches are (src (B, S), src_len (B,), tgt_in (B, T), tgt_out (B, T), tgt_len (B,)) as
    dlcamp.text.translation's loaders yield them: the decoder reads tgt_in = <bos> y1 .. yn and
    must predict tgt_out = y1 .. yn <eos>; tgt_len = n + 1 counts the real positions. The loss
    is the cross-entropy averaged per real target token (`masked_cross_entropy`), so padding
    changes nothing. Reported: loss, ppl (its exponential), acc (share of real target tokens
    predicted right, with the true previous tokens given). BLEU needs decoding and is
    computed by `dlcamp evaluate` (dlcamp.train.translation), not every epoch.

    With `label_smoothing` = eps > 0 the training step minimises the smoothed objective (the
    Transformer paper uses 0.1), reported as `loss_smoothed`; `loss` stays the plain one.
    """

    monitor, mode = "ppl", "min"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src, src_len, tgt_in, tgt_out, tgt_len = batch[:5]
        logits = model(src, src_len, tgt_in)                                 # (B, T, V)
        total, n = masked_cross_entropy(logits, tgt_out, tgt_len)
        real = torch.arange(tgt_out.shape[1], device=tgt_out.device)[None, :] < tgt_len[:, None]
        sums = {"loss": total.detach(), "n": n,
                "correct": ((logits.argmax(-1) == tgt_out) & real).sum()}
        loss = total / n.clamp(min=1)
        eps = self.label_smoothing
        if eps and torch.is_grad_enabled():
            smoothed, _ = masked_cross_entropy(logits, tgt_out, tgt_len, eps)
            sums["loss_smoothed"] = smoothed.detach()
            return smoothed / n.clamp(min=1), sums
        return loss, sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        loss = sums["loss"] / n
        out = {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "acc": sums["correct"] / n}
        if "loss_smoothed" in sums:
            out["loss_smoothed"] = sums["loss_smoothed"] / n
        return out


class Detection(Task):
    """Object detection with a `dlcamp.models.detector.Detector`: batches are (images, boxes,
    labels) as dlcamp.data.detection_loader yields them; the loss is the detector's own.

    Evaluation also runs the detector's `detect` and scores the boxes with torchmetrics'
    `MeanAveragePrecision` (pycocotools backend: the COCO evaluation itself): `map` is
    mAP@[.5:.95], `map_50` mAP@0.5 (the monitor), `map_75` mAP@0.75; with
    `class_metrics=True` also `ap_<i>` (AP@[.5:.95]) and `ap50_<i>` (AP@0.5) for class i.
    Reported: loss, cls_loss, box_loss (per image) and cls_err (share of anchors whose
    class is wrong, the book's "class error").
    """

    monitor, mode = "map_50", "max"

    def __init__(self, class_metrics: bool = False, score_threshold: float = 0.01,
                 max_detections: int = 100) -> None:
        self.class_metrics = class_metrics
        self.score_threshold, self.max_detections = score_threshold, max_detections
        self.metric: Any = None

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, boxes, labels = batch[0], batch[1], batch[2]
        detector = getattr(model, "_orig_mod", model)  # the module under torch.compile
        outputs = model(images)
        loss, sums = detector.loss(outputs, boxes, labels)
        if self.metric is not None and not model.training:
            found = detector.detect(outputs, self.score_threshold,
                                    max_detections=self.max_detections)
            real = labels >= 0                                               # (B, M)
            truth = [{"boxes": b[r].float(), "labels": lb[r]}
                     for b, lb, r in zip(boxes, labels, real, strict=True)]
            self.metric.update(found, truth)
        return loss, sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        return {"loss": sums["loss"] / n, "cls_loss": sums["cls_loss"] / n,
                "box_loss": sums["box_loss"] / n,
                "cls_err": sums["cls_err"] / max(sums["anchors"], 1.0)}

    def start_eval(self) -> None:
        from torchmetrics.detection import MeanAveragePrecision

        self.metric = MeanAveragePrecision(backend="pycocotools", box_format="xyxy",
                                           class_metrics=self.class_metrics,
                                           extended_summary=self.class_metrics)

    def finish_eval(self) -> dict[str, float]:
        metric, self.metric = self.metric, None
        if metric is None:
            return {}
        with warnings.catch_warnings():  # "no predictions/targets" on an empty split
            warnings.simplefilter("ignore")
            result = metric.compute()
        out = {k: max(float(result[k]), 0.0) for k in ("map", "map_50", "map_75")}
        if self.class_metrics:
            out.update(class_ap(result))
        return out


def class_ap(result: dict[str, Any]) -> dict[str, float]:
    """`ap_<i>` (AP@[.5:.95]) and `ap50_<i>` (AP@0.5) per class id i from torchmetrics'
    extended summary: precision (T, R, K, A, M) at IoU thresholds .5:.05:.95, 101 recall
    points, area "all", the largest max-detections; -1 marks "no such objects"."""
    ids = result["classes"].reshape(-1).tolist()
    precision = result["precision"][:, :, :, 0, -1]                          # (T, R, K)
    out = {}
    for k, i in enumerate(ids):
        p = precision[:, :, k]                                               # (T, R)
        every, at_50 = p[p > -1], p[0][p[0] > -1]
        out[f"ap_{i}"] = float(every.mean()) if len(every) else 0.0
        out[f"ap50_{i}"] = float(at_50.mean()) if len(at_50) else 0.0
    return out


def default_task(model: object, label_smoothing: float = 0.0) -> Task:
    """The task a model trains on unless one is given: next-token prediction for a language
    model (`dlcamp.models.rnn.RNNLM`, `dlcamp.models.gpt.GPT`), translation for an
    `EncoderDecoder` (with `label_smoothing`), detection for a `Detector`, else
    classification (with `label_smoothing`)."""
    if isinstance(model, (RNNLM, GPT)):
        return LanguageModel()
    if isinstance(model, EncoderDecoder):
        return Seq2Seq(label_smoothing)
    if isinstance(model, Detector):
        return Detection()
    return Classification(label_smoothing)
