"""dlcamp.course.parallel(_cost): hand ring all-reduce, data parallelism by hand, cost model.

run_workers starts real processes joined by gloo on 127.0.0.1: forked (~0.3 s a call) or, once
here, fresh interpreters as on macOS (~2-3 s on 2 cores: each imports torch).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcamp.course.parallel import (
    WorkerFailed,
    all_reduce_check_worker,
    dp_worker,
    run_workers,
    split_batch,
    train_data_parallel,
    train_single,
)
from dlcamp.course.parallel_cost import (
    allreduce_seconds,
    fit_alpha_beta,
    gbit_to_Bps,
    project_machines,
)
from dlcamp.course.parallel_variants import ps_worker, train_ddp

SIZES = [0, 1, 2, 7, 100, 1001]  # empty, fewer elements than ranks, uneven chunks


@pytest.mark.parametrize(("world_size", "start"), [(2, "subprocess"), (3, "fork")])
def test_ring_all_reduce_equals_dist_all_reduce(world_size, start):
    results = run_workers(all_reduce_check_worker, world_size, SIZES, 0, echo=False, start=start)
    generators = [torch.Generator().manual_seed(rank) for rank in range(world_size)]
    for i, n in enumerate(SIZES):  # the sum computed here from each rank's seeded draws
        expected = sum(torch.randn(n, generator=g) for g in generators)
        for ring, gloo in (rank_pairs[i] for rank_pairs in results):
            assert ring.shape == (n,)
            torch.testing.assert_close(ring, gloo, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(ring, expected + torch.zeros(n), atol=1e-6, rtol=1e-6)


def test_split_batch_is_contiguous_and_uneven():
    x, y = torch.arange(11).reshape(11, 1), torch.arange(11)
    chunks = split_batch(x, y, 2)
    assert [len(c[1]) for c in chunks] == [6, 5]
    assert torch.equal(torch.cat([c[1] for c in chunks]), y)
    with pytest.raises(ValueError, match="3 examples"):
        split_batch(x[:3], y[:3], 4)


def test_two_workers_train_like_one_process_on_an_odd_global_batch():
    torch.manual_seed(0)
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    args = dict(sizes=[8, 16, 3], seed=0, steps=6, batch_size=11, lr=0.5)
    single = train_single(x, y, **args)
    parallel = train_data_parallel(x, y, **args, world_size=2)
    start = train_single(x, y, **{**args, "steps": 0})
    assert any(not torch.allclose(single[k], start[k]) for k in single)  # it did learn
    for k in single:
        torch.testing.assert_close(parallel[k], single[k], atol=1e-5, rtol=1e-5)


def test_a_worker_error_is_raised_readably():
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    with pytest.raises(WorkerFailed, match=r"worker \d of 2 .*ValueError: cannot split 1"):
        run_workers(dp_worker, 2, x, y, [8, 3], 0, 1, 1, 0.1, True, echo=False, timeout_s=60)


def test_parameter_server_and_ddp_train_like_one_process():
    torch.manual_seed(1)
    x, y = torch.randn(30, 4), torch.randint(0, 2, (30,))
    args = ([4, 8, 2], 0, 4, 9, 0.5)  # sizes, seed, steps, batch_size (odd), lr
    single = train_single(x, y, *args)
    for states in (run_workers(ps_worker, 3, x, y, *args, echo=False),
                   train_ddp(x, y, *args, world_size=2)):
        for state in states:
            for k in single:
                torch.testing.assert_close(state[k], single[k], atol=1e-5, rtol=1e-5)


def test_run_workers_refuses_what_a_worker_could_not_load():
    with pytest.raises(ValueError, match="importable by name"):
        run_workers(lambda: 0, 2)
    with pytest.raises(TypeError, match="tensors, numbers"):
        run_workers(dp_worker, 2, nn.Linear(2, 2))


def test_ring_cost_model_numbers():
    # 2(N-1) alpha + 2(N-1)/N n/beta: N=4, alpha=1e-5 s, 1e8 bytes at 1e9 B/s -> 6e-5 + 0.15
    assert allreduce_seconds(1e8, 4, 1e-5, 1e9) == pytest.approx(6e-5 + 0.15)
    assert allreduce_seconds(1e8, 1, 1e-5, 1e9) == 0
    assert allreduce_seconds(1e8, 1000, 0, 1e9) < 2 * 1e8 / 1e9  # bandwidth term tends to 2n/b
    assert gbit_to_Bps(10) == 1.25e9
    with pytest.raises(ValueError):
        allreduce_seconds(1e8, 2, 1e-5, 0)


def test_fit_recovers_alpha_and_beta():
    alpha, beta = 2e-4, 5e8
    rows = [{"nbytes": n, "gloo_s": allreduce_seconds(n, 3, alpha, beta)}
            for n in (4e3, 4e5, 4e6, 4e7)]
    fitted = fit_alpha_beta(rows, world_size=3)
    assert fitted == pytest.approx((alpha, beta), rel=1e-6)
    with pytest.raises(ValueError, match="two message sizes"):
        fit_alpha_beta(rows[:1], world_size=3)


def test_projection_speedup_and_overlap():
    rows = project_machines(0.1, 32, 1e8, [1, 2, 16], 0.0, gbit_to_Bps(8))  # 1e9 B/s
    one, two, many = rows
    assert one["speedup"] == pytest.approx(1) and one["comm_s"] == 0
    assert two["comm_s"] == pytest.approx(0.1) and two["speedup"] == pytest.approx(1.0)
    assert many["examples_per_s"] == pytest.approx(16 * 32 / (0.1 + 0.1875))
    overlapped = project_machines(0.1, 32, 1e8, [2], 0.0, gbit_to_Bps(8), overlap=True)[0]
    assert overlapped["speedup"] == pytest.approx(2.0)
