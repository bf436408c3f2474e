"""dlcamp.course.compiling: torch.compile and torch.export give eager's numbers; graph breaks.

Inductor (which compiles C++) runs once, on the MLP's training step; the cnn and the lstm go
through aot_eager, which captures the same forward and backward graphs without compiling.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch._dynamo
from torch import nn

from dlcamp.course import compiling
from dlcamp.course.compiling import (
    DataDependentMLP,
    bench_models,
    compare_compile,
    export_and_check,
    fresh_inductor_cache,
    fullgraph_error,
    graph_breaks,
    max_abs_diff,
    side_by_side,
)
from dlcamp.models import create_model

TOL = 1e-5  # float32: compiled kernels may add in another order
KEYS = {"eager_ms", "compiled_ms", "compile_s", "speedup", "max_abs_diff", "graph_breaks"}


def images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))


class Printing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        print("hidden", h.shape)
        return self.b(h)


def test_inductor_training_step_gives_eagers_loss_and_gradients():
    torch.manual_seed(0)
    model = create_model("mlp")
    before = [p.detach().clone() for p in model.parameters()]
    row = compare_compile(model, (images(),), backend="inductor", train=True, repeat=2)
    assert KEYS <= row.keys() and row["step"] == "train"
    assert row["max_abs_diff"] < TOL
    assert row["graph_breaks"] == 0 and row["graphs"] == 1
    assert row["compile_s"] > 0 and row["eager_ms"] > 0 and row["compiled_ms"] > 0
    assert row["speedup"] == pytest.approx(row["eager_ms"] / row["compiled_ms"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("name", "train"), [("cnn", True), ("lstm", False)])
def test_captured_graphs_give_eagers_outputs_and_gradients(name, train):
    # the cnn in training mode (batch norm on batch statistics) and the lstm with its break
    model, example = bench_models(batch=4)[name]
    row = compare_compile(model, example, backend="aot_eager", train=train, repeat=2)
    assert row["max_abs_diff"] < TOL
    assert row["graph_breaks"] == (1 if name == "lstm" else 0)  # nn.LSTM is not traced


def test_max_abs_diff_walks_nested_outputs():
    a = (torch.zeros(2), (torch.ones(3), torch.zeros(1)))
    b = (torch.zeros(2), (torch.ones(3) * 1.5, torch.zeros(1)))
    assert max_abs_diff(a, b) == 0.5
    with pytest.raises(ValueError):
        max_abs_diff((torch.zeros(1),), (torch.zeros(1), torch.zeros(1)))


def test_graph_breaks_are_counted_with_their_place():
    x = images()
    assert graph_breaks(create_model("mlp"), (x,)) == {"graphs": 1, "graph_breaks": 0,
                                                       "reasons": []}
    broken = graph_breaks(DataDependentMLP(), (x,))
    assert broken["graph_breaks"] == 1 and broken["graphs"] == 2
    assert "item()" in broken["reasons"][0] and "compiling.py" in broken["reasons"][0]
    assert graph_breaks(Printing(), (torch.randn(2, 4),))["graph_breaks"] == 1
    lstm, example = bench_models(batch=2)["lstm"]
    assert graph_breaks(lstm, example)["graph_breaks"] == 1
    with torch._dynamo.config.patch(allow_rnn=True):
        assert graph_breaks(lstm, example)["graph_breaks"] == 0


def test_fullgraph_turns_a_break_into_a_readable_error():
    x = images()
    message = fullgraph_error(DataDependentMLP(), (x,))
    assert message is not None and len(message.splitlines()) <= 6
    assert "data-dependent" in message and "h.mean().item()" in message
    printing = fullgraph_error(Printing(), (torch.randn(2, 4),))
    assert printing is not None and "print" in printing and printing.startswith("Unsupported")
    assert fullgraph_error(create_model("mlp"), (x,)) is None
    # without fullgraph the same model runs, in two graphs, and gives eager's answer
    model = DataDependentMLP()
    with compiling.quiet_dynamo():
        assert max_abs_diff(torch.compile(model, backend="eager")(x), model(x)) < TOL
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_export_gives_eagers_outputs_at_other_batch_sizes(name):
    model, example = bench_models(batch=4)[name]
    model.train()
    program, diff = export_and_check(model, example)
    assert isinstance(program, torch.export.ExportedProgram)
    assert diff < TOL and model.training  # mode restored
    model.eval()
    runnable = program.module()
    with torch.no_grad():
        for batch in (1, 7):
            other = tuple(torch.cat([t] * 2)[:batch] for t in example)
            assert max_abs_diff(runnable(*other), model(*other)) < TOL


def test_static_export_accepts_only_the_example_shape_and_branches_do_not_export():
    model = create_model("cnn").eval()
    program, diff = export_and_check(model, (images(4),), dynamic_batch=False)
    assert diff < TOL
    with pytest.raises(Exception, match=r"size\(\)\[0\] == 4"):
        program.module()(images(3))
    with pytest.raises(RuntimeError, match="data-dependent"):
        export_and_check(DataDependentMLP(), (images(),))


def test_side_by_side_times_each_function():
    ms = side_by_side({"a": lambda: sum(range(100)), "b": lambda: None}, calls=4, rounds=2)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())


def test_fresh_cache_uses_an_empty_folder_and_puts_the_old_one_back():
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with fresh_inductor_cache(True):
        inside = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        assert inside != before and os.listdir(inside) == []
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == before and not os.path.exists(inside)


def test_compile_rows_quick_uses_inductor_only_for_the_mlp_forward(monkeypatch):
    calls = []

    def fake(model, example, *, backend, train, repeat, fresh_cache):
        calls.append((type(model).__name__, backend, train))
        return {key: 1.0 for key in KEYS} | {"backend": backend,
                                             "step": "train" if train else "forward"}

    monkeypatch.setattr(compiling, "compare_compile", fake)
    monkeypatch.setattr(compiling, "inductor_startup", lambda: 0.0)
    rows = compiling.compile_rows(quick=True)
    assert [(r["model"], r["backend"]) for r in rows] == [
        ("mlp", "inductor"), ("mlp", "aot_eager"), ("cnn", "aot_eager"), ("cnn", "aot_eager"),
        ("lstm", "aot_eager"), ("lstm", "aot_eager")]
    assert all(KEYS | {"model", "batch"} <= row.keys() for row in rows)
    full = compiling.compile_rows(quick=False)
    assert {r["backend"] for r in full} == {"inductor"}
    assert [(r["model"], r["step"]) for r in full][-1] == ("lstm (allow_rnn)", "forward")
