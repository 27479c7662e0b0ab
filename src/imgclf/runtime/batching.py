"""Batched inference in bounded memory: items loaded in threads, batches run in streams, results in input order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from imgclf.errors import ImageError
from imgclf.runtime.session import cpu_count

T = TypeVar("T")
#: Images per ONNX Runtime run for one inference stream with a multi-threaded session
#: (predict, serve-style callers).
DEFAULT_BATCH = 16
#: Images per run when inference runs as several single-threaded streams (:func:`~imgclf.runtime.session.inference_plan`).
STREAM_BATCH = 8


def run_batched(
    items: Iterable[T],
    load: Callable[[T], np.ndarray],
    forward: Callable[[np.ndarray], Sequence[np.ndarray]],
    batch_size: int = DEFAULT_BATCH,
    loaders: int | None = None,
    streams: int = 1,
    collate: Callable[[list[np.ndarray]], np.ndarray] = np.stack,
) -> Iterator[tuple[T, tuple[np.ndarray, ...] | ImageError]]:
    """Yield ``(item, outputs)`` per item in order, or ``(item, ImageError)`` when loading failed.

    ``forward`` maps a batch, made by ``collate`` from the loaded arrays (``np.stack``, or
    ``Preprocessing.batch`` for :func:`pixel_loader`), to arrays whose first axis is the
    batch. Three stages overlap: ``loaders`` threads (at most one per core) load items ahead,
    at most ``2 * batch_size + loaders`` of them, so memory stays bounded however many items
    come; ``streams`` threads (at most one per core) each run ``forward`` on a batch (ONNX
    Runtime releases the GIL; ``forward`` must be thread-safe when ``streams`` > 1, as
    ``InferenceSession.run`` is); and the caller consumes finished batches meanwhile (cache
    writes, printing), so inference never waits for it. An exception from ``forward``
    reaches the caller.

    ``loaders=0``: no loading threads; each stream loads its own batch, then runs it. With
    single-threaded streams filling the cores (:func:`inference_plan`) this keeps one busy
    thread per core, none preempting another mid-inference.
    """
    inline = loaders == 0
    loaders = 0 if inline else min(loaders or cpu_count(), cpu_count())
    streams = max(1, min(streams, cpu_count()))
    with ThreadPoolExecutor(max_workers=max(1, loaders), thread_name_prefix="imgclf-decode") as pool, \
            ThreadPoolExecutor(max_workers=streams, thread_name_prefix="imgclf-infer") as infer:
        pending: deque[tuple[T, Future | None]] = deque()
        it = iter(items)
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < 2 * batch_size + loaders:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    return
                pending.append((item, None if inline else pool.submit(safe_load, load, item)))

        def start_batch() -> Future:
            chunk = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            fill()
            return infer.submit(_run_chunk, chunk, load, forward, collate)

        inflight: deque[Future] = deque()
        # one batch more than streams when they load their own: a stream that finishes
        # starts the next batch at once instead of waiting for the caller
        depth = streams + 1 if inline else streams

        def top_up() -> None:
            while len(inflight) < depth and pending:
                inflight.append(start_batch())

        fill()
        top_up()
        while inflight:
            loaded, outputs = inflight.popleft().result()
            top_up()  # the next batch infers while the caller consumes this one
            row = 0
            for item, arr in loaded:
                if isinstance(arr, ImageError):
                    yield item, arr
                else:
                    yield item, tuple(o[row] for o in outputs)
                    row += 1


def _run_chunk(chunk: list, load: Callable, forward: Callable[[np.ndarray], Sequence[np.ndarray]], collate: Callable) -> tuple[list, Sequence[np.ndarray]]:
    """Wait for a chunk's loads (or load it here: ``loaders=0``), then run ``forward`` on the good ones, collated."""
    loaded = [(item, safe_load(load, item) if fut is None else fut.result()) for item, fut in chunk]
    ok = [arr for _, arr in loaded if not isinstance(arr, ImageError)]
    return loaded, (forward(collate(ok)) if ok else ())


def safe_load(load: Callable[[T], np.ndarray], item: T) -> np.ndarray | ImageError:
    """``load(item)``, or the :class:`ImageError` saying why not; no other exception escapes."""
    try:
        return load(item)
    except ImageError as e:
        return e
    except Exception as e:  # a loader must never take the whole run (or the server) down
        return ImageError(f"cannot read image ({type(e).__name__}: {str(e)[:120]})")
