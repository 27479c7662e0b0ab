"""``imgclf export``: the classifier for other runtimes, checked on real photos before it is handed over.

:func:`export` cuts ``model.onnx`` down to what an app needs (:mod:`~imgclf.exports.graph`),
converts it (:mod:`~imgclf.exports.convert`: onnx2tf and TensorFlow, the ``tflite`` extra), runs
the result on the model's validation and test photos (or others) beside ``model.onnx``
(:mod:`~imgclf.exports.photos`, :mod:`~imgclf.exports.runners`, :mod:`~imgclf.exports.parity`) and only
then writes it, with a sidecar JSON that says how to feed it and read it (:mod:`~imgclf.exports.sidecar`). A failed check leaves nothing at the output.

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
    from imgclf.exports.convert import require_converter
    from imgclf.exports.native import quiet_native
    from imgclf.exports.parity import measure
    from imgclf.exports.photos import batches, photos_to_check
    from imgclf.exports.sidecar import sidecar, sidecar_path
    from imgclf.exports.runners import onnx_runner
    from imgclf.files import Claim, writing_to
    from imgclf.runtime.artifact import MODEL_FILE
    from imgclf.runtime.model import Model

    start = time.perf_counter()
    if fmt not in FORMATS:
        raise ImgclfError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if int8 and fmt != "tflite":
        raise ImgclfError("--int8 is for --format tflite")
    if fmt != "onnx":
        require_converter(f"--format {fmt}")
    model = Model.load(model_dir).check_files()
    model.close()  # checked; its weights need not stay in memory beside the conversion's copies
    _refuse_faces(model)
    output = Path(output)
    info_path = sidecar_path(output, fmt)
    target = Claim(output, "-o", folder=fmt == "saved_model")
    beside = None if fmt == "saved_model" else Claim(info_path, "-o")
    photos = photos_to_check(model, check_photos)
    probe = next(batches(model, photos, size=4), None)  # the photos are read again, in batches, by the check
    if probe is None:
        raise ImgclfError("no readable photos to check the export on: give --check-photos DIR")
    with writing_to(output, "-o"):
        output.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{output.name}.imgclf-", dir=output.parent))
    try:
        with writing_to(output, "-o"):
            candidate, runner, convert_seconds = _convert(model, fmt, int8, work, probe, log)
        if log:
            log(f"checking the export on {len(photos)} photos")
        with quiet_native() if fmt != "onnx" else contextlib.nullcontext():  # LiteRT announces its CPU delegate
            parity = measure(runner(candidate), onnx_runner(model.dir / MODEL_FILE), batches(model, photos), int8=int8)
        if not parity.passed:
            raise ExportCheckError(f"the exported model does not answer as model.onnx does, {parity.describe()}; nothing was written")
        text = json.dumps(sidecar(model, fmt, int8, parity), indent=2)
        staged = candidate / "assets" / "imgclf.json" if fmt == "saved_model" else work / "sidecar.json"
        with writing_to(output, "-o"):
            staged.parent.mkdir(exist_ok=True)
            staged.write_text(text, encoding="utf-8")
        size = _size(candidate)
        target.commit(candidate)
        if beside is not None:
            beside.commit(staged)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(fmt, output, info_path, parity, time.perf_counter() - start, convert_seconds, size)


def _convert(model, fmt: str, int8: bool, work: Path, probe: np.ndarray, log):
    """(the exported file or folder in ``work``, the runner that runs it, seconds spent converting)."""
    from imgclf.exports.convert import convert
    from imgclf.exports.graph import portable_graph
    from imgclf.exports.photos import calibration
    from imgclf.exports.runners import onnx_runner, saved_model_runner, tflite_runner
    from imgclf.runtime.artifact import MODEL_FILE

    portable = work / "classifier.onnx"
    portable_graph(model.dir / MODEL_FILE, portable)
    if fmt == "onnx":
        return portable, onnx_runner, 0.0
    if log:
        log("converting with onnx2tf (TensorFlow)")
    converted = convert(portable, work, probe, calibration(model) if int8 else None)
    if fmt == "tflite":
        return (converted.int8 if int8 else converted.tflite), tflite_runner, converted.seconds
    return converted.saved_model, saved_model_runner, converted.seconds


def _refuse_faces(model) -> None:
    if model.preprocessing.crop == "face_chip" or model.meta.get("backbone", {}).get("name") == "face":
        raise ImgclfError("a face model (--backbone face) is not exported: before its network an app would need dlib's face "
                          "detector, landmarks, alignment and 128-D descriptor, which TFLite and TensorFlow do not carry; "
                          "serve it with imgclf serve, or train with --crop face to get an exportable network")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
