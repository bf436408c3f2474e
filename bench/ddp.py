"""Data-parallel training here: 1 vs 2 processes, what the all-reduce costs, and N machines.

    python bench/ddp.py            # the default cnn on Fashion-MNIST, 2 epochs per run, twice
    python bench/ddp.py --quick    # quick data, 1 epoch, once (a smoke run)

1. `dlcamp train --nproc P` for P = 1 and 2, interleaved and repeated: examples/s of the last
   epoch (the product path: torchrun, DDP, gloo, the sharded loader, all-reduced metrics).
2. Inside a 2-process torchrun job (this script with --worker): the time of a DDP training step
   with gradient all-reduce and of the same step under `no_sync()` (no communication); their
   difference is the communication time per step that backward did not hide; and the time of
   one `dist.all_reduce` of all the gradients at once.
3. The ring all-reduce model (dlcamp.course.parallel_cost) fitted to all-reduces measured here,
   then a projection for N machines like this one (each with the whole 2-process share of the
   batch) over 1, 10 and 100 Gbit/s links with a stated per-message latency.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import markdown_table, parser, replace_section, report
from machine import describe, describe_markdown

MODEL, DATASET, BATCH = "cnn", "fashion-mnist", 256
LINK_LATENCY_S = 50e-6  # assumed per-message latency of a LAN hop (TCP over Ethernet)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def train_rate(nproc: int, epochs: int, quick: bool, out: Path) -> float:
    """examples/s of the last epoch of `dlcamp train --nproc nproc` (a fresh run)."""
    cmd = [sys.executable, "-m", "dlcamp", "train", "--model", MODEL, "--dataset", DATASET,
           "--batch-size", str(BATCH), "--epochs", str(epochs), "--out", str(out), "--force",
           "--no-progress", "--nproc", str(nproc), "--device", "cpu",
           *(["--quick"] if quick else [])]
    subprocess.run(cmd, check=True, env={**os.environ, "DLCAMP_QUIET": "1"},
                   stdout=subprocess.DEVNULL)
    with open(out / "metrics.csv") as f:
        return float(list(csv.DictReader(f))[-1]["examples_per_s"])


def worker(out: Path, steps: int) -> None:
    """Run under torchrun: time DDP steps with and without the all-reduce (rank 0 writes)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from dlcamp.course.parallel_cost import time_all_reduce_worker
    from dlcamp.models import create_model

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)
    model = create_model(MODEL, num_classes=10, in_channels=1, image_size=28)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(BATCH // world, 1, 28, 28), torch.randint(0, 10, (BATCH // world,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()

    def timed(sync: bool) -> float:
        times = []
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            if sync:
                step()
            else:
                with ddp.no_sync():
                    step()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    timed(True)  # warm-up: DDP builds its buckets on the first steps
    rows = {"with_allreduce_s": [], "no_sync_s": [], "allreduce_only_s": []}
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    for _ in range(3):  # interleaved: the machine's speed drifts
        rows["with_allreduce_s"].append(timed(True))
        rows["no_sync_s"].append(timed(False))
        timed_rows = time_all_reduce_worker([flat.numel()], steps)  # also times the hand ring
        rows["allreduce_only_s"].append(timed_rows[0]["gloo_s"])
    if rank == 0:
        result = {k: statistics.median(v) for k, v in rows.items()}
        result.update(world_size=world, local_batch=BATCH // world, grad_bytes=4 * flat.numel(),
                      threads=torch.get_num_threads())
        out.write_text(json.dumps(result))
    dist.destroy_process_group()


def comm_times(steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "comm.json"
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node=2", __file__, "--worker", str(out), "--steps",
                        str(steps)], check=True,  # TMPDIR: torchrun's own folders go too
                       env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": tmp})
        return json.loads(out.read_text())


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--worker", type=Path, help=argparse_hidden())
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--repeat", type=int, default=2, help="runs per process count")
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    from dlcamp.course.parallel_cost import (
        allreduce_seconds,
        fit_alpha_beta,
        gbit_to_Bps,
        measure_all_reduce,
        project_machines,
    )

    epochs, repeat = (1, 1) if args.quick else (2, args.repeat)
    steps = 5 if args.quick else args.steps
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for nproc in (1, 2):
                rate = train_rate(nproc, epochs, args.quick, Path(tmp) / f"run{nproc}-{i}")
                rates[nproc].append(rate)
                print(f"--nproc {nproc}: {rate:,.0f} examples/s", flush=True)
    comm = comm_times(steps)
    print(json.dumps(comm), flush=True)
    sizes = [1_000, 100_000, 1_000_000] if args.quick else [1_000, 30_000, 300_000, 3_000_000]
    measured = measure_all_reduce(sizes, world_size=2, repeat=5)
    alpha, beta = fit_alpha_beta(measured, world_size=2)

    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    compute_s = BATCH / one  # one machine (both cores) on the whole batch
    rows = [{"setup": "1 process, 2 threads", "examples_per_s": one, "ratio": 1.0},
            {"setup": "2 processes, 1 thread each (DDP, gloo)", "examples_per_s": two,
             "ratio": two / one}]
    table = markdown_table(rows, [("run", "setup", ""), ("examples/s", "examples_per_s", ",.0f"),
                                  ("÷ 1 process", "ratio", ".2f")])
    comm_ms = 1e3 * (comm["with_allreduce_s"] - comm["no_sync_s"])
    comm_table = markdown_table([
        {"what": f"DDP step, local batch {comm['local_batch']}",
         "ms": 1e3 * comm["with_allreduce_s"]},
        {"what": "the same step under no_sync() (no all-reduce)", "ms": 1e3 * comm["no_sync_s"]},
        {"what": "communication per step not hidden by backward", "ms": comm_ms},
        {"what": f"one all_reduce of all gradients ({comm['grad_bytes'] / 1e6:.2f} MB)",
         "ms": 1e3 * comm["allreduce_only_s"]}], [("measured in a 2-process job", "what", ""),
                                                  ("ms", "ms", ".2f")])
    projection = []
    for gbit in (1, 10, 100):
        for row in project_machines(compute_s, BATCH, comm["grad_bytes"], [1, 2, 8, 32],
                                    LINK_LATENCY_S, gbit_to_Bps(gbit)):
            projection.append({"link": f"{gbit} Gbit/s", **row})
    shown = [{**row, "comm_ms": 1e3 * row["comm_s"], "step_ms": 1e3 * row["step_s"]}
             for row in projection]
    proj_table = markdown_table(shown, [
        ("link", "link", ""), ("machines", "world_size", "d"),
        ("all-reduce ms/step", "comm_ms", ".2f"), ("step ms", "step_ms", ".1f"),
        ("examples/s", "examples_per_s", ",.0f"), ("speed-up", "speedup", ".2f"),
        ("efficiency", "efficiency", ".2f")])
    verdict = ("pay" if two > one * 1.05 else "do not pay")
    resnet_bytes = 4 * 11_181_642  # ResNet-18 with 10 classes (the book's), float32 gradients
    big = ", ".join(
        f"{1e3 * allreduce_seconds(resnet_bytes, 8, LINK_LATENCY_S, gbit_to_Bps(g)):.0f} ms at "
        f"{g} Gbit/s" for g in (1, 10, 100))
    markdown = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d')} with `{' '.join(['python', *sys.argv])}`, alone.",
        "", describe_markdown(describe()), "",
        f"**Same machine, 1 vs 2 processes** (`dlcamp train --model {MODEL} --dataset {DATASET} "
        f"--batch-size {BATCH} --nproc P`, {epochs} epoch(s), median of {repeat}; examples/s of "
        "the last epoch):", "", table, "",
        f"On these 2 cores, two processes {verdict}: each process gets one core, so the "
        "arithmetic per core is the same as one process with two threads, and the all-reduce "
        "and the duplicated per-batch work (each rank prepares the whole global batch, then "
        "takes its chunk) come on top.", "",
        comm_table, "",
        f"**All-reduce cost model** (ring, T = 2(N-1)·α + 2(N-1)/N · n/β; Thakur et al. 2005) "
        f"fitted to gloo all-reduces of {', '.join(f'{s:,}' for s in sizes)} floats between 2 "
        f"local processes: α = {alpha * 1e6:.1f} µs, β = {beta / 1e9:.2f} GB/s (loopback).", "",
        f"**Projection to N machines like this one** (each trains its own {BATCH}-example batch "
        f"in {compute_s * 1e3:.1f} ms, the measured one-process step; gradients "
        f"{comm['grad_bytes'] / 1e6:.2f} MB; α = {LINK_LATENCY_S * 1e6:.0f} µs per hop assumed; "
        "no overlap of communication with backward, so a lower bound):", "", proj_table, "",
        f"The cnn's gradients are small: their all-reduce costs "
        f"{1e3 * comm['allreduce_only_s']:.1f} ms and a step loses {comm_ms:.1f} ms to "
        f"communication, next to {1e3 * comm['no_sync_s']:.0f} ms of compute. For "
        f"ResNet-18 ({resnet_bytes / 1e6:.1f} MB of gradients) the same model gives, for 8 "
        f"machines, {big} per step."])
    if not args.quick:
        replace_section(DOCS, "ddp", "## Data-parallel training (DDP) on this machine\n\n"
                        + markdown)
    report(args, "ddp", {"rates": rates, "comm": comm, "all_reduce": measured,
                         "alpha_s": alpha, "beta_Bps": beta, "projection": projection}, markdown)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
