"""Embed image files with a backbone, reusing and filling the on-disk cache."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf.backbones import Backbone
from imgclf.embeddings.cache import EmbeddingCache, map_chunked
from imgclf.files.digests import content_hash
from imgclf.errors import ImageError
from imgclf.runtime.images import read_bytes
from imgclf.runtime.batching import DEFAULT_BATCH, STREAM_BATCH, run_batched
from imgclf.runtime.loader import crop_image, pixel_loader
from imgclf.runtime.encoders import encoder
from imgclf.runtime.session import cpu_count, create_session, inference_plan

#: Called as ``progress(done, total)`` while embedding (later stages add ``stage=`` and ``info=``).
Progress = Callable[..., None]


@dataclass
class Embeddings:
    """Vectors for the files that could be read, in input order, and the reasons for the rest."""

    paths: list[Path]
    hashes: list[str]
    vectors: np.ndarray
    errors: dict[Path, str] = field(default_factory=dict)
    n_computed: int = 0


def embed_files(
    paths: Sequence[Path],
    backbone: Backbone,
    cache: EmbeddingCache | None,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> Embeddings:
    """Embed ``paths``; cached vectors are reused, new ones are stored as soon as computed.

    Inference runs as :func:`~imgclf.runtime.session.inference_plan` streams of ``batch_size``
    (default :data:`~imgclf.runtime.batching.STREAM_BATCH`), each decoding its own batch, then
    running it (``run_batched(loaders=0)``).

    An interruption (Ctrl-C, crash) loses at most the batch in flight.
    """
    total = len(paths)
    done = 0
    hashes: dict[Path, str] = {}
    vectors: dict[Path, np.ndarray] = {}
    errors: dict[Path, str] = {}

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    def lookup(path: Path) -> tuple[Path, str | ImageError, np.ndarray | None]:
        try:
            key = content_hash(read_bytes(path))
        except ImageError as e:
            return path, e, None
        return path, key, cache.get(key) if cache else None

    misses: list[Path] = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * cpu_count())) as pool:
        for path, key, vec in map_chunked(pool, lookup, paths):
            if isinstance(key, ImageError):
                errors[path] = key.reason
                tick()
                continue
            hashes[path] = key
            if vec is not None and vec.shape == (backbone.dim,):
                vectors[path] = vec
                tick()
            else:
                misses.append(path)

    if misses:
        streams, threads = inference_plan()
        session = create_session(backbone.onnx_path, threads)  # run from `streams` threads at once
        input_name = session.get_inputs()[0].name
        encode = encoder(backbone.encoder)

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            return session.run(None, {input_name: encode(batch)})

        pre = backbone.preprocessing
        for path, out in run_batched(misses, pixel_loader(pre), forward, batch_size or STREAM_BATCH, loaders=0,
                                     streams=streams, collate=pre.batch):
            if isinstance(out, ImageError):
                errors[path] = out.reason
            else:
                vec = np.asarray(out[0], dtype=np.float32)
                vectors[path] = vec
                if cache:
                    cache.put(hashes[path], vec)
            tick()

    ok = [p for p in paths if p in vectors]
    matrix = np.stack([vectors[p] for p in ok]) if ok else np.zeros((0, backbone.dim), np.float32)
    return Embeddings(ok, [hashes[p] for p in ok], matrix, errors, n_computed=sum(1 for p in misses if p in vectors))


def embed_views(
    paths: Sequence[Path],
    hashes: Sequence[str],
    backbone: Backbone,
    cache: EmbeddingCache | None,
    names: Sequence[str],
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[np.ndarray, int]:
    """Embeddings of augmented ``names`` views, shape (len(paths), len(names), dim), cached per view; and how
    many views were embedded now (the others came from the cache).

    Each photo is decoded once for all its missing views. Unreadable photos are not
    expected here (they were filtered by :func:`embed_files`); if one fails now its views are NaN.
    """
    from imgclf.runtime.images import load_image
    from imgclf.data.views import view

    out = np.full((len(paths), len(names), backbone.dim), np.nan, np.float32)
    todo = []
    for i, key in enumerate(hashes):
        cached = [cache.get(f"{key}-{name}") if cache else None for name in names]
        if all(v is not None and v.shape == (backbone.dim,) for v in cached):
            out[i] = np.stack(cached)
        else:
            todo.append(i)
    if not todo:
        return out, 0
    session = create_session(backbone.onnx_path)
    input_name = session.get_inputs()[0].name

    def load(i: int) -> np.ndarray:
        img = crop_image(load_image(paths[i]), backbone.preprocessing)  # --crop face: the views are of the face
        return np.stack([view(img, name, backbone.preprocessing) for name in names])

    def forward(batch: np.ndarray) -> list[np.ndarray]:
        b, v = batch.shape[:2]
        flat = session.run(None, {input_name: batch.reshape(b * v, *batch.shape[2:])})[0]
        return [flat.reshape(b, v, -1)]

    computed = 0
    for done, (i, result) in enumerate(run_batched(todo, load, forward, max(1, batch_size // len(names))), 1):
        if not isinstance(result, ImageError):
            out[i] = result[0]
            computed += len(names)
            if cache:
                for name, vec in zip(names, result[0]):
                    cache.put(f"{hashes[i]}-{name}", vec)
        if progress:
            progress(done, len(todo), stage="embedding augmented views")
    return out, computed
