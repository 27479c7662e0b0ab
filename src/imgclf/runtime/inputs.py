"""Which files a command reads: folders walked (sorted, symlinks followed once), junk and model folders left out.

Only names and folder structure are looked at; whether a file is a usable image is decided
when its bytes are decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from imgclf.errors import ImgclfError
from imgclf.runtime.artifact import is_model_folder

_JUNK = frozenset({"thumbs.db", "desktop.ini", "__macosx", "icon\r", "$recycle.bin", "system volume information"})


@dataclass(frozen=True)
class Skipped:
    """A file left out, with the reason in a few words."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


def is_ignored(name: str) -> bool:
    """Hidden files and OS junk (``.DS_Store``, ``Thumbs.db``, ``__MACOSX``) are never scanned."""
    return name.startswith(".") or name.lower() in _JUNK


#: Why a folder inside the data is not scanned.
MODEL_FOLDER_REASON = "an imgclf model folder, not photos: left out"


def walk_files(root: Path, skipped: list[Skipped] | None = None) -> Iterator[Path]:
    """Every non-ignored file under ``root`` (sorted, recursive, symlinks followed once).

    Sub-folders holding an imgclf model are not entered; each is added to ``skipped``.
    """
    seen: set[tuple[int, int]] = set()

    def visit(d: Path) -> Iterator[Path]:
        try:
            st = d.stat()
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if is_ignored(e.name):
                continue
            p = Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir and is_model_folder(p):
                if skipped is not None:
                    skipped.append(Skipped(str(p), MODEL_FOLDER_REASON))
            elif is_dir:
                yield from visit(p)
            else:
                yield p

    yield from visit(root)


def iter_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files named directly, plus every file under named folders; a missing path is an error."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from walk_files(p)
        elif p.exists() or p.is_symlink():
            yield p
        else:
            raise ImgclfError(f"no such file or folder: {raw}")
