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
    """An :class:`~imgclf.embeddings.compute.Embeddings` for ``dataset.photos`` from the file at ``path`` (``.parquet``,
    ``.csv`` or ``.jsonl``, as ``imgclf embed`` writes them).

    Raises :class:`ImgclfError` when the file was embedded with another backbone than ``backbone``.
    """
    from imgclf.embeddings.compute import Embeddings

    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".parquet", ".csv", ".jsonl"):
        raise ImgclfError(f"--embeddings needs a .parquet, .csv or .jsonl file written by imgclf embed, not {path.name}")
    rows, stored = _read_parquet(path, backbone) if kind == ".parquet" else _read_text(path, kind, backbone)
    if stored != backbone.id:
        crop = backbone.preprocessing.crop
        flags = f"--backbone {backbone.name}" + (f" --crop {crop}" if crop and backbone.name != FACE else "")  # face: its own chip
        raise ImgclfError(
            f"{path} was embedded with backbone {stored}, but this training uses {backbone.id}; "
            f"run imgclf embed again with {flags}, or train with the backbone of the file"
        )
    paths, keys, vectors, bad = [], [], [], {}
    for photo in dataset.photos:
        row = rows.get(photo.path.relative_to(dataset.root).as_posix())
        if row is None:
            bad[photo.path] = f"not in {path.name}"
        elif row[1] is None:
            bad[photo.path] = row[2] or "no embedding"
        else:
            paths.append(photo.path)
            keys.append(row[0])
            vectors.append(row[1])
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, backbone.dim), np.float32)
    return Embeddings(paths, keys, matrix, bad, n_computed=0)


def _read_parquet(path: Path, backbone) -> tuple[dict, str | None]:
    """``{relative path: (hash, vector or None, error)}`` and the backbone id of a parquet file."""
    info = read_metadata(path)
    stored = (info.get("backbone") or {}).get("id")
    if stored != backbone.id:
        return {}, stored
    table = _pq().read_table(str(path), columns=["path", "hash", "embedding", "error"])
    col = table["embedding"].combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if valid.sum() and flat.size != valid.sum() * backbone.dim:
        raise ImgclfError(f"{path} holds vectors of another size than backbone {backbone.id}'s {backbone.dim}")
    vectors = iter(flat.reshape(-1, backbone.dim))
    return {p: (h, next(vectors) if ok else None, e) for p, h, ok, e in zip(
        table["path"].to_pylist(), table["hash"].to_pylist(), valid, table["error"].to_pylist())}, stored


def _read_text(path: Path, kind: str, backbone) -> tuple[dict, str | None]:
    """The same from a ``.csv`` or ``.jsonl`` file; a bad row is refused with its line number."""
    import csv

    from imgclf.engines.outputs import EMBEDDING_CSV_COLUMNS

    rows, stored = {}, set()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if kind == ".csv":
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) != EMBEDDING_CSV_COLUMNS:
                    raise ImgclfError(f"{path} is not an embeddings CSV written by imgclf embed (its columns are "
                                      f"{', '.join(reader.fieldnames or ['none'])})")
                records = ((i, {**r, "embedding": json.loads(r["embedding"]) if r["embedding"] else None})
                           for i, r in enumerate(reader, 2))
            else:
                records = ((i, json.loads(line)) for i, line in enumerate(f, 1) if line.strip())
            for line, r in records:
                vec = r.get("embedding") if isinstance(r, dict) else None
                if not isinstance(r, dict) or not isinstance(r.get("path"), str) or (vec is not None and (not isinstance(vec, list) or len(vec) != backbone.dim)):
                    raise ImgclfError(f"{path}, line {line}: not an embeddings row of backbone {backbone.id} "
                                      f"({backbone.dim} numbers)")
                stored.add(r.get("backbone") or None)
                rows[r["path"]] = (r.get("hash") or None, None if vec is None else np.asarray(vec, np.float32),
                                   r.get("error") or None)
    except FileNotFoundError:
        raise ImgclfError(f"embeddings file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ImgclfError(f"cannot read embeddings file {path}: {str(e).splitlines()[0][:200]}") from None
    if len(stored) > 1:
        raise ImgclfError(f"{path} mixes embeddings of several backbones ({', '.join(sorted(map(str, stored)))})")
    return rows, next(iter(stored), None)


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImgclfError("reading an embeddings file needs pyarrow: pip install 'imgclf[ray]'") from None
    return pq
