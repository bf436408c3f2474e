"""What all-reduce costs, measured and modelled, and what N machines would give (lessons 6.10-12).

The alpha-beta model of the ring all-reduce (Thakur, Rabenseifner & Gropp, "Optimization of
collective communication operations in MPICH", IJHPCA 19(1), 2005; Patarasuk & Yuan,
"Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 69(2), 2009):
with N workers, a message of n bytes, per-message latency alpha and link bandwidth beta,

    T(n, N) = 2(N-1) * alpha + 2(N-1)/N * n / beta

(N-1 reduce-scatter and N-1 all-gather steps, each sending n/N bytes; the time to add the
chunks is left out). The bandwidth term tends to 2n/beta however large N grows, which
Patarasuk & Yuan show no all-reduce can beat.

    rows = measure_all_reduce([10_000, 1_000_000], world_size=2)
    alpha, beta = fit_alpha_beta(rows, world_size=2)
    project_machines(0.05, 64, 4 * 1_000_000, [1, 8, 64], alpha, gbit_to_Bps(10))
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from dlcamp.course.parallel import ring_all_reduce, run_workers


def allreduce_seconds(nbytes: float, world_size: int, latency_s: float,
                      bandwidth_Bps: float) -> float:
    """Ring all-reduce time in seconds: 2(N-1)*alpha + 2(N-1)/N * nbytes/beta (0 for N = 1).
    `latency_s` is alpha (seconds per message), `bandwidth_Bps` is beta (bytes per second)."""
    if world_size < 1 or bandwidth_Bps <= 0 or latency_s < 0:
        raise ValueError("need world_size >= 1, bandwidth > 0 and latency >= 0")
    steps = 2 * (world_size - 1)
    return steps * latency_s + steps / world_size * nbytes / bandwidth_Bps


def gbit_to_Bps(gbit_per_s: float) -> float:
    """A link's speed in Gbit/s (as network cards are sold) as bytes per second."""
    return gbit_per_s * 1e9 / 8


def time_all_reduce_worker(elements: list[int], repeat: int) -> list[dict[str, float]]:
    """Worker of measure_all_reduce: fastest seconds of dist.all_reduce and ring_all_reduce.

    Timed by hand with perf_counter after a barrier (a collective must start on all ranks
    together, which torch.utils.benchmark.Timer cannot arrange); one warm-up call each. The
    fastest call is the one least disturbed by other processes on a busy machine.
    """
    rows = []
    for n in elements:
        data, row = torch.randn(n), {"elements": n, "nbytes": 4 * n}
        for key, op in (("gloo_s", dist.all_reduce), ("hand_s", ring_all_reduce)):
            op(data.clone())
            times = []
            for _ in range(repeat):
                buf = data.clone()
                dist.barrier()
                start = time.perf_counter()
                op(buf)
                times.append(time.perf_counter() - start)
            row[key] = min(times)
        rows.append(row)
    return rows


def measure_all_reduce(elements: list[int], world_size: int = 2,
                       repeat: int = 5) -> list[dict[str, float]]:
    """Time the all-reduce of float32 tensors of each size in `elements` over `world_size`
    local processes. Rows: elements, nbytes, gloo_s (dist.all_reduce), hand_s (ring_all_reduce),
    as seen by rank 0, the fastest of `repeat` calls."""
    return run_workers(time_all_reduce_worker, world_size, list(elements), repeat,
                       echo=False)[0]


def fit_alpha_beta(rows: list[dict[str, float]], world_size: int,
                   key: str = "gloo_s") -> tuple[float, float]:
    """Least-squares fit of the ring model to measured rows: (latency_s, bandwidth_Bps).

    t = 2(N-1) * alpha + [2(N-1)/N * nbytes] * (1/beta), linear in (alpha, 1/beta), fitted on
    relative errors (each row divided by its t), so that small messages, which set alpha, count
    as much as large ones. A negative alpha (noise on a busy machine) is refitted as 0 through
    the origin. Raises ValueError with fewer than two sizes or when time does not grow with size.
    """
    if world_size < 2 or len({r["nbytes"] for r in rows}) < 2:
        raise ValueError("need world_size >= 2 and at least two message sizes to fit")
    steps = 2 * (world_size - 1)
    a = torch.tensor([[steps, steps / world_size * r["nbytes"]] for r in rows],
                     dtype=torch.float64)
    t = torch.tensor([[r[key]] for r in rows], dtype=torch.float64)
    a, t = a / t, t / t  # relative errors
    alpha, inv_beta = torch.linalg.lstsq(a, t).solution.flatten().tolist()
    if alpha < 0:
        x = a[:, 1:]
        alpha, inv_beta = 0.0, float((x * t).sum() / (x * x).sum())
    if inv_beta <= 0:
        raise ValueError("all-reduce time did not grow with message size: measure larger sizes")
    return alpha, 1.0 / inv_beta


def project_machines(compute_s: float, batch: int, nbytes: float, world_sizes: list[int],
                     latency_s: float, bandwidth_Bps: float,
                     overlap: bool = False) -> list[dict[str, float]]:
    """What N machines would give: each keeps its own `batch` examples a step (the global batch
    grows N-fold) and all-reduces `nbytes` of gradients each step.

    compute_s: seconds for one step of `batch` on one machine. Step time is compute + all-reduce,
    or max(compute, all-reduce) with `overlap` (gradients sent while backward still runs, as DDP
    does; an upper bound on the gain). Rows: world_size, compute_s, comm_s, step_s,
    examples_per_s, speedup (over one machine) and efficiency (speedup / N).
    """
    rows = []
    for n in world_sizes:
        comm = allreduce_seconds(nbytes, n, latency_s, bandwidth_Bps)
        step = max(compute_s, comm) if overlap else compute_s + comm
        speedup = n * compute_s / step
        rows.append({"world_size": n, "compute_s": compute_s, "comm_s": comm, "step_s": step,
                     "examples_per_s": n * batch / step, "speedup": speedup,
                     "efficiency": speedup / n})
    return rows
