"""The int8 backbone of ``imgclf train --quantize``: ONNX Runtime static quantisation.

QDQ format, int8 weights per output channel, uint8 activations whose ranges are
calibrated (min/max) on up to :data:`CALIBRATION_PHOTOS` of the training photos.
``reduce_range`` (7-bit weights) avoids the int16 saturation of x86 CPUs without VNNI,
which otherwise costs a lot of accuracy (embedding cosine to float 0.87 → 0.97).

The quantised backbone is cached beside the float one under its own id
(``<float id>-int8q<format>-<digest of the calibration photos>``), so its embeddings
are cached apart from the float ones and the same training photos always give the
same backbone. Its speed and accuracy: ``benchmarks/quantize.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf.errors import ImageError, ImgclfError
from imgclf.files import atomic_directory

#: At most this many training photos calibrate the activation ranges.
CALIBRATION_PHOTOS = 64
#: Bump when the recipe below changes: a new id, so nothing stale is reused.
QUANT_FORMAT = 1
QUANTIZATION = "int8"


def calibration_photos(paths: Sequence[Path], limit: int = CALIBRATION_PHOTOS) -> list[Path]:
    """Up to ``limit`` photos spread evenly over ``paths`` in sorted order (deterministic)."""
    ordered = sorted(Path(p) for p in paths)
    if len(ordered) <= limit:
        return ordered
    idx = np.linspace(0, len(ordered) - 1, limit).round().astype(int)
    return [ordered[i] for i in sorted(set(idx))]


def quantized(fp, calibration: Sequence[Path], cache_root: Path, log: Callable[[str], None] | None = None):
    """The int8 version of the float :class:`~imgclf.backbones.Backbone` ``fp``, built once and cached."""
    from imgclf.backbones.base import load_cached
    from imgclf.files.digests import content_hash
    from imgclf.runtime.images import read_bytes
    from imgclf.runtime.loader import preprocess_data

    chosen = calibration_photos(calibration)
    data: list[tuple[str, bytes]] = []
    for path in chosen:
        try:
            blob = read_bytes(path)
        except ImageError:
            continue
        data.append((content_hash(blob), blob))
    if not data:
        raise ImgclfError("--quantize needs readable training photos to calibrate the int8 backbone")
    digest = hashlib.blake2b("\n".join(sorted(h for h, _ in data)).encode(), digest_size=6).hexdigest()
    qid = f"{fp.id}-int8q{QUANT_FORMAT}-{digest}"
    out_dir = cache_root / "backbones" / qid

    def load():
        bb = load_cached(out_dir, fp.name, qid, fp.timm_name, fp.weights, fp.weights_path)
        return None if bb is None else replace(bb, quantization=QUANTIZATION, feature_map=None)

    cached = load()
    if cached is not None:
        return cached
    tensors = []
    for _, blob in data:
        try:
            tensors.append(preprocess_data(blob, fp.preprocessing))
        except ImageError:
            continue
    if not tensors:
        raise ImgclfError("--quantize needs readable training photos to calibrate the int8 backbone")
    if log:
        log(f"quantising backbone {fp.name} to int8 (once; calibrated on {len(tensors)} training photos)…")
    _quantize(fp.onnx_path, np.stack(tensors), out_dir, fp, len(tensors))
    cached = load()
    assert cached is not None, "quantisation wrote no backbone"
    return cached


def _quantize(src: Path, calib: np.ndarray, out_dir: Path, fp, n_photos: int) -> None:
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser logs advice through the root logger

    import onnx

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{input_name: calib[i:i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self._batches, None)

    with atomic_directory(out_dir) as tmp:
        onnx_path = tmp / "backbone.onnx"
        quantize_static(
            str(src), str(onnx_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
        for leftover in tmp.glob("*"):  # the calibration's augmented model and friends
            if leftover.name != "backbone.onnx":
                leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover, ignore_errors=True)
        meta = json.loads((src.parent / "backbone.json").read_text())
        meta.update(onnx_bytes=onnx_path.stat().st_size, quantization={
            "type": QUANTIZATION, "format": "QDQ", "weights": "int8 per channel (reduce_range)",
            "activations": "uint8, min/max calibrated", "calibration_photos": n_photos, "from": fp.id,
        })
        (tmp / "backbone.json").write_text(json.dumps(meta, indent=2))
