"""The journal of a project's changes, and undo.

Every change a person makes through a project (add photos, create, rename or remove a label, move or remove photos)
is a list of moves inside the project folder, appended to ``.imgclf/journal.jsonl`` (one JSON object per line,
flushed to disk) once its moves are done. A move from ``None`` is a file the change created. Undo plays the last
change not yet undone backwards: files it created go to the trash, moved files go back, folders it created go if
empty; the undo is a change of its own in the journal (``undoes``). Moves are renames, so a crash in the middle of a
change leaves each file either where it was or where it was going: nothing is lost.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.project.places import TRASH, ChangeRefused, inside, move

#: How many changes the page lists.
SHOWN = 50


@dataclass
class Change:
    """One change: its number, when, a sentence saying what it did, its moves and the folders it created."""

    id: int
    summary: str
    moves: list[tuple[str | None, str]] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    time: float = 0.0
    undoes: int | None = None
    #: Cannot be undone (emptying the trash).
    final: bool = False

    def to_dict(self) -> dict:
        out = {"id": self.id, "time": self.time, "summary": self.summary, "moves": [list(m) for m in self.moves],
               "made": self.made}
        return out | ({"undoes": self.undoes} if self.undoes is not None else {}) | ({"final": True} if self.final else {})

    @classmethod
    def from_dict(cls, d: dict) -> "Change":
        return cls(int(d["id"]), str(d["summary"]), [(m[0], m[1]) for m in d.get("moves", [])], list(d.get("made", [])),
                   float(d.get("time", 0)), d.get("undoes"), bool(d.get("final", False)))


def undone_ids(changes: list[Change]) -> set[int]:
    """The numbers of the changes of ``changes`` that a later undo took back."""
    return {c.undoes for c in changes if c.undoes is not None}


class Journal:
    """``.imgclf/journal.jsonl`` of the project in ``root``; callers hold the project's change lock."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / ".imgclf" / "journal.jsonl"

    def changes(self) -> list[Change]:
        """Every change recorded, oldest first (a line cut short by a crash is left out)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(Change.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError, IndexError):
                continue
        return out

    def record(self, summary: str, moves: list[tuple[str | None, str]], made: list[str] = (),
               undoes: int | None = None, final: bool = False) -> Change:
        change = Change(self.next_id(), summary, list(moves), list(made), time.time(), undoes, final)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(change.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return change

    def next_id(self) -> int:
        """The number the next change recorded gets."""
        return max((c.id for c in self.changes()), default=0) + 1

    def undoable(self, changes: list[Change] | None = None) -> Change | None:
        """The last change that is not an undo and has not been undone (of ``changes``, read from the journal if not
        given)."""
        changes = self.changes() if changes is None else changes
        undone = undone_ids(changes)
        return next((c for c in reversed(changes) if c.undoes is None and not c.final and c.id not in undone), None)

    def undo(self) -> Change:
        """Play the last change backwards and record that (:class:`ChangeRefused` when there is none, or when a file
        it would put back has been replaced since: then nothing is moved)."""
        change = self.undoable()
        if change is None:
            raise ChangeRefused("nothing to undo")
        plan = []
        for source, target in reversed(change.moves):
            here = inside(self.root, target)
            if not os.path.lexists(here):
                raise ChangeRefused(f"cannot undo \u201c{change.summary}\u201d: {target} is no longer there")
            back = source if source is not None else f"{TRASH}/undo-{change.id}/{target}"
            if os.path.lexists(self.root / back):
                raise ChangeRefused(f"cannot undo \u201c{change.summary}\u201d: {back} exists again")
            plan.append((target, back))
        for target, back in plan:
            move(self.root / target, self.root / back)
        for folder in reversed(change.made):
            try:
                inside(self.root, folder).rmdir()
            except OSError:
                pass  # not empty (photos added since): kept
        return self.record(f"undid \u201c{change.summary}\u201d", plan, undoes=change.id)
