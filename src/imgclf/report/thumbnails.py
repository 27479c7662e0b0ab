"""Small JPEG thumbnails as ``data:`` URIs, so a report embeds its photos and opens offline."""

from __future__ import annotations

import base64

#: Longest side of an embedded thumbnail, in pixels.
SIZE = 96
QUALITY = 72


class Thumbnails:
    """Thumbnails by path, each made once; a file that cannot be read gets ``None``."""

    def __init__(self, size: int = SIZE, enabled: bool = True):
        self.size, self.enabled = size, enabled
        self._cache: dict[str, str | None] = {}

    def __call__(self, path: str) -> str | None:
        if not self.enabled:
            return None
        if path not in self._cache:
            self._cache[path] = thumbnail_uri(path, self.size)
        return self._cache[path]

    def __len__(self) -> int:
        return sum(v is not None for v in self._cache.values())


def thumbnail_uri(path: str, size: int = SIZE) -> str | None:
    """``data:image/jpeg;base64,…`` of an upright thumbnail of ``path`` (longest side ``size``), or None."""
    from imgclf.runtime.images import thumbnail_jpeg

    jpeg = thumbnail_jpeg(path, size, QUALITY)
    return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
