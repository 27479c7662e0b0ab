"""The model a studio answers with: the project's latest, served by a :class:`~imgclf.serve.service.Service` (decode
threads, micro-batches, the upload and pixel limits of ``imgclf serve``) that is replaced when a training run writes
a new model."""

from __future__ import annotations

import threading

from imgclf.runtime.session import cpu_count
from imgclf.serve.service import Service


class Answers:
    """The :class:`Service` of ``project.model``, made again when the model changes (the old one is closed)."""

    def __init__(self, project, max_upload_bytes: int, max_pixels: int):
        self.project = project
        self.max_upload_bytes, self.max_pixels = max_upload_bytes, max_pixels
        self._service: Service | None = None
        self._lock = threading.Lock()

    def current(self) -> Service | None:
        """The service of the project's model now (None before the first training)."""
        model = self.project.model
        with self._lock:
            if model is None:
                return None
            if self._service is None or self._service.model is not model:
                old, self._service = self._service, Service(
                    model, max_upload_bytes=self.max_upload_bytes, max_batch=8, max_batch_files=64, max_in_flight=32,
                    decode_threads=cpu_count(), max_pixels=self.max_pixels)
                self._service.batcher.start()
                if old is not None:
                    old.close()
            return self._service

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None
