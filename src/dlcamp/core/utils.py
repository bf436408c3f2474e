"""Small shared helpers: device choice, seeding, quick mode, versions."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from dlcamp.core.errors import BadArgument


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; anything else is used as given.

    Raises BadArgument for a name torch does not know, or a GPU this machine does not have.
    """
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if preference != "auto":
        try:
            device = torch.device(preference)
        except (RuntimeError, TypeError) as e:
            raise BadArgument(f"unknown --device {preference!r}; use auto, cpu, cuda, cuda:1 "
                              "or mps") from e
        if device.type == "cuda" and (not torch.cuda.is_available()
                                      or (device.index or 0) >= torch.cuda.device_count()):
            raise BadArgument(f"--device {preference} was asked for, but torch sees "
                              f"{torch.cuda.device_count()} CUDA GPU(s); use --device auto")
        if device.type == "mps" and not has_mps:
            raise BadArgument("--device mps was asked for, but Apple's MPS is not available; "
                              "use --device auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if has_mps:
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def is_quick() -> bool:
    """Quick mode: DLCAMP_QUICK=1 (lessons and tests shrink data and epochs)."""
    return os.environ.get("DLCAMP_QUICK", "").lower() not in ("", "0", "false", "no")


def is_quiet() -> bool:
    """No progress bars under CI or when DLCAMP_QUIET is set."""
    return bool(os.environ.get("CI") or os.environ.get("DLCAMP_QUIET"))


def versions() -> dict[str, str]:
    from dlcamp import __version__

    return {"dlcamp": __version__, "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}
