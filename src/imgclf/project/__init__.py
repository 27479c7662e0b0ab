"""A project: a data folder of label folders, its model folder, the cache and the settings, as one object that the
command line and a web page drive alike.

``Project.open(PATH)`` opens (or creates) a folder of label folders in place, without copying or moving a photo;
imgclf's own state lives in its hidden ``.imgclf/`` folder (``project.json``: the settings; ``model/``: the model
folder, unless another is given), which no scan ever reads as photos. ``project.train(on_event=…, cancel=…)`` runs
the stages of :func:`imgclf.train` (one run at a time per project, across processes); ``project.model`` is the model
last written, loaded for answers; ``project.edits`` makes the journaled, undoable changes to its labels and photos
(:mod:`~imgclf.project.edits`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Callable

from imgclf.errors import ImgclfError
from imgclf.project.edits import Edits
from imgclf.project.places import ChangeRefused, ProjectLock
from imgclf.training.events import Event, Reporter
from imgclf.training.flow import TrainResult, run
from imgclf.training.settings import Settings

#: The hidden folder of a project's own state.
STATE = ".imgclf"
#: The settings a project remembers between sessions (the rest are per run: a command line, an embeddings file).
REMEMBERED = ("backbone", "seed", "val_fraction", "test_fraction", "augment", "target_acceptance", "quantize", "crop",
              "multi_label", "min_precision")


class Project:
    """The data folder ``root`` (one folder per label), the model folder ``model_dir`` and the :class:`Settings`."""

    def __init__(self, root: str | os.PathLike, settings: Settings | None = None, model_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        self.settings = settings or Settings()
        self.model_dir = Path(model_dir) if model_dir is not None else self.root / STATE / "model"
        self._model = None
        self._model_sha: str | None = None
        self._edits: Edits | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, model_dir: str | os.PathLike | None = None, create: bool = True,
             **settings) -> "Project":
        """The project in ``path`` (created, empty, if ``create`` and missing), with its remembered settings updated
        by ``settings`` (the keyword options of :func:`imgclf.train`)."""
        root = Path(path)
        if not root.exists():
            if not create:
                raise ImgclfError(f"project folder not found: {root}")
            root.mkdir(parents=True)
        elif not root.is_dir():
            raise ImgclfError(f"{root} is not a folder")
        saved = _read_settings(root)
        fine_tune = settings.pop("fine_tune", False)
        merged = {**saved, **{k: v for k, v in settings.items() if v is not None}}
        project = cls(root, Settings.of(fine_tune=fine_tune, **merged), model_dir)
        if create and {k: merged.get(k) for k in REMEMBERED if k in merged} != saved:
            project.save()
        return project

    @property
    def state_dir(self) -> Path:
        return self.root / STATE

    @property
    def edits(self) -> Edits:
        """The journaled changes to this project's labels and photos."""
        if self._edits is None:
            from imgclf.files import default_cache_dir

            self._edits = Edits(self.root, Path(self.settings.cache_dir or default_cache_dir()))
        return self._edits

    def save(self) -> None:
        """Remember the settings in ``.imgclf/project.json``."""
        from imgclf.files import write_json_atomic, writing_to

        remembered = {k: getattr(self.settings, k) for k in REMEMBERED}
        with writing_to(self.state_dir / "project.json", "the project's settings to"):
            write_json_atomic(self.state_dir / "project.json", {"imgclf_project": 1, "settings": remembered})

    def train(self, on_event: Callable[[Event], None] | None = None, cancel: threading.Event | None = None,
              progress: Callable | None = None, log: Callable[[str], None] | None = None, **overrides) -> TrainResult:
        """Train on the project's photos and replace its model folder (whole, at the end; a cancelled run leaves the
        old model as it was). ``overrides`` change settings for this run only (``command=``, ``embeddings=``)."""
        settings = dataclasses.replace(self.settings, **overrides).check() if overrides else self.settings
        reporter = Reporter(on_event, cancel, progress, log)
        if not self.state_dir.is_dir():  # a plain data folder: imgclf writes nothing into it
            return run(self.root, self.model_dir, settings, reporter)
        with ProjectLock(self.state_dir, "train").held(wait=False, busy=f"{self.root} is being trained already"):
            return run(self.root, self.model_dir, settings, reporter)

    @property
    def model(self):
        """The model in the model folder (None before the first training), loaded again when it was replaced."""
        from imgclf.runtime.artifact import META_FILE, is_model_folder
        from imgclf.runtime.model import Model

        if not is_model_folder(self.model_dir):
            return None
        sha = json.loads((self.model_dir / META_FILE).read_text(encoding="utf-8")).get("onnx", {}).get("sha256")
        if self._model is None or sha != self._model_sha:
            self._model, self._model_sha = Model.load(self.model_dir), sha
        return self._model


def _read_settings(root: Path) -> dict:
    path = root / STATE / "project.json"
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ImgclfError(f"{path} is damaged: remove it to start the project's settings afresh") from None
    if not isinstance(saved, dict):
        raise ImgclfError(f"{path} is damaged: remove it to start the project's settings afresh")
    return {k: v for k, v in saved.items() if k in REMEMBERED}


__all__ = ["ChangeRefused", "Project", "STATE"]
