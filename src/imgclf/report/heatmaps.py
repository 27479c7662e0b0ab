"""Where the model looked, for the report: a small overlay of a photo's map as a ``data:`` URI."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path

#: Longest side of an embedded overlay, in pixels.
SIZE = 160


class Heatmaps:
    """``heatmaps(path, label)``: the overlay of ``label``'s map on the photo at ``path`` (``None`` if it cannot
    be read), as a JPEG ``data:`` URI.

    ``model`` is a :class:`~imgclf.runtime.model.Model`, or a function that loads one when an overlay is
    first drawn. With ``cache`` (a folder) and ``key`` (what identifies the model, e.g. the SHA-256 of its
    ``model.onnx``), overlays are kept there, by model, photo bytes and label: re-training on the same photos,
    which gives the same model, draws none again and needs no ONNX Runtime session.
    """

    def __init__(self, model, size: int = SIZE, cache: str | os.PathLike | None = None, key: str | None = None):
        self._model, self._load = (None, model) if callable(model) else (model, None)
        self.size = size
        self.cache = Path(cache) if cache is not None and key else None
        self.key = key

    def __bool__(self) -> bool:
        return self._load is not None or bool(getattr(self._model, "explainable", False))

    @property
    def model(self):
        if self._model is None and self._load is not None:
            self._model, self._load = self._load(), None
        return self._model

    def __call__(self, path: str, label: str) -> str | None:
        from imgclf.errors import ImageError
        from imgclf.runtime.images import read_bytes

        try:
            data = read_bytes(path)
        except ImageError:
            return None
        stored = self._cached(data, label)
        if stored is not None and stored.is_file():
            return _uri(stored.read_bytes())
        jpeg = self._draw(data, label)
        if jpeg is not None and stored is not None:
            from imgclf.files import write_bytes_atomic

            try:
                stored.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(stored, jpeg, durable=False)
            except OSError:
                pass  # a cache that cannot be written only costs time
        return None if jpeg is None else _uri(jpeg)

    def _cached(self, data: bytes, label: str) -> Path | None:
        if self.cache is None:
            return None
        digest = hashlib.sha256(self.key.encode() + b"\0" + label.encode() + b"\0" + data).hexdigest()[:32]
        return self.cache / f"{digest}-{self.size}.jpg"

    def _draw(self, data: bytes, label: str) -> bytes | None:
        from imgclf.errors import ImageError
        from imgclf.runtime.images import decode
        from imgclf.runtime.loader import draft_side

        model = self.model
        if not getattr(model, "explainable", False):
            return None
        try:  # decoded as predict does (big JPEGs at reduced size): the overlay is small
            photo = decode(data, max_side=draft_side(model.preprocessing))
            _, explanation = model.explain(photo, label=label)
            overlay = explanation.overlay(photo)
        except (ImageError, OSError, ValueError):
            return None
        overlay.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        overlay.save(buf, format="JPEG", quality=80)
        return buf.getvalue()


def _uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")

