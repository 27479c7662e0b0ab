"""Where a change inside a project may touch: relative paths checked to stay inside the project folder, moves that
never replace a file, and one lock per project.

Every path a change names is relative to the project folder, in POSIX form, and checked component by component:
no absolute path, no ``..``, no hidden name (imgclf's own ``.imgclf/`` is reached only through :data:`TRASH`), no
symbolic link on the way, so nothing a request names can lead out of the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from pathlib import Path, PurePosixPath
from typing import Iterator

from imgclf.errors import ImgclfError
from imgclf.runtime.inputs import is_ignored

#: Where removed photos wait, inside the project's own state folder, until "empty trash".
TRASH = ".imgclf/trash"
#: The longest label name (a folder name on every file system).
MAX_NAME = 100
_BAD_CHARS = set('/\\:*?"<>|') | {chr(c) for c in range(32)}


class ChangeRefused(ImgclfError):
    """A change that cannot be made as asked (nothing was changed)."""


def label_name(name: str) -> str:
    """``name`` as a label folder's name, or :class:`ChangeRefused` saying what is wrong with it."""
    clean = (name or "").strip()
    if not clean:
        raise ChangeRefused("a label needs a name")
    if len(clean) > MAX_NAME:
        raise ChangeRefused(f"a label's name is at most {MAX_NAME} characters")
    if clean.startswith(".") or clean in ("train", "val", "test") or set(clean) & _BAD_CHARS:
        raise ChangeRefused(f"{clean!r} cannot be a label: no leading dot, no / \\ : * ? \" < > |, and not train, val or test")
    return clean


def label_folders(root: Path) -> list[Path]:
    """The label folders of a project: its folders that are not hidden and not symbolic links, by name."""
    return [Path(e.path) for e in sorted(os.scandir(root), key=lambda e: e.name.lower())
            if not is_ignored(e.name) and e.is_dir(follow_symlinks=False)]


def relative(path: str) -> PurePosixPath:
    """``path`` as a relative path inside a project (no absolute, empty, ``..`` or hidden part)."""
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or any(part in ("", ".", "..") or part.startswith(".") for part in rel.parts):
        raise ChangeRefused(f"not a photo of this project: {path!r}")
    return rel


def inside(root: Path, rel: PurePosixPath | str) -> Path:
    """``root / rel`` after checking that no folder on the way is a symbolic link or a special file."""
    here = root
    parts = PurePosixPath(rel).parts
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return root.joinpath(*parts)
        if stat.S_ISLNK(st.st_mode):
            raise ChangeRefused(f"{'/'.join(parts[:i + 1])} is a symbolic link: imgclf does not follow it out of the project")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise ChangeRefused(f"{'/'.join(parts[:i + 1])} is not a folder")
    return here


def move(source: Path, target: Path) -> None:
    """Move a file or folder within the project without ever replacing what is at ``target``."""
    if os.path.lexists(target):
        raise ChangeRefused(f"{target.name} already exists there: nothing was moved")
    target.parent.mkdir(parents=True, exist_ok=True)
    st = os.lstat(source)
    if stat.S_ISREG(st.st_mode):
        os.link(source, target)  # fails if something appeared at target meanwhile: nothing is replaced
        os.unlink(source)
    elif stat.S_ISDIR(st.st_mode):
        os.rename(source, target)  # a folder replaces at most an empty folder
    else:
        raise ChangeRefused(f"{source.name} is not a photo or a folder: left where it is")


class ProjectLock:
    """One change at a time per project, across threads and processes (``fcntl.flock`` on ``.imgclf/<name>.lock``)."""

    def __init__(self, state_dir: Path, name: str):
        self.path = state_dir / f"{name}.lock"
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def held(self, wait: bool = True, busy: str = "the project is busy") -> Iterator[None]:
        if not self._threads.acquire(blocking=wait):
            raise ChangeRefused(busy)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise ChangeRefused(busy) from None
                yield
            finally:
                os.close(fd)
        finally:
            self._threads.release()
