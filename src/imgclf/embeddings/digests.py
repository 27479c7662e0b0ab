"""Content hashes remembered by what the file system says of each file, so a photo already hashed is not read again.

A photo's content hash keys every cache (:mod:`imgclf.embeddings.cache`); computing it means reading the whole file.
:class:`KnownDigests` remembers, per folder, each file's hash with its size, modification and change times (in
nanoseconds), inode and device: while all of them are unchanged the file holds the same bytes (the change time
cannot be set back by a program, and a rewrite in place moves it). A file changed within the last
:data:`SETTLING_SECONDS` is not remembered (a write in the same clock tick could go unseen), and a file whose record
does not match is read and hashed again. The records are a cache: lost or damaged, they cost only a re-read.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

#: Files changed more recently than this are hashed from their bytes and not remembered yet.
SETTLING_SECONDS = 2.0
_VERSION = 1


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class KnownDigests:
    """The remembered content hashes of the files of some folders, under ``cache_root/digests``."""

    def __init__(self, cache_root: str | os.PathLike):
        self.dir = Path(cache_root) / "digests"
        self._folders: dict[str, dict[str, list]] = {}
        self._changed: set[str] = set()
        self._lock = threading.Lock()

    def _record_file(self, folder: str) -> Path:
        return self.dir / f"{hashlib.blake2b(folder.encode('utf-8', 'surrogateescape'), digest_size=16).hexdigest()}.json"

    def _folder(self, folder: str) -> dict[str, list]:
        with self._lock:
            known = self._folders.get(folder)
            if known is None:
                try:
                    loaded = json.loads(self._record_file(folder).read_text(encoding="utf-8"))
                    known = loaded["files"] if loaded.get("version") == _VERSION and loaded.get("folder") == folder else {}
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    known = {}
                self._folders[folder] = known
            return known

    def get(self, path: str | os.PathLike) -> str | None:
        """The remembered hash of the regular file ``path``, or None when it is not known as it is now."""
        try:
            return self._known(path, os.stat(path))
        except OSError:
            return None

    def _known(self, path: str | os.PathLike, st: os.stat_result) -> str | None:
        """The hash remembered for ``path`` if ``st`` (what ``stat`` says of it now) matches its record."""
        folder, name = os.path.split(os.path.abspath(path))
        record = self._folder(folder).get(name)
        if not isinstance(record, list) or len(record) != 6 or not stat.S_ISREG(st.st_mode):
            return None
        return record[5] if _signature(st) == record[:5] else None

    def content_hash(self, path: str | os.PathLike) -> str:
        """The content hash of ``path``: remembered, or read and hashed (then remembered); raises
        :class:`~imgclf.errors.ImageError` as :func:`~imgclf.runtime.images.read_bytes` does."""
        from imgclf.files.digests import content_hash
        from imgclf.runtime.images import read_bytes

        try:
            before = os.stat(path)
        except OSError:
            before = None  # read_bytes says why
        known = self._known(path, before) if before is not None else None
        if known is not None:
            return known
        digest = content_hash(read_bytes(path))
        if before is not None:
            self.remember(path, before, digest)
        return digest

    def remember(self, path: str | os.PathLike, before: os.stat_result, digest: str) -> None:
        """Record ``digest`` for ``path``, whose bytes were read after ``before`` was taken of it; a file changed in the
        last :data:`SETTLING_SECONDS`, or since ``before``, is left unrecorded."""
        settled = time.time_ns() - int(SETTLING_SECONDS * 1e9)
        if max(before.st_mtime_ns, before.st_ctime_ns) > settled:
            return
        try:
            if _signature(os.stat(path)) != _signature(before):
                return
        except OSError:
            return
        folder, name = os.path.split(os.path.abspath(path))
        known = self._folder(folder)
        with self._lock:
            known[name] = [*_signature(before), digest]
            self._changed.add(folder)

    def save(self) -> None:
        """Write the records of the folders that gained some, keeping only files still in each folder (best effort)."""
        from imgclf.files import write_bytes_atomic

        with self._lock:
            changed, self._changed = self._changed, set()
        for folder in sorted(changed):
            known = self._folders[folder]
            try:
                present = set(os.listdir(folder))
                files = {name: rec for name, rec in known.items() if name in present}
                record = json.dumps({"version": _VERSION, "folder": folder, "files": files})
                write_bytes_atomic(self._record_file(folder), record.encode(), durable=False)
            except (OSError, UnicodeError):
                pass
