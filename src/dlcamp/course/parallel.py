"""Data parallelism by hand on torch.distributed (gloo on CPU), for lessons 6.10-6.12.

    states = run_workers(dp_worker, 2, x, y, [8, 16, 3], 0, 5, 10, 0.1, True)
    rows = measure_all_reduce([1_000, 100_000], world_size=2)
    latency_s, bandwidth_Bps = fit_alpha_beta(rows, world_size=2)

Each worker is a process with RANK / LOCAL_RANK / WORLD_SIZE in its environment, as torchrun
sets them: forked on Linux (torch is already imported: fast), else a fresh interpreter
(`python -m dlcamp.course.parallel worker DIR`); never multiprocessing's "spawn", which re-runs
the caller's script in every child (a lesson run as `python lessons/...py` would start workers
from its workers). The workers meet through a file in a private temporary folder (a FileStore;
torchrun's TCP store at MASTER_ADDR:MASTER_PORT listens on every network interface) and gloo
uses the loopback interface, as `dlcamp train --nproc` does: nothing listens beyond this machine.

A worker function must be importable by name (module level of a module, like the ones here, not
a notebook cell); its arguments and return value travel through torch.save files read back with
`weights_only=True` (no pickle): tensors, numbers, strings, and lists/tuples/dicts of them.
The cost model is in `parallel_cost.py`; DDP, a parameter server and the torchrun report are in
`parallel_variants.py`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class WorkerFailed(RuntimeError):
    """A worker process raised or died; the message carries its error and traceback."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
                timeout_s: float = 120.0, echo: bool = True, start: str | None = None) -> list[Any]:
    """Run `fn(*args)` in `world_size` processes joined in one process group; their results.

    Returns [result of rank 0, rank 1, ...]. Each worker's stdout is printed after it ends,
    each line prefixed "[rank r]" (`echo=False`: not printed). The group is destroyed at the end.
    `start`: "fork" (default on Linux: the child already has torch imported, ~0.1 s) or
    "subprocess" (default elsewhere: a fresh interpreter per rank, as torchrun starts them,
    ~2 s each for importing torch; use it if this process has initialised CUDA and the workers
    need the GPU: a forked child cannot). Raises ValueError if `fn` cannot be imported by name,
    TypeError if `args` or the results are not weights_only-loadable, WorkerFailed (with the
    worker's exception type, message and traceback) if a worker fails, TimeoutError after
    `timeout_s` seconds.
    """
    name = f"{fn.__module__}:{fn.__qualname__}"
    if fn.__module__ == "__main__" or "<" in fn.__qualname__:
        raise ValueError(f"run_workers needs a function importable by name (module level in a "
                         f"module, not a notebook, lambda or nested function): got {name}")
    start = start or ("fork" if sys.platform == "linux" else "subprocess")
    with tempfile.TemporaryDirectory(prefix="dlcamp-workers-") as tmp:
        job_dir = Path(tmp)
        torch.save({"fn": name, "args": list(args), "backend": backend, "timeout_s": timeout_s,
                    "init": f"file://{job_dir / 'store'}"}, job_dir / "job.pt")
        try:
            torch.load(job_dir / "job.pt", weights_only=True)
        except Exception as e:  # what a worker could not read back
            raise TypeError("run_workers arguments must be tensors, numbers, strings or "
                            f"lists/tuples/dicts of them: {e}") from None
        from dlcamp.train.launch import loopback_interface

        env = {"WORLD_SIZE": str(world_size), "GLOO_SOCKET_IFNAME": loopback_interface()}
        workers: list[Any] = []
        try:
            for r in range(world_size):
                workers.append(_launch(start, job_dir, {**env, "RANK": str(r),
                                                        "LOCAL_RANK": str(r)}))
            failed = _wait(workers, timeout_s)
        finally:  # an interrupt (Ctrl-C, a notebook's stop button) must not leave workers behind
            _stop(workers)
        if echo:
            for rank in range(world_size):
                for line in (job_dir / f"out{rank}.txt").read_text().splitlines():
                    print(f"[rank {rank}] {line}")
        if failed is not None:
            error = job_dir / f"error{failed}.txt"
            text = error.read_text() if error.exists() else \
                (job_dir / f"out{failed}.txt").read_text()[-2000:]
            raise WorkerFailed(f"worker {failed} of {world_size} ({name}) failed: {text}")
        try:
            return [torch.load(job_dir / f"result{r}.pt", weights_only=True)["result"]
                    for r in range(world_size)]
        except Exception as e:
            raise TypeError(f"{name} must return tensors, numbers, strings or lists/tuples/"
                            f"dicts of them: {e}") from None


def _launch(start: str, job_dir: Path, env: dict[str, str]) -> Any:
    """Start one rank; its stdout and stderr go to job_dir/out<rank>.txt."""
    threads = max(1, (os.cpu_count() or 1) // int(env["WORLD_SIZE"]))
    out = job_dir / f"out{env['RANK']}.txt"
    if start == "fork":
        process = multiprocessing.get_context("fork").Process(
            target=_forked, args=(job_dir, env, out, threads), daemon=True)
        process.start()
        return process
    if start != "subprocess":
        raise ValueError(f"start must be 'fork' or 'subprocess', not {start!r}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "OMP_NUM_THREADS": str(threads), **env}
    with open(out, "w") as f:  # the child holds its own copy of the file descriptor
        return subprocess.Popen([sys.executable, "-m", "dlcamp.course.parallel", "worker",
                                 str(job_dir)], env=env, stdout=f, stderr=subprocess.STDOUT)


def _forked(job_dir: Path, env: dict[str, str], out: Path, threads: int) -> None:
    """A forked rank: fresh stdout/stderr (the parent's may belong to a Jupyter kernel)."""
    os.environ.update(env)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    torch.set_num_threads(threads)
    code = _worker_main(job_dir)
    sys.stdout.flush()
    os._exit(code)  # skip the parent's exit handlers


def _exit_code(worker: Any) -> int | None:
    return worker.poll() if isinstance(worker, subprocess.Popen) else worker.exitcode


def _stop(workers: list) -> None:
    """Kill the workers still running and reap them all."""
    for w in workers:
        if _exit_code(w) is None:
            w.kill()
        w.wait() if isinstance(w, subprocess.Popen) else w.join()


def _wait(workers: list, timeout_s: float) -> int | None:
    """Wait for all workers; on the first failure give the others 1 s, then kill them.
    Returns the rank that failed first, or None."""
    deadline, failed = time.monotonic() + timeout_s, None
    while any(_exit_code(w) is None for w in workers):
        if failed is None:
            failed = next((r for r, w in enumerate(workers) if _exit_code(w)), None)
            if failed is not None:
                deadline = min(deadline, time.monotonic() + 1.0)
        if time.monotonic() > deadline:
            _stop(workers)
            if failed is None:
                raise TimeoutError(f"workers still running after {timeout_s:.0f} s")
        time.sleep(0.01)
    return failed if failed is not None else \
        next((r for r, w in enumerate(workers) if _exit_code(w)), None)


def _worker_main(job_dir: Path) -> int:
    """One rank of run_workers: join the group, run the function, save its result or error."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    try:
        job = torch.load(job_dir / "job.pt", weights_only=True)
        module, _, qualname = job["fn"].partition(":")
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        dist.init_process_group(job["backend"], init_method=job["init"], rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=job["timeout_s"]))
        try:
            result = fn(*job["args"])
        finally:
            dist.destroy_process_group()
        torch.save({"result": result}, job_dir / f"result{rank}.pt")
        return 0
    except Exception as e:
        (job_dir / f"error{rank}.txt").write_text(
            f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        return 1


def ring_all_reduce(tensor: Tensor) -> Tensor:
    """Sum `tensor` (any shape, contiguous) over all ranks, in place, with send/recv only.

    The bandwidth-optimal ring: the flat tensor is cut into N chunks (torch.tensor_split, so
    uneven sizes are fine). Reduce-scatter, N-1 steps: each rank sends one chunk to its right
    neighbour and adds the chunk it gets from its left one; afterwards rank r holds the full sum
    of chunk (r+1) mod N. All-gather, N-1 steps: the finished chunks travel once round the ring.
    Each rank sends 2(N-1)/N of the tensor in all, whatever N. Returns `tensor`.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if world == 1:
        return tensor
    if not tensor.is_contiguous():
        raise ValueError("ring_all_reduce works in place on a contiguous tensor")
    chunks = tensor.view(-1).tensor_split(world)
    right, left = (rank + 1) % world, (rank - 1) % world
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(world - 1):
            if phase == "reduce-scatter":
                send_i, recv_i = (rank - step) % world, (rank - step - 1) % world
            else:
                send_i, recv_i = (rank + 1 - step) % world, (rank - step) % world
            incoming = torch.empty_like(chunks[recv_i])  # empty chunks (numel < N) skip a turn
            request = dist.isend(chunks[send_i], right) if chunks[send_i].numel() else None
            if incoming.numel():
                dist.recv(incoming, left)
                if phase == "reduce-scatter":
                    chunks[recv_i].add_(incoming)
                else:
                    chunks[recv_i].copy_(incoming)
            if request is not None:
                request.wait()
    return tensor


def all_reduce_check_worker(numels: list[int], seed: int) -> list[tuple[Tensor, Tensor]]:
    """For each size: this rank's random tensor (generator seeded seed + rank) summed by
    ring_all_reduce and by dist.all_reduce; [(ring, gloo), ...] to compare."""
    g = torch.Generator().manual_seed(seed + dist.get_rank())
    pairs = []
    for n in numels:
        ours = torch.randn(n, generator=g)
        theirs = ours.clone()
        ring_all_reduce(ours)
        dist.all_reduce(theirs)
        pairs.append((ours, theirs))
    return pairs


def split_batch(x: Tensor, y: Tensor, world_size: int) -> list[tuple[Tensor, Tensor]]:
    """The batch cut into `world_size` contiguous chunks along dim 0 (the first len % N chunks
    one example longer). Raises ValueError when there are fewer examples than workers."""
    if len(x) != len(y) or len(x) < world_size:
        raise ValueError(f"cannot split {len(x)} examples ({len(y)} labels) over {world_size} "
                         "workers: each needs at least one example")
    return list(zip(x.tensor_split(world_size), y.tensor_split(world_size), strict=True))


def make_mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """Linear layers of `sizes` (e.g. [8, 16, 3]) with ReLU between, initialised from `seed`."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def global_batches(x: Tensor, y: Tensor, batch_size: int, steps: int):
    """The same `steps` global batches on every rank: consecutive slices, wrapping round."""
    for step in range(steps):
        idx = torch.arange(step * batch_size, (step + 1) * batch_size) % len(x)
        yield x[idx], y[idx]


def sgd_update(model: nn.Module, lr: float) -> None:
    """p <- p - lr * grad for every parameter (plain SGD, as torch.optim.SGD without momentum)."""
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def flat_grad(model: nn.Module) -> Tensor:
    """All gradients in one 1-D tensor: one message instead of one per parameter."""
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def set_flat_grad(model: nn.Module, flat: Tensor) -> None:
    """Copy a flat gradient (from flat_grad's layout) back into each parameter's .grad."""
    offset = 0
    for p in model.parameters():
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def train_single(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int,
                 batch_size: int, lr: float) -> dict[str, Tensor]:
    """One process: `steps` SGD steps of mean cross-entropy on the global batches. The reference
    that data-parallel training must equal; returns the final state_dict."""
    model = make_mlp(sizes, seed)
    for xb, yb in global_batches(x, y, batch_size, steps):
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        sgd_update(model, lr)
    return model.state_dict()


def data_parallel_step(model: nn.Module, xb: Tensor, yb: Tensor, lr: float,
                       hand: bool = True) -> float:
    """One data-parallel SGD step on the global batch (xb, yb), called on every rank.

    Each rank takes its chunk and weights its summed loss by 1/len(global batch), so the sum of
    the ranks' gradients is exactly the gradient of the global batch's mean loss (chunks may
    differ in size). The gradients are summed with ring_all_reduce (`hand=False`:
    dist.all_reduce), then every rank takes the same step. Returns this rank's loss share.
    """
    x_local, y_local = split_batch(xb, yb, dist.get_world_size())[dist.get_rank()]
    model.zero_grad()
    loss = F.cross_entropy(model(x_local), y_local, reduction="sum") / len(xb)
    loss.backward()
    grad = flat_grad(model)
    ring_all_reduce(grad) if hand else dist.all_reduce(grad)
    set_flat_grad(model, grad)
    sgd_update(model, lr)
    return loss.item()


def dp_worker(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int, batch_size: int,
              lr: float, hand: bool) -> dict[str, Tensor]:
    """Worker of train_data_parallel: same model and batches on every rank, its chunk each."""
    model = make_mlp(sizes, seed)
    for xb, yb in global_batches(x, y, batch_size, steps):
        data_parallel_step(model, xb, yb, lr, hand)
    return model.state_dict()


def train_data_parallel(x: Tensor, y: Tensor, sizes: list[int], seed: int, steps: int,
                        batch_size: int, lr: float, world_size: int = 2,
                        hand: bool = True) -> dict[str, Tensor]:
    """train_single's run spread over `world_size` processes; the final state_dict (rank 0's).
    Raises RuntimeError if the replicas ended with different weights."""
    states = run_workers(dp_worker, world_size, x, y, list(sizes), seed, steps, batch_size, lr,
                         hand)
    for rank, state in enumerate(states[1:], 1):
        if any(not torch.equal(state[k], states[0][k]) for k in state):
            raise RuntimeError(f"replica {rank} drifted from replica 0")
    return states[0]


def main(argv: list[str]) -> int:
    """`worker JOB_DIR`: one rank of run_workers started as a fresh interpreter."""
    if argv[:1] == ["worker"] and len(argv) == 2:
        return _worker_main(Path(argv[1]))
    print("usage: python -m dlcamp.course.parallel worker JOB_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":  # import the real module so fn lookups share it, then run
    from dlcamp.course.parallel import main as _main

    sys.exit(_main(sys.argv[1:]))
