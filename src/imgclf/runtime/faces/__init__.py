"""Faces: find the largest face in a photo, align it, and embed it with dlib's face-recognition ResNet.

An optional extra (``pip install 'imgclf[face]'``: the prebuilt ``dlib-bin`` wheel and
``face_recognition_models``, which ships dlib's 5-point landmark model and its 128-D
ResNet face descriptor). Two uses, both chosen by :attr:`Preprocessing.crop`:

- ``"face_chip"`` (``--backbone face``): the aligned 150 × 150 face, which :func:`encode`
  turns into the descriptor;
- ``"face"`` (``--crop face``): a square around the face for any other backbone.

A photo without a face raises :class:`NoFaceError` (an :class:`ImageError`): training
skips it with that reason, predict answers :data:`NO_FACE`. dlib's objects are not
shared between threads: each thread loads its own.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.errors import ImageError, ImgclfError

#: The label predict gives a photo in which no face was found.
NO_FACE = "no face"
#: Why training and evaluate skip such a photo.
NO_FACE_REASON = "no face found"
#: Name of the face encoder, as stored in a face model's metadata (``backbone.encoder``).
ENCODER = "dlib_face_resnet_v1"
#: The aligned face the encoder takes: this many pixels square, with dlib's default padding.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: ``crop="face"`` keeps the face box grown by this much of its size on every side (hair, chin).
CROP_MARGIN = 0.4
#: Photos are decoded to at least this shorter side before looking for a face.
DECODE_SIDE = 1024
#: Faces are searched for on a copy whose longer side is at most this (speed); a search
#: that finds nothing is repeated at twice the scale, which finds faces down to ~40 pixels.
DETECT_SIDE = 800
DIM = 128
#: dlib calls two descriptors the same person below a Euclidean distance of 0.6; at the
#: descriptors' typical length (1.39 on the bundled portraits) that is a cosine similarity
#: of 1 − 0.6² / (2 · 1.39²) ≈ 0.9 (same person 0.95–0.98 there, different people 0.80–0.88).
#: A face model's "unknown" threshold is never below it.
SAME_PERSON_SIMILARITY = 0.9
_MODEL_FILES = {"landmarks": "shape_predictor_5_face_landmarks.dat", "encoder": "dlib_face_recognition_resnet_model_v1.dat",
                "detector": "mmod_human_face_detector.dat"}


class NoFaceError(ImageError):
    """No face was found in an image."""

    def __init__(self, reason: str = NO_FACE_REASON):
        super().__init__(reason)


def models_dir() -> Path:
    """Folder of dlib's model files (from ``face_recognition_models``), or a clear error when the extra is missing."""
    try:
        import dlib  # noqa: F401  (checked here so the message names the whole extra)
    except ImportError:
        raise ImgclfError("faces need the optional extra: pip install 'imgclf[face]' (dlib-bin, face_recognition_models)") from None
    # found without importing the package: its __init__ needs pkg_resources, which new setuptools dropped
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImgclfError("faces need the optional extra: pip install 'imgclf[face]' (face_recognition_models is missing)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(kind: str) -> Path:
    """Path of the ``"landmarks"``, ``"encoder"`` or ``"detector"`` (CNN) model file."""
    return models_dir() / _MODEL_FILES[kind]


_local = threading.local()


def _dlib_objects():
    """This thread's (detector, landmark predictor); loaded on first use."""
    if not hasattr(_local, "finder"):
        import dlib

        _local.finder = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file("landmarks"))))
    return _local.finder


def _recognizer():
    if not hasattr(_local, "recognizer"):
        import dlib

        _local.recognizer = dlib.face_recognition_model_v1(str(model_file("encoder")))
    return _local.recognizer


#: Faces are looked for on an upsampled copy of at most this many pixels on its longer side (small faces in small photos).
MAX_UPSAMPLED_SIDE = 1200
#: Turns tried, in degrees, when the upright photo shows no face (heads tilted sideways).
TURNS = (15, -15, 30, -30)


def find_faces(arr: np.ndarray) -> list:
    """Face boxes (dlib rectangles) in an RGB array, by dlib's HOG detector.

    Tried at the photo's scale, upsampled 2× once, then 2× more at a time while the copy stays
    within :data:`MAX_UPSAMPLED_SIDE` (faces down to about 20 px in a 250 px photo);
    :func:`largest_face` then tries copies turned by :data:`TURNS`. ``benchmarks/face_composites.py`` measures it.
    """
    detector, _ = _dlib_objects()
    for up in range(_max_upsampling(arr.shape[:2]) + 1):
        boxes = detector(arr, up)
        if boxes:
            return list(boxes)
    return []


def _max_upsampling(shape: tuple[int, int]) -> int:
    up = 1
    while max(shape) * 2 ** (up + 1) <= MAX_UPSAMPLED_SIDE:
        up += 1
    return up


def largest_face(img: Image.Image):
    """``(image, landmarks)``: the largest face's landmarks (a dlib ``full_object_detection``) in ``image``,
    which is ``img`` or, when only a turned copy shows a face, that copy. Raises :class:`NoFaceError`.

    Looked for in turn by BlazeFace's back-camera network on the whole photo (one fast run that finds most faces),
    by dlib's HOG detector (:func:`find_faces`), by BlazeFace's short-range network on tiles
    (:mod:`imgclf.runtime.faces.detector`: small, turned and covered faces; its best face), then by HOG on
    copies turned by :data:`TURNS`.
    """
    _, photo, shape = _largest(img)
    return photo, shape


def outlined_chip(img: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float], list[tuple[float, float]]]:
    """``(chip, box, landmarks)``: :func:`face_chip` of the largest face, with its box ``(left, top, right,
    bottom)`` and its 5 landmarks ``(x, y)`` in ``img``'s own pixels (mapped back from a turned copy)."""
    import dlib

    turn, photo, shape = _largest(img)
    chip = Image.fromarray(dlib.get_face_chip(np.asarray(photo), shape, size=CHIP_SIZE, padding=CHIP_PADDING))
    r = shape.rect
    corners = [_unturn(x, y, turn, img.size) for x, y in ((r.left(), r.top()), (r.right(), r.top()), (r.right(), r.bottom()), (r.left(), r.bottom()))]
    box = (min(x for x, _ in corners), min(y for _, y in corners), max(x for x, _ in corners), max(y for _, y in corners))
    points = [_unturn(shape.part(i).x, shape.part(i).y, turn, img.size) for i in range(shape.num_parts)]
    return chip, box, points


def _unturn(x: float, y: float, turn: float, size: tuple[int, int]) -> tuple[float, float]:
    """A point of ``img.rotate(turn)`` (same size, about the centre) back in ``img``'s pixels."""
    if not turn:
        return float(x), float(y)
    cx, cy, a = size[0] / 2, size[1] / 2, np.deg2rad(turn)
    dx, dy = x - cx, y - cy
    return float(dx * np.cos(a) - dy * np.sin(a) + cx), float(dx * np.sin(a) + dy * np.cos(a) + cy)


def _largest(img: Image.Image):
    """``(turn, photo, landmarks)`` of :func:`largest_face`, with the turn (degrees) of the copy it was found in."""
    import dlib

    from imgclf.runtime.faces import detector

    _, predictor = _dlib_objects()
    scale = min(1.0, DETECT_SIDE / max(img.size))
    small = img if scale == 1.0 else img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    turn, boxes = 0, [_as_dlib_box(box) for box, _ in detector.detect_whole(np.asarray(small))]
    if not boxes:
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in find_faces(np.asarray(small))]
    if not boxes:
        boxes = [box for box, _ in detector.detect(np.asarray(small))[:1]]
    for turn in () if boxes else TURNS:
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in find_faces(np.asarray(small.rotate(turn, resample=Image.Resampling.BILINEAR)))]
        if boxes:
            break
    if not boxes:
        raise NoFaceError()
    left, top, right, bottom = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    photo = img if turn == 0 else img.rotate(turn, resample=Image.Resampling.BICUBIC)
    full = dlib.rectangle(round(left / scale), round(top / scale), round(right / scale), round(bottom / scale))
    return turn, photo, predictor(np.asarray(photo), full)


#: BlazeFace's box of a face against dlib's (whose boxes the landmark model was trained on): dlib's centre lies this
#: share of the side higher, and its side is this many times longer (medians over the 83 faces both found in
#: ``benchmarks/face_composites.py``'s composites of seed 5 and the bundled portraits).
BLAZEFACE_RAISE, BLAZEFACE_GROW = 0.06, 1.10


def _as_dlib_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    left, top, right, bottom = box
    half = (right - left) * BLAZEFACE_GROW / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2 - BLAZEFACE_RAISE * (right - left)
    return cx - half, cy - half, cx + half, cy + half


def face_chip(img: Image.Image) -> Image.Image:
    """The largest face, aligned by its eyes and nose (5 landmarks), as a ``CHIP_SIZE`` square."""
    import dlib

    photo, shape = largest_face(img)
    return Image.fromarray(dlib.get_face_chip(np.asarray(photo), shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def face_crop(img: Image.Image) -> Image.Image:
    """A square around the largest face, grown by ``CROP_MARGIN`` on every side (padded black past the edges)."""
    return face_square(img)[0]


def face_square(img: Image.Image) -> tuple[Image.Image, tuple[float, float, float]]:
    """``(crop, (cx, cy, half))``: :func:`face_crop` and its square's centre and half side in ``img``'s pixels
    (when the face was found in a turned copy, the centre is mapped back and the square is that copy's)."""
    turn, photo, shape = _largest(img)
    box = shape.rect
    cx, cy = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2
    half = max(box.width(), box.height()) * (0.5 + CROP_MARGIN)
    crop = photo.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    ox, oy = _unturn(cx, cy, turn, img.size)
    return crop, (ox, oy, half)


def crop(img: Image.Image, mode: str) -> Image.Image:
    """Apply a :attr:`Preprocessing.crop` mode (``"face"`` or ``"face_chip"``) to a decoded RGB image."""
    if mode == "face_chip":
        return face_chip(img)
    if mode == "face":
        return face_crop(img)
    raise ImgclfError(f"unknown crop {mode!r}: use face")


def encode(batch: np.ndarray) -> np.ndarray:
    """Face descriptors (N, 128) of preprocessed chips (N, 3, 150, 150) with values in [0, 1]: dlib's network in ONNX
    Runtime (:mod:`imgclf.runtime.faces.network`), or dlib itself where that graph could not be made."""
    from imgclf.runtime.faces import network

    run = network.session(model_file("encoder"), _dlib_descriptor)
    if run is not None:
        return run.run(None, {"pixels": np.ascontiguousarray(batch, np.float32)})[0].reshape(len(batch), DIM)
    chips = [np.ascontiguousarray(np.rint(c.transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)) for c in batch]
    return np.asarray(_recognizer().compute_face_descriptor(chips), dtype=np.float32).reshape(len(chips), DIM)


def _dlib_descriptor(chip: np.ndarray) -> np.ndarray:
    """dlib's own descriptor of one 8-bit RGB chip (150, 150, 3)."""
    return np.asarray(_recognizer().compute_face_descriptor(chip), dtype=np.float32)
