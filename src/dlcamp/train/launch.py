"""Starting a data-parallel run: `dlcamp train --nproc N` runs the same command in N processes.

    launch_run(cfg, ["train", "--model", "lenet", "--nproc", "2"], nproc=2)

The processes get the environment torchrun would give them (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE), so dlcamp.train.distributed treats both launchers alike. Unlike torchrun's
rendezvous, which listens on every network interface, they meet through a FileStore in a
private temporary folder and gloo (and NCCL's bootstrap) use the loopback interface: nothing
listens beyond this machine. The launcher stops every worker when one fails, on Ctrl-C and
on SIGTERM, and on Linux the workers die with it even when it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dlcamp.core.config import RunConfig
from dlcamp.core.errors import BadArgument, CheckpointError
from dlcamp.core.utils import pick_device
from dlcamp.train.distributed import INIT_ENV, check_distributed, check_gpus
from dlcamp.train.run import data_kind, prepare_run_dir
from dlcamp.train.speed import affinity_cpus

MAX_NPROC = 64


def launch_run(cfg: RunConfig | None, argv: list[str], nproc: int, out: Path | str | None = None,
               force: bool = False, resume: Path | str | None = None) -> int:
    """`dlcamp <argv>` again in `nproc` processes (`launch`, below), after the
    checks that can be made here: the run (`cfg`, or the config.json of the run to `resume`)
    must be image classification on the torch engine, with a GPU per process on CUDA, and
    `out` must be free. Returns the exit code."""
    if resume is not None:
        path = Path(resume) / "config.json"
        if not path.is_file():
            raise CheckpointError(f"{resume} is not a run directory (no config.json)")
        cfg = RunConfig.from_dict(json.loads(path.read_text()))
    elif out:
        prepare_run_dir(Path(out), force, create=False)
    check_distributed(data_kind(cfg.dataset), cfg.engine)
    if cfg.batch_size < nproc:
        raise BadArgument(f"--batch-size {cfg.batch_size} is the global batch: it must give "
                          f"each of the {nproc} processes at least one example")
    if pick_device(cfg.train.device).type == "cuda":
        check_gpus(nproc)
    return launch(argv, nproc)


def strip_nproc(argv: list[str]) -> list[str]:
    """`argv` without `--nproc N` / `--nproc=N` (the workers must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def loopback_interface() -> str:
    """The name of the network interface that holds 127.0.0.1 ("lo" on Linux, "lo0" on macOS)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == "127.0.0.1" for a in addresses):
            return name
    return "lo"


def launch(argv: list[str], nproc: int, poll_s: float = 0.2) -> int:
    """Run `dlcamp <argv>` in `nproc` processes on this machine and return the exit code: 0
    when all succeed, else the first failure's (the others are then stopped). Ctrl-C stops
    them all (130).

    Each process gets torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE),
    a FileStore to meet through (DLCAMP_DIST_INIT) and GLOO_SOCKET_IFNAME set to the loopback
    interface, so nothing listens beyond this machine; and OMP_NUM_THREADS = usable cores //
    nproc (at least 1) unless OMP_NUM_THREADS is set. Raises BadArgument for nproc < 1 or over
    MAX_NPROC.
    """
    if not 1 <= nproc <= MAX_NPROC:
        raise BadArgument(f"--nproc must be between 1 and {MAX_NPROC}, got {nproc}")
    cmd = [sys.executable, "-m", "dlcamp", *strip_nproc(argv)]
    with tempfile.TemporaryDirectory(prefix="dlcamp-ddp-") as folder:
        env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
               INIT_ENV: f"file://{os.path.join(folder, 'store')}",
               "GLOO_SOCKET_IFNAME": loopback_interface()}
        env.setdefault("NCCL_SOCKET_IFNAME", env["GLOO_SOCKET_IFNAME"])  # NCCL's bootstrap
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(affinity_cpus()) // nproc)))
        procs: list[subprocess.Popen] = []
        main_thread = threading.current_thread() is threading.main_thread()
        # `kill` (SIGTERM) of the launcher stops the workers too (handlers: main thread only)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
        try:
            for r in range(nproc):
                procs.append(subprocess.Popen(cmd, env={**env, "RANK": str(r),
                                                        "LOCAL_RANK": str(r)},
                                              preexec_fn=_die_with_parent))
            while True:
                codes = [p.poll() for p in procs]
                failed = [c for c in codes if c not in (None, 0)]
                if failed or all(c == 0 for c in codes):
                    return _report(codes) if failed else 0
                time.sleep(poll_s)
        except _Terminated:
            return 143
        except KeyboardInterrupt:
            return 130
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
            _stop(procs)


class _Terminated(KeyboardInterrupt):
    """SIGTERM to the launcher."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise _Terminated


def _report(codes: list[int | None]) -> int:
    """Say which rank failed first (a rank killed by signal N exits with the shell's 128 + N);
    return its exit code."""
    rank, code = next((r, c) for r, c in enumerate(codes) if c not in (None, 0))
    code = 128 - code if code < 0 else code
    print(f"error: rank {rank} of {len(codes)} exited with code {code}; the others were "
          "stopped. A run that finished an epoch continues with `dlcamp train --resume RUN "
          "--nproc N`.", file=sys.stderr)
    return code


def _die_with_parent() -> None:
    """In a worker before it starts (Linux): get SIGTERM when the launcher dies, even by
    SIGKILL, instead of training on as an orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the workers still running (a rank that failed leaves the others waiting in a
    collective), then kill those that do not stop within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
