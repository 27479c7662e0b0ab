"""Read an embeddings file written by ``imgclf embed`` (for ``train --embeddings``).

Photos are matched by their path relative to the data folder, so embeddings computed on
a cluster at ``/mnt/photos`` train a head on a laptop's copy at ``~/photos``. A photo of
the data folder without a row, or whose row has an ``error``, is skipped with that reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from imgclf.backbones import FACE
from imgclf.engines.core import EMBEDDINGS
from imgclf.engines.outputs import META_KEY
from imgclf.errors import ImgclfError


def read_metadata(path: str | os.PathLike) -> dict:
    """The imgclf description stored in an embeddings parquet file (backbone, labels, data folder)."""
    pq = _pq()
    try:
        meta = pq.read_schema(str(path)).metadata or {}
    except FileNotFoundError:
        raise ImgclfError(f"embeddings file not found: {path}") from None
    except Exception as e:
        raise ImgclfError(f"cannot read embeddings file {path}: {str(e).splitlines()[0][:200]}") from None
    try:
        info = json.loads(meta[META_KEY])
    except (KeyError, ValueError):
        raise ImgclfError(f"{path} is not an embeddings file written by imgclf embed (no imgclf metadata)") from None
    if info.get("kind") != EMBEDDINGS:
        raise ImgclfError(f"{path} holds {info.get('kind', 'unknown rows')}, not embeddings")
    return info


def load_embeddings(path: str | os.PathLike, dataset, backbone):
    """An :class:`~imgclf.embedding.Embeddings` for ``dataset.photos`` from the file at ``path``.

    Raises :class:`ImgclfError` when the file was embedded with another backbone than ``backbone``.
    """
    from imgclf.embedding import Embeddings

    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise ImgclfError(f"--embeddings needs the .parquet file written by imgclf embed, not {path.name}")
    info = read_metadata(path)
    stored = (info.get("backbone") or {}).get("id")
    if stored != backbone.id:
        crop = backbone.preprocessing.crop
        flags = f"--backbone {backbone.name}" + (f" --crop {crop}" if crop and backbone.name != FACE else "")  # face: its own chip
        raise ImgclfError(
            f"{path} was embedded with backbone {stored}, but this training uses {backbone.id}; "
            f"run imgclf embed again with {flags}, or train with the backbone of the file"
        )
    table = _pq().read_table(str(path), columns=["path", "hash", "embedding", "error"])
    rel = table["path"].to_pylist()
    hashes = table["hash"].to_pylist()
    errors = table["error"].to_pylist()
    col = table["embedding"].combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if valid.sum() and flat.size != valid.sum() * backbone.dim:
        raise ImgclfError(f"{path} holds vectors of another size than backbone {backbone.id}'s {backbone.dim}")
    vectors = flat.reshape(-1, backbone.dim)
    row_of_valid = np.cumsum(valid) - 1
    index = {p: i for i, p in enumerate(rel)}

    paths, keys, rows, bad = [], [], [], {}
    for photo in dataset.photos:
        i = index.get(photo.path.relative_to(dataset.root).as_posix())
        if i is None:
            bad[photo.path] = f"not in {path.name}"
        elif not valid[i]:
            bad[photo.path] = errors[i] or "no embedding"
        else:
            paths.append(photo.path)
            keys.append(hashes[i])
            rows.append(row_of_valid[i])
    matrix = vectors[np.asarray(rows, dtype=np.int64)] if rows else np.zeros((0, backbone.dim), np.float32)
    return Embeddings(paths, keys, matrix, bad, n_computed=0)


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImgclfError("reading an embeddings file needs pyarrow: pip install 'imgclf[ray]'") from None
    return pq
