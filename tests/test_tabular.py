"""dlcamp.data.tabular: K-fold indices and train-only standardisation (lesson 1.14)."""

import pytest
import torch

from dlcamp.data.tabular import k_fold_indices, standardize


@pytest.mark.parametrize("n, k", [(10, 2), (442, 5), (23, 4), (7, 7)])
def test_folds_cover_every_example_once_and_are_disjoint(n, k):
    folds = k_fold_indices(n, k, seed=3)
    assert len(folds) == k
    valid_all = torch.cat([valid for _, valid in folds])
    assert sorted(valid_all.tolist()) == list(range(n))  # each example validated exactly once
    sizes = [len(valid) for _, valid in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, valid in folds:
        assert train.dtype == valid.dtype == torch.int64
        assert not set(train.tolist()) & set(valid.tolist())
        assert sorted(torch.cat([train, valid]).tolist()) == list(range(n))


def test_folds_are_reproducible_and_depend_on_seed():
    a, b, c = k_fold_indices(50, 5, seed=1), k_fold_indices(50, 5, seed=1), k_fold_indices(50, 5)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("k", [0, 1, 11, 2.5, True])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be"):
        k_fold_indices(10, k)


def test_standardize_uses_train_statistics_only():
    torch.manual_seed(0)
    train = torch.randn(200, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 7.0])
    other = torch.randn(50, 3) * 10 + 100  # very different distribution
    tr, ot = standardize(train, other)
    assert torch.allclose(tr.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(tr.std(0), torch.ones(3), atol=1e-5)
    mean, std = train.mean(0), train.std(0)
    assert torch.allclose(ot, (other - mean) / std)  # train's stats, not other's
    assert ot.mean(0).abs().min() > 5  # so `other` is not centred on its own mean


def test_standardize_constant_column_and_single_input():
    train = torch.tensor([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]])
    (out,) = standardize(train)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 1], torch.zeros(3))
