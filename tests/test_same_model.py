"""The same photos and seed give the same model, byte for byte (less times and dates): the stages of ``train`` may be
rearranged, renamed and moved, but what they write must not change without a reason given here.

The digests in ``tests/golden/flowers.json`` were recorded from the bundled example; a change that is meant to alter
the model (a new calibration, a new check) re-records them with ``python tests/test_same_model.py`` and says why in
its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "flowers.json"
#: What the model answered when its heads were solved in float64 to SciPy's default tolerances, every fold on every
#: photo: the faster solver and the per-label budgets must give the same answers (recorded once, not re-recorded).
EXACT_ANSWERS = Path(__file__).parent / "golden" / "flowers-exact-answers.json"
#: Fields that say when or how fast, not what was learned.
VOLATILE = {"train_seconds", "seconds", "embedding"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def digests(model_dir: Path, photos_root: Path) -> dict[str, str]:
    """SHA-256 of model.onnx and labels.json, and of metrics.json less :data:`VOLATILE` fields and with the data
    folder's path replaced by ``DATA``."""
    metrics = (model_dir / "metrics.json").read_text().replace(str(photos_root.resolve()), "DATA").replace(str(photos_root), "DATA")
    stable = json.dumps(_stable(json.loads(metrics)), sort_keys=True)
    return {"model.onnx": hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest(),
            "labels.json": hashlib.sha256((model_dir / "labels.json").read_bytes()).hexdigest(),
            "metrics.json": hashlib.sha256(stable.encode()).hexdigest()}


def answers(model_dir: Path, photos_root: Path) -> dict:
    """What the model says about its own photos: the estimate, the temperature, the "unknown" threshold, the findings of
    the checks and the best label of every validation and test photo."""
    metrics = json.loads((model_dir / "metrics.json").read_text())

    def rel(path):
        return Path(path).relative_to(photos_root).as_posix() if path else None

    return {"estimate": {k: metrics["estimate"][k] for k in ("accuracy", "low", "high")},
            "temperature": metrics["head"]["temperature"], "threshold": metrics["rejection"]["threshold"],
            "findings": sorted([f["kind"], rel(f.get("path")), f.get("suggested"), f.get("labels")] for f in metrics["check"]["findings"]),
            "predicted": {rel(p["path"]): p["predicted"] for split in ("val", "test") for p in metrics[split]["photos"]}}


def test_the_bundled_example_gives_the_recorded_model(tmp_path, cache_dir):
    import imgclf
    from tests.conftest import PHOTOS

    imgclf.train(PHOTOS, tmp_path / "m", cache_dir=cache_dir)
    assert digests(tmp_path / "m", PHOTOS) == json.loads(GOLDEN.read_text())
    now, exact = answers(tmp_path / "m", PHOTOS), json.loads(EXACT_ANSWERS.read_text())
    assert now["findings"] == exact["findings"]
    assert now["predicted"] == exact["predicted"]
    assert exact["estimate"]["low"] <= now["estimate"]["accuracy"] <= exact["estimate"]["high"]
    assert abs(now["threshold"] - exact["threshold"]) <= 0.01
    assert abs(now["temperature"] - exact["temperature"]) <= 0.05 * exact["temperature"]


if __name__ == "__main__":  # re-record
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import imgclf
    from tests.conftest import PHOTOS

    with tempfile.TemporaryDirectory() as tmp:
        imgclf.train(PHOTOS, Path(tmp) / "m", cache_dir=Path(tmp) / "cache")
        GOLDEN.write_text(json.dumps(digests(Path(tmp) / "m", PHOTOS), indent=2) + "\n")
    print(GOLDEN.read_text())
