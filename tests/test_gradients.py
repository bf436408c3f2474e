"""dlcamp.core.gradients.clip_grad_norm against torch.nn.utils.clip_grad_norm_, on PyTorch
parameters and on the scratch engine's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.gradients import clip_grad_norm
from dlcamp.engine.models import create_scratch_model


def torch_twins(scale: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two identical networks holding identical gradients, of global norm about 10 * scale."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin.load_state_dict(net.state_dict())
    x = torch.randn(16, 5)
    for model in (net, twin):
        (scale * model(x).pow(2).sum()).backward()
    return net, twin


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e3])
def test_equals_torch_on_torch_parameters(scale, max_norm):
    net, twin = torch_twins(scale)
    norm = clip_grad_norm(net, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(twin.parameters(), max_norm)
    assert isinstance(norm, torch.Tensor) and norm.dim() == 0  # no GPU sync: the caller reads it
    assert float(norm) == pytest.approx(float(expected), rel=1e-6)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    after = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert float(after) <= max_norm * (1 + 1e-5)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e3])
def test_equals_torch_on_scratch_engine_parameters(scale, max_norm):
    rng = np.random.default_rng(0)
    scratch_model = create_scratch_model("mlp", hidden=[16], image_size=4)
    torch_params = []
    for p in scratch_model.parameters():
        p.grad = (scale * rng.standard_normal(p.shape)).astype(np.float32)
        t = torch.nn.Parameter(torch.from_numpy(p.data.copy()))
        t.grad = torch.from_numpy(p.grad.copy())
        torch_params.append(t)
    norm = clip_grad_norm(scratch_model, max_norm)  # a module, like torch's modules
    torch_norm = torch.nn.utils.clip_grad_norm_(torch_params, max_norm)
    assert isinstance(norm, float) and norm == pytest.approx(float(torch_norm), rel=1e-5)
    for p, t in zip(scratch_model.parameters(), torch_params, strict=True):
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_one_parameter_a_list_and_the_book_example():
    w = torch.nn.Parameter(torch.ones(4))
    w.grad = torch.full((4,), 3.0)  # norm 6
    assert float(clip_grad_norm(w, 2.0)) == pytest.approx(6.0)
    torch.testing.assert_close(w.grad, torch.full((4,), 1.0))  # scaled to norm 2
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4)),
              torch.nn.Parameter(torch.zeros(1))]  # the last one has no gradient: skipped
    params[0].grad, params[1].grad = torch.tensor([3.0, 0, 0]), torch.tensor([0, 4.0, 0, 0])
    assert float(clip_grad_norm(params, math.inf)) == 5.0  # infinity measures, clips nothing
    assert float(clip_grad_norm(params, 1.0)) == 5.0
    torch.testing.assert_close(params[0].grad, torch.tensor([0.6, 0, 0]))


def test_no_gradients_and_bad_input():
    assert clip_grad_norm([torch.nn.Parameter(torch.zeros(2))], 1.0) == 0.0
    net, _ = torch_twins(1.0)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(BadArgument, match="max_norm must be > 0"):
            clip_grad_norm(net, bad)
    scratch = create_scratch_model("softmax", image_size=2)
    for p in scratch.parameters():
        p.grad = np.ones(p.shape, dtype=np.float32)
    with pytest.raises(BadArgument, match="PyTorch and NumPy-engine gradients together"):
        clip_grad_norm([*net.parameters(), *scratch.parameters()], 1.0)
