"""Where the model looked: a label's class activation map, placed on the photo, and its overlay.

The head is linear on the spatial mean of the backbone's last feature map, so the map of a
label — the head's weights applied to every cell, scaled as the embedding is — is exact:
its mean plus the label's bias is the label's logit (``model.onnx`` answers it as ``cam``,
:data:`imgclf.runtime.artifact.CAM`).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

#: Overlays are drawn on a copy of the photo at most this many pixels on its longer side.
OVERLAY_SIDE = 240
#: How far (in cells) around the hottest cell :func:`peak_cell` weighs the map; chosen on composites
#: (``benchmarks/explain.py``, seeds 0–1).
PEAK_REACH = 3
#: How much of the heatmap's colour covers the photo.
OVERLAY_ALPHA = 0.5


@dataclass(frozen=True)
class Explanation:
    """One label's map over one photo.

    ``map`` is the class activation map on the model's feature grid (rows × columns, the
    logit's share per cell); ``box`` the part of the photo the model saw (its centre crop),
    ``(left, top, right, bottom)`` in the photo's pixels after EXIF orientation; ``peak``
    where the map peaks, ``(x, y)`` in the same pixels.
    """

    label: str
    map: np.ndarray
    box: tuple[float, float, float, float]
    peak: tuple[int, int]
    #: The photo's size that ``box`` and ``peak`` are in (its upright width and height).
    size: tuple[int, int] = (0, 0)
    #: ``"cam"`` (a class activation map), ``"occlusion"`` (the probability lost when each cell is greyed
    #: out, for graphs without maps) or ``"face"`` (a face model: ``box`` is the face it read, ``points``
    #: its 5 landmarks, and ``map`` is empty).
    kind: str = "cam"
    points: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict:
        d = {"label": self.label, "peak": list(self.peak), "box": [round(v, 1) for v in self.box], "method": self.kind}
        if self.kind == "face":
            d["landmarks"] = [[round(x, 1), round(y, 1)] for x, y in self.points]
        return d

    def in_size(self, size: tuple[int, int]) -> "Explanation":
        """The same explanation with ``box``, ``peak`` and ``points`` in the pixels of the photo at ``size``."""
        if not self.size[0] or tuple(size) == tuple(self.size):
            return self
        sx, sy = size[0] / self.size[0], size[1] / self.size[1]
        box = (self.box[0] * sx, self.box[1] * sy, self.box[2] * sx, self.box[3] * sy)
        peak = (int(round(self.peak[0] * sx)), int(round(self.peak[1] * sy)))
        points = tuple((x * sx, y * sy) for x, y in self.points)
        return Explanation(self.label, self.map, box, peak, tuple(size), self.kind, points)

    def overlay(self, photo: Image.Image) -> Image.Image:
        """``photo`` (RGB, at most :data:`OVERLAY_SIDE` px; the explained photo at any size) with the map in
        colour over the part the model saw, the rest dimmed, and the peak marked (Pillow operations only)."""
        shrink = min(1.0, OVERLAY_SIDE / max(photo.size))
        img = photo.convert("RGB")
        if shrink < 1.0:
            img = img.resize((max(1, round(photo.width * shrink)), max(1, round(photo.height * shrink))), Image.Resampling.BILINEAR)
        scale = img.width / (self.size[0] or photo.width)  # box and peak are in the explained photo's pixels
        if self.kind == "face":
            return self._face_overlay(img, scale)
        left, top, right, bottom = (round(v * scale) for v in self.box)
        w, h = max(1, min(right, img.width) - left), max(1, min(bottom, img.height) - top)
        span = float(self.map.max() - self.map.min())
        levels = ((self.map - self.map.min()) / span * 255 if span > 0 else np.zeros_like(self.map)).astype(np.uint8)
        heat = Image.fromarray(levels, mode="L").resize((w, h), Image.Resampling.BICUBIC)
        heat.putpalette(_PALETTE)
        seen = img.crop((left, top, left + w, top + h))
        out = Image.blend(img, Image.new("RGB", img.size), 0.45)  # what the model did not see, dimmed
        out.paste(Image.blend(seen, heat.convert("RGB"), OVERLAY_ALPHA), (left, top))
        draw = ImageDraw.Draw(out)
        x, y = self.peak[0] * scale, self.peak[1] * scale
        r = max(4, round(min(w, h) / 40))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=max(2, r // 2))
        return out


    def png(self, photo: Image.Image) -> bytes:
        """:meth:`overlay` as PNG bytes, marked as imgclf's own (:func:`is_heatmap`)."""
        buf = io.BytesIO()
        # Huffman coding alone: a third less time than zlib's fastest level, and smaller on these overlays
        self.overlay(photo).save(buf, format="PNG", compress_type=zlib.Z_HUFFMAN_ONLY, pnginfo=heatmap_marker())
        return buf.getvalue()

    def _face_overlay(self, img: Image.Image, scale: float) -> Image.Image:
        """The face the model read, boxed, and its landmarks dotted."""
        out = img.copy()
        draw = ImageDraw.Draw(out)
        width = max(2, round(max(img.size) / 150))
        draw.rectangle([v * scale for v in self.box], outline=(250, 220, 60), width=width)
        r = max(2, width)
        for x, y in self.points:
            draw.ellipse((x * scale - r, y * scale - r, x * scale + r, y * scale + r), fill=(215, 48, 39))
        return out


def face_explanation(label: str, box: tuple[float, float, float, float], points, size: tuple[int, int]) -> Explanation:
    """A face model's explanation: the face box (its centre is the peak) and its landmarks."""
    peak = (int(round((box[0] + box[2]) / 2)), int(round((box[1] + box[3]) / 2)))
    return Explanation(label, np.zeros((0, 0), np.float32), tuple(box), peak, size, "face", tuple(points))


#: The PNG text chunk that marks an overlay as imgclf's own (so a later run may replace it, and nothing else).
MARKER = ("Software", "imgclf predict --explain")


def heatmap_marker():
    """PNG metadata marking an overlay as written by imgclf."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(*MARKER)
    return info


def is_heatmap(path) -> bool:
    """Whether ``path`` is an overlay imgclf wrote (its PNG text chunk says so); a symlink or special file never is,
    and is never opened."""
    from imgclf.files import path_kind

    if path_kind(path) != "file":
        return False
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.info.get(MARKER[0]) == MARKER[1]
    except Exception:
        return False


def _ramp() -> list[int]:
    """A 256-entry blue → green → yellow → red palette (flat RGB list, as ``Image.putpalette`` takes it)."""
    stops = np.array([[49, 54, 149], [69, 160, 200], [120, 200, 100], [250, 220, 60], [215, 48, 39]], np.float32)
    pos = np.linspace(0, len(stops) - 1, 256)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[:, None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8).ravel().tolist()


_PALETTE = _ramp()


def crop_box(width: int, height: int, resize_to: int, crop: int) -> tuple[float, float, float, float]:
    """The part of a ``width`` × ``height`` photo that the resize to ``resize_to`` and the centre crop
    of ``crop`` keep (:func:`imgclf.runtime.preprocessing.resize_crop`), in the photo's pixels."""
    if width <= height:
        new_w, new_h = resize_to, int(resize_to * height / width)
    else:
        new_w, new_h = int(resize_to * width / height), resize_to
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + crop) * sx, (top + crop) * sy


def explain_map(label: str, cam: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int] = (0, 0),
                kind: str = "cam") -> Explanation:
    """An :class:`Explanation` of ``cam`` (rows × columns) seen through ``box``; the peak is read off the map
    finer than its cells (a cell is 32 input pixels for EfficientNet-Lite0): :func:`peak_cell`."""
    left, top, right, bottom = box
    rows, cols = cam.shape
    row, col = peak_cell(cam)
    x = left + (col + 0.5) / cols * (right - left)
    y = top + (row + 0.5) / rows * (bottom - top)
    return Explanation(label, cam, box, (int(round(x)), int(round(y))), size, kind)


def peak_cell(cam: np.ndarray, reach: int = PEAK_REACH) -> tuple[float, float]:
    """Where ``cam`` peaks, in fractional cells (row, column): the centre of mass of the map, less its
    minimum, over the cells within ``reach`` of the hottest one. An object rarely sits on one cell's centre;
    its heat spreads over the cells it covers, and their balance places it between them."""
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    r0, c0 = max(row - reach, 0), max(col - reach, 0)
    window = cam[r0:row + reach + 1, c0:col + reach + 1].astype(np.float64)
    weight = window - window.min()
    total = weight.sum()
    if not np.isfinite(total) or total <= 0:
        return float(row), float(col)
    rows, cols = np.mgrid[r0:r0 + window.shape[0], c0:c0 + window.shape[1]]
    return float((weight * rows).sum() / total), float((weight * cols).sum() / total)
