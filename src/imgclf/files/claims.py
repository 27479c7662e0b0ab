"""Which existing files a result may replace: only what imgclf itself wrote at that path (:class:`Claim`).

A result file (``--json``, ``--report``, ``-o``, an export) replaces an existing file only when imgclf
wrote exactly that content at exactly that path: every result written through :class:`Claim` is recorded
in a ledger (one small JSON per path under :func:`ledger_dir`: the path and the SHA-256 of what was
written). A foreign file cannot match that by accident; a file the user edited afterwards no longer
matches and is theirs. Special files are never opened, symlinks never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.files.atomic import staged, to_json, write_bytes_atomic, writing_to
from imgclf.files.digests import file_sha256
from imgclf.files.locations import ledger_dir


def _key(path: Path) -> Path:
    """The ledger file of ``path`` (its folder resolved, so two spellings of one place share it)."""
    where = os.path.join(os.path.realpath(path.parent), path.name)
    return ledger_dir() / (hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:40] + ".json")


def _record(path: Path, entry: dict) -> None:
    """Remember what imgclf wrote at ``path`` (best effort: without a record the next run refuses to replace it)."""
    with contextlib.suppress(OSError):
        write_bytes_atomic(_key(path), json.dumps({"path": os.path.abspath(path), **entry}).encode(), durable=False)


def _recorded(path: Path) -> dict | None:
    try:
        entry = json.loads(_key(path).read_bytes())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("path") == os.path.abspath(path) else None


def path_kind(path: str | os.PathLike) -> str | None:
    """None when nothing is at ``path``; else ``file``, ``folder``, ``symlink`` or ``special`` (never followed or opened)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "special"


def written_by_imgclf(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file holding exactly what imgclf last wrote there."""
    path = Path(path)
    entry = _recorded(path)
    if path_kind(path) != "file" or entry is None or "sha256" not in entry:
        return False
    try:
        return file_sha256(path) == entry["sha256"]
    except OSError:
        return False


def _folder_files(folder: Path) -> dict[str, str] | None:
    """``{relative path: SHA-256}`` of every file under ``folder``; None if it holds a symlink or a special file."""
    files = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            p = Path(root) / name
            kind = path_kind(p)
            if kind == "file":
                files[p.relative_to(folder).as_posix()] = file_sha256(p)
            elif kind != "folder":
                return None
    return files


def _foreign_in(folder: Path, files: dict[str, str]) -> list[str]:
    """Which of a folder's ``files`` (:func:`_folder_files`) imgclf did not write there, as they are now."""
    ours = (_recorded(folder) or {}).get("files") or {}
    return sorted(name for name, digest in files.items() if ours.get(name) != digest)


class Claim:
    """A path a command will write a result to, checked when claimed and again just before the rename.

    ``Claim(path, "--json")`` refuses (:class:`ImgclfError`, one line) a path where a folder, a symlink, a special
    file or a file imgclf did not write stands; :meth:`write_bytes` / :meth:`commit` refuse too when anything
    changed there since, so a file that appears while the command works is never replaced. A new file is put in
    place with a hard link, which fails rather than replacing one that appeared after the last check.
    """

    def __init__(self, path: str | os.PathLike, option: str, folder: bool = False):
        self.path, self.option, self.folder = Path(path), option, folder
        self.before = self._state()

    def _state(self):
        """What is at the path now: None, or a description :meth:`_check_unchanged` compares (refusing what is not ours)."""
        kind, path, option = path_kind(self.path), self.path, self.option
        if kind is None:
            return None
        if kind == "symlink":
            raise ImgclfError(f"{option} {path} is a symbolic link: give the path of a new file (imgclf does not replace links)")
        if kind == "special":
            raise ImgclfError(f"{option} {path} is not a regular file (a pipe, device or socket): choose another name")
        if self.folder:
            if kind != "folder":
                raise ImgclfError(f"{option} {path} exists and is not a folder: choose another output, or remove it yourself")
            files = _folder_files(path)
            foreign = ["a symlink or special file"] if files is None else _foreign_in(path, files)
            if foreign:
                raise ImgclfError(f"{option} {path} holds files imgclf did not write there ({few(foreign)}): "
                                  "choose another folder, or move them out yourself")
            return _folder_state(files)
        if kind == "folder":
            raise ImgclfError(f"{option} {path} is a folder: give a file name")
        if not written_by_imgclf(path):
            raise ImgclfError(f"{option} {path} exists and was not written by imgclf (or was changed since): "
                              "choose another name, or remove it yourself")
        return ("file", file_sha256(path))

    def _check_unchanged(self) -> None:
        if self._state() != self.before:
            raise ImgclfError(f"{self.option} {self.path} changed while imgclf was working: nothing was written there; run again")

    def write_bytes(self, data: bytes) -> None:
        """Write ``data`` to the claimed file atomically (see :func:`write_bytes_atomic`), re-checked just before."""
        with writing_to(self.path, self.option), staged(self.path, data) as tmp:
            self.commit(tmp)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, obj) -> None:
        self.write_text(to_json(obj) + "\n")

    def commit(self, staged: Path) -> None:
        """Put the finished ``staged`` file (or folder) in the claimed place, in the same file system; ``staged`` is gone after."""
        with writing_to(self.path, self.option):
            if self.folder:
                return self._commit_folder(staged)
            digest = file_sha256(staged)
            self._check_unchanged()
            if self.before is None:
                _place_new(staged, self.path, self.option)
            else:
                os.replace(staged, self.path)
            _record(self.path, {"sha256": digest})

    def _commit_folder(self, staged: Path) -> None:
        files = _folder_files(staged) or {}
        self._check_unchanged()
        if self.before is None or not any(self.path.iterdir()):
            try:
                os.replace(staged, self.path)  # refused by the OS if a non-empty folder appeared meanwhile
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise ImgclfError(f"{self.option} {self.path} appeared while imgclf was working: nothing was written there") from None
                raise
        else:
            aside = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
            previous, replaced = aside / "previous", False
            os.replace(self.path, previous)
            try:
                if _folder_state(_folder_files(previous)) != self.before:  # a file was added after the last check: put it all back
                    raise ImgclfError(f"{self.option} {self.path} changed while imgclf was working: nothing was written there")
                os.replace(staged, self.path)
                replaced = True
            except BaseException:
                if not os.path.lexists(self.path):
                    os.replace(previous, self.path)
                raise
            finally:
                if replaced or not os.path.lexists(previous):  # the old export goes only once the new one stands
                    shutil.rmtree(aside, ignore_errors=True)
        _record(self.path, {"files": files})


def _folder_state(files: dict[str, str] | None):
    """What :meth:`Claim._check_unchanged` compares of a folder: its files and their digests."""
    return None if files is None else ("folder", tuple(sorted(files.items())))


def _place_new(staged: Path, path: Path, option: str) -> None:
    """Put ``staged`` at ``path`` only if nothing is there: a hard link fails instead of replacing (a rename where the
    file system has no hard links)."""
    try:
        os.link(staged, path)
    except FileExistsError:
        raise ImgclfError(f"{option} {path} appeared while imgclf was working: nothing was written there; run again") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if path_kind(path) is not None:
            raise ImgclfError(f"{option} {path} appeared while imgclf was working: nothing was written there; run again") from None
        os.replace(staged, path)
        return
    os.unlink(staged)


def printable(text: str) -> str:
    """``text`` (a file name, a command naming files) with control characters, a newline in a file name among them,
    shown as escapes, never acted on: what a message or a page shows of a name it did not choose."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def few(names: list[str], n: int = 3) -> str:
    """The first ``n`` of ``names`` and how many more: what a one-line error shows of a list of files."""
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
