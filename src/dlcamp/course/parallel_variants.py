"""Data-parallel training three more ways, for lessons 6.11-6.12: PyTorch's DDP, a parameter
server, and a report from ranks that torchrun started on several "machines".

    train_ddp(x, y, [8, 16, 3], 0, 5, 11, 0.5, world_size=2)      # == train_single(...)
    run_workers(ps_worker, 3, x, y, [8, 16, 3], 0, 5, 11, 0.5)     # server + 2 workers
    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:PORT \\
        -m dlcamp.course.parallel_variants report
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from dlcamp.course.parallel import (
    flat_grad,
    global_batches,
    make_mlp,
    ring_all_reduce,
    run_workers,
    set_flat_grad,
    sgd_update,
    split_batch,
)

# What torchrun tells each process (besides OMP_NUM_THREADS and a few TORCHELASTIC_* ones).
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                      "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def ps_worker(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int, batch_size: int,
              lr: float) -> dict[str, Tensor]:
    """A parameter server on rank 0 and N-1 gradient workers (N = world size >= 2).

    Workers split each global batch N-1 ways and push (send) their gradient to rank 0; the
    server sums them in rank order, takes the SGD step and broadcasts the new weights.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    model = make_mlp(sizes, seed)
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for xb, yb in global_batches(x, y, batch_size, steps):
        model.zero_grad()
        if rank == 0:
            total, incoming = torch.zeros_like(weights), torch.empty_like(weights)
            for worker in range(1, world):
                dist.recv(incoming, worker)
                total += incoming
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
            set_flat_grad(model, total)
            sgd_update(model, lr)
            weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        else:
            x_local, y_local = split_batch(xb, yb, world - 1)[rank - 1]
            (F.cross_entropy(model(x_local), y_local, reduction="sum") / len(xb)).backward()
            dist.send(flat_grad(model), 0)
        dist.broadcast(weights, src=0)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(weights, model.parameters())
    return model.state_dict()


def ddp_worker(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int, batch_size: int,
               lr: float) -> dict[str, Tensor]:
    """dp_worker with PyTorch's DistributedDataParallel and torch.optim.SGD instead of hand
    code. DDP averages gradients over ranks, so the weighted loss is multiplied by N."""
    world = dist.get_world_size()
    model = make_mlp(sizes, seed)
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    for xb, yb in global_batches(x, y, batch_size, steps):
        x_local, y_local = split_batch(xb, yb, world)[dist.get_rank()]
        opt.zero_grad()
        (F.cross_entropy(ddp(x_local), y_local, reduction="sum") * world / len(xb)).backward()
        opt.step()
    return model.state_dict()


def train_ddp(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int, batch_size: int,
              lr: float, world_size: int = 2) -> list[dict[str, Tensor]]:
    """ddp_worker on `world_size` local processes; every rank's final state_dict.

    DDP's constructor imports torch._dynamo (seconds); it is imported here once, so that
    forked workers inherit it instead of each importing it again.
    """
    import torch._dynamo  # noqa: F401

    return run_workers(ddp_worker, world_size, x, y, list(sizes), seed, steps, batch_size, lr)


def torchrun_report() -> dict[str, Any]:
    """Run under torchrun (`python -m dlcamp.course.parallel_variants report`): join the group
    from the environment torchrun sets, all-reduce (rank + 1) by hand and with gloo, print one
    JSON line: the ranks, the launcher's variables, and both sums (each N(N+1)/2)."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ours, theirs = torch.full((5,), rank + 1.0), torch.full((5,), rank + 1.0)
    ring_all_reduce(ours)
    dist.all_reduce(theirs)
    report = {"rank": rank, "world_size": world, "pid": os.getpid(),
              "env": {k: os.environ.get(k) for k in TORCHRUN_VARIABLES},
              "ring_sum": ours[0].item(), "gloo_sum": theirs[0].item()}
    print(json.dumps(report), flush=True)
    dist.destroy_process_group()
    return report


def main(argv: list[str]) -> int:
    """`report`: run under torchrun, print this rank's JSON line."""
    if argv == ["report"]:
        torchrun_report()
        return 0
    print("usage: torchrun ... -m dlcamp.course.parallel_variants report", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
