"""`dlcamp data fetch`: the only code in dlcamp that touches the network, and only when asked."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from dlcamp.core.errors import DatasetCorrupt, DlcampError
from dlcamp.core.io import atomic_write_bytes
from dlcamp.data import files
from dlcamp.data.datasets import FASHION_FILES, FASHION_URL


def fetch_fashion_mnist(dest: Path | None = None, base_url: str = FASHION_URL,
                        timeout: float = 60.0, log=print) -> Path:
    """Download the four Fashion-MNIST files into `dest` (default: dlcamp's cache).

    Each file is verified (SHA-256 of its content) before it is written, and written
    atomically: a failed or corrupt download leaves nothing behind and no old file damaged.
    """
    dest = Path(dest) if dest else files.cache_dir() / "fashion-mnist"
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    for stem, digest in FASHION_FILES.items():
        target = dest / f"{stem}.gz"
        if target.is_file() and files.sha256(files.read_bytes(target)) == digest:
            log(f"ok        {target}")
            continue
        url = f"{base_url}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise DlcampError(
                f"cannot download {url} ({e}). Are you offline? Offline alternatives: "
                "`sudo apt-get install dataset-fashion-mnist`, or copy the four files into "
                f"{dest} or a folder named by DLCAMP_DATA."
            ) from e
        tmp = dest / f".{stem}.download.gz"
        atomic_write_bytes(tmp, payload)  # decompress from disk, then verify
        try:
            content = files.read_bytes(tmp)
            if files.sha256(content) != digest:
                raise DatasetCorrupt(f"downloaded {url} but its SHA-256 does not match; "
                                     "nothing was saved. Try again or use another mirror (--url).")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        log(f"fetched   {target}")
    return dest
