"""Data-parallel training on several processes: DistributedDataParallel, launched by torchrun.

    dlcamp train --model lenet --nproc 2                      # this machine, 2 processes
    torchrun --standalone --nproc-per-node 2 -m dlcamp train --model lenet    # the same
    torchrun --nnodes 2 --node-rank R --nproc-per-node 1 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29400 --rdzv-id RUN -m dlcamp train ...    # two machines

`--nproc` starts the processes itself (dlcamp.train.launch), with the environment torchrun
would give them, but reachable from this machine only: they meet through a file (a FileStore
in a private temporary folder) and gloo talks over the loopback interface. torchrun's
rendezvous store listens on every network interface, and torch.distributed has no
authentication: use torchrun across machines only on a network you trust
(docs/distributed.md).

Every process (a *rank*) holds the whole model and the whole in-memory dataset. All ranks
shuffle with the same seed, so they walk the same global batches; rank r trains on the r-th
contiguous chunk of each one (`torch.tensor_split`). `--batch-size` is the **global** batch.
DDP averages the gradients over the ranks during `backward` (an all-reduce, gloo on CPU,
NCCL on CUDA), and each rank's loss is weighted by its share of the batch, so the step equals
a one-process step on the whole batch even when the chunks differ in size by one example.
The metric sums are all-reduced, so every rank reports the same numbers; only rank 0 writes
the run directory (config.json, metrics.csv, curves, checkpoint). The checkpoint holds the
plain model's weights: it loads in one process like any other.

What is not the same as one process: batch norm computes its statistics over each rank's
chunk (SyncBatchNorm needs CUDA), and dropout draws differ. Image-classification datasets
only (the loaders that hold a split in memory as tensors).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dlcamp.core.errors import BadArgument
from dlcamp.core.utils import pick_device
from dlcamp.data.loader import Loaders
from dlcamp.train.speed import DEFAULT_THREADS, Choice
from dlcamp.train.trainer import Trainer

INIT_ENV = "DLCAMP_DIST_INIT"  # init_method of the process group (default "env://": torchrun's)


@dataclass(frozen=True)
class DistContext:
    """Who this process is in a torchrun job (from the environment torchrun sets), and the
    backend its training device needs."""

    rank: int              # 0 .. world_size - 1, over all machines
    world_size: int        # processes in the job
    local_rank: int        # 0 .. local_world_size - 1 on this machine
    local_world_size: int  # processes on this machine
    backend: str = "gloo"  # "nccl" between GPUs, "gloo" between CPUs

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend}


def context(device: str | None = None) -> DistContext | None:
    """The torchrun job this process belongs to, or None when it runs alone (no WORLD_SIZE in
    the environment, or a world of one). Training on a CUDA `device` (a --device value,
    dlcamp.core.utils.pick_device) uses NCCL (each rank on the GPU of its local rank), anything
    else gloo. Raises BadArgument when a machine runs more CUDA processes than it has GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = device is not None and pick_device(device).type == "cuda"
    if cuda:
        check_gpus(local)
    return DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                       local, "nccl" if cuda and dist.is_nccl_available() else "gloo")


def check_gpus(nproc: int) -> None:
    """One process per GPU: BadArgument when `nproc` exceeds the GPUs on this machine."""
    gpus = torch.cuda.device_count()
    if nproc > gpus:
        raise BadArgument(f"{nproc} processes on CUDA need {nproc} GPUs; this machine has "
                          f"{gpus}. Use --nproc {max(gpus, 1)}, or --device cpu")


@contextlib.contextmanager
def process_group(ctx: DistContext | None) -> Iterator[None]:
    """Join the job's process group (a no-op for None) for the block, then leave it.

    On CUDA each rank uses the GPU of its local rank (`torch.cuda.set_device`), so tensors
    sent to "cuda" land on that rank's own GPU.
    """
    if ctx is None or dist.is_initialized():
        yield
        return
    if ctx.backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)  # before the group: NCCL binds to this GPU
    dist.init_process_group(ctx.backend, init_method=os.environ.get(INIT_ENV, "env://"),
                            rank=ctx.rank, world_size=ctx.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


class Shard(tuple):
    """One rank's chunk of a global batch; `global_size` is the whole batch's length."""

    global_size: int


def shard(batch: tuple[torch.Tensor, ...], rank: int, world_size: int) -> Shard:
    """Rank `rank`'s contiguous chunk of every tensor in `batch` (dim 0, `torch.tensor_split`:
    the first len % world_size ranks get one example more)."""
    part = Shard(torch.tensor_split(t, world_size)[rank] for t in batch)
    part.global_size = len(batch[0])
    return part


class ShardedLoader:
    """A loader's batches cut into this rank's chunks. Training drops a global batch with fewer
    examples than ranks (a rank would have nothing to contribute to the all-reduce)."""

    def __init__(self, loader: Any, rank: int, world_size: int, train: bool) -> None:
        self.loader, self.rank, self.world_size, self.train = loader, rank, world_size, train
        self.batch_size = getattr(loader, "batch_size", None)

    def __len__(self) -> int:
        n, size = len(getattr(self.loader, "y", ())), getattr(self.loader, "batch_size", 0)
        tail = n % size if size and not getattr(self.loader, "drop_last", False) else 0
        return len(self.loader) - (1 if self.train and 0 < tail < self.world_size else 0)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def head(self, n: int) -> torch.Tensor:
        return self.loader.head(n)  # the same images on every rank (input whitening)

    def __iter__(self) -> Iterator[Shard]:
        for batch in self.loader:
            if self.train and len(batch[0]) < self.world_size:
                continue
            yield shard(tuple(batch), self.rank, self.world_size)


def shard_loaders(loaders: Loaders, ctx: DistContext) -> Loaders:
    """The same Loaders cut into this rank's chunks of the same global batches."""
    return Loaders(ShardedLoader(loaders.train, ctx.rank, ctx.world_size, train=True),
                   ShardedLoader(loaders.eval, ctx.rank, ctx.world_size, train=False),
                   loaders.train_set, loaders.eval_set, loaders.eval_split)


def check_distributed(kind: str, engine: str) -> None:
    """Data-parallel training covers PyTorch image classification (`kind` "image", from
    dlcamp.train.run.data_kind): BadArgument for other data or the NumPy engine."""
    if kind != "image" or engine != "torch":
        what = f"{kind} data" if kind != "image" else f"the {engine} engine"
        raise BadArgument(f"--nproc (DistributedDataParallel) trains image classification "
                          f"with --engine torch (fashion-mnist, mnist, digits, ...), not {what}")


def all_reduce_sums(sums: dict[str, Any], device: torch.device) -> dict[str, float]:
    """The metric sums of all ranks added up, as floats (one all-reduce for the whole dict)."""
    keys = sorted(sums)
    values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=device).reshape(())
                          for k in keys]) if keys else torch.zeros(0, dtype=torch.float64,
                                                                   device=device)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist(), strict=True))


class DistributedTrainer(Trainer):
    """The Trainer with the model wrapped in DistributedDataParallel; see the module doc.

    Time budgets (max_seconds) stay in step across ranks: rank 0's learning rate (or its
    decision to stop) is broadcast before each step.
    """

    def __init__(self, model: nn.Module, ctx: DistContext, *args: Any, **kwargs: Any) -> None:
        self.ctx = ctx
        self._weight = 1.0
        super().__init__(model, *args, **kwargs)

    def plan(self, model: nn.Module):
        device, speed = super().plan(model)
        if device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        if speed.threads.asked == "auto":  # the same share on every rank: steps in lockstep
            n = max(1, DEFAULT_THREADS)
            speed = type(speed)(speed.precision, speed.channels_last,
                                Choice("auto", n, f"one of {self.ctx.local_world_size} processes "
                                       f"on this machine: {n} thread(s) each"), speed.allocator)
        return device, speed

    def prepare_model(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        model, _ = super().prepare_model(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights
        return model, (torch.compile(wrapped) if self.config.compile else wrapped)

    def train_step(self, batch: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        total = getattr(batch, "global_size", None)
        if total is None:
            raise BadArgument("DistributedTrainer trains on a ShardedLoader's chunks "
                              "(dlcamp.train.distributed.ShardedLoader)")
        # DDP divides the summed gradients by world_size; weighting each rank's mean loss by
        # world_size * its share of the batch makes that the gradient of the global mean.
        self._weight = self.ctx.world_size * len(batch[0]) / total
        return super().train_step(batch)

    def backward(self, loss: torch.Tensor) -> None:
        (loss * self._weight).backward()

    def eval_step(self, batch: tuple[Any, ...]) -> dict[str, Any]:
        # The plain model: evaluation needs no gradients, so no collective. A rank's chunk of
        # a small last batch may be empty; it still adds its (zero) sums under the same keys.
        return self.task.step(self.model, self.to_device(batch))[1]

    def reduce_sums(self, sums: dict[str, Any]) -> dict[str, float]:
        return all_reduce_sums(sums, self.device)

    def next_lr(self, epoch_start: float) -> float | None:
        lr = super().next_lr(epoch_start)
        if not self.config.max_seconds:
            return lr  # steps and epochs are counted alike on every rank
        value = torch.tensor([-1.0 if lr is None else lr], dtype=torch.float64,
                             device=self.device)
        dist.broadcast(value, src=0)
        lr = value.item()
        self.should_stop = lr < 0  # rank 0's clock decides, not this rank's
        return None if self.should_stop else lr

    def evaluate(self, loader) -> dict[str, float]:
        """Every rank evaluates rank 0's model: DDP broadcasts buffers (batch norm's running
        statistics) *before* each training forward, so after the last step each rank holds
        the statistics of its own chunk; rank 0's are the ones its checkpoint saves."""
        for buffer in self.model.buffers():
            dist.broadcast(buffer, src=0)
        return super().evaluate(loader)
