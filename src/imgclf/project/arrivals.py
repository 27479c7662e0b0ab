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

from imgclf.checks.copies import MAX_HASH_DISTANCE
from imgclf.checks.fingerprints import Fingerprints, fingerprint
from imgclf.errors import ImageError
from imgclf.runtime.images import decode, upright_size
from imgclf.runtime.inputs import is_ignored, walk_files

#: File extension per decoded format.
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "HEIF": ".heic", "AVIF": ".avif", "MPO": ".jpg"}
#: The side photos are decoded at to be checked and fingerprinted.
CHECK_SIDE = 256


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
    """The content hash and perceptual hash of every photo in a project's label folders, kept up to date as photos
    arrive (built on first use; hashes are remembered by :class:`~imgclf.embeddings.digests.KnownDigests`)."""

    def __init__(self, root: Path, digests):
        self.root, self.digests = root, digests
        self._by_hash: dict[str, str] | None = None
        self._phash: dict[str, np.ndarray] = {}

    def _build(self) -> dict[str, str]:
        if self._by_hash is None:
            self._by_hash = {}
            for d in sorted(self.root.iterdir()):
                if is_ignored(d.name) or not d.is_dir() or d.is_symlink():
                    continue
                for f in walk_files(d):
                    try:
                        self._by_hash.setdefault(self.digests.content_hash(f), f.relative_to(self.root).as_posix())
                    except OSError:
                        continue
            self.digests.save()
        return self._by_hash

    def copy_of(self, digest: str) -> str | None:
        path = self._build().get(digest)
        return path if path is not None and (self.root / path).exists() else None

    def like(self, bits: np.ndarray) -> str | None:
        """A photo that arrived in this session whose perceptual hash is within the near-copy distance of ``bits``."""
        for path, other in self._phash.items():
            if np.count_nonzero(other != bits) <= MAX_HASH_DISTANCE and (self.root / path).exists():
                return path
        return None

    def add(self, digest: str, path: str, bits: np.ndarray) -> None:
        self._build()[digest] = path
        self._phash[path] = bits


def check_photo(data: bytes, max_pixels: int) -> tuple[str, np.ndarray]:
    """The extension of the photo in ``data`` and its perceptual hash bits, or :class:`ImageError` with the reason."""
    size = upright_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise ImageError(f"image too large ({size[0]}x{size[1]} pixels, the limit is {max_pixels:,})")
    img = decode(data, max_side=CHECK_SIDE)
    return _EXTENSIONS.get(_format_of(data), ".jpg"), Fingerprints.from_rows(fingerprint(img)[None]).phash[0]


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
