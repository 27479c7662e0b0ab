"""What a model folder keeps of its photos so that it can grow without them (``training-photos.npz``).

One row per photo of the training table, every split: its path (relative to the data folder, or absolute when it
lies outside it), label, split, content hash, embedding (float16: 2.5 KB a photo at 1,280 dimensions) and fingerprint
(size, contrast, sharpness, perceptual hash, layout: what ``check`` compares copies by). ``imgclf add`` and
``imgclf forget`` (:mod:`imgclf.training.grow`) rebuild the training table from it; ``train --private`` leaves it out.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data import SPLITS
from imgclf.errors import ImgclfError
from imgclf.runtime.artifact import TABLE_FILE

#: Bumped whenever what a row holds changes; an older file is refused in one line.
VERSION = 1
_HASH_CHARS = 40
#: A fingerprint row's width (:mod:`imgclf.checks.fingerprints`).
_PRINT_WIDTH = 132
#: The largest kept table read (bytes): a million photos at 1,280 dimensions is about 3 GB.
MAX_BYTES = 8 * 2**30


@dataclass
class KeptPhotos:
    """The rows of ``training-photos.npz``; ``y`` indexes the model's labels, ``split`` holds names of :data:`SPLITS`."""

    paths: list[str]
    y: np.ndarray
    split: np.ndarray
    hashes: list[str]
    vectors: np.ndarray
    prints: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, keep: np.ndarray) -> "KeptPhotos":
        """The rows where ``keep`` is True."""
        idx = np.flatnonzero(keep)
        return KeptPhotos([self.paths[i] for i in idx], self.y[idx], self.split[idx], [self.hashes[i] for i in idx],
                          self.vectors[idx], self.prints[idx])


def save(path: Path, paths: list[str], y: np.ndarray, split: np.ndarray, hashes, vectors: np.ndarray, prints: np.ndarray) -> None:
    """Write the table to ``path`` (a new file inside a model folder being written)."""
    with open(path, "xb") as f:
        np.savez(f, version=np.array(VERSION), paths=_utf8(json.dumps(list(paths), ensure_ascii=False)),
                 y=np.asarray(y, np.int32), split=np.array([SPLITS.index(s) for s in split], np.int8).reshape(-1),
                 hashes=np.array([h.encode("ascii") for h in hashes], dtype=f"S{_HASH_CHARS}").reshape(-1),
                 vectors=np.asarray(vectors, np.float16), prints=np.asarray(prints, np.float32))


def load(model_dir: Path, labels: list[str], dim: int) -> KeptPhotos:
    """The table of ``model_dir``, checked row for row against the model's ``labels`` and embedding ``dim``; one line
    (:class:`ImgclfError`) when it is missing or damaged."""
    where = Path(model_dir) / TABLE_FILE
    try:
        if where.stat().st_size > MAX_BYTES:
            raise ImgclfError(f"{where} is damaged: larger than {MAX_BYTES // 2**30} GB")
        with np.load(where, allow_pickle=False) as f:
            arrays = {name: f[name] for name in ("version", "paths", "y", "split", "hashes", "vectors", "prints")}
    except FileNotFoundError:
        raise ImgclfError(f"{model_dir} keeps no photos to grow from ({TABLE_FILE} missing): it was trained with --private "
                          "or by an older imgclf; train it again from its photos") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ImgclfError(f"{where} is damaged: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
    if arrays["version"].shape != () or int(arrays["version"]) != VERSION:
        raise ImgclfError(f"{where} was written by another version of imgclf: train the model again from its photos")
    try:
        paths = json.loads(arrays["paths"].tobytes().decode("utf-8"))
        hashes = [h.decode("ascii") for h in arrays["hashes"]]
    except ValueError:
        raise ImgclfError(f"{where} is damaged: its paths or hashes cannot be read") from None
    n = len(paths) if isinstance(paths, list) else -1
    y, split, vectors, prints = arrays["y"], arrays["split"], arrays["vectors"], arrays["prints"]
    if (n < 0 or not all(isinstance(p, str) for p in paths) or y.shape != (n,) or split.shape != (n,) or len(hashes) != n
            or vectors.shape != (n, dim) or prints.shape != (n, _PRINT_WIDTH)
            or (n and (y.min() < 0 or y.max() >= len(labels) or split.min() < 0 or split.max() >= len(SPLITS)))
            or not all(len(h) == _HASH_CHARS for h in hashes) or not np.isfinite(vectors).all()):
        raise ImgclfError(f"{where} is damaged: its rows do not match the model's {len(labels)} labels and {dim}-dimensional "
                          "embeddings")
    return KeptPhotos(paths, y.astype(np.int64), np.array(SPLITS)[split], hashes, vectors.astype(np.float32), prints)


def _utf8(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8)
