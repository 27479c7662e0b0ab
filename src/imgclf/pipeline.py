"""The one decode → preprocess → ONNX Runtime pipeline shared by embedding, predict and serve.

Decoding and preprocessing run in worker threads (Pillow releases the GIL) ahead of
inference, in bounded memory; results come back in input order.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from imgclf.errors import ImageError
from imgclf.images import load_image
from imgclf.preprocessing import Preprocessing

T = TypeVar("T")
DEFAULT_BATCH = 16


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def create_session(onnx_path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations and ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_count()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def file_loader(pre: Preprocessing) -> Callable[[Path], np.ndarray]:
    """Path → preprocessed array, raising :class:`ImageError` for unusable files."""

    def load(path: Path) -> np.ndarray:
        return pre(load_image(path))

    return load


def run_batched(
    items: Iterable[T],
    load: Callable[[T], np.ndarray],
    forward: Callable[[np.ndarray], Sequence[np.ndarray]],
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
) -> Iterator[tuple[T, tuple[np.ndarray, ...] | ImageError]]:
    """Yield ``(item, outputs)`` per item in order, or ``(item, ImageError)`` when loading failed.

    ``forward`` maps a stacked batch to arrays whose first axis is the batch.
    """
    workers = workers or cpu_count()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgclf-decode") as pool:
        pending: deque[tuple[T, Future]] = deque()
        it = iter(items)
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < 2 * batch_size + workers:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    return
                pending.append((item, pool.submit(_safe_load, load, item)))

        fill()
        while pending:
            chunk = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            fill()
            loaded = [(item, fut.result()) for item, fut in chunk]
            ok = [arr for _, arr in loaded if not isinstance(arr, ImageError)]
            outputs = forward(np.stack(ok)) if ok else ()
            row = 0
            for item, arr in loaded:
                if isinstance(arr, ImageError):
                    yield item, arr
                else:
                    yield item, tuple(o[row] for o in outputs)
                    row += 1


def _safe_load(load: Callable[[T], np.ndarray], item: T) -> np.ndarray | ImageError:
    try:
        return load(item)
    except ImageError as e:
        return e
    except Exception as e:  # a loader must never take the whole run down
        return ImageError(f"cannot read image ({type(e).__name__}: {e})")
