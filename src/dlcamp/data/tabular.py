"""Tabular data helpers: K-fold splits and standardisation with training statistics only.

    for train_idx, valid_idx in k_fold_indices(len(X), k=5):
        X_train, X_valid = standardize(X[train_idx], X[valid_idx])

Everything the preprocessing learns (here: mean and standard deviation) must come from the
training part alone; otherwise the validation score peeks at the data it is meant to judge.
"""

from __future__ import annotations

import torch
from torch import Tensor


def k_fold_indices(n: int, k: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Split range(n) into k folds; return k (train_idx, valid_idx) pairs of int64 tensors.

    One random permutation cut into k nearly equal parts (sizes differ by at most one), so
    every example is in exactly one validation fold and in the training part of the others.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an integer with 2 <= k <= n (n={n}), got {k!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    folds = torch.tensor_split(order, k)  # k tensors of about n / k indices each
    pairs = []
    for i, valid in enumerate(folds):
        train = torch.cat([fold for j, fold in enumerate(folds) if j != i])  # (n - len(valid),)
        pairs.append((train, valid))
    return pairs


def standardize(train: Tensor, *others: Tensor, eps: float = 1e-8) -> tuple[Tensor, ...]:
    """Return (train, *others) shifted and scaled by the train columns' mean and std.

    The statistics come from `train` only and are applied unchanged to the others (validation,
    test), exactly as they would be to data that arrives after the model is deployed.
    A constant column (std 0) is only centred, not divided by zero.
    """
    mean = train.mean(dim=0, keepdim=True)  # (1, d)
    std = train.std(dim=0, keepdim=True)  # (1, d)
    std = torch.where(std > eps, std, torch.ones_like(std))
    return tuple((t - mean) / std for t in (train, *others))  # each (n_i, d)
