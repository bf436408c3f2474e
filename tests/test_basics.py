"""dlcamp.course.basics: hand-written data, batching, loss and SGD (lessons 1.03 and 1.04)."""

import pytest
import torch

from dlcamp.course.basics import (
    count_correct,
    evaluate_accuracy,
    minibatches,
    sgd_,
    squared_loss,
    synthetic_linear,
)

TRUE_W = torch.tensor([2.0, -3.4])
TRUE_B = 4.2


def test_synthetic_linear_shapes_and_relation():
    X, y = synthetic_linear(TRUE_W, TRUE_B, n=500, noise=0.01)
    assert X.shape == (500, 2) and y.shape == (500, 1)
    residual = y - (X @ TRUE_W + TRUE_B).reshape(-1, 1)  # (500, 1): the noise
    assert residual.abs().max() < 0.06
    assert 0.005 < residual.std() < 0.015


def test_synthetic_linear_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    X1, y1 = synthetic_linear(TRUE_W, TRUE_B, n=50, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    X2, y2 = synthetic_linear(TRUE_W, TRUE_B, n=50, seed=7)
    X3, _ = synthetic_linear(TRUE_W, TRUE_B, n=50, seed=8)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, X3)


@pytest.mark.parametrize("n,batch_size", [(100, 10), (103, 10), (7, 32)])
def test_minibatches_cover_every_example_exactly_once(n, batch_size):
    X = torch.arange(n, dtype=torch.float32).reshape(n, 1)  # row i holds the value i
    y = X * 10
    batches = list(minibatches(X, y, batch_size, seed=3))
    assert len(batches) == -(-n // batch_size)
    assert all(len(xb) <= batch_size for xb, _ in batches)
    seen = torch.cat([xb for xb, _ in batches]).reshape(-1)  # (n,)
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in batches:  # features and labels stay paired
        assert torch.equal(yb, xb * 10)


def test_minibatches_shuffle_and_seed():
    X = torch.arange(100, dtype=torch.float32).reshape(100, 1)

    def order(**kw):
        return torch.cat([xb for xb, _ in minibatches(X, X, 10, **kw)])

    assert torch.equal(order(shuffle=False), X)
    assert torch.equal(order(seed=1), order(seed=1))
    assert not torch.equal(order(seed=1), order(seed=2))
    assert not torch.equal(order(seed=1), X)


def test_minibatches_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="examples"):
        next(minibatches(torch.zeros(5, 2), torch.zeros(4, 1), 2))


def test_squared_loss_is_per_example_and_reshapes_target():
    y_hat = torch.tensor([[1.0], [2.0], [4.0]])  # (3, 1)
    y = torch.tensor([1.0, 0.0, 1.0])            # (3,): must not broadcast to (3, 3)
    loss = squared_loss(y_hat, y)
    assert loss.shape == (3, 1)
    assert torch.allclose(loss.reshape(-1), torch.tensor([0.0, 2.0, 4.5]))


def test_sgd_step_and_zeroed_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    (w ** 2).sum().backward()  # grad = 2w = [2, -4]
    grad = w.grad.clone()
    before = w.detach().clone()
    sgd_([w], lr=0.5, batch_size=4)
    assert torch.allclose(w.detach(), before - 0.5 * grad / 4)
    assert torch.equal(w.grad, torch.zeros(2))
    assert w.requires_grad and w.is_leaf


def test_fitting_synthetic_data_recovers_w_and_b():
    X, y = synthetic_linear(TRUE_W, TRUE_B, n=1000)
    gen = torch.Generator().manual_seed(0)
    w = (0.01 * torch.randn(2, 1, generator=gen)).requires_grad_()  # (2, 1)
    b = torch.zeros(1, requires_grad=True)
    losses = []
    for epoch in range(3):
        for X_batch, y_batch in minibatches(X, y, batch_size=10, seed=epoch):
            loss = squared_loss(X_batch @ w + b, y_batch).sum()
            loss.backward()
            sgd_([w, b], lr=0.03, batch_size=len(y_batch))
        with torch.no_grad():
            losses.append(squared_loss(X @ w + b, y).mean().item())
    assert losses[-1] < losses[0]
    assert (w.detach().reshape(-1) - TRUE_W).abs().max() < 0.01
    assert abs(b.item() - TRUE_B) < 0.01


def test_count_correct_on_scores_and_labels():
    y_hat = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])  # (3, 2): predicts 1, 0, 1
    assert count_correct(y_hat, torch.tensor([1, 1, 1])) == 2
    assert count_correct(y_hat.log(), torch.tensor([[1], [0], [1]])) == 3  # logits, (3, 1) labels


def test_evaluate_accuracy_with_a_function_and_a_module():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=gen)  # (50, 3)
    y = X.argmax(dim=1)                    # (50,): the identity "net" is always right
    batches = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 50, 16)]  # a last batch of 2
    assert evaluate_accuracy(lambda x: x, batches) == 1.0
    assert evaluate_accuracy(lambda x: -x, batches) < 0.5

    net = torch.nn.Sequential(torch.nn.Dropout(0.9), torch.nn.Identity())
    net.train()
    assert evaluate_accuracy(net, batches) == 1.0  # eval mode: dropout is off
    assert net.training  # and the mode is restored
    net.eval()
    evaluate_accuracy(net, batches)
    assert not net.training


def test_evaluate_accuracy_records_no_graph():
    w = torch.randn(3, 3, requires_grad=True)
    X, y = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    seen = []

    def net(x):
        out = x @ w  # (B, 3)
        seen.append(out.requires_grad)
        return out

    evaluate_accuracy(net, [(X, y)])
    assert seen == [False]


def test_train_scratch_learns_and_records_history():
    from dlcamp.course.basics import train_scratch

    torch.manual_seed(0)
    X = torch.randn(400, 5)
    y = (X[:, 0] + X[:, 1] > 0).long()  # a linearly separable 2-class problem
    W = torch.zeros(5, 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)

    def net(X):
        return X @ W + b

    def loss(y_hat, y):
        return torch.nn.functional.cross_entropy(y_hat, y, reduction="none")

    batches = list(minibatches(X, y, batch_size=50))
    history = train_scratch(net, [W, b], loss, batches, batches, epochs=5, lr=1.0,
                            log=lambda s: None)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.95
    assert W.grad is not None and float(W.grad.abs().sum()) == 0.0  # zeroed by sgd_


def test_polynomial_features_are_scaled_powers():
    import math

    from dlcamp.course.basics import polynomial_features

    x = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    F = polynomial_features(x, degree=6)
    assert F.shape == (4, 6)
    assert torch.equal(F[:, 0], torch.ones(4))  # the constant column stands in for a bias
    for i in range(6):
        assert torch.allclose(F[:, i], x**i / math.factorial(i), rtol=1e-5)
    assert polynomial_features(x.reshape(-1, 1), degree=3).shape == (4, 3)
