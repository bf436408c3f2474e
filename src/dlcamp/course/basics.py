"""The first building blocks, written by hand: synthetic data, minibatches, a loss, SGD.

Lessons 1.03 (linear regression from scratch) and 1.04 (the concise version) both use these,
so they live here once, with tests, instead of being pasted into each lesson. Lesson 1.06
(softmax regression from scratch) and the later classifiers add `evaluate_accuracy`.

    X, y = synthetic_linear(torch.tensor([2.0, -3.4]), 4.2, n=1000)
    for X_batch, y_batch in minibatches(X, y, batch_size=10):
        loss = squared_loss(X_batch @ w + b, y_batch).sum()
        loss.backward()
        sgd_([w, b], lr=0.03, batch_size=len(y_batch))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn


def synthetic_linear(w: Tensor, b: float, n: int, noise: float = 0.01,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """Examples of y = Xw + b + Gaussian noise; the same seed gives the same data.

    Returns X of shape (n, len(w)) with standard-normal features and y of shape (n, 1).
    """
    w = torch.as_tensor(w, dtype=torch.float32).reshape(-1)  # (d,)
    # A private generator: the data does not depend on (or disturb) the global RNG.
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, len(w), generator=gen)  # (n, d)
    y = X @ w + b  # (n,)
    y = y + noise * torch.randn(n, generator=gen)  # (n,)
    return X, y.reshape(-1, 1)  # (n, d), (n, 1)


def minibatches(X: Tensor, y: Tensor, batch_size: int, shuffle: bool = True,
                seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (X_batch, y_batch) pairs that together cover every example exactly once.

    One random permutation, then slices of it: the indexing is done by whole tensors, never
    one example at a time in Python. The last batch is smaller when batch_size does not
    divide len(X). Pass a different seed each epoch to get a different order.
    """
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X has {n} examples but y has {len(y)}")
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    else:
        order = torch.arange(n)  # (n,)
    order = order.to(X.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]  # (B,)
        yield X[idx], y[idx]  # (B, d), (B, ...)


def squared_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Half the squared error of each example (not averaged): (y_hat - y)**2 / 2.

    y is reshaped to y_hat's shape, so a (B,) target against a (B, 1) prediction does not
    silently broadcast into a (B, B) matrix.
    """
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2  # same shape as y_hat


def sgd_(params: Iterable[Tensor], lr: float, batch_size: int) -> None:
    """One step of minibatch stochastic gradient descent, in place, then zero the gradients.

    The loss that was back-propagated is a *sum* over the batch, so the gradient is divided
    by batch_size to step along the mean gradient. The update runs under no_grad: it is not
    part of the model and must not be recorded by autograd.
    """
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def count_correct(y_hat: Tensor, y: Tensor) -> int:
    """How many rows of scores y_hat (B, C) put their largest value on the true class y (B,).

    Works on logits and on probabilities alike: softmax does not change which entry is largest.
    """
    pred = y_hat.argmax(dim=1)  # (B,) predicted class of each example
    return int((pred == y.reshape(pred.shape)).sum())


def evaluate_accuracy(net: Callable[[Tensor], Tensor],
                      loader: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Fraction of the examples in `loader` that `net` classifies correctly.

    `net` is any callable from a batch to scores (B, C): a hand-written function or an
    nn.Module. A module is put in eval mode for the pass (dropout off) and then restored.
    """
    was_training = isinstance(net, nn.Module) and net.training
    if isinstance(net, nn.Module):
        net.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for X, y in loader:
            correct += count_correct(net(X), y)
            total += len(y)
    if was_training:
        net.train()
    return correct / max(total, 1)


def train_scratch(net: Callable[[Tensor], Tensor], params: list[Tensor],
                  loss: Callable[[Tensor, Tensor], Tensor], train_loader, test_loader,
                  epochs: int, lr: float, log: Callable[[str], object] = print
                  ) -> list[dict[str, float]]:
    """The hand-written training loop of the from-scratch lessons, written once.

    Each step: forward, back-propagate the *sum* of the per-example losses, `sgd_` (which
    divides by the batch size and zeroes the gradients). Returns one record per epoch with
    train_loss, train_acc and test_acc (the keys dlcamp's curve plots understand).
    """
    history = []
    for epoch in range(epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)  # a different shuffle each epoch
        loss_sum, correct, n = 0.0, 0, 0
        for X, y in train_loader:
            y_hat = net(X)     # (B, C)
            l = loss(y_hat, y)  # (B,) one loss per example
            l.sum().backward()
            sgd_(params, lr, batch_size=len(y))
            loss_sum += float(l.detach().sum())
            correct += count_correct(y_hat.detach(), y)
            n += len(y)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n,
                  "test_acc": evaluate_accuracy(net, test_loader)}
        history.append(record)
        log(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}, "
            f"train acc {record['train_acc']:.3f}, test acc {record['test_acc']:.3f}")
    return history


def polynomial_features(x: Tensor, degree: int) -> Tensor:
    """Scaled powers x**i / i! for i = 0 .. degree-1, one column each (lesson 1.10).

    Dividing by i! keeps the high powers from exploding (x**19 alone can reach 1e9 for
    |x| near 3), so every column stays on a scale gradient descent can handle.
    Column 0 is all ones: it plays the role of the bias. x of shape (n,) or (n, 1).
    """
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1)  # (n, 1)
    powers = torch.arange(degree, dtype=torch.float32)  # (degree,)
    factorials = torch.exp(torch.lgamma(powers + 1))  # (degree,) i!
    return x ** powers / factorials  # (n, degree)
