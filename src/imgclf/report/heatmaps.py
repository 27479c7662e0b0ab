"""Where the model looked, for the report: a small overlay of a photo's map as a ``data:`` URI."""

from __future__ import annotations

import base64
import io

#: Longest side of an embedded overlay, in pixels.
SIZE = 160


class Heatmaps:
    """``heatmaps(path, label)``: the overlay of ``label``'s map on the photo at ``path`` (``None`` if it
    cannot be read); a model without maps makes none."""

    def __init__(self, model, size: int = SIZE):
        self.model, self.size = model, size

    def __bool__(self) -> bool:
        return bool(getattr(self.model, "explainable", False))

    def __call__(self, path: str, label: str) -> str | None:
        from imgclf.errors import ImageError
        from imgclf.runtime.images import load_image
        from imgclf.runtime.loader import draft_side

        if not self:
            return None
        try:  # decoded as predict does (big JPEGs at reduced size): the overlay is small
            photo = load_image(path, max_side=draft_side(self.model.preprocessing))
            _, explanation = self.model.explain(photo, label=label)
            overlay = explanation.overlay(photo)
        except (ImageError, OSError, ValueError):
            return None
        overlay.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        overlay.save(buf, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
