"""Training a project in the background, one run at a time, with its progress by stage and a cancel button.

The model the page answers with is the last one written: a run replaces the model folder whole at its end, so the
old model keeps answering until then, and a cancelled or failed run leaves it as it was.
"""

from __future__ import annotations

import threading
import time

from imgclf.errors import ImgclfError
from imgclf.training.events import STAGES, Cancelled, Event


class Trainer:
    """Runs ``project.train`` on a thread; :meth:`status` says how far it is."""

    def __init__(self, project):
        self.project = project
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._status: dict = {"state": "idle", "runs": 0}

    def start(self) -> bool:
        """Start a run (False when one is running already)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._cancel = threading.Event()
            runs = self._status["runs"] + 1
            self._status = {"state": "running", "runs": runs, "stage": STAGES[0], "stages": list(STAGES), "done": 0,
                            "total": 0, "message": "", "started": time.time()}
            self._thread = threading.Thread(target=self._run, name="imgclf-studio-train", daemon=True)
            self._thread.start()
            return True

    def cancel(self) -> bool:
        running = self._thread is not None and self._thread.is_alive()
        if running:
            self._cancel.set()
        return running

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    def _event(self, event: Event) -> None:
        with self._lock:
            self._status.update(stage=event.stage, done=event.done, total=event.total, message=event.message)

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            result = self.project.train(on_event=self._event, cancel=self._cancel)
            self.project.model  # load it here, not in the first request that needs it
            outcome = {"state": "done", "photos": result.photos,
                       "embedded": result.n_computed, "skipped": [s.to_dict() for s in result.skipped[:20]],
                       "warnings": result.warnings[:10]}
        except Cancelled:
            outcome = {"state": "cancelled"}
        except ImgclfError as e:
            outcome = {"state": "failed", "error": str(e)}
        except Exception as e:  # a bug must not leave the page waiting for ever
            outcome = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        with self._lock:
            self._status.update(outcome, seconds=round(time.perf_counter() - started, 2), finished=time.time())
