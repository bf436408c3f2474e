"""The roofline code (dlcamp.course.performance) and `dlcamp bench`."""

from __future__ import annotations

import argparse
import json
import math
import sys
import types

import pytest
import torch
from torch import nn

from dlcamp.cli.bench import add_parser
from dlcamp.course.performance import (
    ByteCounter,
    Roofline,
    matmul_gflops,
    memory_gbps,
    model_point,
    plot_roofline,
)


def test_training_flops_of_linear_layers_follow_the_formula():
    # forward 2*B*i*o per layer; backward: the weight gradient (2*B*i*o) everywhere, the input
    # gradient (2*B*i*o) only where the input needs one, i.e. not for the first layer
    b, i, h, o = 16, 64, 32, 8
    point = model_point(nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o)), (i,), b,
                        seconds=0.01)
    assert point["flops"] == 2 * b * (i * h + h * o) + 2 * b * i * h + 2 * 2 * b * h * o


def test_training_flops_of_a_convolution_follow_the_formula():
    b, cin, cout, k, side = 4, 3, 8, 3, 12
    conv = nn.Conv2d(cin, cout, k, padding=1)
    forward = 2 * b * cout * side * side * cin * k * k
    point = model_point(conv, (cin, side, side), b, seconds=0.01)
    assert point["flops"] == 2 * forward  # forward + weight gradient (the input needs none)
    assert point["intensity"] == pytest.approx(point["flops"] / point["bytes"])
    assert point["gflops_measured"] == pytest.approx(point["flops"] / point["seconds"] / 1e9)


def test_bytes_are_inputs_plus_outputs_and_views_are_free():
    a, b = torch.ones(1000), torch.ones(1000)
    with ByteCounter() as counter:
        c = a + b
    assert counter.bytes == 3 * 4 * 1000
    with ByteCounter() as counter:
        c.view(10, 100).t()  # views move nothing
    assert counter.bytes == 0
    with ByteCounter() as counter:
        a.add_(torch.ones(()).expand(1000))  # an expanded scalar is 4 bytes, in place: a twice
    assert counter.bytes == (4 + 4) + 2 * 4 * 1000


def test_roofline_arithmetic():
    roof = Roofline(peak_gflops=200.0, bandwidth_gbps=40.0)
    assert roof.ridge == pytest.approx(5.0)
    assert roof.attainable(0.25) == pytest.approx(10.0)  # memory-bound: bw * I
    assert roof.attainable(5.0) == pytest.approx(200.0)  # the ridge: both limits agree
    assert roof.attainable(50.0) == 200.0  # compute-bound: the peak
    assert roof.attainable(0.0) == 0.0
    for intensity in (0.01, 1.0, 3.0, 7.0, 1e4):
        assert roof.attainable(intensity) == min(200.0, 40.0 * intensity)
    with pytest.raises(ValueError, match="intensity"):
        roof.attainable(-1.0)
    with pytest.raises(ValueError, match="bandwidth_gbps"):
        Roofline(100.0, 0.0)
    with pytest.raises(ValueError, match="peak_gflops"):
        Roofline(float("nan"), 10.0)


def test_measurements_are_positive_and_finite():
    for value in (matmul_gflops(128, seconds=0.05), memory_gbps(8, 0.05),
                  memory_gbps(8, 0.05, kernel="copy")):
        assert math.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="kernel"):
        memory_gbps(8, 0.05, kernel="scale")


def test_plot_is_a_png(tmp_path):
    roof = Roofline(100.0, 20.0)
    points = {"a": {"intensity": 0.5, "gflops_measured": 5.0},
              "b": {"intensity": 30.0, "gflops_measured": 60.0}}
    path = tmp_path / "roof.png"
    fig = plot_roofline(roof, points, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].lines) >= 2 + 2 * len(points)  # roof, ridge, each point + its line


def _bench(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dlcamp")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_bench_roofline_quick_json(capsys):
    assert _bench(["bench", "roofline", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak_gflops_fp32"] > 0 and out["bandwidth_gbps"] > 0
    assert out["ridge"] == pytest.approx(out["peak_gflops_fp32"] / out["bandwidth_gbps"])
    assert [r["model"] for r in out["models"]] == ["lenet", "cnn"]
    for row in out["models"]:
        assert row["attainable_gflops"] == pytest.approx(
            min(out["peak_gflops_fp32"], out["bandwidth_gbps"] * row["intensity"]))
        assert row["gflops_measured"] > 0
    lenet, cnn = out["models"]
    assert cnn["flops"] > lenet["flops"]


def test_bench_compile_prints_the_rows(capsys, monkeypatch):
    calls = []

    def compile_rows(quick: bool) -> list[dict]:
        calls.append(quick)
        return [{"model": "mlp", "step": "forward", "backend": "inductor", "batch": 8,
                 "eager_ms": 1.0, "compiled_ms": 0.5, "compile_s": 3.0,
                 "speedup": 2.0, "max_abs_diff": 1e-7, "graph_breaks": 0}]

    fake = types.ModuleType("dlcamp.course.compiling")
    fake.compile_rows = compile_rows
    monkeypatch.setitem(sys.modules, "dlcamp.course.compiling", fake)
    assert _bench(["bench", "compile", "--quick"]) == 0
    out = capsys.readouterr().out
    assert calls == [True]
    assert "| mlp | forward | inductor | 8 | 1.00 | 0.50 | 2.00 | 3.0 | 1.0e-07 | 0 |" in out
    assert _bench(["bench", "compile", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["speedup"] == 2.0
