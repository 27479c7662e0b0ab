"""The one decode → pixels → batch → ONNX Runtime pipeline shared by embedding, predict and serve.

Photos are decoded and cut to 8-bit model-input pixels (:func:`load_pixels`) in threads
(Pillow releases the GIL), then normalised a whole batch at a time
(:meth:`~imgclf.preprocessing.Preprocessing.batch`) right before inference, in bounded
memory; results come back in input order (:func:`run_batched`).
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image

from imgclf.errors import ImageError, ImgclfError
from imgclf.images import decode, read_bytes
from imgclf.preprocessing import Preprocessing

T = TypeVar("T")
#: Images per ONNX Runtime run for one inference stream with a multi-threaded session
#: (predict, serve-style callers).
DEFAULT_BATCH = 16
#: Images per run when inference runs as several single-threaded streams (:func:`inference_plan`).
STREAM_BATCH = 8


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def inference_plan() -> tuple[int, int]:
    """``(streams, threads)``: how bulk inference (embedding many photos) uses the cores.

    ``streams`` batches run concurrently, each in a session with ``threads`` intra-op
    threads. On 2 cores, two single-threaded streams beat one two-threaded session: about
    14 vs 15–16 CPU ms per image on the same tensors (137 vs 125–130 img/s), and no
    straggler thread when another job takes a core (``benchmarks/throughput.py``, row (a)).
    At most 4 streams (memory: each keeps its own activations).
    """
    cores = cpu_count()
    streams = min(cores, 4)
    return streams, max(1, cores // streams)


def create_session(onnx: str | os.PathLike | bytes, threads: int | None = None, spinning: bool = False):
    """An ONNX Runtime CPU session of an ONNX file (or its bytes) with all graph optimisations and ``threads`` intra-op threads.

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
    return ort.InferenceSession(onnx if isinstance(onnx, bytes) else str(onnx), opts, providers=["CPUExecutionProvider"])


#: JPEGs are decoded at a reduced size (DCT scaling, Pillow's ``draft``) that keeps the
#: shorter side at least this many times the resize target, so the bicubic resize still
#: downsamples by 2× or more. Measured against full decoding (``tests/test_speed.py``):
#: embedding cosine similarity ≥ 0.999 on real photos; margin 1 fell to 0.986.
DRAFT_MARGIN = 2.0


def draft_side(pre: Preprocessing) -> int:
    """The shorter side a JPEG may be decoded at (DCT scaling) for ``pre``."""
    if pre.crop:  # the face is a part of the photo: keep enough pixels to find and crop it
        from imgclf.faces import DECODE_SIDE

        return DECODE_SIDE
    return int(math.ceil(pre.resize_to * DRAFT_MARGIN))


def preprocess_data(data: bytes, pre: Preprocessing, fast: bool = True) -> np.ndarray:
    """Image bytes → one preprocessed (3, S, S) array; raises :class:`ImageError`.

    ``fast`` is ``pre.batch([load_pixels(data, pre)])[0]``: big JPEGs decoded at reduced
    size, :meth:`Preprocessing.fast` (equal to the reference path within the tolerance tested
    in ``tests/test_speed.py``); ``fast=False`` is the reference: full decode,
    :meth:`Preprocessing.__call__`.
    """
    if fast:
        return pre.batch([load_pixels(data, pre)])[0]
    return preprocess_image(decode(data), pre)


def load_pixels(data: bytes, pre: Preprocessing) -> np.ndarray:
    """Image bytes → :meth:`Preprocessing.pixels` (uint8, S × S × 3) of the photo (or of its face,
    ``pre.crop``), big JPEGs decoded at reduced size; raises :class:`ImageError`.

    Bulk paths load pixels in worker threads and normalise whole batches with
    :meth:`Preprocessing.batch` (``run_batched(..., collate=pre.batch)``).
    """
    return pre.pixels(crop_image(decode(data, max_side=draft_side(pre)), pre))


def preprocess_image(img: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Decoded RGB image → model input: :func:`crop_image`, then ``pre`` (the reference path)."""
    return pre(crop_image(img, pre))


def crop_image(img: Image.Image, pre: Preprocessing) -> Image.Image:
    """``img`` cut to ``pre.crop`` (the face; raises :class:`~imgclf.faces.NoFaceError`), or as it is."""
    if not pre.crop:
        return img
    from imgclf.faces import crop

    return crop(img, pre.crop)


def _as_is(batch: np.ndarray) -> np.ndarray:
    return batch


def encoder(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The step between preprocessing and the ONNX graph of a backbone that is not all ONNX.

    ``name`` is :attr:`Backbone.encoder <imgclf.backbones.Backbone.encoder>` (also stored in a
    model's ``imgclf.json``); ``None``: the ONNX graph takes the preprocessed images as they are.
    """
    if name is None:
        return _as_is
    from imgclf import faces

    if name == faces.ENCODER:
        return faces.encode
    raise ImgclfError(f"unknown encoder {name!r}: this model needs a newer imgclf")


def pixel_loader(pre: Preprocessing) -> Callable[[Path], np.ndarray]:
    """Path → :func:`load_pixels`; batch the results with ``pre.batch``."""

    def load(path: Path) -> np.ndarray:
        return load_pixels(read_bytes(path), pre)

    return load


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
