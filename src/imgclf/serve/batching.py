"""Dynamic micro-batching: concurrent requests share ONNX Runtime calls.

One inference thread takes whatever images are waiting (up to ``max_batch``) and runs
them as one batch. Nothing waits on a timer: a lone request runs at once as a batch of
one, and under load the queue fills while the previous batch runs, so batches grow by
themselves. The event loop only awaits futures; ONNX Runtime releases the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Callable

import numpy as np

log = logging.getLogger("imgclf.serve")

_STOP = object()


class MicroBatcher:
    """Run ``forward(collate(arrays)) -> rows`` for arrays submitted from any event loop.

    ``collate`` makes the batch from the waiting arrays: ``np.stack``, or
    ``Preprocessing.batch`` for images loaded as pixels (:func:`imgclf.runtime.loader.load_pixels`).
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int = 16,
                 collate: Callable[[list[np.ndarray]], np.ndarray] = np.stack):
        self.forward = forward
        self.collate = collate
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: how many batches ran and how many images they held (for /health and tests)
        self.batches = 0
        self.images = 0
        self.largest_batch = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="imgclf-infer", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    async def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Output rows for ``arrays`` (one image each), in order."""
        self.start()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in arrays]
        for arr, fut in zip(arrays, futures):
            self._queue.put((arr, fut, loop))
        return list(await asyncio.gather(*futures))

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
            stop = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            # Requests whose client went away are dropped before inference.
            items = [it for it in items if not it[1].cancelled()]
            if items:
                self._run(items)
            if stop:
                return

    def _run(self, items: list) -> None:
        try:
            out = self.forward(self.collate([arr for arr, _, _ in items]))
        except Exception as e:  # never kill the thread: fail these requests only
            log.exception("inference failed")
            for _, fut, loop in items:
                _call(loop, _set_exception, fut, e)
            return
        self.batches += 1
        self.images += len(items)
        self.largest_batch = max(self.largest_batch, len(items))
        for i, (_, fut, loop) in enumerate(items):
            _call(loop, _set_result, fut, out[i])


def _call(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: its requests are gone
        pass


def _set_result(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
