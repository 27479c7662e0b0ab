"""Atomic writes: a file or a whole folder appears complete or not at all.

No temporary file outlives a failed or interrupted write (Ctrl-C included), and an error about
the destination becomes :class:`ImgclfError` with one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from imgclf.errors import ImgclfError


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    ``durable`` flushes the file to disk before the rename (results); caches skip it.
    """
    path = Path(path)
    with staged(path, data, durable) as tmp:
        os.replace(tmp, path)


@contextlib.contextmanager
def staged(path: Path, data: bytes, durable: bool = True) -> Iterator[Path]:
    """A temporary file beside ``path`` holding ``data`` (an ordinary file's permissions; flushed to disk if
    ``durable``), for the caller to rename into place; removed if it is still there afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def to_json(obj, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj``: a NaN or infinity anywhere becomes ``null`` (never a bare ``NaN``)."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as strict JSON (see :func:`to_json`), atomically."""
    write_text_atomic(path, to_json(obj) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def writing_to(path: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Turn an OS error inside the block into :class:`ImgclfError` naming ``path``."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.EBUSY:
            reason += " (a mount point cannot be replaced: write into a folder inside it)"
        raise ImgclfError(f"cannot write {what} {path}: {reason}") from None


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    On any failure the temporary folders are removed and an existing ``target`` is untouched.
    The caller decides whether ``target`` may be replaced (see :func:`imgclf.runtime.artifact.check_output`).
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes folders private; a model folder is an ordinary one
        yield tmp
        if target.exists():
            _swap(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(new: Path, target: Path) -> None:
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    try:
        os.replace(target, old / "previous")
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old / "previous", target)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
