"""The studio's state: the project open now, its trainer and its answers, the session token, and the projects opened
before (kept in imgclf's state folder, so the landing page can list them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from imgclf.files import state_dir, write_json_atomic
from imgclf.project import STATE, ChangeRefused, Project
from imgclf.project.places import label_name
from imgclf.studio.answers import Answers
from imgclf.studio.guard import new_token
from imgclf.studio.trainer import Trainer

#: The kinds of project the landing page creates, and the backbone each uses.
KINDS = {"objects": None, "faces": "face", "verifier": None, "several": None}
#: How many projects the landing page lists.
RECENT = 12


def recent_file() -> Path:
    return state_dir() / "studio-projects.json"


class Workspace:
    """What one ``imgclf studio`` serves: at most one open project at a time."""

    def __init__(self, folder: str | os.PathLike | None, home: str | os.PathLike, max_upload_bytes: int, max_pixels: int):
        self.token = new_token()
        self.home = Path(home)
        self.max_upload_bytes, self.max_pixels = max_upload_bytes, max_pixels
        self.project: Project | None = None
        self.trainer: Trainer | None = None
        self.answers: Answers | None = None
        if folder is not None:
            self.open(Path(folder))

    def open(self, folder: Path, backbone: str | None = None, multi_label: bool = False) -> Project:
        """Open (or create) the project in ``folder``: imgclf's state goes into its hidden ``.imgclf/`` folder."""
        if self.trainer is not None and self.trainer.status()["state"] == "running":
            raise ChangeRefused("a training run is going on: wait for it or cancel it first")
        if (folder / "train").is_dir():
            raise ChangeRefused(f"{folder} is split into train/ val/ test/ folders: the studio teaches from one folder "
                                "per label (imgclf train still reads this one)")
        project = Project.open(folder, **({"backbone": backbone} if backbone else {}),
                               **({"multi_label": True} if multi_label else {}))
        (project.root / STATE).mkdir(exist_ok=True)
        project.save()
        self.close()
        self.project, self.trainer = project, Trainer(project)
        self.answers = Answers(project, self.max_upload_bytes, self.max_pixels)
        self._remember(project.root)
        return project

    def create(self, name: str, kind: str, label: str | None = None) -> Project:
        """A new project ``name`` under the projects folder: objects, faces, or a verifier of one ``label``."""
        if kind not in KINDS:
            raise ChangeRefused(f"no kind of project {kind!r}: objects, several, faces or verifier")
        folder = self.home / label_name(name)
        if folder.exists():
            raise ChangeRefused(f"{folder} exists already: open it, or choose another name")
        if kind == "verifier" and not label:
            raise ChangeRefused("an \u201cis it \u2026?\u201d project needs the name of what it recognises")
        self.home.mkdir(parents=True, exist_ok=True)
        project = self.open(folder, KINDS[kind], multi_label=kind == "several")
        if label:
            project.edits.add_label(label)
        return project

    def recent(self) -> list[dict]:
        out = []
        for path in _read_recent():
            folder = Path(path)
            out.append({"path": path, "name": folder.name, "exists": (folder / STATE).is_dir(),
                        "open": self.project is not None and folder == self.project.root})
        return out

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.cancel()
            self.trainer.wait(30)
        if self.answers is not None:
            self.answers.close()

    def _remember(self, root: Path) -> None:
        paths = [str(root.resolve())] + [p for p in _read_recent() if p != str(root.resolve())]
        try:
            write_json_atomic(recent_file(), {"projects": paths[:RECENT]})
        except OSError:
            pass  # the list is a convenience: a read-only state folder costs only the list


def _read_recent() -> list[str]:
    try:
        data = json.loads(recent_file().read_text(encoding="utf-8"))
        return [p for p in data["projects"] if isinstance(p, str)][:RECENT]
    except (OSError, ValueError, KeyError, TypeError):
        return []
