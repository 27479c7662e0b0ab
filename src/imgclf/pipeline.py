"""The one decode → preprocess → ONNX Runtime pipeline shared by embedding, predict and serve.

Decoding and preprocessing run in worker threads (Pillow releases the GIL) ahead of
inference, in bounded memory; results come back in input order.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from imgclf.errors import ImageError
from imgclf.images import decode, read_bytes
from imgclf.preprocessing import Preprocessing

T = TypeVar("T")
DEFAULT_BATCH = 16
#: How much lower the decode threads' priority is than inference's (see :func:`run_batched`).
DECODE_NICE = 0


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def create_session(onnx_path: str | os.PathLike, threads: int | None = None, spinning: bool = False):
    """An ONNX Runtime CPU session with all graph optimisations and ``threads`` intra-op threads.

    ``threads`` is capped at the cores this process may use. ONNX Runtime's idle threads
    sleep instead of spinning (``spinning=False``): the same cores decode photos, and a
    spinning thread takes a core from the decoder (measured in ``benchmarks/throughput.py``).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(threads or cpu_count(), cpu_count())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


#: JPEGs are decoded at a reduced size (DCT scaling, Pillow's ``draft``) that keeps the
#: shorter side at least this many times the resize target, so the bicubic resize still
#: downsamples by 2× or more. Measured against full decoding (``tests/test_speed.py``):
#: embedding cosine similarity ≥ 0.999 on real photos; margin 1 fell to 0.986.
DRAFT_MARGIN = 2.0


def draft_side(pre: Preprocessing) -> int:
    """The shorter side a JPEG may be decoded at (DCT scaling) for ``pre``."""
    return int(math.ceil(pre.resize_to * DRAFT_MARGIN))


def preprocess_data(data: bytes, pre: Preprocessing, fast: bool = True) -> np.ndarray:
    """Image bytes → preprocessed array, as :func:`file_loader` does; raises :class:`ImageError`.

    ``fast`` decodes big JPEGs at reduced size and uses :meth:`Preprocessing.fast`
    (equal to the reference path within the tolerance tested in ``tests/test_speed.py``);
    ``fast=False`` is the reference: full decode, :meth:`Preprocessing.__call__`.
    """
    if fast:
        return pre.fast(decode(data, max_side=draft_side(pre)))
    return pre(decode(data))


def file_loader(pre: Preprocessing, fast: bool = True) -> Callable[[Path], np.ndarray]:
    """Path → preprocessed array, raising :class:`ImageError` for unusable files (see :func:`preprocess_data`)."""

    def load(path: Path) -> np.ndarray:
        return preprocess_data(read_bytes(path), pre, fast)

    return load


def run_batched(
    items: Iterable[T],
    load: Callable[[T], np.ndarray],
    forward: Callable[[np.ndarray], Sequence[np.ndarray]],
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
    decode_nice: int | None = None,
) -> Iterator[tuple[T, tuple[np.ndarray, ...] | ImageError]]:
    """Yield ``(item, outputs)`` per item in order, or ``(item, ImageError)`` when loading failed.

    ``forward`` maps a stacked batch to arrays whose first axis is the batch. ``workers``
    threads (at most one per core) load items ahead of inference while ``forward`` runs,
    at most ``2 * batch_size + workers`` items ahead, so memory stays bounded however many
    items come. ``decode_nice`` (default :data:`DECODE_NICE`) lowers the loader threads'
    scheduling priority on Linux, so they use the moments inference leaves a core idle
    instead of pre-empting it.
    """
    workers = min(workers or cpu_count(), cpu_count())
    init = partial(_lower_priority, DECODE_NICE if decode_nice is None else decode_nice)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgclf-decode", initializer=init) as pool:
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


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: niceness is per thread); best effort."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # pragma: no cover - not permitted here
        pass


def _safe_load(load: Callable[[T], np.ndarray], item: T) -> np.ndarray | ImageError:
    try:
        return load(item)
    except ImageError as e:
        return e
    except Exception as e:  # a loader must never take the whole run down
        return ImageError(f"cannot read image ({type(e).__name__}: {e})")
