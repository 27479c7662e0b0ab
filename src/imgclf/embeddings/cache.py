"""On-disk embedding cache: one small checksummed file per (backbone, image content).

Entries are written atomically (temporary file + rename), so an interrupted run keeps
every entry it finished; a truncated or corrupted entry fails its checksum, is deleted
and recomputed, never trusted. Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from imgclf.files import write_bytes_atomic

_MAGIC = b"ICE1"
_HEADER = struct.Struct("<4sI")
_DIGEST = 16


#: Bumped whenever decoding or preprocessing changes the vectors, so old entries are never mixed in.
PIPELINE_VERSION = 3


class EmbeddingCache:
    """Embeddings of one backbone, keyed by image content hash (and view name); ``kind`` names another
    family of per-photo vectors kept the same way (``"fingerprints"``: :mod:`imgclf.checks.fingerprints`)."""

    def __init__(self, root: str | os.PathLike, backbone_id: str, kind: str = "embeddings"):
        self.root = Path(root)
        self.dir = self.root / kind / f"{backbone_id}-p{PIPELINE_VERSION}"

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.emb"

    def get(self, key: str) -> np.ndarray | None:
        """The cached vector, or ``None`` when absent or damaged (a damaged entry is removed)."""
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        vec = _unpack(blob)
        if vec is None:
            path.unlink(missing_ok=True)
        return vec

    def has(self, key: str) -> bool:
        """Whether an entry for ``key`` is stored (not read: it may still turn out damaged)."""
        return self._path(key).exists()

    def put(self, key: str, vec: np.ndarray) -> None:
        """Store a vector atomically; a failure to write only costs a later recompute."""
        try:
            write_bytes_atomic(self._path(key), _pack(vec), durable=False)
        except OSError:
            pass


def _pack(vec: np.ndarray) -> bytes:
    body = _HEADER.pack(_MAGIC, vec.size) + np.ascontiguousarray(vec, dtype="<f4").tobytes()
    return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()


def _unpack(blob: bytes) -> np.ndarray | None:
    if len(blob) < _HEADER.size + _DIGEST:
        return None
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    magic, n = _HEADER.unpack_from(body)
    if magic != _MAGIC or len(body) != _HEADER.size + 4 * n:
        return None
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        return None
    vec = np.frombuffer(body, dtype="<f4", offset=_HEADER.size, count=n).astype(np.float32)
    return vec if np.all(np.isfinite(vec)) else None
