"""How a training run tells the world how far it is, and how it is stopped.

Every stage reports :class:`Event`\\ s (its name, how much of it is done, of how much, and a message)
to one callback, which the command line draws as progress bars and a web page can draw as it likes.
A run can be cancelled between batches and between stages: it then raises :class:`Cancelled` and
writes nothing (the model folder is only ever replaced whole, at the end).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from imgclf.errors import ImgclfError

#: The stages of :func:`imgclf.train`, in the order they run.
STAGES = ("scan", "embed", "dedupe", "check", "fit", "calibrate", "estimate", "write")


@dataclass(frozen=True)
class Event:
    """``stage`` has done ``done`` of ``total``; ``message`` says what is being done ("embedding augmented views"), and
    ``detail`` how it goes ("epoch 3/12 loss 0.41"). With ``total`` 0 it is news rather than progress: a stage begins
    (no message), or a message to show ("exporting backbone …")."""

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    detail: str = ""


class Cancelled(ImgclfError):
    """The run was cancelled; nothing was written."""

    exit_code = 130


class Reporter:
    """Hands events to ``on_event`` and stops the run when ``cancel`` is set.

    ``progress(done, total, stage=…)`` and ``log(message)`` are the older callbacks of :func:`imgclf.train`, still
    served.
    """

    def __init__(self, on_event: Callable[[Event], None] | None = None, cancel: threading.Event | None = None,
                 progress: Callable | None = None, log: Callable[[str], None] | None = None):
        self.on_event, self.cancel, self._progress, self._log = on_event, cancel, progress, log
        self.stage = STAGES[0]

    def start(self, stage: str, message: str = "") -> None:
        """A stage begins (a cancelled run stops here, before it)."""
        self.check()
        self.stage = stage
        self._emit(Event(stage, 0, 0, message))

    def progress(self, done: int, total: int, stage: str | None = None, info: str = "") -> None:
        """Per photo or batch inside the current stage, with the signature the embedding loops call (``stage`` there is
        what is being done, e.g. "embedding augmented views")."""
        self.check()
        self._emit(Event(self.stage, done, total, stage or "", info))
        if self._progress is not None:
            self._progress(done, total, stage=stage, info=info) if stage or info else self._progress(done, total)

    def log(self, message: str) -> None:
        """A message before a slow step (the CLI prints it dim)."""
        self._emit(Event(self.stage, 0, 0, message))
        if self._log is not None:
            self._log(message)

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("training cancelled: nothing was written, the model folder is as it was")

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
