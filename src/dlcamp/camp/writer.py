"""Group commit: one thread owns the write connection and commits many edits at once.

Any thread calls `submit(fn, *args)` and gets a Future. The writer thread takes every job
queued at that moment (at most MAX_BATCH; while edits arrive concurrently it also waits up to
MAX_WAIT for more, but a lone edit is never delayed), runs each as `fn(conn, *args)` inside
its own SAVEPOINT, COMMITs once, and only then resolves the Futures. A job that raises is
rolled back to its savepoint alone and answers its exception; the batch's other jobs still
commit. If the COMMIT itself fails, every job of the batch answers that error and nothing of
it is kept. One fsync thus serves many edits.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

MAX_BATCH = 256
MAX_WAIT = 0.002  # s: how long a batch may wait for more edits, only while edits come in bulk

_STOP = object()


class GroupCommitWriter:
    """The writer thread for `conn` (an autocommit-mode connection it takes over)."""

    def __init__(self, conn: sqlite3.Connection, max_batch: int = MAX_BATCH,
                 max_wait: float = MAX_WAIT):
        self._conn = conn
        self._max_batch, self._max_wait = max_batch, max_wait
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = False
        self._submit_lock = threading.Lock()
        self.commits = 0  # COMMITs made
        self.jobs = 0  # jobs run (succeeded or answered an error)
        self._thread = threading.Thread(target=self._run, name="camp-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(conn, *args)`; the Future holds its result once committed (or its error).
        Raises RuntimeError after stop()."""
        future: Future = Future()
        with self._submit_lock:
            if self._closing:
                raise RuntimeError("the camp store is closed")
            self._queue.put((fn, args, future))
        return future

    def stop(self) -> None:
        """Run the jobs already queued, then stop the thread and close the connection."""
        with self._submit_lock:
            if self._closing:
                return
            self._closing = True
            self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

    def _take(self, busy: bool) -> list:
        """The next batch: the first job (waiting for it), every job already queued, and when
        edits come concurrently (`busy`) those arriving within max_wait as well."""
        batch = [self._queue.get()]
        deadline = time.monotonic() + (self._max_wait if busy else 0.0)
        while len(batch) < self._max_batch and batch[-1] is not _STOP:
            try:
                wait = deadline - time.monotonic()
                batch.append(self._queue.get(timeout=wait) if wait > 0 else
                             self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        stopping, busy = False, False
        while not stopping:
            batch = self._take(busy)
            busy = len(batch) > 1
            if _STOP in batch:
                stopping = True
                batch = [job for job in batch if job is not _STOP]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list) -> None:
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, _ in batch:
                conn.execute("SAVEPOINT edit")
                try:
                    result = fn(conn, *args)
                except BaseException as e:  # noqa: BLE001 - answered to this job's caller
                    conn.execute("ROLLBACK TO edit")
                    conn.execute("RELEASE edit")
                    outcomes.append((False, e))
                else:
                    conn.execute("RELEASE edit")
                    outcomes.append((True, result))
            conn.execute("COMMIT")
            self.commits += 1
        except BaseException as e:  # noqa: BLE001 - the whole batch failed: nobody is told OK
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, e)] * len(batch)
        self.jobs += len(batch)
        for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
