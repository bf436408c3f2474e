"""Micro-batching: requests that arrive within a few milliseconds share one forward pass.

A model call has a fixed cost (Python, dispatch, memory) plus a small cost per image, so 8
images in one batch take far less than 8 separate calls. The batcher keeps a queue; the first
request waits at most `max_wait_ms` for others to join (or until `max_batch` are waiting),
then the batch runs in a worker thread, so the event loop keeps reading new requests
meanwhile (PyTorch and onnxruntime release the GIL while they compute).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(self, predict: Any, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = self.items = 0  # statistics: mean batch size = items / batches

    async def submit(self, pixels: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Classify one image; resolves when its batch has run."""
        if self.task is None:  # started lazily inside the server's event loop
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, top_k, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            pixels = [item[0] for item in batch]
            k = max(item[1] for item in batch)
            try:
                results = await loop.run_in_executor(None, self.predict, pixels, k)
            except Exception as e:  # noqa: BLE001 - every waiting request must hear about it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, top_k, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result[:top_k])
