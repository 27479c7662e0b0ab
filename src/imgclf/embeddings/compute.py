"""Embed image files with a backbone, reusing and filling the on-disk cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf.backbones import Backbone
from imgclf.embeddings.cache import EmbeddingCache
from imgclf.embeddings.digests import KnownDigests
from imgclf.files.digests import content_hash
from imgclf.errors import ImageError
from imgclf.runtime.images import read_bytes
from imgclf.runtime.batching import DEFAULT_BATCH, STREAM_BATCH, run_batched
from imgclf.runtime.loader import crop_image, pixel_loader
from imgclf.runtime.encoders import encoder
from imgclf.runtime.session import create_session, inference_plan

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
    errors: dict[Path, str] = {}

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    digests = KnownDigests(cache.root) if cache else None
    hash_of = digests.content_hash if digests else (lambda path: content_hash(read_bytes(path)))
    matrix = np.zeros((total, backbone.dim), np.float32)
    found = np.zeros(total, bool)
    keys: list[str] = [""] * total
    misses: dict[Path, list[int]] = {}  # a path given twice is embedded once
    for i, path in enumerate(paths):  # on one thread: a cached entry is small, and threads only contend for it
        try:
            keys[i] = hash_of(path)
        except ImageError as e:
            errors[path] = e.reason
            tick()
            continue
        vec = cache.get(keys[i]) if cache else None
        if vec is not None and vec.shape == (backbone.dim,):
            matrix[i], found[i] = vec, True
            tick()
        else:
            misses.setdefault(path, []).append(i)
    if digests:
        digests.save()

    if misses:
        streams, threads = inference_plan()
        session = create_session(backbone.onnx_path, threads)  # run from `streams` threads at once
        input_name = session.get_inputs()[0].name
        encode = encoder(backbone.encoder)

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            return session.run(None, {input_name: encode(batch)})

        pre = backbone.preprocessing
        for path, out in run_batched(list(misses), pixel_loader(pre), forward, batch_size or STREAM_BATCH, loaders=0,
                                     streams=streams, collate=pre.batch):
            if isinstance(out, ImageError):
                errors[path] = out.reason
            else:
                rows = misses[path]
                matrix[rows], found[rows] = np.asarray(out[0], dtype=np.float32), True
                if cache:
                    cache.put(keys[rows[0]], matrix[rows[0]])
            tick(len(misses[path]))

    ok = np.flatnonzero(found)
    return Embeddings([paths[i] for i in ok], [keys[i] for i in ok], matrix if len(ok) == total else matrix[ok], errors,
                      n_computed=sum(int(found[rows[0]]) for rows in misses.values()))


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
