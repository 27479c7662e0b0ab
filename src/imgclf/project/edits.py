"""The changes a person makes to a project's photos and labels, each journaled and undoable
(:mod:`~imgclf.project.journal`), one at a time per project (:class:`~imgclf.project.places.ProjectLock`).

Nothing here deletes a photo: "remove" moves it into the project's trash, and only :meth:`Edits.empty_trash` (asked
for by name) deletes what the trash holds. Nothing outside the project folder is touched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImageError
from imgclf.files import content_hash
from imgclf.project.arrivals import Arrival, PhotoIndex, check_photo, safe_stem, write_new
from imgclf.project.journal import SHOWN, Change, Journal, undone_ids
from imgclf.project.places import TRASH, ChangeRefused, ProjectLock, inside, label_folders, label_name, move, relative
from imgclf.runtime.inputs import walk_files


@dataclass
class Label:
    name: str
    count: int

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count}


class Edits:
    """The journaled changes of the project in ``root``; ``cache_root`` is imgclf's cache (content hashes and
    fingerprints of the photos, to spot copies)."""

    def __init__(self, root: Path, cache_root: Path, max_pixels: int = 80_000_000):
        self.root = root
        self.journal = Journal(root)
        self.lock = ProjectLock(root / ".imgclf", "changes")
        self.index = PhotoIndex(root, cache_root)
        self.max_pixels = max_pixels

    # --- reading -----------------------------------------------------------------------------------------------
    def labels(self) -> list[Label]:
        """The label folders and how many files each holds."""
        return [Label(folder.name, sum(1 for _ in walk_files(folder))) for folder in label_folders(self.root)]

    def photos(self, label: str, offset: int = 0, limit: int = 60) -> tuple[int, list[str]]:
        """How many photos ``label`` holds, and the relative paths of ``limit`` of them from ``offset`` (newest first)."""
        folder = self._label_folder(label, must_exist=True)
        found = list(walk_files(folder))
        found.sort(key=lambda p: (-_mtime(p), p.name))
        return len(found), [p.relative_to(self.root).as_posix() for p in found[offset:offset + limit]]

    def history(self) -> list[dict]:
        """The latest changes, newest first, each saying whether undo would take it back next."""
        changes = self.journal.changes()
        undone = undone_ids(changes)
        nxt = self.journal.undoable(changes)
        return [c.to_dict() | {"undone": c.id in undone, "next_undo": nxt is not None and c.id == nxt.id}
                for c in reversed(changes[-SHOWN:])]

    def trash_count(self) -> int:
        trash = self.root / TRASH
        return sum(1 for _ in walk_files(trash)) if trash.is_dir() else 0

    # --- changing ----------------------------------------------------------------------------------------------
    def add_label(self, name: str) -> Change:
        name = label_name(name)
        with self.lock.held():
            folder = self._label_folder(name)
            if os.path.lexists(folder):
                raise ChangeRefused(f"there is already a label {name!r}")
            folder.mkdir()
            return self.journal.record(f"made label {name}", [], [name])

    def rename_label(self, name: str, new: str) -> Change:
        new = label_name(new)
        with self.lock.held():
            source, target = self._label_folder(name, must_exist=True), self._label_folder(new)
            if os.path.lexists(target):
                raise ChangeRefused(f"there is already a label {new!r}")
            os.rename(source, target)
            return self.journal.record(f"renamed label {name} to {new}", [(name, new)])

    def remove_label(self, name: str) -> Change:
        with self.lock.held():
            source = self._label_folder(name, must_exist=True)
            change_id = self.journal.next_id()
            target = f"{TRASH}/{change_id}/{name}"
            move(source, self.root / target)
            return self.journal.record(f"removed label {name} (its photos are in the trash)", [(name, target)])

    def add_photos(self, label: str, files: list[tuple[str, bytes]], source: str = "") -> tuple[list[Arrival], Change | None]:
        """Save each ``(name, bytes)`` into ``label`` (created if missing): unreadable files are refused by name and
        reason, a file already in the label is not saved twice, copies elsewhere are flagged. One change for all."""
        label = label_name(label)
        with self.lock.held():
            folder = self._label_folder(label)
            made = [] if os.path.lexists(folder) else [label]
            folder.mkdir(exist_ok=True)
            arrivals, moves = [], []
            for name, data in files:
                arrival = self._arrive(folder, name, data)
                arrivals.append(arrival)
                if arrival.saved:
                    moves.append((None, arrival.path))
            if not moves:
                if made:
                    folder.rmdir()
                return arrivals, None
            what = f"{len(moves)} photo{'s' * (len(moves) != 1)}"
            change = self.journal.record(f"added {what} to {label}{' from ' + source if source else ''}", moves, made)
        return arrivals, change

    def copy_photos(self, paths: list[str], label: str) -> Change:
        """Give photos one more label (several labels per photo): each photo's bytes saved into ``label`` as well."""
        files = []
        for path in paths:
            source = self._photo(path)
            files.append((source.name, source.read_bytes()))
        arrivals, change = self.add_photos(label, files, source="another label")
        if change is None:
            raise ChangeRefused(f"the photos are already in {label_name(label)}")
        return change

    def move_photos(self, paths: list[str], label: str) -> Change:
        label = label_name(label)
        with self.lock.held():
            folder = self._label_folder(label)
            made = [] if os.path.lexists(folder) else [label]
            moves = []
            for path in paths:
                source = self._photo(path)
                target = f"{label}/{source.name}"
                if relative(path).parts[0] == label:
                    continue
                move(source, self.root / target)
                moves.append((path, target))
            if not moves:
                raise ChangeRefused(f"the photos are already in {label}")
            n = len(moves)
            return self.journal.record(f"moved {n} photo{'s' * (n != 1)} to {label}", moves, made)

    def remove_photos(self, paths: list[str]) -> Change:
        with self.lock.held():
            change_id = self.journal.next_id()
            moves = []
            for path in paths:
                source = self._photo(path)
                target = f"{TRASH}/{change_id}/{path}"
                move(source, self.root / target)
                moves.append((path, target))
            n = len(moves)
            return self.journal.record(f"removed {n} photo{'s' * (n != 1)} (they are in the trash)", moves)

    def undo(self) -> Change:
        with self.lock.held():
            return self.journal.undo()

    def empty_trash(self) -> int:
        """Delete what the trash holds (asked for by name: the one deletion imgclf makes); how many files went."""
        with self.lock.held():
            trash = self.root / TRASH
            n = self.trash_count()
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash)
            self.journal.record(f"emptied the trash ({n} file{'s' * (n != 1)} deleted)", [], final=True)
            return n

    # --- helpers -----------------------------------------------------------------------------------------------
    def _arrive(self, folder: Path, name: str, data: bytes) -> Arrival:
        try:
            extension, prints = check_photo(data, self.max_pixels)
        except ImageError as e:
            return Arrival(name, False, reason=e.reason)
        digest = content_hash(data)
        copy = self.index.copy_of(digest)
        label = folder.name
        if copy is not None and copy.split("/", 1)[0] == label:
            return Arrival(name, False, reason=f"already in {label}", copy_of=copy)
        like = None if copy else self.index.like(prints)
        path = write_new(folder, safe_stem(name), digest, extension, data).relative_to(self.root).as_posix()
        self.index.add(digest, path, prints)
        return Arrival(name, True, path, copy_of=copy, like=like)

    def _label_folder(self, name: str, must_exist: bool = False) -> Path:
        folder = inside(self.root, relative(label_name(name)))
        if must_exist and not folder.is_dir():
            raise ChangeRefused(f"no label {name!r} in this project")
        return folder

    def _photo(self, path: str) -> Path:
        rel = relative(path)
        if len(rel.parts) < 2:
            raise ChangeRefused(f"not a photo of this project: {path!r}")
        found = inside(self.root, rel)
        if not found.is_file():
            raise ChangeRefused(f"no photo {path} in this project")
        return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
