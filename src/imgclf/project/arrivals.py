"""New photos arriving in a project: checked, named so they cannot collide, written without replacing anything, and
compared with the photos already there (exact copies by content, near copies by perceptual hash).

A photo is written under a name made of its own (cleaned) name and the first characters of its content hash, first
to a hidden file in the label folder and then linked to its final name (a link never replaces a file), so a crash
leaves at most a hidden temporary file that no scan reads.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.checks.copies import MAX_HASH_DISTANCE, MIN_LAYOUT
from imgclf.checks.fingerprints import SIDE, Fingerprints, fingerprint, fingerprints
from imgclf.checks.quality import MIN_CONTRAST
from imgclf.errors import ImageError
from imgclf.project.places import label_folders
from imgclf.runtime.images import decode, upright_size
from imgclf.runtime.inputs import walk_files

#: File extension per decoded format.
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "HEIF": ".heic", "AVIF": ".avif", "MPO": ".jpg"}


@dataclass
class Arrival:
    """What became of one file given to a label: ``saved`` as ``path``, or not, with the ``reason``; ``copy_of`` names
    the photo it repeats exactly, ``like`` one it nearly repeats."""

    name: str
    saved: bool
    path: str | None = None
    reason: str = ""
    copy_of: str | None = None
    like: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v not in (None, "")}


def safe_stem(name: str) -> str:
    """A short file-name stem made of ``name``'s letters, digits, dots, dashes and underscores."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name or "photo").stem).strip(".-_")[:40]
    return stem or "photo"


class PhotoIndex:
    """The content hash and fingerprint of every photo in a project's label folders, kept up to date as photos
    arrive: built on first use from the caches training fills too (content hashes remembered by
    :class:`~imgclf.embeddings.digests.KnownDigests`, fingerprints by :func:`~imgclf.checks.fingerprints.fingerprints`),
    so a project trained before costs a stat and a small read per photo."""

    def __init__(self, root: Path, cache_root: Path):
        from imgclf.embeddings.digests import KnownDigests

        self.root, self.cache_root, self.digests = root, cache_root, KnownDigests(cache_root)
        self._by_hash: dict[str, str] | None = None
        self._paths: list[str] = []
        self._packed = np.zeros(0, np.uint64)
        self._layout = np.zeros((0, 64), np.float32)

    def _build(self) -> dict[str, str]:
        if self._by_hash is None:
            found, hashes = [], []
            for d in label_folders(self.root):
                for f in walk_files(d):
                    try:
                        hashes.append(self.digests.content_hash(f))
                        found.append(f)
                    except OSError:
                        continue
            self.digests.save()
            self._by_hash = {}
            for f, h in zip(found, hashes):
                self._by_hash.setdefault(h, f.relative_to(self.root).as_posix())
            prints = fingerprints(found, hashes, self.cache_root)
            ok = prints.ok & (prints.contrast >= MIN_CONTRAST)
            self._paths = [f.relative_to(self.root).as_posix() for f, good in zip(found, ok) if good]
            self._packed = _packed(prints.phash[ok])
            self._layout = prints.layout[ok].astype(np.float32)
        return self._by_hash

    def copy_of(self, digest: str) -> str | None:
        """A photo of the project with exactly these bytes."""
        path = self._build().get(digest)
        return path if path is not None and (self.root / path).exists() else None

    def like(self, prints: Fingerprints) -> str | None:
        """A photo of the project that ``prints`` (one photo's) nearly copies, as ``imgclf check`` decides it."""
        self._build()
        if not len(self._paths) or not prints.ok[0] or prints.contrast[0] < MIN_CONTRAST:
            return None
        close = np.bitwise_count(self._packed ^ _packed(prints.phash)[0]) <= MAX_HASH_DISTANCE
        for i in np.flatnonzero(close):
            if float(self._layout[i] @ prints.layout[0]) >= MIN_LAYOUT and (self.root / self._paths[i]).exists():
                return self._paths[i]
        return None

    def add(self, digest: str, path: str, prints: Fingerprints) -> None:
        self._build()[digest] = path
        if prints.ok[0]:
            self._paths.append(path)
            self._packed = np.concatenate([self._packed, _packed(prints.phash)])
            self._layout = np.concatenate([self._layout, prints.layout.astype(np.float32)])


def _packed(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(bool), axis=1).view(np.uint64)[:, 0]


def check_photo(data: bytes, max_pixels: int) -> tuple[str, Fingerprints]:
    """The extension of the photo in ``data`` and its fingerprint, or :class:`ImageError` with the reason."""
    size = upright_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise ImageError(f"image too large ({size[0]}x{size[1]} pixels, the limit is {max_pixels:,})")
    row = fingerprint(decode(data, max_side=SIDE))
    if size:
        row[:2] = size
    return _EXTENSIONS.get(_format_of(data), ".jpg"), Fingerprints.from_rows(row[None])


def _format_of(data: bytes) -> str:
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as im:
            return im.format or "JPEG"
    except Exception:
        return "JPEG"


def write_new(folder: Path, stem: str, digest: str, extension: str, data: bytes) -> Path:
    """Write ``data`` into ``folder`` under a name no file has, never replacing one; the path written."""
    temp = folder / f".arriving-{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for n in range(1000):
            target = folder / f"{stem}-{digest[:8]}{'' if n == 0 else f'-{n}'}{extension}"
            try:
                os.link(temp, target)
                return target
            except FileExistsError:
                continue
        raise OSError(f"no free name for {stem} in {folder}")
    finally:
        os.unlink(temp)
