"""Content-addressed files: a blob's name is the SHA-256 of its bytes, so it never changes.

    <root>/ab/cdef0123...   (the 64 hex digits split 2 + 62)

A blob is written atomically (temporary file, fsync, rename, fsync of the folder) before any
database row names it, so a committed row never points at a missing or half-written file. A
path is made only from 64 lowercase hex digits: no name a client sends can reach outside root.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from dlcamp.core.errors import DlcampError
from dlcamp.core.io import atomic_write_bytes

_HEX64 = re.compile(r"[0-9a-f]{64}")

# (magic bytes at offset 0, media type) for the files a camp stores
class BadBlobId(DlcampError, ValueError):
    """A blob name that is not 64 lowercase hex digits."""


class BlobCorrupt(DlcampError):
    """A blob's bytes do not hash to its name (disk damage or tampering)."""


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of `data` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The blobs under `root` (created on first write)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        """Where blob `sha` lives (it may not exist). Raises BadBlobId unless `sha` is exactly
        64 lowercase hex digits."""
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise BadBlobId(f"not a blob id (64 lowercase hex digits): {str(sha)[:80]!r}")
        return self.root / sha[:2] / sha[2:]

    def put(self, data: bytes) -> str:
        """Store `data` (durably) and return its SHA-256 hex. Storing bytes already there is
        free: the existing file is kept."""
        sha = sha256_hex(data)
        path = self.path(sha)
        if path.exists() and path.stat().st_size == len(data):
            return sha
        new_dir = not path.parent.exists()
        atomic_write_bytes(path, data)
        _fsync_dir(path.parent)
        if new_dir:
            _fsync_dir(self.root)
        return sha

    def exists(self, sha: str) -> bool:
        """Whether blob `sha` is stored. Raises BadBlobId."""
        return self.path(sha).is_file()

    def read(self, sha: str, verify: bool = True) -> bytes:
        """The bytes of blob `sha`. Raises BadBlobId, FileNotFoundError, and (verify) BlobCorrupt
        when the bytes do not hash to `sha`."""
        data = self.path(sha).read_bytes()
        if verify and sha256_hex(data) != sha:
            raise BlobCorrupt(f"blob {sha} is damaged: its bytes hash to {sha256_hex(data)}")
        return data

    def verify(self, sha: str) -> bool:
        """True if blob `sha` exists and its bytes hash to `sha` (read in 1 MiB chunks)."""
        h = hashlib.sha256()
        try:
            with self.path(sha).open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return h.hexdigest() == sha

    def __iter__(self) -> Iterator[str]:
        """Every stored blob's id (temporary files skipped)."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sorted(sub.iterdir()):
                if _HEX64.fullmatch(sub.name + f.name):
                    yield sub.name + f.name

    def copy_to(self, other: BlobStore) -> int:
        """Copy every blob `other` lacks into it (blobs are immutable: existing ones are kept).
        Returns how many were copied."""
        copied = 0
        for sha in self:
            dest = other.path(sha)
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                shutil.copyfile(self.path(sha), tmp)
                os.replace(tmp, dest)
                copied += 1
        return copied
