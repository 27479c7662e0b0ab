"""``imgclf export``: the classifier for other runtimes, checked on real photos before it is handed over.

:func:`export` cuts ``model.onnx`` down to what an app needs (:mod:`~imgclf.exports.graph`),
converts it (:mod:`~imgclf.exports.convert`: onnx2tf and TensorFlow, the ``tflite`` extra), runs
the result on the model's validation and test photos (or others) beside ``model.onnx``
(:mod:`~imgclf.exports.runners`, :mod:`~imgclf.exports.parity`) and only then writes it, with a
sidecar JSON that says how to feed it and read it. A failed check leaves nothing at the output.

Formats: ``onnx`` (``FILE.onnx``), ``tflite`` (``FILE.tflite``, float32; ``int8=True`` for
int8 weights and activations calibrated on the training photos) and ``saved_model`` (a folder
for ``tf.saved_model.load``, and for Keras 3 as ``keras.layers.TFSMLayer(DIR, call_endpoint="serving_default")``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgclf.errors import ImgclfError

if TYPE_CHECKING:
    from imgclf.exports.parity import Parity

FORMATS = ("onnx", "tflite", "saved_model")
#: Written into every sidecar: how imgclf knows a file at the output is its own and may be replaced.
MARKER = "imgclf export"
#: Photos the int8 calibration uses at most (the model's training photos).
CALIBRATION_PHOTOS = 200


class ExportCheckError(ImgclfError):
    """The exported file does not answer as ``model.onnx`` does (the CLI exits with code 1)."""

    exit_code = 1


@dataclass
class ExportResult:
    format: str
    path: Path
    sidecar: Path
    parity: "Parity"
    seconds: float
    convert_seconds: float
    size: int


def export(model_dir: str | os.PathLike, fmt: str, output: str | os.PathLike, int8: bool = False,
           check_photos: str | os.PathLike | None = None, log=None) -> ExportResult:
    """Export the model in ``model_dir`` as ``fmt`` to ``output``; raises :class:`ExportCheckError` when the
    exported file's answers differ from ``model.onnx``'s beyond :mod:`~imgclf.exports.parity`'s limits."""
    from imgclf.exports.convert import convert, quiet_native, require_converter
    from imgclf.exports.graph import portable_graph
    from imgclf.exports.parity import measure
    from imgclf.exports.runners import onnx_runner, saved_model_runner, tflite_runner
    from imgclf.runtime.artifact import MODEL_FILE
    from imgclf.runtime.model import Model

    start = time.perf_counter()
    if fmt not in FORMATS:
        raise ImgclfError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if int8 and fmt != "tflite":
        raise ImgclfError("--int8 is for --format tflite")
    if fmt != "onnx":
        require_converter(f"--format {fmt}")
    model = Model.load(model_dir)
    _refuse_faces(model)
    output = Path(output)
    sidecar = output / "assets" / "imgclf.json" if fmt == "saved_model" else output.with_suffix(output.suffix + ".json")
    _check_target(output, sidecar, fmt)
    photos = _check_photos(model, check_photos)
    batches = list(_batches(model, photos))
    if not batches:
        raise ImgclfError("no readable photos to check the export on: give --check-photos DIR")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.imgclf-", dir=output.parent))
    try:
        portable = work / "classifier.onnx"
        portable_graph(model.dir / MODEL_FILE, portable)
        convert_seconds = 0.0
        if fmt == "onnx":
            candidate, runner = portable, onnx_runner
        else:
            if log:
                log("converting with onnx2tf (TensorFlow)")
            converted = convert(portable, work, batches[0][:4], _calibration(model) if int8 else None)
            convert_seconds = converted.seconds
            if fmt == "tflite":
                candidate, runner = (converted.int8 if int8 else converted.tflite), tflite_runner
            else:
                candidate, runner = converted.saved_model, saved_model_runner
        if log:
            log(f"checking the export on {sum(len(b) for b in batches)} photos")
        with quiet_native() if fmt != "onnx" else contextlib.nullcontext():  # LiteRT announces its CPU delegate
            parity = measure(runner(candidate), onnx_runner(model.dir / MODEL_FILE), batches, int8=int8)
        if not parity.passed:
            raise ExportCheckError(f"the exported model does not answer as model.onnx does, {parity.describe()}; nothing was written")
        info = _sidecar(model, fmt, int8, parity)
        if fmt == "saved_model":
            (candidate / "assets").mkdir(exist_ok=True)
            (candidate / "assets" / "imgclf.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        else:
            (work / "sidecar.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        size = _size(candidate)
        _put(candidate, output)
        if fmt != "saved_model":
            os.replace(work / "sidecar.json", sidecar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(fmt, output, sidecar, parity, time.perf_counter() - start, convert_seconds, size)


def _refuse_faces(model) -> None:
    if model.preprocessing.crop == "face_chip" or model.meta.get("backbone", {}).get("name") == "face":
        raise ImgclfError("a face model (--backbone face) is not exported: before its network an app would need dlib's face "
                          "detector, landmarks, alignment and 128-D descriptor, which TFLite and TensorFlow do not carry; "
                          "serve it with imgclf serve, or train with --crop face to get an exportable network")


def _check_target(output: Path, sidecar: Path, fmt: str) -> None:
    """Refuse to replace anything imgclf's export did not write (its sidecar carries :data:`MARKER`)."""
    if not output.exists() and not output.is_symlink():
        if sidecar.exists() and not _ours(sidecar):
            raise ImgclfError(f"{sidecar} exists and was not written by imgclf export: choose another output name")
        return
    if fmt == "saved_model" and output.is_dir() and not any(output.iterdir()):
        return
    if output.is_dir() != (fmt == "saved_model") or not _ours(sidecar):
        raise ImgclfError(f"{output} exists and is not an export imgclf wrote: choose another output, or remove it yourself")


def _ours(sidecar: Path) -> bool:
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("exported_by", "").startswith(MARKER)
    except (OSError, ValueError, AttributeError):
        return False


def _check_photos(model, folder) -> list[Path]:
    """``folder``'s photos, or the model's validation and test photos (as ``train`` recorded them), else its training photos."""
    from imgclf.runtime.inputs import walk_files

    if folder is not None:
        if not Path(folder).exists():
            raise ImgclfError(f"--check-photos {folder} does not exist")
        return list(walk_files(Path(folder)))
    root = Path((model.meta.get("data") or {}).get("root") or ".")
    held = [_found(Path(p["path"]), root) for split in ("val", "test") for p in ((model.metrics.get(split) or {}).get("photos") or [])]
    held = [p for p in held if p is not None]
    return held or _training_photos(model)


def _found(path: Path, root: Path) -> Path | None:
    """A photo as ``train`` recorded it (relative to where it ran, perhaps), found under the data folder ``root``."""
    if path.is_file():
        return path
    parts = path.parts
    for i in range(len(parts)):  # "examples/flowers/photos/daisy/x.jpg" under ".../examples/flowers/photos"
        if root.parts[-(i + 1):] == parts[:i + 1] and root.joinpath(*parts[i + 1:]).is_file():
            return root.joinpath(*parts[i + 1:])
    return None


def _training_photos(model) -> list[Path]:
    root = Path((model.meta.get("data") or {}).get("root") or ".")
    try:
        rows = json.loads((model.dir / "neighbors.json").read_text(encoding="utf-8"))["photos"]
    except (OSError, ValueError, KeyError):
        return []
    return [p for p in (root / path for path, _label in rows) if p.is_file()]


def _batches(model, photos: list[Path], size: int = 16):
    from imgclf.errors import ImageError
    from imgclf.runtime.images import load_image

    pre, batch = model.preprocessing, []
    for path in photos:
        try:
            batch.append(pre.pixels(load_image(path)))
        except ImageError:
            continue
        if len(batch) == size:
            yield pre.batch(batch)
            batch = []
    if batch:
        yield pre.batch(batch)


def _calibration(model) -> np.ndarray:
    """The int8 calibration set: up to :data:`CALIBRATION_PHOTOS` training photos, preprocessed (N, 3, H, W)."""
    photos = _training_photos(model)
    if not photos:
        raise ImgclfError("--int8 calibrates on the model's training photos, which are not where train found them")
    step = max(1, len(photos) // CALIBRATION_PHOTOS)
    batches = list(_batches(model, photos[::step][:CALIBRATION_PHOTOS]))
    return np.concatenate(batches)


def _sidecar(model, fmt: str, int8: bool, parity) -> dict:
    from imgclf import __version__
    from imgclf.exports.graph import OUTPUTS

    pre = model.preprocessing
    channels_last = fmt != "onnx"
    size = pre.input_size
    return {
        "exported_by": f"{MARKER} {__version__}",
        "format": fmt + (" int8" if int8 else ""),
        "labels": model.labels,
        "input": {"name": "input", "shape": [1, size, size, 3] if channels_last else ["N", 3, size, size],
                  "layout": "NHWC" if channels_last else "NCHW", "dtype": "float32"},
        "preprocessing": {**pre.to_dict(), "resize_to": pre.resize_to,
                          "steps": f"RGB; resize the shorter side to {pre.resize_to} px ({pre.interpolation}); crop the centre "
                                   f"{size} x {size}; scale to 0-1; subtract mean and divide by std per channel"},
        "outputs": {"probabilities": f"one per label, in the order of labels ({len(model.labels)})",
                    "similarity": "how like the training photos it is; below threshold the answer is unknown",
                    "embedding": "the backbone's embedding"},
        "output_order": list(OUTPUTS),
        "threshold": model.threshold,
        "parity": parity.to_dict(),
        "model_sha256": model.meta.get("onnx", {}).get("sha256"),
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _put(candidate: Path, output: Path) -> None:
    """Move the checked export into place: a file by rename, a folder by renaming the old one aside first."""
    if candidate.is_dir():
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
        os.replace(candidate, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(candidate, output)

