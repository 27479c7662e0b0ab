"""What a photo looks like without a network: its size, contrast, sharpness and a perceptual hash.

Computed once per photo content (decoded at most 256 px on its longer side) and kept in the
cache beside the embeddings, so checking a folder again decodes nothing.

- ``size``: the photo's upright width and height, in pixels;
- ``contrast``: standard deviation of its grey levels (0–255);
- ``sharpness``: the 99th percentile of the absolute Laplacian of the grey image: the strength
  of its strongest edges, which a sharp subject on a blurred background still has;
- ``phash``: 64 bits, the signs of the lowest 8 × 8 DCT frequencies of a 32 × 32 grey copy
  against their median (the perceptual hash of Zauner 2010, as the ``imagehash`` package has it);
- ``layout``: the 8 × 8 grey copy, centred and scaled to unit length (its correlation with
  another photo's says whether the two have the same light and dark layout).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from imgclf.embeddings.cache import EmbeddingCache

#: The scale the statistics are measured at: the photo reduced to at most this many pixels on its longer side.
SIDE = 256
#: Version of what a fingerprint holds; a change starts a new cache namespace.
VERSION = "fingerprint-1"
_FIELDS = 4  # width, height, contrast, sharpness, then 64 hash bits and 64 layout values


@dataclass
class Fingerprints:
    """Per photo, in input order: ``size`` (n, 2), ``contrast`` (n,), ``sharpness`` (n,), ``phash`` (n, 64) bool,
    ``layout`` (n, 64); rows of photos that could not be read are NaN (``ok`` is False)."""

    size: np.ndarray
    contrast: np.ndarray
    sharpness: np.ndarray
    phash: np.ndarray
    layout: np.ndarray
    ok: np.ndarray

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> "Fingerprints":
        ok = ~np.isnan(rows).any(1)
        return cls(rows[:, :2], rows[:, 2], rows[:, 3], rows[:, _FIELDS:_FIELDS + 64] > 0.5, rows[:, _FIELDS + 64:], ok)

    def rows(self) -> np.ndarray:
        """The (n, 132) rows these were made from (:meth:`from_rows`' inverse)."""
        return np.concatenate([self.size, self.contrast[:, None], self.sharpness[:, None], self.phash.astype(np.float32),
                               self.layout], axis=1).astype(np.float32)


def fingerprint(img) -> np.ndarray:
    """The fingerprint row of one decoded RGB photo (:class:`PIL.Image.Image`)."""
    from PIL import Image
    from scipy import ndimage
    from scipy.fft import dctn

    width, height = img.size
    grey = img.convert("L")
    if max(grey.size) > SIDE:
        grey.thumbnail((SIDE, SIDE), Image.Resampling.BOX)
    a = np.asarray(grey, np.float32)
    sharpness = float(np.quantile(np.abs(ndimage.laplace(a)), 0.99))
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    layout = np.asarray(grey.resize((8, 8), Image.Resampling.BOX), np.float64).ravel()
    layout -= layout.mean()
    norm = np.linalg.norm(layout)
    layout = layout / norm if norm > 0 else layout
    return np.concatenate([[width, height, float(a.std()), sharpness], bits, layout]).astype(np.float32)


def fingerprints(paths: Sequence[Path], hashes: Sequence[str], cache_root: Path | None, threads: int = 4) -> Fingerprints:
    """Fingerprints of ``paths`` (their content ``hashes`` as :func:`imgclf.embeddings.cache.content_hash` gives them),
    from the cache where it has them; the rest are decoded on ``threads`` threads and stored."""
    from imgclf.errors import ImageError
    from imgclf.runtime.images import decode, read_bytes, upright_size

    cache = EmbeddingCache(cache_root, VERSION, kind="fingerprints") if cache_root is not None else None
    width = _FIELDS + 128

    rows = [cache.get(h) if cache else None for h in hashes]  # on one thread: a cached row is small
    rows = [row if row is not None and row.shape == (width,) else None for row in rows]

    def compute(i: int) -> np.ndarray:
        try:
            data = read_bytes(paths[i])
            img = decode(data, max_side=SIDE)
            row = fingerprint(img)
            size = upright_size(data)
            if size:
                row[:2] = size
        except ImageError:
            return np.full(width, np.nan, np.float32)
        if cache:
            cache.put(hashes[i], row)
        return row

    missing = [i for i, row in enumerate(rows) if row is None]
    with ThreadPoolExecutor(max_workers=threads) as pool:  # decoding releases the interpreter: threads help here
        for i, row in zip(missing, pool.map(compute, missing)):
            rows[i] = row
    return Fingerprints.from_rows(np.stack(rows) if rows else np.zeros((0, width), np.float32))
