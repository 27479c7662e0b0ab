"""What identifies a file: digests of its bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import stat


def content_hash(data: bytes) -> str:
    """Hex digest that identifies an image file by its bytes."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def file_sha256(path: str | os.PathLike, follow_links: bool = False) -> str:
    """SHA-256 of a regular file, read through one descriptor; a symlink is followed only with ``follow_links`` (a
    result imgclf may replace never is: the link itself would be what it replaces)."""
    h = hashlib.sha256()
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(os.open(path, flags), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
